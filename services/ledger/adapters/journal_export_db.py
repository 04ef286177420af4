"""Reads the journal for an export: every entry with its postings, in journal order, in batches.

The whole export runs in one REPEATABLE READ READ ONLY transaction, so it is one consistent snapshot
however long it streams: an entry committed meanwhile is not in it, even one with a lower `seq` (seq
order is not commit order). Within that snapshot a keyset on `seq` is exact, and unlike OFFSET each
batch costs the same however deep into the journal it is.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger.export import ExportEntry, ExportPosting, Period

DEFAULT_BATCH_SIZE = 1000

# One round trip per batch. LEFT JOIN so that an entry without postings (which the database's
# triggers make impossible) would reach the exporter and be refused there, not silently vanish.
_BATCH = """
WITH batch AS (
    SELECT seq, entry_id, kind, payment_order_id, cause_event_id, created_at, refund_id, payout_id,
           reverses_entry_id, psp_reference, memo
    FROM journal_entries
    WHERE seq > :after_seq {period_filter}
    ORDER BY seq
    LIMIT :limit
)
SELECT b.seq, b.entry_id, b.kind, b.payment_order_id, b.cause_event_id, b.created_at, b.refund_id, b.payout_id,
       b.reverses_entry_id, b.psp_reference, b.memo, p.account, p.currency, p.amount_minor
FROM batch AS b LEFT JOIN postings AS p USING (entry_id)
ORDER BY b.seq, p.position
"""

# Every currency the ledger has booked (balances exist per account and currency): a cheap superset of
# the currencies of any period, and a directive for an unused currency changes nothing in hledger.
_CURRENCIES = text("SELECT DISTINCT currency FROM account_balances ORDER BY currency")


def _batch_statement(period: Period) -> TextClause:
    # Only the bounds that are set, so PostgreSQL plans a plain keyset scan on seq.
    period_filter = " ".join(
        condition
        for condition, bound in (("AND created_at >= :start", period.start), ("AND created_at < :end", period.end))
        if bound is not None
    )
    return text(_BATCH.format(period_filter=period_filter))


def _entries(rows: Sequence[Row[Any]]) -> list[ExportEntry]:
    entries = []
    for _, group in itertools.groupby(rows, key=lambda row: row.seq):
        entry_rows = list(group)
        first = entry_rows[0]
        postings = tuple(
            ExportPosting(row.account, row.currency, int(row.amount_minor))
            for row in entry_rows
            if row.account is not None
        )
        entries.append(
            ExportEntry(
                seq=first.seq,
                entry_id=first.entry_id,
                kind=first.kind,
                payment_order_id=first.payment_order_id,
                cause_event_id=first.cause_event_id,
                posted_at=first.created_at,
                postings=postings,
                refund_id=first.refund_id,
                payout_id=first.payout_id,
                reverses_entry_id=first.reverses_entry_id,
                psp_reference=first.psp_reference,
                memo=first.memo,
            )
        )
    return entries


class JournalSnapshot:
    """The journal as of one snapshot; only valid inside `JournalExportReader.snapshot()`."""

    def __init__(self, connection: AsyncConnection, batch_size: int) -> None:
        self._connection = connection
        self._batch_size = batch_size

    async def currencies(self) -> list[str]:
        return list((await self._connection.scalars(_CURRENCIES)).all())

    async def batches(self, period: Period) -> AsyncIterator[list[ExportEntry]]:
        """The entries of `period` in journal order, `batch_size` entries at a time."""
        statement = _batch_statement(period)
        after_seq = 0
        while True:
            rows = (
                await self._connection.execute(
                    statement,
                    {"after_seq": after_seq, "limit": self._batch_size, "start": period.start, "end": period.end},
                )
            ).all()
            entries = _entries(rows)
            if not entries:
                return
            yield entries
            if len(entries) < self._batch_size:
                return
            after_seq = entries[-1].seq


class JournalExportReader:
    def __init__(self, engine: AsyncEngine, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        # REPEATABLE READ takes the snapshot at the first statement and keeps it to the end; READ ONLY
        # makes PostgreSQL refuse any write, as an export has no business writing.
        self._snapshots = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._batch_size = batch_size

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[JournalSnapshot]:
        """One transaction; leaving the block (normally, by an error or a cancelled call) ends it."""
        async with self._snapshots.connect() as connection, connection.begin():
            yield JournalSnapshot(connection, self._batch_size)
