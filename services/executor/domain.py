"""The executor's domain: executions, their states, and what a charge request must look like.

Pure Python: no I/O. An execution is the executor's record of charging one payment order through
the PSP, keyed (and made idempotent at the PSP) by the payment order id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.common.errors import FieldViolation, Validator
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR


class ExecutionStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"  # accepted (or queued again), waiting for a worker
    EXECUTING = "EXECUTING"  # claimed by a worker that is talking to the PSP
    SUCCEEDED = "SUCCEEDED"  # the PSP charged
    FAILED = "FAILED"  # the PSP declined; nothing was charged
    UNKNOWN = "UNKNOWN"  # parked: the outcome is not known, an operator or recovery must act

    @property
    def is_final(self) -> bool:
        """The PSP gave its definite word; the execution never changes again."""
        return self in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED)


STUCK_STATUSES = (ExecutionStatus.EXECUTING, ExecutionStatus.UNKNOWN)
# Failure codes of executions the PSP gave no definite word on.
OUTCOME_UNKNOWN = "psp_outcome_unknown"  # may have charged: retried with the same key, then parked
REQUEST_REJECTED = "psp_request_rejected"  # our request was refused: parked for an operator
TOKEN_MAX_LENGTH = 255
ID_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ChargeOrder:
    """A validated request to charge one payment order (from `payment.order.requested`)."""

    payment_order_id: str  # canonical lower-case UUID: the PSP idempotency key
    payment_id: str
    seller_id: str
    buyer_id: str
    amount_minor: int
    currency: str
    payment_method_token: str
    traceparent: str = ""

    def same_charge_as(self, other: ChargeOrder) -> bool:
        """Whether `other` asks for the same charge (a redelivery), ignoring the trace it came with."""
        return (
            self.payment_order_id,
            self.payment_id,
            self.seller_id,
            self.buyer_id,
            self.amount_minor,
            self.currency,
            self.payment_method_token,
        ) == (
            other.payment_order_id,
            other.payment_id,
            other.seller_id,
            other.buyer_id,
            other.amount_minor,
            other.currency,
            other.payment_method_token,
        )


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution as stored; `attempts` counts PSP calls made over its whole life."""

    order: ChargeOrder
    status: ExecutionStatus
    attempts: int
    psp_reference: str
    failure_code: str
    failure_message: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """The state an EXECUTING execution moves to after one PSP call, and what to record about it."""

    status: ExecutionStatus
    psp_reference: str = ""
    failure_code: str = ""
    failure_message: str = ""
    retry_delay_ms: int = 0  # only for NOT_STARTED: when the next attempt is due

    @property
    def publishes_event(self) -> bool:
        """Only the PSP's definite word is announced; retries and parking stay internal."""
        return self.status.is_final


def is_canonical_uuid(value: str) -> bool:
    """True for the lower-case hyphenated form only: two spellings of one id would be two PSP keys."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def charge_order_violations(order: ChargeOrder) -> list[FieldViolation]:
    """Every reason `order` can never be charged (empty when it is valid)."""
    validator = Validator()
    if not is_canonical_uuid(order.payment_order_id):
        validator.add("payment_order_id", "must be a lower-case UUID (it is the PSP idempotency key)")
    validator.require_text("payment_id", order.payment_id, max_length=ID_MAX_LENGTH)
    validator.require_text("seller_id", order.seller_id, max_length=ID_MAX_LENGTH)
    if order.buyer_id:
        validator.require_text("buyer_id", order.buyer_id, max_length=ID_MAX_LENGTH)
    if order.amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {order.amount_minor})")
    elif order.amount_minor > MAX_AMOUNT_MINOR:
        validator.add("amount.amount_minor", f"must be at most {MAX_AMOUNT_MINOR} (got {order.amount_minor})")
    if order.currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{order.currency!r} is not a supported ISO 4217 code")
    validator.require_text("payment_method_token", order.payment_method_token, max_length=TOKEN_MAX_LENGTH)
    return validator.violations


def describe_violations(violations: list[FieldViolation]) -> str:
    return "; ".join(f"{violation.field}: {violation.description}" for violation in violations)
