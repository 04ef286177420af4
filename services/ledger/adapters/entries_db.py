"""Reading journal entries with their postings: pages of the journal, and single entries by id."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.money import Money
from services.ledger.domain import JournalEntry, PostedEntry, Posting

_COLUMNS = (
    "entry_id, seq, kind, payment_order_id, cause_event_id, created_at, refund_id, payout_id, "
    "reverses_entry_id, memo, psp_reference"
)


async def _with_postings(connection: AsyncConnection, rows: Sequence[Row[Any]]) -> list[PostedEntry]:
    """The entries of `rows` (in their order), each with its postings in position order."""
    if not rows:
        return []
    postings: dict[uuid.UUID, list[Posting]] = defaultdict(list)
    for posting in await connection.execute(
        text(
            "SELECT entry_id, account, currency, amount_minor FROM postings "
            "WHERE entry_id = ANY(CAST(:entry_ids AS uuid[])) ORDER BY entry_id, position"
        ),
        {"entry_ids": [row.entry_id for row in rows]},
    ):
        postings[posting.entry_id].append(Posting(posting.account, Money(posting.amount_minor, posting.currency)))
    return [
        PostedEntry(
            row.seq,
            JournalEntry(
                entry_id=row.entry_id,
                kind=row.kind,
                payment_order_id=row.payment_order_id,
                cause_event_id=row.cause_event_id,
                postings=tuple(postings[row.entry_id]),
                refund_id=row.refund_id,
                payout_id=row.payout_id,
                reverses_entry_id=row.reverses_entry_id,
                memo=row.memo,
                psp_reference=row.psp_reference,
            ),
            row.created_at,
        )
        for row in rows
    ]


async def fetch_entries(
    connection: AsyncConnection, *, snapshot: str, after_seq: int, limit: int, payment_order_id: uuid.UUID | None
) -> list[PostedEntry]:
    """Entries visible in `snapshot` after `after_seq`, oldest first, with their postings."""
    order_filter = "AND payment_order_id = :payment_order_id" if payment_order_id else ""
    rows = (
        await connection.execute(
            text(
                f"SELECT {_COLUMNS} FROM journal_entries "
                "WHERE seq > :after_seq AND pg_visible_in_snapshot(txid, CAST(:snapshot AS pg_snapshot)) "
                f"{order_filter} ORDER BY seq LIMIT :limit"
            ),
            {"after_seq": after_seq, "snapshot": snapshot, "limit": limit, "payment_order_id": payment_order_id},
        )
    ).all()
    return await _with_postings(connection, rows)


async def _one(
    connection: AsyncConnection, column: Literal["entry_id", "cause_event_id", "reverses_entry_id"], value: uuid.UUID
) -> PostedEntry | None:
    # One of three unique columns (hence at most one row), never caller input.
    statement = text(f"SELECT {_COLUMNS} FROM journal_entries WHERE {column} = :value")
    rows = (await connection.execute(statement, {"value": value})).all()
    found = await _with_postings(connection, rows)
    return found[0] if found else None


async def entry_by_id(connection: AsyncConnection, entry_id: uuid.UUID) -> PostedEntry | None:
    return await _one(connection, "entry_id", entry_id)


async def entry_by_cause(connection: AsyncConnection, cause_event_id: uuid.UUID) -> PostedEntry | None:
    return await _one(connection, "cause_event_id", cause_event_id)


async def reversal_of(connection: AsyncConnection, entry_id: uuid.UUID) -> PostedEntry | None:
    """The reversal of `entry_id`, if it was reversed (at most once: a unique index)."""
    return await _one(connection, "reverses_entry_id", entry_id)
