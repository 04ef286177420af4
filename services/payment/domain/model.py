"""Payments and payment orders as the service sees them, and the errors callers can get."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound


class OrderStatus(enum.Enum):
    NOT_STARTED = "NOT_STARTED"
    EXECUTING = "EXECUTING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


@dataclass(frozen=True, slots=True)
class LineItem:
    sku: str
    description: str
    quantity: int
    unit_amount_minor: int


@dataclass(frozen=True, slots=True)
class SellerOrder:
    """One seller's validated share of a checkout."""

    seller_id: str
    line_items: tuple[LineItem, ...]
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PaymentDraft:
    """A validated CreatePayment request, ready to store."""

    checkout_id: str
    buyer_id: str
    payment_method_token: str
    currency: str
    seller_orders: tuple[SellerOrder, ...]
    total_minor: int
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    payment_order_id: uuid.UUID
    payment_id: uuid.UUID
    seller_id: str
    amount_minor: int
    currency: str
    status: OrderStatus
    wallet_updated: bool
    ledger_updated: bool
    psp_reference: str
    failure_code: str
    failure_message: str
    line_items: tuple[LineItem, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: uuid.UUID
    checkout_id: str
    buyer_id: str
    currency: str
    total_minor: int
    orders: tuple[PaymentOrder, ...]
    done: bool
    version: int
    created_at: datetime


class PaymentNotFound(NotFound):
    def __init__(self, payment_id: uuid.UUID) -> None:
        super().__init__(f"payment {payment_id} does not exist", reason="PAYMENT_NOT_FOUND")


class PaymentOrderNotFound(NotFound):
    def __init__(self, payment_order_id: uuid.UUID) -> None:
        super().__init__(f"payment order {payment_order_id} does not exist", reason="PAYMENT_ORDER_NOT_FOUND")


class CheckoutIdReused(AlreadyExists):
    def __init__(self, checkout_id: str) -> None:
        super().__init__(
            f"checkout_id {checkout_id!r} was already used for a different payment request; "
            "repeat the original request exactly, or use a new checkout_id",
            reason="CHECKOUT_ID_REUSED_WITH_DIFFERENT_REQUEST",
        )


def parse_id(field: str, value: str) -> uuid.UUID:
    """A UUID request field, or InvalidArgument naming the field."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a UUID (got {value[:80]!r})", violations=[FieldViolation(field, "must be a UUID")]
        ) from None


def new_payment(
    draft: PaymentDraft, payment_id: uuid.UUID, order_ids: list[uuid.UUID], created_at: datetime
) -> Payment:
    """The payment as it was just stored from `draft`."""
    orders = tuple(
        PaymentOrder(
            payment_order_id=order_id,
            payment_id=payment_id,
            seller_id=order.seller_id,
            amount_minor=order.amount_minor,
            currency=draft.currency,
            status=OrderStatus.NOT_STARTED,
            wallet_updated=False,
            ledger_updated=False,
            psp_reference="",
            failure_code="",
            failure_message="",
            line_items=order.line_items,
            created_at=created_at,
            updated_at=created_at,
        )
        for order_id, order in zip(order_ids, draft.seller_orders, strict=True)
    )
    return Payment(
        payment_id=payment_id,
        checkout_id=draft.checkout_id,
        buyer_id=draft.buyer_id,
        currency=draft.currency,
        total_minor=draft.total_minor,
        orders=orders,
        done=False,
        version=1,
        created_at=created_at,
    )
