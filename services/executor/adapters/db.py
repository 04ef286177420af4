"""The executions table: accepting, reading and requeuing executions (set-based SQL on a connection).

The worker's claim / outcome / stale-claim statements live in `claims_db.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.domain import STUCK_STATUSES, ChargeOrder, Execution, ExecutionStatus

COLUMNS = (
    "payment_order_id, payment_id, seller_id, buyer_id, amount_minor, currency, payment_method_token, "
    "traceparent, status, attempts, budgeted_attempts, psp_reference, failure_code, failure_message, "
    "updated_at"
)


def order_of(row: Row[Any]) -> ChargeOrder:
    return ChargeOrder(
        payment_order_id=str(row.payment_order_id),
        payment_id=row.payment_id,
        seller_id=row.seller_id,
        buyer_id=row.buyer_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        payment_method_token=row.payment_method_token,
        traceparent=row.traceparent,
    )


def execution_of(row: Row[Any]) -> Execution:
    return Execution(
        order=order_of(row),
        status=ExecutionStatus(row.status),
        attempts=row.attempts,
        psp_reference=row.psp_reference,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        updated_at=row.updated_at,
    )


async def insert_new(connection: AsyncConnection, orders: Sequence[ChargeOrder]) -> set[str]:
    """Inserts the orders that have no execution yet as NOT_STARTED; returns the ids inserted."""
    if not orders:
        return set()
    result = await connection.execute(
        text(
            "INSERT INTO executions (payment_order_id, payment_id, seller_id, buyer_id, amount_minor, "
            "currency, payment_method_token, traceparent) "
            "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:payment_ids AS text[]), "
            "CAST(:seller_ids AS text[]), CAST(:buyer_ids AS text[]), CAST(:amounts AS bigint[]), "
            "CAST(:currencies AS text[]), CAST(:tokens AS text[]), CAST(:traceparents AS text[])) "
            "ON CONFLICT (payment_order_id) DO NOTHING RETURNING payment_order_id"
        ),
        {
            "ids": [order.payment_order_id for order in orders],
            "payment_ids": [order.payment_id for order in orders],
            "seller_ids": [order.seller_id for order in orders],
            "buyer_ids": [order.buyer_id for order in orders],
            "amounts": [order.amount_minor for order in orders],
            "currencies": [order.currency for order in orders],
            "tokens": [order.payment_method_token for order in orders],
            "traceparents": [order.traceparent for order in orders],
        },
    )
    return {str(row.payment_order_id) for row in result}


async def find_orders(connection: AsyncConnection, payment_order_ids: Iterable[str]) -> dict[str, ChargeOrder]:
    result = await connection.execute(
        text(f"SELECT {COLUMNS} FROM executions WHERE payment_order_id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": sorted(set(payment_order_ids))},
    )
    return {str(row.payment_order_id): order_of(row) for row in result}


async def get(connection: AsyncConnection, payment_order_id: str) -> Execution | None:
    row = (
        await connection.execute(
            text(f"SELECT {COLUMNS} FROM executions WHERE payment_order_id = CAST(:id AS uuid)"),
            {"id": payment_order_id},
        )
    ).first()
    return execution_of(row) if row is not None else None


async def list_stuck(connection: AsyncConnection, *, older_than_s: int, limit: int) -> list[Execution]:
    """EXECUTING or UNKNOWN executions unchanged for `older_than_s`, oldest first."""
    result = await connection.execute(
        text(
            f"SELECT {COLUMNS} FROM executions WHERE status = ANY(CAST(:statuses AS text[])) "
            "AND updated_at < now() - make_interval(secs => :older_than_s) "
            "ORDER BY updated_at, payment_order_id LIMIT :limit"
        ),
        {
            "statuses": [str(status) for status in STUCK_STATUSES],
            "older_than_s": older_than_s,
            "limit": limit,
        },
    )
    return [execution_of(row) for row in result]


async def requeue_unknown(connection: AsyncConnection, payment_order_id: str) -> Execution | None:
    """UNKNOWN → NOT_STARTED, due now, with a fresh retry budget; None if it was not UNKNOWN."""
    row = (
        await connection.execute(
            text(
                "UPDATE executions SET status = 'NOT_STARTED', budgeted_attempts = 0, "
                "next_attempt_at = now(), updated_at = now() "
                "WHERE payment_order_id = CAST(:id AS uuid) AND status = 'UNKNOWN' "
                f"RETURNING {COLUMNS}"
            ),
            {"id": payment_order_id},
        )
    ).first()
    return execution_of(row) if row is not None else None
