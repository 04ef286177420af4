"""What the PSP's answer to one call means for its execution (pure: the worker applies it)."""

from __future__ import annotations

from services.executor.domain import OUTCOME_UNKNOWN, REQUEST_REJECTED, ExecutionStatus, Outcome
from services.executor.psp_port import ChargeResult, PspOutcomeUnknown, PspRequestRejected
from services.executor.retry_policy import Jitter, RetryPolicy, full_jitter

MESSAGE_MAX_LENGTH = 1000


def decide(
    answer: ChargeResult | BaseException,
    *,
    attempts: int,
    policy: RetryPolicy,
    jitter: Jitter = full_jitter,
) -> Outcome:
    """Maps the PSP's answer to the `attempts`-th call (within the budget) to an outcome.

    Anything but a definite answer is an unknown outcome: the charge may have happened, so the
    order is never marked failed on our own guess; it is retried with the same key or parked.
    """
    if isinstance(answer, ChargeResult):
        return definite_outcome(answer)
    message = f"{type(answer).__name__}: {answer}"[:MESSAGE_MAX_LENGTH]
    if isinstance(answer, PspRequestRejected):
        # Our own bug or configuration: the same request would be rejected again. An operator must look.
        return Outcome(ExecutionStatus.UNKNOWN, failure_code=REQUEST_REJECTED, failure_message=message)
    if policy.is_exhausted(attempts):
        return Outcome(
            ExecutionStatus.UNKNOWN,
            failure_code=OUTCOME_UNKNOWN,
            failure_message=f"retry budget of {policy.budget} attempts used up; last: {message}"[:MESSAGE_MAX_LENGTH],
        )
    retry_after_s = answer.retry_after_s if isinstance(answer, PspOutcomeUnknown) else None
    return Outcome(
        ExecutionStatus.NOT_STARTED,
        failure_code=OUTCOME_UNKNOWN,
        failure_message=message,
        retry_delay_ms=policy.delay_ms(attempts, retry_after_s, jitter),
    )


def definite_outcome(result: ChargeResult) -> Outcome:
    """SUCCEEDED or FAILED, as the PSP said: from the answer to a call, or from its webhook event."""
    if result.succeeded:
        return Outcome(ExecutionStatus.SUCCEEDED, psp_reference=result.psp_reference)
    return Outcome(
        ExecutionStatus.FAILED,
        psp_reference=result.psp_reference,
        failure_code=result.failure_code,
        failure_message=result.failure_message[:MESSAGE_MAX_LENGTH],
    )
