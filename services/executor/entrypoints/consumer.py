"""The `payment.order.requested` consumer: translates events into charge orders and accepts them."""

from __future__ import annotations

from collections.abc import Sequence

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.events import InboundEvent
from services.executor.domain import ChargeOrder, charge_order_violations, describe_violations
from services.executor.service.accepting import accept


def charge_order_of(event: InboundEvent) -> ChargeOrder:
    """The charge an event asks for; raises EventRejected if it can never be charged."""
    message = event.message
    if not isinstance(message, events_pb2.PaymentOrderRequested):
        raise EventRejected(event, f"expected PaymentOrderRequested, got {type(message).__name__}")
    if not message.HasField("amount"):
        raise EventRejected(event, "VALIDATION_FAILED: amount: is required")
    order = ChargeOrder(
        payment_order_id=message.payment_order_id,
        payment_id=message.payment_id,
        seller_id=message.seller_id,
        buyer_id=message.buyer_id,
        amount_minor=message.amount.amount_minor,
        currency=message.amount.currency,
        payment_method_token=message.payment_method_token,
        traceparent=event.traceparent,
    )
    violations = charge_order_violations(order)
    if violations:
        raise EventRejected(event, f"VALIDATION_FAILED: {describe_violations(violations)}")
    if event.key != order.payment_order_id:
        # The key decides the partition, and so the ordering per order; a wrong key is a producer bug.
        raise EventRejected(event, f"VALIDATION_FAILED: key {event.key!r} is not the payment_order_id")
    return order


class ChargeRequestHandler:
    """EventHandler for `payment.order.requested` (consumer group `settle-executor-requests`)."""

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        orders = [charge_order_of(event) for event in events]
        conflicts = await accept(connection, orders)
        if conflicts:
            # Rolls the batch back; the consumer retries it event by event and dead-letters this one.
            conflict = conflicts[0]
            event = next(e for e, o in zip(events, orders, strict=True) if o is conflict.requested)
            raise EventRejected(event, conflict.describe())
