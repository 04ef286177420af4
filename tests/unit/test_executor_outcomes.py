"""What each PSP answer does to an execution: only the PSP's definite word ends it."""

from __future__ import annotations

from services.executor.domain import OUTCOME_UNKNOWN, REQUEST_REJECTED, ExecutionStatus
from services.executor.psp_port import ChargeResult, PspOutcomeUnknown, PspRequestRejected
from services.executor.retry_policy import RetryPolicy
from services.executor.service.outcomes import decide

POLICY = RetryPolicy(budget=3, base_ms=100, max_ms=1000)


def _top(ceiling: int) -> int:
    return ceiling


def test_a_charge_succeeds_with_its_psp_reference() -> None:
    outcome = decide(ChargeResult(True, "pi_1", "", ""), attempts=1, policy=POLICY)
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.psp_reference == "pi_1"
    assert outcome.publishes_event


def test_a_decline_fails_with_the_psp_code_even_on_the_last_attempt() -> None:
    answer = ChargeResult(False, "pi_2", "insufficient_funds", "Your card has insufficient funds.")
    outcome = decide(answer, attempts=3, policy=POLICY)
    assert outcome.status is ExecutionStatus.FAILED
    assert (outcome.failure_code, outcome.psp_reference) == ("insufficient_funds", "pi_2")
    assert outcome.publishes_event


def test_an_unknown_outcome_is_retried_after_a_backoff() -> None:
    outcome = decide(PspOutcomeUnknown("HTTP 500"), attempts=2, policy=POLICY, jitter=_top)
    assert outcome.status is ExecutionStatus.NOT_STARTED
    assert outcome.retry_delay_ms == 200
    assert outcome.failure_code == OUTCOME_UNKNOWN
    assert not outcome.publishes_event


def test_retry_after_from_the_psp_is_honoured() -> None:
    outcome = decide(PspOutcomeUnknown("429", retry_after_s=4), attempts=1, policy=POLICY, jitter=_top)
    assert outcome.retry_delay_ms == 4000


def test_an_unknown_outcome_after_the_budget_is_parked_never_failed() -> None:
    outcome = decide(PspOutcomeUnknown("timeout"), attempts=3, policy=POLICY)
    assert outcome.status is ExecutionStatus.UNKNOWN
    assert "retry budget of 3" in outcome.failure_message
    assert not outcome.publishes_event


def test_timeouts_and_unexpected_errors_count_as_unknown() -> None:
    assert decide(TimeoutError(), attempts=1, policy=POLICY).status is ExecutionStatus.NOT_STARTED
    assert decide(RuntimeError("adapter bug"), attempts=1, policy=POLICY).status is ExecutionStatus.NOT_STARTED
    assert decide(RuntimeError("adapter bug"), attempts=3, policy=POLICY).status is ExecutionStatus.UNKNOWN


def test_a_rejected_request_is_parked_for_an_operator_at_once() -> None:
    outcome = decide(PspRequestRejected("idempotency key reused"), attempts=1, policy=POLICY)
    assert outcome.status is ExecutionStatus.UNKNOWN
    assert outcome.failure_code == REQUEST_REJECTED
    assert "idempotency key reused" in outcome.failure_message


def test_long_messages_are_truncated() -> None:
    outcome = decide(ChargeResult(False, "", "do_not_honor", "x" * 5000), attempts=1, policy=POLICY)
    assert len(outcome.failure_message) == 1000
