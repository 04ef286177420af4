"""Backoff after an unknown PSP outcome: exponential ceiling, full jitter, Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from services.executor.retry_policy import RetryPolicy, full_jitter

POLICY = RetryPolicy(budget=8, base_ms=200, max_ms=30_000)


def test_the_ceiling_doubles_per_attempt_up_to_the_maximum() -> None:
    assert [POLICY.ceiling_ms(n) for n in range(1, 10)] == [
        200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000,
    ]  # fmt: skip
    assert POLICY.ceiling_ms(10_000) == 30_000  # no overflow, no float


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert POLICY.delay_ms(3, None, jitter=lambda ceiling: 0) == 0
    assert POLICY.delay_ms(3, None, jitter=lambda ceiling: ceiling) == 800
    random.seed(7)
    samples = [POLICY.delay_ms(4, None) for _ in range(2000)]
    assert all(0 <= sample <= 1600 for sample in samples)
    # Spread over the whole range, not clustered at the ceiling (that would be no jitter at all).
    assert min(samples) < 160 and max(samples) > 1440


def test_a_jitter_outside_the_range_is_a_bug() -> None:
    with pytest.raises(ValueError, match="outside"):
        POLICY.delay_ms(1, None, jitter=lambda ceiling: ceiling + 1)


def test_retry_after_is_a_floor_even_above_the_maximum() -> None:
    assert POLICY.delay_ms(1, 2.5, jitter=lambda ceiling: 0) == 2500
    assert POLICY.delay_ms(1, 60.0, jitter=full_jitter) == 60_000
    # A Retry-After shorter than the jittered delay does not shorten it.
    assert POLICY.delay_ms(5, 0.1, jitter=lambda ceiling: ceiling) == 3200
    assert POLICY.delay_ms(1, 0.0, jitter=lambda ceiling: 7) == 7


def test_the_budget_counts_psp_calls() -> None:
    assert not POLICY.is_exhausted(7)
    assert POLICY.is_exhausted(8)


@pytest.mark.parametrize(("budget", "base_ms", "max_ms"), [(0, 1, 1), (1, 0, 1), (1, 10, 5)])
def test_nonsense_policies_are_refused(budget: int, base_ms: int, max_ms: int) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(budget=budget, base_ms=base_ms, max_ms=max_ms)
