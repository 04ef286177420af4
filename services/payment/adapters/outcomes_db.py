"""Applying a batch of outcomes in set-based SQL: one statement per kind, whatever the batch size."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payment.domain.model import OrderStatus
from services.payment.domain.outcomes import OrderFacts, Outcome

# Rows are locked in id order so that two replicas handling overlapping batches (wallet events are
# keyed by seller, ledger events by order) wait for each other instead of deadlocking.
_LOCK_ORDERS = text(
    "SELECT id, payment_id, amount_minor, currency, status FROM payment_orders"
    " WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
)
# Only a non-terminal order can take an outcome: a late or contradicting event never moves it back.
_SUCCEEDED = text(
    "UPDATE payment_orders o SET status = 'SUCCEEDED', psp_reference = NULLIF(u.psp_reference, ''),"
    " updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:psp_references AS text[])) AS u(id, psp_reference)"
    " WHERE o.id = u.id AND o.status IN ('NOT_STARTED', 'EXECUTING') RETURNING o.payment_id"
)
_FAILED = text(
    "UPDATE payment_orders o SET status = 'FAILED', failure_code = NULLIF(u.failure_code, ''),"
    " failure_message = NULLIF(u.failure_message, ''),"
    " psp_reference = COALESCE(NULLIF(u.psp_reference, ''), o.psp_reference), updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:failure_codes AS text[]), CAST(:failure_messages AS text[]),"
    "  CAST(:psp_references AS text[])) AS u(id, failure_code, failure_message, psp_reference)"
    " WHERE o.id = u.id AND o.status IN ('NOT_STARTED', 'EXECUTING') RETURNING o.payment_id"
)
_WALLET_UPDATED = text(
    "UPDATE payment_orders SET wallet_updated = true, updated_at = now()"
    " WHERE id = ANY(:ids) AND NOT wallet_updated RETURNING payment_id"
)
_LEDGER_UPDATED = text(
    "UPDATE payment_orders SET ledger_updated = true, updated_at = now()"
    " WHERE id = ANY(:ids) AND NOT ledger_updated RETURNING payment_id"
)
# A payment is done when every order is FAILED, or charged with the wallet and ledger confirmations.
# Its version moves with every change of an order so that watchers need to poll only this row.
_REFRESH_PAYMENTS = text(
    "WITH locked AS MATERIALIZED (SELECT id FROM payment_events WHERE id = ANY(:ids) ORDER BY id FOR UPDATE),"
    " state AS (SELECT payment_id, bool_and(status = 'FAILED'"
    "   OR (status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED') AND wallet_updated AND ledger_updated))"
    "   AS done FROM payment_orders WHERE payment_id = ANY(:ids) GROUP BY payment_id)"
    " UPDATE payment_events p SET done = state.done, version = p.version + 1, updated_at = now()"
    " FROM locked, state WHERE p.id = locked.id AND p.id = state.payment_id"
)


async def lock_orders(connection: AsyncConnection, order_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, OrderFacts]:
    rows = await connection.execute(_LOCK_ORDERS, {"ids": list(order_ids)})
    return {row.id: OrderFacts(row.payment_id, row.amount_minor, row.currency, OrderStatus(row.status)) for row in rows}


async def mark_succeeded(connection: AsyncConnection, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
    """Returns the ids of the payments whose orders changed."""
    if not outcomes:
        return set()
    params = {"ids": [o.payment_order_id for o in outcomes], "psp_references": [o.psp_reference for o in outcomes]}
    return {row.payment_id for row in await connection.execute(_SUCCEEDED, params)}


async def mark_failed(connection: AsyncConnection, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
    if not outcomes:
        return set()
    params = {
        "ids": [o.payment_order_id for o in outcomes],
        "failure_codes": [o.failure_code for o in outcomes],
        "failure_messages": [o.failure_message for o in outcomes],
        "psp_references": [o.psp_reference for o in outcomes],
    }
    return {row.payment_id for row in await connection.execute(_FAILED, params)}


async def mark_wallet_updated(connection: AsyncConnection, order_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    if not order_ids:
        return set()
    return {row.payment_id for row in await connection.execute(_WALLET_UPDATED, {"ids": list(order_ids)})}


async def mark_ledger_updated(connection: AsyncConnection, order_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    if not order_ids:
        return set()
    return {row.payment_id for row in await connection.execute(_LEDGER_UPDATED, {"ids": list(order_ids)})}


async def refresh_payments(connection: AsyncConnection, payment_ids: Collection[uuid.UUID]) -> None:
    """Recomputes `done` and bumps `version` of payments whose orders changed."""
    if payment_ids:
        await connection.execute(_REFRESH_PAYMENTS, {"ids": list(payment_ids)})
