"""A succeeded payment order as the services that act on `payment.order.succeeded` see it.

The wallet credits it to the seller and the ledger books it; both validate the event the same way and
send what can never apply to the DLQ with the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from settle.events.v1 import events_pb2

from services.common.consumer import EventRejected
from services.common.errors import InvalidArgument, Validator
from services.common.events import InboundEvent
from services.common.money import CURRENCY_EXPONENTS, Money

SELLER_ID_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SucceededOrder:
    """A payment order the PSP charged, with the id of the event that said so."""

    payment_order_id: uuid.UUID
    seller_id: str
    amount: Money
    event_id: uuid.UUID


def parse_succeeded_order(
    *, payment_order_id: str, seller_id: str, amount_minor: int, currency: str, event_id: uuid.UUID
) -> SucceededOrder:
    """Validates a succeeded payment order; raises InvalidArgument naming every bad field."""
    validator = Validator()
    order_id = validator.require_uuid("payment_order_id", payment_order_id)
    validator.require_text("seller_id", seller_id, max_length=SELLER_ID_MAX_LENGTH)
    if amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {amount_minor})")
    if currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{currency!r} is not a supported ISO 4217 code in upper case")
    validator.raise_if_any()
    assert order_id is not None
    return SucceededOrder(order_id, seller_id, Money(amount_minor, currency), event_id)


def succeeded_order_of(event: InboundEvent) -> SucceededOrder:
    """The order a `payment.order.succeeded` event describes, or EventRejected (→ its DLQ) saying why."""
    message = event.message
    if not isinstance(message, events_pb2.PaymentOrderSucceeded):
        raise EventRejected(event, f"expected PaymentOrderSucceeded, got {message.DESCRIPTOR.full_name}")
    try:
        return parse_succeeded_order(
            payment_order_id=message.payment_order_id,
            seller_id=message.seller_id,
            amount_minor=message.amount.amount_minor,
            currency=message.amount.currency,
            event_id=event.event_id,
        )
    except InvalidArgument as error:
        raise EventRejected(event, f"invalid payment.order.succeeded: {error.message}") from error
