"""When to call the PSP again after an unknown outcome: exponential backoff with full jitter.

Full jitter (a uniform delay between zero and the exponential ceiling) spreads the retries of many
executions that failed together (a PSP outage) instead of sending them back in synchronized waves.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

# Picks a delay in [0, ceiling_ms]; injected so tests can pin both ends of the range.
Jitter = Callable[[int], int]

# 2**40 * base already exceeds any sane maximum; capping the exponent keeps the arithmetic small.
_MAX_EXPONENT = 40


def full_jitter(ceiling_ms: int) -> int:
    return random.randint(0, ceiling_ms)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    budget: int  # PSP calls per execution before an unknown outcome is parked
    base_ms: int
    max_ms: int

    def __post_init__(self) -> None:
        if self.budget < 1 or self.base_ms < 1 or self.max_ms < self.base_ms:
            raise ValueError("need budget >= 1 and 1 <= base_ms <= max_ms")

    def is_exhausted(self, attempts: int) -> bool:
        """Whether an execution that has made `attempts` PSP calls may not make another."""
        return attempts >= self.budget

    def ceiling_ms(self, attempts: int) -> int:
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        return min(self.max_ms, self.base_ms << exponent)

    def delay_ms(self, attempts: int, retry_after_s: float | None, jitter: Jitter = full_jitter) -> int:
        """The wait before the next PSP call after `attempts` calls with unknown outcomes.

        A Retry-After from the PSP is a floor: calling earlier would only be rate limited again.
        """
        ceiling = self.ceiling_ms(attempts)
        delay = jitter(ceiling)
        if not 0 <= delay <= ceiling:
            raise ValueError(f"jitter returned {delay}, outside [0, {ceiling}]")
        if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > 0:
            delay = max(delay, math.ceil(retry_after_s * 1000))
        return delay
