"""Row ↔ domain mapping shared by the payment queries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row

from services.payment.domain.model import LineItem, OrderStatus, Payment, PaymentOrder

PAYMENT_COLUMNS = (
    "p.id AS p_id, p.checkout_id, p.buyer_id, p.currency AS p_currency, p.total_minor, p.done, p.version, "
    "p.created_at AS p_created_at, p.request_hash"
)
ORDER_COLUMNS = (
    "o.id AS o_id, o.payment_id AS o_payment_id, o.seller_id, o.amount_minor, o.currency AS o_currency, "
    "o.status, o.wallet_updated, o.ledger_updated, o.psp_reference, o.failure_code, o.failure_message, "
    "o.line_items, o.created_at AS o_created_at, o.updated_at AS o_updated_at"
)


def line_items_json(items: Sequence[LineItem]) -> str:
    return json.dumps(
        [
            {
                "sku": i.sku,
                "description": i.description,
                "quantity": i.quantity,
                "unit_amount_minor": i.unit_amount_minor,
            }
            for i in items
        ],
        separators=(",", ":"),
    )


def _line_items(value: list[dict[str, Any]]) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(str(i["sku"]), str(i["description"]), int(i["quantity"]), int(i["unit_amount_minor"])) for i in value
    )


def order_from_row(row: Row[Any]) -> PaymentOrder:
    return PaymentOrder(
        payment_order_id=row.o_id,
        payment_id=row.o_payment_id,
        seller_id=row.seller_id,
        amount_minor=row.amount_minor,
        currency=row.o_currency,
        status=OrderStatus(row.status),
        wallet_updated=row.wallet_updated,
        ledger_updated=row.ledger_updated,
        psp_reference=row.psp_reference or "",
        failure_code=row.failure_code or "",
        failure_message=row.failure_message or "",
        line_items=_line_items(row.line_items),
        created_at=row.o_created_at,
        updated_at=row.o_updated_at,
    )


def payment_from_row(row: Row[Any], orders: Iterable[PaymentOrder]) -> Payment:
    return Payment(
        payment_id=row.p_id,
        checkout_id=row.checkout_id,
        buyer_id=row.buyer_id,
        currency=row.p_currency,
        total_minor=row.total_minor,
        orders=tuple(orders),
        done=row.done,
        version=row.version,
        created_at=row.p_created_at,
    )


def payments_from_rows(payment_rows: Sequence[Row[Any]], order_rows: Iterable[Row[Any]]) -> list[Payment]:
    """Assembles payments from their rows and the rows of their orders (already in display order)."""
    orders_by_payment: dict[uuid.UUID, list[PaymentOrder]] = {row.p_id: [] for row in payment_rows}
    for order_row in order_rows:
        orders_by_payment[order_row.o_payment_id].append(order_from_row(order_row))
    return [payment_from_row(row, orders_by_payment[row.p_id]) for row in payment_rows]
