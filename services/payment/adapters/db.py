"""Payments in PostgreSQL: the create statement and the reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payment.adapters.rows import (
    ORDER_COLUMNS,
    PAYMENT_COLUMNS,
    line_items_json,
    order_from_row,
    payments_from_rows,
)
from services.payment.domain.model import Payment, PaymentDraft, PaymentOrder
from services.payment.domain.page_token import Cursor

# One statement stores the payment and its orders; the orders are inserted only if the payment was
# (ON CONFLICT on checkout_id leaves `payment` empty), so a repeated checkout writes nothing.
_INSERT_PAYMENT = text(
    "WITH payment AS ("
    " INSERT INTO payment_events (id, checkout_id, buyer_id, payment_method_token, currency, total_minor, request_hash)"
    " VALUES (:id, :checkout_id, :buyer_id, :token, :currency, :total_minor, :request_hash)"
    " ON CONFLICT (checkout_id) DO NOTHING RETURNING id, created_at"
    "), orders AS ("
    " INSERT INTO payment_orders (id, payment_id, position, seller_id, amount_minor, currency, line_items,"
    "  created_at, updated_at)"
    " SELECT o.id, payment.id, o.position, o.seller_id, o.amount_minor, :currency, o.line_items,"
    "  payment.created_at, payment.created_at"
    " FROM payment, unnest(CAST(:order_ids AS uuid[]), CAST(:positions AS smallint[]),"
    "  CAST(:seller_ids AS text[]), CAST(:amounts AS bigint[]), CAST(:line_items AS jsonb[]))"
    "  AS o(id, position, seller_id, amount_minor, line_items)"
    " RETURNING 1"
    ") SELECT created_at FROM payment"
)

_SELECT_PAYMENT = (
    f"SELECT {PAYMENT_COLUMNS}, {ORDER_COLUMNS} FROM payment_events p JOIN payment_orders o ON o.payment_id = p.id "
    "WHERE p.{column} = :value ORDER BY o.position"
)
_BY_ID = text(_SELECT_PAYMENT.format(column="id"))
_BY_CHECKOUT = text(_SELECT_PAYMENT.format(column="checkout_id"))
_ORDER = text(f"SELECT {ORDER_COLUMNS} FROM payment_orders o WHERE o.id = :id")
_ORDERS_OF = text(
    f"SELECT {ORDER_COLUMNS} FROM payment_orders o WHERE o.payment_id = ANY(:ids) ORDER BY o.payment_id, o.position"
)
_VERSION = text("SELECT version FROM payment_events WHERE id = :id")


def _list_statement(*, after: bool, by_buyer: bool) -> str:
    # Four fixed statements rather than optional predicates, so each gets a plan that uses its index.
    conditions = []
    if by_buyer:
        conditions.append("p.buyer_id = :buyer_id")
    if after:
        conditions.append("(p.created_at, p.id) < (:after_time, :after_id)")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return f"SELECT {PAYMENT_COLUMNS} FROM payment_events p {where}ORDER BY p.created_at DESC, p.id DESC LIMIT :limit"


_LIST = {(a, b): text(_list_statement(after=a, by_buyer=b)) for a in (False, True) for b in (False, True)}


async def insert_payment(
    connection: AsyncConnection, payment_id: uuid.UUID, order_ids: Sequence[uuid.UUID], draft: PaymentDraft
) -> datetime | None:
    """Stores the payment and its orders; returns its creation time, or None if the checkout exists."""
    orders = draft.seller_orders
    result = await connection.execute(
        _INSERT_PAYMENT,
        {
            "id": payment_id,
            "checkout_id": draft.checkout_id,
            "buyer_id": draft.buyer_id,
            "token": draft.payment_method_token,
            "currency": draft.currency,
            "total_minor": draft.total_minor,
            "request_hash": draft.request_hash,
            "order_ids": list(order_ids),
            "positions": list(range(len(orders))),
            "seller_ids": [order.seller_id for order in orders],
            "amounts": [order.amount_minor for order in orders],
            "line_items": [line_items_json(order.line_items) for order in orders],
        },
    )
    created_at: datetime | None = result.scalar_one_or_none()
    return created_at


async def payment_by_id(connection: AsyncConnection, payment_id: uuid.UUID) -> Payment | None:
    rows = (await connection.execute(_BY_ID, {"value": payment_id})).all()
    return payments_from_rows(rows[:1], rows)[0] if rows else None


async def payment_by_checkout(connection: AsyncConnection, checkout_id: str) -> tuple[Payment, bytes] | None:
    """The payment of `checkout_id` and the hash of the request that created it."""
    rows = (await connection.execute(_BY_CHECKOUT, {"value": checkout_id})).all()
    if not rows:
        return None
    return payments_from_rows(rows[:1], rows)[0], bytes(rows[0].request_hash)


async def payment_order_by_id(connection: AsyncConnection, payment_order_id: uuid.UUID) -> PaymentOrder | None:
    row = (await connection.execute(_ORDER, {"id": payment_order_id})).one_or_none()
    return order_from_row(row) if row else None


async def payment_version(connection: AsyncConnection, payment_id: uuid.UUID) -> int | None:
    version: int | None = (await connection.execute(_VERSION, {"id": payment_id})).scalar_one_or_none()
    return version


async def list_payments(
    connection: AsyncConnection, *, limit: int, after: Cursor | None, buyer_id: str
) -> list[Payment]:
    """Up to `limit` payments newest first, strictly after `after`; their orders come in one more query."""
    params: dict[str, object] = {"limit": limit}
    if buyer_id:
        params["buyer_id"] = buyer_id
    if after:
        params.update(after_time=after.created_at, after_id=after.payment_id)
    rows = (await connection.execute(_LIST[(after is not None, bool(buyer_id))], params)).all()
    if not rows:
        return []
    order_rows = await connection.execute(_ORDERS_OF, {"ids": [row.p_id for row in rows]})
    return payments_from_rows(rows, order_rows)
