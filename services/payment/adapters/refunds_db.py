"""The refunds table, and the order row a refund is checked against (read under its lock)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payment.domain.model import OrderStatus
from services.payment.domain.refunds import Refund, RefundableOrder, RefundStatus

_COLUMNS = (
    "r.id, r.payment_order_id, o.payment_id, o.seller_id, r.amount_minor, r.currency, r.status, r.reason, "
    "r.psp_reference, r.failure_code, r.failure_message, r.created_at, r.updated_at, r.request_hash"
)


def _refund_of(row: Row[Any]) -> Refund:
    return Refund(
        refund_id=row.id,
        payment_order_id=row.payment_order_id,
        payment_id=row.payment_id,
        seller_id=row.seller_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        status=RefundStatus(row.status),
        reason=row.reason,
        psp_reference=row.psp_reference,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def lock_refundable_order(connection: AsyncConnection, payment_order_id: uuid.UUID) -> RefundableOrder | None:
    """The order, locked until the transaction ends so that concurrent refunds are checked one at a
    time, with what its REQUESTED and SUCCEEDED refunds already take."""
    row = (
        await connection.execute(
            text(
                "SELECT o.id, o.payment_id, o.seller_id, o.status, o.amount_minor, o.currency, "
                "coalesce(o.psp_reference, '') AS psp_reference, "
                "(SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.payment_order_id = o.id "
                "  AND r.status IN ('REQUESTED', 'SUCCEEDED')) AS committed_minor "
                "FROM payment_orders o WHERE o.id = :id FOR UPDATE OF o"
            ),
            {"id": payment_order_id},
        )
    ).one_or_none()
    if row is None:
        return None
    return RefundableOrder(
        payment_order_id=row.id,
        payment_id=row.payment_id,
        seller_id=row.seller_id,
        status=OrderStatus(row.status),
        amount_minor=row.amount_minor,
        currency=row.currency,
        psp_reference=row.psp_reference,
        committed_minor=int(row.committed_minor),
    )


async def insert_refund(
    connection: AsyncConnection,
    *,
    refund_id: uuid.UUID,
    order: RefundableOrder,
    idempotency_key: str,
    request_hash: bytes,
    amount_minor: int,
    reason: str,
) -> Refund | None:
    """The new refund; None if the idempotency key is taken (by this request earlier, or another)."""
    inserted = (
        await connection.execute(
            text(
                "INSERT INTO refunds (id, payment_order_id, idempotency_key, request_hash, amount_minor, currency, "
                "reason) VALUES (:id, :order_id, :key, :hash, :amount, :currency, :reason) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
            ),
            {
                "id": refund_id,
                "order_id": order.payment_order_id,
                "key": idempotency_key,
                "hash": request_hash,
                "amount": amount_minor,
                "currency": order.currency,
                "reason": reason,
            },
        )
    ).scalar_one_or_none()
    if inserted is None:
        return None
    found = await refund_by_id(connection, refund_id)
    assert found is not None
    return found


_BY_KEY = text(
    f"SELECT {_COLUMNS} FROM refunds r JOIN payment_orders o ON o.id = r.payment_order_id WHERE r.idempotency_key = :v"
)
_BY_ID = text(f"SELECT {_COLUMNS} FROM refunds r JOIN payment_orders o ON o.id = r.payment_order_id WHERE r.id = :v")


async def refund_by_key(connection: AsyncConnection, idempotency_key: str) -> tuple[Refund, bytes] | None:
    """The refund made under `idempotency_key`, and the hash of the request that made it."""
    row = (await connection.execute(_BY_KEY, {"v": idempotency_key})).one_or_none()
    return (_refund_of(row), bytes(row.request_hash)) if row is not None else None


async def refund_by_id(connection: AsyncConnection, refund_id: uuid.UUID) -> Refund | None:
    row = (await connection.execute(_BY_ID, {"v": refund_id})).one_or_none()
    return _refund_of(row) if row is not None else None
