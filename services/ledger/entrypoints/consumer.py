"""Translates consumed events into ledger use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED, InboundEvent
from services.common.succeeded_orders import succeeded_order_of
from services.common.succeeded_refunds import succeeded_refund_of
from services.ledger.service import LedgerService

TOPICS = (PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED)


class OutcomesHandler:
    """Consumer `outcomes`: books each succeeded payment order, and each succeeded refund's reversal,
    as one journal entry."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        orders = [succeeded_order_of(event) for event in events if event.topic != PAYMENT_REFUND_SUCCEEDED]
        refunds = [succeeded_refund_of(event) for event in events if event.topic == PAYMENT_REFUND_SUCCEEDED]
        await self._ledger.record_succeeded_orders(connection, orders)
        await self._ledger.record_refunds(connection, refunds)
