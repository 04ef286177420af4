"""Translates consumed events into ledger use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.errors import InvalidArgument
from services.common.events import InboundEvent
from services.ledger.domain import SucceededOrder, parse_succeeded_order
from services.ledger.service import LedgerService


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


class OutcomesHandler:
    """Consumer `outcomes`: books each succeeded payment order as one journal entry."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        orders = [succeeded_order_of(event) for event in events]
        await self._ledger.record_succeeded_orders(connection, orders)
