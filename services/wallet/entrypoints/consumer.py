"""Translates consumed events into wallet use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import (
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    InboundEvent,
)
from services.common.payout_events import payout_event_of
from services.common.succeeded_orders import succeeded_order_of
from services.common.succeeded_refunds import succeeded_refund_of
from services.wallet.payout_service import PayoutService
from services.wallet.service import WalletService

TOPICS = (PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED, PAYOUT_PAID, PAYOUT_FAILED)


class OutcomesHandler:
    """Consumer `outcomes`: credits each succeeded payment order to its seller's pending balance, debits
    each succeeded refund from the seller's available balance, and settles each paid or failed payout."""

    def __init__(self, wallet: WalletService, payouts: PayoutService) -> None:
        self._wallet = wallet
        self._payouts = payouts

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        sales = [succeeded_order_of(event) for event in events if event.topic == PAYMENT_ORDER_SUCCEEDED]
        refunds = [succeeded_refund_of(event) for event in events if event.topic == PAYMENT_REFUND_SUCCEEDED]
        payouts = [payout_event_of(event) for event in events if event.topic in (PAYOUT_PAID, PAYOUT_FAILED)]
        # Sales first: a refund in the same batch as its sale finds the credit already there.
        await self._wallet.record_sales(connection, sales)
        await self._wallet.record_refunds(connection, refunds)
        await self._payouts.record_outcomes(connection, payouts)
