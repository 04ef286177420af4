"""The executions tables: accepting, reading and requeuing executions (set-based SQL on a connection).

Every function takes the table (tables.py) it works on. The worker's claim / outcome / stale-claim
statements live in `claims_db.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.adapters.tables import CHARGES, ExecutionTable
from services.executor.domain import STUCK_STATUSES, ChargeOrder, Execution, ExecutionStatus, OrderT


def execution_of(table: ExecutionTable[OrderT], row: Row[Any]) -> Execution[OrderT]:
    return Execution(
        order=table.order_of(row),
        status=ExecutionStatus(row.status),
        attempts=row.attempts,
        psp_reference=row.psp_reference,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        updated_at=row.updated_at,
    )


async def insert_new(connection: AsyncConnection, table: ExecutionTable[OrderT], orders: Sequence[OrderT]) -> set[str]:
    """Inserts the orders that have no execution yet as NOT_STARTED; returns the ids inserted."""
    if not orders:
        return set()
    columns = [*table.request_columns, ("traceparent", "text")]
    rows = [table.values_of(order) for order in orders]
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns)
    result = await connection.execute(
        text(
            f"INSERT INTO {table.name} ({', '.join(name for name, _ in columns)}) "
            f"SELECT * FROM unnest({arrays}) ON CONFLICT ({table.key}) DO NOTHING RETURNING {table.key}"
        ),
        {name: [row[name] for row in rows] for name, _ in columns},
    )
    return {str(row[0]) for row in result}


async def find_orders(
    connection: AsyncConnection, table: ExecutionTable[OrderT], ids: Iterable[str]
) -> dict[str, OrderT]:
    result = await connection.execute(
        text(f"SELECT {table.columns} FROM {table.name} WHERE {table.key} = ANY(CAST(:ids AS uuid[]))"),
        {"ids": sorted(set(ids))},
    )
    return {order.execution_id: order for order in map(table.order_of, result)}


async def get_execution(
    connection: AsyncConnection, table: ExecutionTable[OrderT], execution_id: str
) -> Execution[OrderT] | None:
    row = (
        await connection.execute(
            text(f"SELECT {table.columns} FROM {table.name} WHERE {table.key} = CAST(:id AS uuid)"),
            {"id": execution_id},
        )
    ).first()
    return execution_of(table, row) if row is not None else None


async def get(connection: AsyncConnection, payment_order_id: str) -> Execution[ChargeOrder] | None:
    """The charge execution of a payment order."""
    return await get_execution(connection, CHARGES, payment_order_id)


async def list_stuck(
    connection: AsyncConnection, table: ExecutionTable[OrderT], *, older_than_s: int, limit: int
) -> list[Execution[OrderT]]:
    """EXECUTING or UNKNOWN executions unchanged for `older_than_s`, oldest first (the `_stuck` index)."""
    result = await connection.execute(
        text(
            f"SELECT {table.columns} FROM {table.name} WHERE status = ANY(CAST(:statuses AS text[])) "
            "AND updated_at < now() - make_interval(secs => :older_than_s) "
            f"ORDER BY updated_at, {table.key} LIMIT :limit"
        ),
        {
            "statuses": [str(status) for status in STUCK_STATUSES],
            "older_than_s": older_than_s,
            "limit": limit,
        },
    )
    return [execution_of(table, row) for row in result]


async def requeue_unknown(
    connection: AsyncConnection, table: ExecutionTable[OrderT], execution_id: str
) -> Execution[OrderT] | None:
    """UNKNOWN → NOT_STARTED, due now, with a fresh retry budget; None if it was not UNKNOWN."""
    row = (
        await connection.execute(
            text(
                f"UPDATE {table.name} SET status = 'NOT_STARTED', budgeted_attempts = 0, "
                "next_attempt_at = now(), updated_at = now() "
                f"WHERE {table.key} = CAST(:id AS uuid) AND status = 'UNKNOWN' "
                f"RETURNING {table.columns}"
            ),
            {"id": execution_id},
        )
    ).first()
    return execution_of(table, row) if row is not None else None
