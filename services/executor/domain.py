"""The executor's domain: executions, their states, and what a charge, refund or payout request must look like.

Pure Python: no I/O. An execution is the executor's record of moving money once through the PSP: charging
a payment order, refunding part of one, or paying a seller out. It is keyed, and made idempotent at the
PSP, by the id of what it executes (payment order id, refund id, payout id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

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


class ExecutionKind(StrEnum):
    """What an execution moves money for; each kind has its own table and its own id (the PSP key)."""

    CHARGE = "charge"  # keyed by the payment order id
    REFUND = "refund"  # keyed by the refund id
    PAYOUT = "payout"  # keyed by the payout id


STUCK_STATUSES = (ExecutionStatus.EXECUTING, ExecutionStatus.UNKNOWN)
# Failure codes of executions the PSP gave no definite word on.
OUTCOME_UNKNOWN = "psp_outcome_unknown"  # may have charged: retried with the same key, then parked
REQUEST_REJECTED = "psp_request_rejected"  # our request was refused: parked for an operator
TOKEN_MAX_LENGTH = 255
ID_MAX_LENGTH = 64
DESTINATION_MAX_LENGTH = 255
REASON_MAX_LENGTH = 500


class ExecutableOrder(Protocol):
    """What an execution executes: a charge, refund or payout request."""

    @property
    def execution_id(self) -> str:
        """The canonical lower-case UUID that keys the execution and is the PSP idempotency key."""
        ...

    @property
    def kind(self) -> ExecutionKind: ...

    @property
    def traceparent(self) -> str: ...


OrderT = TypeVar("OrderT", bound=ExecutableOrder)


def same_request(first: ExecutableOrder, second: ExecutableOrder) -> bool:
    """Whether two requests ask for the same money movement (a redelivery), ignoring their traces."""
    return not differing_fields(first, second)


def differing_fields(first: ExecutableOrder, second: ExecutableOrder) -> list[str]:
    names = [field.name for field in fields(first) if field.name != "traceparent"]  # type: ignore[arg-type]
    return [name for name in names if getattr(first, name) != getattr(second, name)]


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

    @property
    def execution_id(self) -> str:
        return self.payment_order_id

    @property
    def kind(self) -> ExecutionKind:
        return ExecutionKind.CHARGE


@dataclass(frozen=True, slots=True)
class RefundOrder:
    """A validated request to refund part of a charged payment order (from `payment.refund.requested`)."""

    refund_id: str  # canonical lower-case UUID: the PSP idempotency key
    payment_order_id: str
    payment_id: str
    seller_id: str
    amount_minor: int
    currency: str
    charge_psp_reference: str  # the charge's PaymentIntent id
    reason: str
    traceparent: str = ""

    @property
    def execution_id(self) -> str:
        return self.refund_id

    @property
    def kind(self) -> ExecutionKind:
        return ExecutionKind.REFUND


@dataclass(frozen=True, slots=True)
class PayoutOrder:
    """A validated request to pay a seller out to a bank account (from `payout.requested`)."""

    payout_id: str  # canonical lower-case UUID: the PSP idempotency key
    seller_id: str
    amount_minor: int
    currency: str
    destination: str
    batch_id: str
    traceparent: str = ""

    @property
    def execution_id(self) -> str:
        return self.payout_id

    @property
    def kind(self) -> ExecutionKind:
        return ExecutionKind.PAYOUT


@dataclass(frozen=True, slots=True)
class Execution(Generic[OrderT]):
    """An execution as stored; `attempts` counts PSP calls made over its whole life."""

    order: OrderT
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


def _check_amount(validator: Validator, amount_minor: int, currency: str) -> None:
    if amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {amount_minor})")
    elif amount_minor > MAX_AMOUNT_MINOR:
        validator.add("amount.amount_minor", f"must be at most {MAX_AMOUNT_MINOR} (got {amount_minor})")
    if currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{currency!r} is not a supported ISO 4217 code")


def _check_key(validator: Validator, field: str, value: str) -> None:
    if not is_canonical_uuid(value):
        validator.add(field, "must be a lower-case UUID (it is the PSP idempotency key)")


def charge_order_violations(order: ChargeOrder) -> list[FieldViolation]:
    """Every reason `order` can never be charged (empty when it is valid)."""
    validator = Validator()
    _check_key(validator, "payment_order_id", order.payment_order_id)
    validator.require_text("payment_id", order.payment_id, max_length=ID_MAX_LENGTH)
    validator.require_text("seller_id", order.seller_id, max_length=ID_MAX_LENGTH)
    if order.buyer_id:
        validator.require_text("buyer_id", order.buyer_id, max_length=ID_MAX_LENGTH)
    _check_amount(validator, order.amount_minor, order.currency)
    validator.require_text("payment_method_token", order.payment_method_token, max_length=TOKEN_MAX_LENGTH)
    return validator.violations


def refund_order_violations(order: RefundOrder) -> list[FieldViolation]:
    """Every reason `order` can never be refunded (empty when it is valid)."""
    validator = Validator()
    _check_key(validator, "refund_id", order.refund_id)
    if not is_canonical_uuid(order.payment_order_id):
        validator.add("payment_order_id", "must be a lower-case UUID")
    validator.require_text("payment_id", order.payment_id, max_length=ID_MAX_LENGTH)
    validator.require_text("seller_id", order.seller_id, max_length=ID_MAX_LENGTH)
    _check_amount(validator, order.amount_minor, order.currency)
    validator.require_text("charge_psp_reference", order.charge_psp_reference, max_length=TOKEN_MAX_LENGTH)
    if len(order.reason) > REASON_MAX_LENGTH:
        validator.add("reason", f"must be at most {REASON_MAX_LENGTH} characters")
    return validator.violations


def payout_order_violations(order: PayoutOrder) -> list[FieldViolation]:
    """Every reason `order` can never be paid out (empty when it is valid)."""
    validator = Validator()
    _check_key(validator, "payout_id", order.payout_id)
    validator.require_text("seller_id", order.seller_id, max_length=ID_MAX_LENGTH)
    _check_amount(validator, order.amount_minor, order.currency)
    validator.require_text("destination", order.destination, max_length=DESTINATION_MAX_LENGTH)
    if len(order.batch_id) > ID_MAX_LENGTH:
        validator.add("batch_id", f"must be at most {ID_MAX_LENGTH} characters")
    return validator.violations


def describe_violations(violations: list[FieldViolation]) -> str:
    return "; ".join(f"{violation.field}: {violation.description}" for violation in violations)
