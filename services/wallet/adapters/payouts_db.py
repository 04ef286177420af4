"""The payout tables, set-based. Balance rows are always locked in (seller, currency) order before a
multi-row change, the order every other writer of balances uses, so concurrent writers never deadlock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.money import Money
from services.common.payout_events import PayoutEvent, PayoutStep
from services.wallet.adapters.db import ENTRY_COLUMNS, entry_of
from services.wallet.domain import BalanceEntry
from services.wallet.payouts import Payout, PayoutOrigin, PayoutRequest, PayoutStatus

BalanceKey = tuple[str, str]  # (seller_id, currency)

_PAYOUT_COLUMNS = (
    "payout_id, seller_id, currency, amount_minor, destination, status, origin, idempotency_key, request_hash, "
    "batch_id, batch_line, metadata, psp_reference, failure_code, failure_message, created_at, updated_at"
)


def payout_of(row: Row[Any]) -> Payout:
    return Payout(
        payout_id=row.payout_id,
        seller_id=row.seller_id,
        amount=Money(row.amount_minor, row.currency),
        destination=row.destination,
        status=PayoutStatus(row.status),
        origin=PayoutOrigin(row.origin),
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        batch_id=row.batch_id,
        batch_line=row.batch_line,
        metadata=dict(row.metadata),
        psp_reference=row.psp_reference,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def lock_available(connection: AsyncConnection, keys: Sequence[BalanceKey]) -> dict[BalanceKey, int]:
    """Locks the balances of `keys` in (seller, currency) order until the transaction ends; returns
    their available amounts (a balance that does not exist has nothing available)."""
    if not keys:
        return {}
    unique = sorted(set(keys))
    result = await connection.execute(
        text(
            "SELECT seller_id, currency, available_minor FROM balances "
            "WHERE (seller_id, currency) IN "
            "  (SELECT * FROM unnest(CAST(:sellers AS text[]), CAST(:currencies AS text[]))) "
            "ORDER BY seller_id, currency FOR UPDATE"
        ),
        {"sellers": [key[0] for key in unique], "currencies": [key[1] for key in unique]},
    )
    return {(row.seller_id, row.currency): row.available_minor for row in result}


async def set_destination(connection: AsyncConnection, seller_id: str, destination: str) -> None:
    await connection.execute(
        text(
            "INSERT INTO payout_destinations (seller_id, destination) VALUES (:seller_id, :destination) "
            "ON CONFLICT (seller_id) DO UPDATE SET destination = excluded.destination, updated_at = now()"
        ),
        {"seller_id": seller_id, "destination": destination},
    )


async def destinations_of(connection: AsyncConnection, seller_ids: Sequence[str]) -> dict[str, str]:
    result = await connection.execute(
        text("SELECT seller_id, destination FROM payout_destinations WHERE seller_id = ANY(CAST(:sellers AS text[]))"),
        {"sellers": sorted(set(seller_ids))},
    )
    return {row.seller_id: row.destination for row in result}


async def find_by_key(connection: AsyncConnection, seller_id: str, idempotency_key: str) -> Payout | None:
    row = (
        await connection.execute(
            text(f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE seller_id = :seller_id AND idempotency_key = :key"),
            {"seller_id": seller_id, "key": idempotency_key},
        )
    ).one_or_none()
    return payout_of(row) if row is not None else None


# Inserts the payouts, their reservation entries (available -x, reserved +x, with the payout id as
# cause) and moves the sums per balance, in one round trip. The caller locked the balances and checked
# that each covers its payouts.
_RESERVE = text(f"""
WITH requested AS (
    SELECT * FROM unnest(CAST(:payout_ids AS uuid[]), CAST(:seller_ids AS text[]), CAST(:currencies AS text[]),
                         CAST(:amounts AS bigint[]), CAST(:destinations AS text[]), CAST(:origins AS text[]),
                         CAST(:keys AS text[]), CAST(:hashes AS text[]), CAST(:batch_ids AS text[]),
                         CAST(:batch_lines AS integer[]), CAST(:metadata AS jsonb[]))
        AS r(payout_id, seller_id, currency, amount_minor, destination, origin, idempotency_key, request_hash,
             batch_id, batch_line, metadata)
), new_payouts AS (
    INSERT INTO payouts (payout_id, seller_id, currency, amount_minor, destination, origin, idempotency_key,
                         request_hash, batch_id, batch_line, metadata)
    SELECT * FROM requested ORDER BY batch_line, payout_id  -- a batch is listed in the file's order
    RETURNING payout_id, seller_id, currency, amount_minor
), new_entries AS (
    INSERT INTO balance_entries
        (entry_id, seller_id, currency, bucket, amount_minor, kind, payout_id, event_id)
    SELECT gen_random_uuid(), p.seller_id, p.currency, side.bucket, side.sign * p.amount_minor, 'payout_reserved',
           p.payout_id, p.payout_id
    FROM new_payouts p CROSS JOIN (VALUES ('available', -1), ('reserved', 1)) AS side(bucket, sign)
    ORDER BY p.payout_id, side.bucket
    RETURNING {ENTRY_COLUMNS}
), moved AS (
    UPDATE balances AS b
    SET available_minor = b.available_minor - m.total, reserved_minor = b.reserved_minor + m.total,
        updated_at = now()
    FROM (SELECT seller_id, currency, sum(amount_minor) AS total FROM new_payouts GROUP BY seller_id, currency) AS m
    WHERE b.seller_id = m.seller_id AND b.currency = m.currency
)
SELECT {ENTRY_COLUMNS} FROM new_entries ORDER BY seq
""")


async def reserve(connection: AsyncConnection, requests: Sequence[PayoutRequest]) -> list[BalanceEntry]:
    """Records `requests` as REQUESTED payouts and reserves their funds; returns the entries written."""
    if not requests:
        return []
    result = await connection.execute(
        _RESERVE,
        {
            "payout_ids": [request.payout_id for request in requests],
            "seller_ids": [request.seller_id for request in requests],
            "currencies": [request.amount.currency for request in requests],
            "amounts": [request.amount.amount_minor for request in requests],
            "destinations": [request.destination for request in requests],
            "origins": [str(request.origin) for request in requests],
            "keys": [request.idempotency_key for request in requests],
            "hashes": [request.request_hash for request in requests],
            "batch_ids": [request.batch_id for request in requests],
            "batch_lines": [request.batch_line for request in requests],
            "metadata": [json.dumps(request.metadata) for request in requests],
        },
    )
    return [entry_of(row) for row in result]


# A paid payout leaves `reserved`; a failed one goes back to `available`. Only REQUESTED payouts move,
# so a payout is settled once whatever event ids its outcome arrives under.
_SETTLE = text(f"""
WITH outcome AS (
    SELECT * FROM unnest(CAST(:payout_ids AS uuid[]), CAST(:statuses AS text[]), CAST(:references AS text[]),
                         CAST(:codes AS text[]), CAST(:messages AS text[]), CAST(:event_ids AS uuid[]))
        AS o(payout_id, status, psp_reference, failure_code, failure_message, event_id)
), settled AS (
    UPDATE payouts p SET status = o.status, psp_reference = o.psp_reference, failure_code = o.failure_code,
        failure_message = o.failure_message, updated_at = now()
    FROM outcome o WHERE p.payout_id = o.payout_id AND p.status = 'REQUESTED'
    RETURNING p.payout_id, p.seller_id, p.currency, p.amount_minor, p.status, o.event_id
), new_entries AS (
    INSERT INTO balance_entries
        (entry_id, seller_id, currency, bucket, amount_minor, kind, payout_id, event_id)
    SELECT gen_random_uuid(), s.seller_id, s.currency, side.bucket, side.sign * s.amount_minor, side.kind,
           s.payout_id, s.event_id
    FROM settled s JOIN (VALUES ('PAID', 'reserved', -1, 'payout_paid'),
                                ('FAILED', 'reserved', -1, 'payout_returned'),
                                ('FAILED', 'available', 1, 'payout_returned')) AS side(status, bucket, sign, kind)
        ON side.status = s.status
    ORDER BY s.payout_id, side.bucket
    RETURNING {ENTRY_COLUMNS}
), moved AS (
    UPDATE balances AS b
    SET available_minor = b.available_minor + m.available, reserved_minor = b.reserved_minor + m.reserved,
        updated_at = now()
    FROM (SELECT seller_id, currency,
                 coalesce(sum(amount_minor) FILTER (WHERE bucket = 'available'), 0) AS available,
                 coalesce(sum(amount_minor) FILTER (WHERE bucket = 'reserved'), 0) AS reserved
          FROM new_entries GROUP BY seller_id, currency) AS m
    WHERE b.seller_id = m.seller_id AND b.currency = m.currency
)
SELECT {ENTRY_COLUMNS} FROM new_entries ORDER BY seq
""")


async def settle(connection: AsyncConnection, outcomes: Sequence[PayoutEvent]) -> list[BalanceEntry]:
    """Applies paid and failed outcomes to REQUESTED payouts; returns the entries written."""
    if not outcomes:
        return []
    await lock_available(connection, [(outcome.seller_id, outcome.amount.currency) for outcome in outcomes])
    first = {outcome.payout_id: outcome for outcome in reversed(outcomes)}  # one outcome per payout
    ordered = sorted(first.values(), key=lambda outcome: outcome.payout_id)
    result = await connection.execute(
        _SETTLE,
        {
            "payout_ids": [outcome.payout_id for outcome in ordered],
            "statuses": ["PAID" if outcome.step is PayoutStep.PAID else "FAILED" for outcome in ordered],
            "references": [outcome.psp_reference for outcome in ordered],
            "codes": [outcome.failure_code for outcome in ordered],
            "messages": [outcome.failure_message for outcome in ordered],
            "event_ids": [outcome.event_id for outcome in ordered],
        },
    )
    return [entry_of(row) for row in result]


async def get(connection: AsyncConnection, payout_id: uuid.UUID) -> Payout | None:
    row = (
        await connection.execute(
            text(f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE payout_id = :payout_id"), {"payout_id": payout_id}
        )
    ).one_or_none()
    return payout_of(row) if row is not None else None


async def list_page(
    connection: AsyncConnection, *, seller_id: str | None, batch_id: str | None, after_seq: int, limit: int
) -> list[tuple[int, Payout]]:
    """Payouts of a seller (or of a batch), in acceptance order, after `after_seq`."""
    column, value = ("seller_id", seller_id) if seller_id else ("batch_id", batch_id)
    result = await connection.execute(
        text(
            f"SELECT seq, {_PAYOUT_COLUMNS} FROM payouts WHERE {column} = :value AND seq > :after_seq "
            "ORDER BY seq LIMIT :limit"
        ),
        {"value": value, "after_seq": after_seq, "limit": limit},
    )
    return [(row.seq, payout_of(row)) for row in result]


async def insert_batch(connection: AsyncConnection, batch_id: str, content_sha256: str, item_count: int) -> None:
    await connection.execute(
        text("INSERT INTO payout_batches (batch_id, content_sha256, item_count) VALUES (:batch_id, :sha, :item_count)"),
        {"batch_id": batch_id, "sha": content_sha256, "item_count": item_count},
    )


async def find_batch(connection: AsyncConnection, batch_id: str, content_sha256: str = "") -> Row[Any] | None:
    """The batch with this id, or else the batch with this content."""
    return (
        await connection.execute(
            text(
                "SELECT batch_id, content_sha256, item_count, created_at FROM payout_batches "
                "WHERE batch_id = :batch_id OR content_sha256 = :sha ORDER BY batch_id = :batch_id DESC LIMIT 1"
            ),
            {"batch_id": batch_id, "sha": content_sha256},
        )
    ).one_or_none()


async def batch_totals(connection: AsyncConnection, batch_id: str) -> list[tuple[PayoutStatus, int, Money]]:
    result = await connection.execute(
        text(
            "SELECT status, currency, count(*) AS items, sum(amount_minor) AS total FROM payouts "
            "WHERE batch_id = :batch_id GROUP BY status, currency ORDER BY status, currency"
        ),
        {"batch_id": batch_id},
    )
    return [(PayoutStatus(row.status), row.items, Money(int(row.total), row.currency)) for row in result]


async def schedule_candidates(connection: AsyncConnection) -> list[Row[Any]]:
    """Every balance with its available amount and the seller's destination, locked in balance order."""
    result = await connection.execute(
        text(
            "SELECT b.seller_id, b.currency, b.available_minor, d.destination FROM balances b "
            "LEFT JOIN payout_destinations d USING (seller_id) "
            "ORDER BY b.seller_id, b.currency FOR UPDATE OF b"
        )
    )
    return list(result)


async def bucket_sums_as_of(
    connection: AsyncConnection, seller_id: str, currency: str, as_of: datetime | None
) -> Row[Any]:
    """The seller's buckets and paid payouts summed from the entries written until `as_of` (None: all)."""
    return (
        await connection.execute(
            text(
                "SELECT coalesce(sum(amount_minor) FILTER (WHERE bucket = 'pending'), 0) AS pending_minor, "
                "coalesce(sum(amount_minor) FILTER (WHERE bucket = 'available'), 0) AS available_minor, "
                "coalesce(sum(amount_minor) FILTER (WHERE bucket = 'reserved'), 0) AS reserved_minor, "
                "coalesce(-sum(amount_minor) FILTER (WHERE kind = 'payout_paid'), 0) AS paid_minor, "
                "max(created_at) AS updated_at "
                "FROM balance_entries WHERE seller_id = :seller_id AND currency = :currency "
                "AND (CAST(:as_of AS timestamptz) IS NULL OR created_at <= :as_of)"
            ),
            {"seller_id": seller_id, "currency": currency, "as_of": as_of},
        )
    ).one()
