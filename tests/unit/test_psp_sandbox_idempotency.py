"""Stripe's idempotency rules as the sandbox keeps them."""

import pytest

from psp_sandbox.clock import SandboxClock
from psp_sandbox.errors import StripeHttpError
from psp_sandbox.idempotency import IdempotencyStore, StoredResponse

ANSWER = StoredResponse(200, b'{"id":"pi_1"}', "req_1")


def test_first_use_claims_the_key_and_completion_is_replayed() -> None:
    store = IdempotencyStore(SandboxClock(), retention_s=60)

    assert store.begin("acct", "key", "fp") is None
    store.complete("acct", "key", ANSWER)

    assert store.begin("acct", "key", "fp") == ANSWER


def test_in_flight_key_conflicts_with_409() -> None:
    store = IdempotencyStore(SandboxClock(), retention_s=60)
    store.begin("acct", "key", "fp")

    with pytest.raises(StripeHttpError) as raised:
        store.begin("acct", "key", "fp")
    assert raised.value.status == 409
    assert raised.value.error["code"] == "idempotency_key_in_use"


def test_different_parameters_are_an_idempotency_error() -> None:
    store = IdempotencyStore(SandboxClock(), retention_s=60)
    store.begin("acct", "key", "fp")
    store.complete("acct", "key", ANSWER)

    with pytest.raises(StripeHttpError) as raised:
        store.begin("acct", "key", "other")
    assert raised.value.status == 400
    assert raised.value.error["type"] == "idempotency_error"


def test_released_key_can_be_used_with_new_parameters() -> None:
    store = IdempotencyStore(SandboxClock(), retention_s=60)
    store.begin("acct", "key", "fp")
    store.release("acct", "key")

    assert store.begin("acct", "key", "other") is None


def test_keys_are_scoped_per_account() -> None:
    store = IdempotencyStore(SandboxClock(), retention_s=60)
    store.begin("acct_a", "key", "fp")

    assert store.begin("acct_b", "key", "other") is None


def test_keys_expire_after_retention_on_the_sandbox_clock() -> None:
    clock = SandboxClock()
    store = IdempotencyStore(clock, retention_s=60)
    store.begin("acct", "old", "fp")
    store.complete("acct", "old", ANSWER)

    clock.advance(59)
    assert store.begin("acct", "old", "fp") == ANSWER
    clock.advance(1)
    assert store.begin("acct", "old", "other") is None


def test_expired_keys_are_purged_so_memory_stays_bounded() -> None:
    clock = SandboxClock()
    store = IdempotencyStore(clock, retention_s=60)
    for number in range(100):
        store.begin("acct", f"key-{number}", "fp")
        store.complete("acct", f"key-{number}", ANSWER)

    clock.advance(60)
    store.begin("acct", "fresh", "fp")

    assert len(store) == 1


def test_clock_never_runs_backwards() -> None:
    with pytest.raises(ValueError):
        SandboxClock().advance(-1)
