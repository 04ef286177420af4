"""Accepting charge requests: one NOT_STARTED execution per payment order, whatever the redeliveries.

Runs inside the consumer's transaction (which also records the events as processed). It only
accepts; the worker does the charging, so a slow PSP never holds up the consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.adapters import db
from services.executor.domain import ChargeOrder


@dataclass(frozen=True, slots=True)
class Conflict:
    """A request for an order that already has an execution for a *different* charge."""

    requested: ChargeOrder
    existing: ChargeOrder

    def describe(self) -> str:
        differing = [
            name
            for name in ("payment_id", "seller_id", "buyer_id", "amount_minor", "currency", "payment_method_token")
            if getattr(self.requested, name) != getattr(self.existing, name)
        ]
        return (
            f"EXECUTION_CONFLICT: payment order {self.requested.payment_order_id} already has an execution "
            f"with different {', '.join(differing)}"
        )


async def accept(connection: AsyncConnection, orders: Sequence[ChargeOrder]) -> list[Conflict]:
    """Inserts an execution for each order not seen before, in one statement.

    A repeat of an order (a new event for the same order) with the same content is a no-op; one with
    different content is returned as a conflict and changes nothing: the first request stands,
    because it may already have been charged.
    """
    first_by_id: dict[str, ChargeOrder] = {}
    repeats: list[ChargeOrder] = []
    for order in orders:
        if order.payment_order_id in first_by_id:
            repeats.append(order)
        else:
            first_by_id[order.payment_order_id] = order
    inserted = await db.insert_new(connection, list(first_by_id.values()))
    repeats.extend(order for order_id, order in first_by_id.items() if order_id not in inserted)
    if not repeats:
        return []
    existing = await db.find_orders(connection, (order.payment_order_id for order in repeats))
    return [
        Conflict(order, existing[order.payment_order_id])
        for order in repeats
        if not order.same_charge_as(existing[order.payment_order_id])
    ]
