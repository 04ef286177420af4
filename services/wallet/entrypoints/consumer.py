"""Translates consumed events into wallet use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED, InboundEvent
from services.common.succeeded_orders import succeeded_order_of
from services.common.succeeded_refunds import succeeded_refund_of
from services.wallet.service import WalletService

TOPICS = (PAYMENT_ORDER_SUCCEEDED, PAYMENT_REFUND_SUCCEEDED)


class OutcomesHandler:
    """Consumer `outcomes`: credits each succeeded payment order to its seller's pending balance and
    debits each succeeded refund from the seller's available balance."""

    def __init__(self, wallet: WalletService) -> None:
        self._wallet = wallet

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        sales = [succeeded_order_of(event) for event in events if event.topic != PAYMENT_REFUND_SUCCEEDED]
        refunds = [succeeded_refund_of(event) for event in events if event.topic == PAYMENT_REFUND_SUCCEEDED]
        # Sales first: a refund in the same batch as its sale finds the credit already there.
        await self._wallet.record_sales(connection, sales)
        await self._wallet.record_refunds(connection, refunds)
