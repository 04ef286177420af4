"""Accepting requests: one NOT_STARTED execution per payment order (refund, payout), whatever the redeliveries.

Runs inside the consumer's transaction (which also records the events as processed). It only
accepts; the worker does the charging, so a slow PSP never holds up the consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.adapters import db
from services.executor.adapters.tables import ExecutionTable
from services.executor.domain import OrderT, differing_fields, same_request


@dataclass(frozen=True, slots=True)
class Conflict(Generic[OrderT]):
    """A request for an id that already has an execution for a *different* money movement."""

    requested: OrderT
    existing: OrderT

    def describe(self) -> str:
        differing = differing_fields(self.requested, self.existing)
        return (
            f"EXECUTION_CONFLICT: {self.requested.execution_id} already has an execution "
            f"with different {', '.join(differing)}"
        )


async def accept(
    connection: AsyncConnection, table: ExecutionTable[OrderT], orders: Sequence[OrderT]
) -> list[Conflict[OrderT]]:
    """Inserts an execution for each order not seen before, in one statement.

    A repeat of an order (a new event for the same order) with the same content is a no-op; one with
    different content is returned as a conflict and changes nothing: the first request stands,
    because it may already have been charged.
    """
    first_by_id: dict[str, OrderT] = {}
    repeats: list[OrderT] = []
    for order in orders:
        if order.execution_id in first_by_id:
            repeats.append(order)
        else:
            first_by_id[order.execution_id] = order
    inserted = await db.insert_new(connection, table, list(first_by_id.values()))
    repeats.extend(order for order_id, order in first_by_id.items() if order_id not in inserted)
    if not repeats:
        return []
    existing = await db.find_orders(connection, table, (order.execution_id for order in repeats))
    return [
        Conflict(order, existing[order.execution_id])
        for order in repeats
        if not same_request(order, existing[order.execution_id])
    ]
