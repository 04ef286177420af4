"""A succeeded refund as the services that act on `payment.refund.succeeded` see it.

The wallet debits the seller and the ledger books the reversal; both validate the event the same way
and send what can never apply to the DLQ with the reason. A refund is applied once per refund id,
whatever event id it arrives under.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from settle.events.v1 import events_pb2

from services.common.consumer import EventRejected
from services.common.errors import InvalidArgument, Validator
from services.common.events import InboundEvent
from services.common.money import CURRENCY_EXPONENTS, Money
from services.common.succeeded_orders import SELLER_ID_MAX_LENGTH


@dataclass(frozen=True, slots=True)
class SucceededRefund:
    refund_id: uuid.UUID
    payment_order_id: uuid.UUID
    seller_id: str
    amount: Money  # positive: what was given back to the buyer
    event_id: uuid.UUID


def succeeded_refund_of(event: InboundEvent) -> SucceededRefund:
    """The refund a `payment.refund.succeeded` event describes, or EventRejected (→ its DLQ) saying why."""
    message = event.message
    if not isinstance(message, events_pb2.RefundSucceeded):
        raise EventRejected(event, f"expected RefundSucceeded, got {message.DESCRIPTOR.full_name}")
    validator = Validator()
    refund_id = validator.require_uuid("refund_id", message.refund_id)
    order_id = validator.require_uuid("payment_order_id", message.payment_order_id)
    validator.require_text("seller_id", message.seller_id, max_length=SELLER_ID_MAX_LENGTH)
    if message.amount.amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {message.amount.amount_minor})")
    if message.amount.currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{message.amount.currency!r} is not a supported ISO 4217 code in upper case")
    try:
        validator.raise_if_any()
    except InvalidArgument as error:
        raise EventRejected(event, f"invalid payment.refund.succeeded: {error.message}") from error
    assert refund_id is not None and order_id is not None
    return SucceededRefund(
        refund_id,
        order_id,
        message.seller_id,
        Money(message.amount.amount_minor, message.amount.currency),
        event.event_id,
    )
