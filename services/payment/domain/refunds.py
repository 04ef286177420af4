"""Refunds of payment orders: what a request must look like, and the rules on how much may be refunded.

An order may be refunded in several parts, never beyond what was charged. A REQUESTED refund already
counts against what is left (the PSP may be refunding it right now); a FAILED one no longer does.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import AlreadyExists, FailedPrecondition, NotFound, Validator
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from services.payment.domain.model import OrderStatus

IDEMPOTENCY_KEY_MAX_LENGTH = 255
REASON_MAX_LENGTH = 500
REFUNDABLE_STATUSES = frozenset({OrderStatus.SUCCEEDED, OrderStatus.PARTIALLY_REFUNDED})


class RefundStatus(enum.Enum):
    REQUESTED = "REQUESTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class RefundCommand:
    """A RefundPaymentOrder request as received; `amount_minor` None means everything left."""

    payment_order_id: str
    idempotency_key: str
    amount_minor: int | None
    currency: str
    reason: str


@dataclass(frozen=True, slots=True)
class RefundDraft:
    payment_order_id: uuid.UUID
    idempotency_key: str
    amount_minor: int | None
    currency: str | None
    reason: str
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: uuid.UUID
    payment_order_id: uuid.UUID
    payment_id: uuid.UUID
    seller_id: str
    amount_minor: int
    currency: str
    status: RefundStatus
    reason: str
    psp_reference: str
    failure_code: str
    failure_message: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RefundableOrder:
    """What the refund rules need to know about the order, read under its row lock."""

    payment_order_id: uuid.UUID
    payment_id: uuid.UUID
    seller_id: str
    status: OrderStatus
    amount_minor: int
    currency: str
    psp_reference: str
    committed_minor: int  # refunds REQUESTED or SUCCEEDED


class RefundNotFound(NotFound):
    def __init__(self, refund_id: uuid.UUID) -> None:
        super().__init__(f"refund {refund_id} does not exist", reason="REFUND_NOT_FOUND")


class RefundKeyReused(AlreadyExists):
    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} was used for a different refund request",
            reason="IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST",
        )


def validate(command: RefundCommand, request_hash: bytes) -> RefundDraft:
    """Raises InvalidArgument (VALIDATION_FAILED) naming every bad field."""
    validator = Validator()
    order_id = validator.require_uuid("payment_order_id", command.payment_order_id)
    validator.require_text("idempotency_key", command.idempotency_key, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    if len(command.reason) > REASON_MAX_LENGTH:
        validator.add("reason", f"must be at most {REASON_MAX_LENGTH} characters")
    if command.amount_minor is not None:
        if not 0 < command.amount_minor <= MAX_AMOUNT_MINOR:
            validator.add("amount.amount_minor", f"must be from 1 to {MAX_AMOUNT_MINOR} (got {command.amount_minor})")
        if command.currency not in CURRENCY_EXPONENTS:
            validator.add("amount.currency", f"{command.currency!r} is not a supported ISO 4217 code")
    validator.raise_if_any()
    assert order_id is not None
    return RefundDraft(
        payment_order_id=order_id,
        idempotency_key=command.idempotency_key,
        amount_minor=command.amount_minor,
        currency=command.currency if command.amount_minor is not None else None,
        reason=command.reason,
        request_hash=request_hash,
    )


def refund_amount(draft: RefundDraft, order: RefundableOrder) -> int:
    """How much this refund takes; raises if the order cannot give it."""
    if order.status not in REFUNDABLE_STATUSES:
        raise FailedPrecondition(
            f"payment order {order.payment_order_id} is {order.status.value}; only a charged order "
            "(SUCCEEDED or PARTIALLY_REFUNDED) can be refunded",
            reason="PAYMENT_ORDER_NOT_REFUNDABLE",
        )
    if draft.currency is not None and draft.currency != order.currency:
        validator = Validator()
        validator.add("amount.currency", f"must be the order's currency {order.currency} (got {draft.currency})")
        validator.raise_if_any()
    left = order.amount_minor - order.committed_minor
    amount = left if draft.amount_minor is None else draft.amount_minor
    if left == 0:
        raise FailedPrecondition(
            f"payment order {order.payment_order_id} is already refunded (or being refunded) in full",
            reason="REFUND_EXCEEDS_REFUNDABLE_AMOUNT",
        )
    if amount > left:
        raise FailedPrecondition(
            f"payment order {order.payment_order_id} has {left} {order.currency} (minor units) left to refund "
            f"of {order.amount_minor} charged; a refund of {amount} is more than that",
            reason="REFUND_EXCEEDS_REFUNDABLE_AMOUNT",
        )
    return amount
