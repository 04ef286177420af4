"""Translates consumed events into wallet use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.errors import InvalidArgument
from services.common.events import InboundEvent
from services.wallet.domain import Sale, parse_sale
from services.wallet.service import WalletService


def sale_of(event: InboundEvent) -> Sale:
    """The sale a `payment.order.succeeded` event describes, or EventRejected (→ its DLQ) saying why."""
    message = event.message
    if not isinstance(message, events_pb2.PaymentOrderSucceeded):
        raise EventRejected(event, f"expected PaymentOrderSucceeded, got {message.DESCRIPTOR.full_name}")
    try:
        return parse_sale(
            payment_order_id=message.payment_order_id,
            seller_id=message.seller_id,
            amount_minor=message.amount.amount_minor,
            currency=message.amount.currency,
            event_id=event.event_id,
        )
    except InvalidArgument as error:
        raise EventRejected(event, f"invalid payment.order.succeeded: {error.message}") from error


class OutcomesHandler:
    """Consumer `outcomes`: credits each succeeded payment order to its seller's pending balance."""

    def __init__(self, wallet: WalletService) -> None:
        self._wallet = wallet

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        sales = [sale_of(event) for event in events]
        await self._wallet.record_sales(connection, sales)
