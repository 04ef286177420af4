"""The sandbox's clock: wall time plus an offset that tests advance to age idempotency keys."""

from __future__ import annotations

import time


class SandboxClock:
    def __init__(self, offset_s: int = 0) -> None:
        self.offset_s = offset_s

    def now_s(self) -> int:
        return int(time.time()) + self.offset_s

    def advance(self, seconds: int) -> None:
        # Only forwards: key expiry and journal order rely on time never running back.
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forwards")
        self.offset_s += seconds
