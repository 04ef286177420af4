"""Translates consumed events into wallet use cases; events that can never apply are rejected."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import InboundEvent
from services.common.succeeded_orders import succeeded_order_of
from services.wallet.service import WalletService


class OutcomesHandler:
    """Consumer `outcomes`: credits each succeeded payment order to its seller's pending balance."""

    def __init__(self, wallet: WalletService) -> None:
        self._wallet = wallet

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        sales = [succeeded_order_of(event) for event in events]
        await self._wallet.record_sales(connection, sales)
