"""Translates consumed events into ledger use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import (
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    InboundEvent,
)
from services.common.payout_events import payout_event_of
from services.common.succeeded_orders import succeeded_order_of
from services.common.succeeded_refunds import succeeded_refund_of
from services.ledger.service import LedgerService

PAYOUT_TOPICS = (PAYOUT_REQUESTED, PAYOUT_PAID, PAYOUT_FAILED)
TOPICS = (PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED, *PAYOUT_TOPICS)


class OutcomesHandler:
    """Consumer `outcomes`: books each succeeded payment order, each succeeded refund's reversal and
    each step of a payout as one journal entry."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        # By topic, so an event on an unexpected topic is rejected by the order parser (→ DLQ).
        orders = [
            succeeded_order_of(event)
            for event in events
            if event.topic != PAYMENT_REFUND_SUCCEEDED and event.topic not in PAYOUT_TOPICS
        ]
        refunds = [succeeded_refund_of(event) for event in events if event.topic == PAYMENT_REFUND_SUCCEEDED]
        payouts = [payout_event_of(event) for event in events if event.topic in PAYOUT_TOPICS]
        await self._ledger.record_succeeded_orders(connection, orders)
        await self._ledger.record_refunds(connection, refunds)
        await self._ledger.record_payouts(connection, payouts)
