"""The wallet's tables, set-based: one statement per batch, never read-modify-write in Python."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.money import Money
from services.wallet.domain import Balance, BalanceEntry, Bucket, EntryKind, RefundDebit, Sale

ENTRY_COLUMNS = (
    "seq, entry_id, seller_id, currency, bucket, amount_minor, kind, payment_order_id, refund_id, payout_id, "
    "event_id, created_at"
)

# One round trip per batch: insert the sales' entries (an order or event already recorded inserts
# nothing), then add the new entries, summed per (seller, currency), to the balances. Rows are taken in
# a fixed order (entries by order id, balances by seller and currency) so concurrent batches never
# deadlock, and a hot seller's balance row is updated once per batch, not once per sale.
_CREDIT_SALES = text(f"""
WITH new_entries AS (
    INSERT INTO balance_entries
        (entry_id, seller_id, currency, bucket, amount_minor, kind, payment_order_id, event_id)
    SELECT entry_id, seller_id, currency, 'pending', amount_minor, 'sale', payment_order_id, event_id
    FROM unnest(CAST(:entry_ids AS uuid[]), CAST(:seller_ids AS text[]), CAST(:currencies AS text[]),
                CAST(:amounts AS bigint[]), CAST(:order_ids AS uuid[]), CAST(:event_ids AS uuid[]))
         AS sale(entry_id, seller_id, currency, amount_minor, payment_order_id, event_id)
    ORDER BY payment_order_id
    ON CONFLICT DO NOTHING
    RETURNING {ENTRY_COLUMNS}
), credited AS (
    INSERT INTO balances AS b (seller_id, currency, pending_minor)
    SELECT seller_id, currency, sum(amount_minor) FROM new_entries
    GROUP BY seller_id, currency ORDER BY seller_id, currency
    ON CONFLICT (seller_id, currency) DO UPDATE
        SET pending_minor = b.pending_minor + excluded.pending_minor, updated_at = now()
)
SELECT {ENTRY_COLUMNS} FROM new_entries ORDER BY seq
""")


# The same shape for refunds: entries keyed by refund id, summed into `available` (which may go negative).
_DEBIT_REFUNDS = text(f"""
WITH new_entries AS (
    INSERT INTO balance_entries
        (entry_id, seller_id, currency, bucket, amount_minor, kind, payment_order_id, refund_id, event_id)
    SELECT entry_id, seller_id, currency, 'available', -amount_minor, 'refund', payment_order_id, refund_id, event_id
    FROM unnest(CAST(:entry_ids AS uuid[]), CAST(:seller_ids AS text[]), CAST(:currencies AS text[]),
                CAST(:amounts AS bigint[]), CAST(:order_ids AS uuid[]), CAST(:refund_ids AS uuid[]),
                CAST(:event_ids AS uuid[]))
         AS refund(entry_id, seller_id, currency, amount_minor, payment_order_id, refund_id, event_id)
    ORDER BY refund_id
    ON CONFLICT DO NOTHING
    RETURNING {ENTRY_COLUMNS}
), debited AS (
    INSERT INTO balances AS b (seller_id, currency, available_minor)
    SELECT seller_id, currency, sum(amount_minor) FROM new_entries
    GROUP BY seller_id, currency ORDER BY seller_id, currency
    ON CONFLICT (seller_id, currency) DO UPDATE
        SET available_minor = b.available_minor + excluded.available_minor, updated_at = now()
)
SELECT {ENTRY_COLUMNS} FROM new_entries ORDER BY seq
""")


# Sales held at least `delay` and not released yet become two entries each (pending -x, available +x)
# under one deterministic cause id per order, summed into the balances in seller order. A concurrent
# run releasing the same sales inserts nothing (the unique index), so it moves nothing either.
_RELEASE_DUE = text(f"""
WITH due AS (
    SELECT s.seller_id, s.currency, s.amount_minor, s.payment_order_id
    FROM balance_entries s
    WHERE s.kind = 'sale' AND s.created_at <= CAST(:as_of AS timestamptz) - make_interval(secs => :delay_s)
      AND NOT EXISTS (SELECT 1 FROM balance_entries r
                      WHERE r.kind = 'release' AND r.payment_order_id = s.payment_order_id)
    ORDER BY s.created_at LIMIT :limit
), new_entries AS (
    INSERT INTO balance_entries
        (entry_id, seller_id, currency, bucket, amount_minor, kind, payment_order_id, event_id)
    SELECT gen_random_uuid(), due.seller_id, due.currency, side.bucket, side.sign * due.amount_minor, 'release',
           due.payment_order_id, CAST(md5('release:' || due.payment_order_id::text) AS uuid)
    FROM due CROSS JOIN (VALUES ('pending', -1), ('available', 1)) AS side(bucket, sign)
    ORDER BY due.payment_order_id, side.bucket
    ON CONFLICT DO NOTHING
    RETURNING {ENTRY_COLUMNS}
), moved AS (
    -- An upsert of rows that always exist: unlike UPDATE ... FROM, it takes the rows in its ORDER BY,
    -- the (seller, currency) order every writer of balances uses, so it cannot deadlock with them.
    INSERT INTO balances AS b (seller_id, currency, pending_minor, available_minor)
    SELECT seller_id, currency,
           sum(amount_minor) FILTER (WHERE bucket = 'pending'), sum(amount_minor) FILTER (WHERE bucket = 'available')
    FROM new_entries GROUP BY seller_id, currency ORDER BY seller_id, currency
    ON CONFLICT (seller_id, currency) DO UPDATE
        SET pending_minor = b.pending_minor + excluded.pending_minor,
            available_minor = b.available_minor + excluded.available_minor, updated_at = now()
)
SELECT {ENTRY_COLUMNS} FROM new_entries ORDER BY seq
""")


def entry_of(row: Any) -> BalanceEntry:
    return BalanceEntry(
        seq=row.seq,
        entry_id=row.entry_id,
        seller_id=row.seller_id,
        bucket=Bucket(row.bucket),
        amount=Money(row.amount_minor, row.currency),
        kind=row.kind,
        payment_order_id=row.payment_order_id,
        event_id=row.event_id,
        refund_id=row.refund_id,
        payout_id=row.payout_id,
        created_at=row.created_at,
    )


async def credit_sales(connection: AsyncConnection, sales: Sequence[Sale]) -> list[BalanceEntry]:
    """Credits each sale's seller's pending bucket; returns the entries written (new sales only)."""
    if not sales:
        return []
    ordered = sorted(sales, key=lambda sale: sale.payment_order_id)
    result = await connection.execute(
        _CREDIT_SALES,
        {
            "entry_ids": [uuid.uuid4() for _ in ordered],
            "seller_ids": [sale.seller_id for sale in ordered],
            "currencies": [sale.amount.currency for sale in ordered],
            "amounts": [sale.amount.amount_minor for sale in ordered],
            "order_ids": [sale.payment_order_id for sale in ordered],
            "event_ids": [sale.event_id for sale in ordered],
        },
    )
    entries = [entry_of(row) for row in result]
    assert all(entry.kind == EntryKind.SALE for entry in entries)
    return entries


async def debit_refunds(connection: AsyncConnection, refunds: Sequence[RefundDebit]) -> list[BalanceEntry]:
    """Debits each refund from its seller's available bucket; returns the entries written (new refunds only)."""
    if not refunds:
        return []
    ordered = sorted(refunds, key=lambda refund: refund.refund_id)
    result = await connection.execute(
        _DEBIT_REFUNDS,
        {
            "entry_ids": [uuid.uuid4() for _ in ordered],
            "seller_ids": [refund.seller_id for refund in ordered],
            "currencies": [refund.amount.currency for refund in ordered],
            "amounts": [refund.amount.amount_minor for refund in ordered],
            "order_ids": [refund.payment_order_id for refund in ordered],
            "refund_ids": [refund.refund_id for refund in ordered],
            "event_ids": [refund.event_id for refund in ordered],
        },
    )
    return [entry_of(row) for row in result]


async def release_due(connection: AsyncConnection, *, delay_s: int, limit: int, as_of: datetime) -> list[BalanceEntry]:
    """Releases up to `limit` sales held at least `delay_s` at `as_of`; returns the entries written
    (two per sale)."""
    result = await connection.execute(_RELEASE_DUE, {"delay_s": delay_s, "limit": limit, "as_of": as_of})
    return [entry_of(row) for row in result]


async def fetch_balance(connection: AsyncConnection, seller_id: str, currency: str) -> Balance | None:
    row = (
        await connection.execute(
            text(
                "SELECT seller_id, currency, pending_minor, available_minor, reserved_minor, updated_at "
                "FROM balances WHERE seller_id = :seller_id AND currency = :currency"
            ),
            {"seller_id": seller_id, "currency": currency},
        )
    ).one_or_none()
    if row is None:
        return None
    return Balance(
        row.seller_id, row.currency, row.pending_minor, row.available_minor, row.reserved_minor, row.updated_at
    )


async def current_snapshot(connection: AsyncConnection) -> str:
    return str(await connection.scalar(text("SELECT CAST(pg_current_snapshot() AS text)")))


async def fetch_entries(
    connection: AsyncConnection, seller_id: str, *, snapshot: str, after_seq: int, limit: int
) -> list[BalanceEntry]:
    """The seller's entries visible in `snapshot` after `after_seq`, oldest first."""
    result = await connection.execute(
        text(
            f"SELECT {ENTRY_COLUMNS} FROM balance_entries "
            "WHERE seller_id = :seller_id AND seq > :after_seq "
            "AND pg_visible_in_snapshot(txid, CAST(:snapshot AS pg_snapshot)) ORDER BY seq LIMIT :limit"
        ),
        {"seller_id": seller_id, "after_seq": after_seq, "snapshot": snapshot, "limit": limit},
    )
    return [entry_of(row) for row in result]


async def find_drift(connection: AsyncConnection, seller_ids: Sequence[str]) -> list[tuple[str, str]]:
    """The (seller, currency) balances of `seller_ids` whose buckets differ from the sum of their entries."""
    result = await connection.execute(
        text("""
        WITH sums AS (
            SELECT seller_id, currency,
                   sum(amount_minor) FILTER (WHERE bucket = 'pending') AS pending_minor,
                   sum(amount_minor) FILTER (WHERE bucket = 'available') AS available_minor,
                   sum(amount_minor) FILTER (WHERE bucket = 'reserved') AS reserved_minor
            FROM balance_entries WHERE seller_id = ANY(CAST(:seller_ids AS text[]))
            GROUP BY seller_id, currency
        )
        SELECT seller_id, currency
        FROM (SELECT * FROM balances WHERE seller_id = ANY(CAST(:seller_ids AS text[]))) AS b
        FULL JOIN sums AS s USING (seller_id, currency)
        WHERE coalesce(b.pending_minor, 0) <> coalesce(s.pending_minor, 0)
           OR coalesce(b.available_minor, 0) <> coalesce(s.available_minor, 0)
           OR coalesce(b.reserved_minor, 0) <> coalesce(s.reserved_minor, 0)
        ORDER BY seller_id, currency
        """),
        {"seller_ids": list(seller_ids)},
    )
    return [(row.seller_id, row.currency) for row in result]
