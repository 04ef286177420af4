"""The requests consumer: translates `payment.order.requested`, `payment.refund.requested` and
`payout.requested` events into executions and accepts them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.errors import FieldViolation
from services.common.events import PAYMENT_ORDER_REQUESTED, PAYMENT_REFUND_REQUESTED, PAYOUT_REQUESTED, InboundEvent
from services.executor.adapters.tables import CHARGES, PAYOUTS, REFUNDS, ExecutionTable
from services.executor.domain import (
    ChargeOrder,
    PayoutOrder,
    RefundOrder,
    charge_order_violations,
    describe_violations,
    payout_order_violations,
    refund_order_violations,
)
from services.executor.service.accepting import accept

TOPICS = (PAYMENT_ORDER_REQUESTED, PAYMENT_REFUND_REQUESTED, PAYOUT_REQUESTED)


def _checked(event: InboundEvent, violations: list[FieldViolation], key_field: str, key: str) -> None:
    if violations:
        raise EventRejected(event, f"VALIDATION_FAILED: {describe_violations(violations)}")
    if event.key != key:
        # The key decides the partition, and so the ordering; a wrong key is a producer bug.
        raise EventRejected(event, f"VALIDATION_FAILED: key {event.key!r} is not the {key_field} {key!r}")


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
    _checked(event, charge_order_violations(order), "payment_order_id", order.payment_order_id)
    return order


def refund_order_of(event: InboundEvent) -> RefundOrder:
    """The refund an event asks for (key: its payment order id); raises EventRejected if it can never apply."""
    message = event.message
    if not isinstance(message, events_pb2.RefundRequested):
        raise EventRejected(event, f"expected RefundRequested, got {type(message).__name__}")
    order = RefundOrder(
        refund_id=message.refund_id,
        payment_order_id=message.payment_order_id,
        payment_id=message.payment_id,
        seller_id=message.seller_id,
        amount_minor=message.amount.amount_minor,
        currency=message.amount.currency,
        charge_psp_reference=message.charge_psp_reference,
        reason=message.reason,
        traceparent=event.traceparent,
    )
    _checked(event, refund_order_violations(order), "payment_order_id", order.payment_order_id)
    return order


def payout_order_of(event: InboundEvent) -> PayoutOrder:
    """The payout an event asks for (key: its payout id); raises EventRejected if it can never apply."""
    message = event.message
    if not isinstance(message, events_pb2.PayoutRequested):
        raise EventRejected(event, f"expected PayoutRequested, got {type(message).__name__}")
    order = PayoutOrder(
        payout_id=message.payout_id,
        seller_id=message.seller_id,
        amount_minor=message.amount.amount_minor,
        currency=message.amount.currency,
        destination=message.destination,
        batch_id=message.batch_id,
        traceparent=event.traceparent,
    )
    _checked(event, payout_order_violations(order), "payout_id", order.payout_id)
    return order


_KINDS: dict[str, tuple[ExecutionTable[Any], Callable[[InboundEvent], Any]]] = {
    PAYMENT_ORDER_REQUESTED: (CHARGES, charge_order_of),
    PAYMENT_REFUND_REQUESTED: (REFUNDS, refund_order_of),
    PAYOUT_REQUESTED: (PAYOUTS, payout_order_of),
}


class RequestsHandler:
    """EventHandler for the three request topics (consumer group `settle-executor-requests`)."""

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        for topic, (table, order_of) in _KINDS.items():
            of_topic = [event for event in events if event.topic == topic]
            if not of_topic:
                continue
            orders = [order_of(event) for event in of_topic]
            conflicts = await accept(connection, table, orders)
            if conflicts:
                # Rolls the batch back; the consumer retries it event by event and dead-letters this one.
                conflict = conflicts[0]
                event = next(e for e, o in zip(of_topic, orders, strict=True) if o is conflict.requested)
                raise EventRejected(event, conflict.describe())
