"""The ledger's use cases. Posting runs inside the caller's transaction with its outbox events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from settle.common.v1.money_pb2 import Money as MoneyMessage
from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox, snapshot_paging
from services.common.errors import Validator
from services.common.events import LEDGER_ENTRY_POSTED, OutboundEvent
from services.common.money import Money
from services.common.payout_events import PayoutEvent
from services.common.succeeded_orders import SucceededOrder
from services.common.succeeded_refunds import SucceededRefund
from services.common.timestamps import timestamp_of
from services.ledger.adapters import db, entries_db
from services.ledger.domain import (
    JournalEntry,
    PostedEntry,
    TrialBalance,
    payment_order_succeeded_entry,
    refund_succeeded_entry,
    validate_account_query,
)
from services.ledger.payouts import payout_entry

log = logging.getLogger(__name__)


def entry_posted(posted: PostedEntry) -> OutboundEvent:
    """The `ledger.entry.posted` event of an entry (key: its payment order, else its payout, else the
    entry id), so that the entries of one order or one payout are announced in order."""
    entry = posted.entry
    return OutboundEvent(
        LEDGER_ENTRY_POSTED,
        key=str(entry.payment_order_id or entry.payout_id or entry.entry_id),
        message=events_pb2.LedgerEntryPosted(
            entry_id=str(entry.entry_id),
            kind=entry.kind,
            payment_order_id=str(entry.payment_order_id or ""),
            postings=[
                events_pb2.LedgerPosting(
                    account=posting.account,
                    amount=MoneyMessage(amount_minor=posting.amount.amount_minor, currency=posting.amount.currency),
                )
                for posting in entry.postings
            ],
            cause_event_id=str(entry.cause_event_id),
            posted_at=timestamp_of(posted.created_at),
            refund_id=str(entry.refund_id or ""),
            payout_id=str(entry.payout_id or ""),
        ),
    )


async def post_and_announce(
    connection: AsyncConnection, entries: Sequence[JournalEntry], what: str
) -> list[PostedEntry]:
    """Posts the entries not posted yet, with one `ledger.entry.posted` each in the outbox, in
    `connection`'s transaction; returns those it posted."""
    posted = await db.post_entries(connection, entries)
    await outbox.append(connection, [entry_posted(entry) for entry in posted])
    if len(posted) < len(entries):
        log.info("ledger: %d of %d %s were already posted", len(entries) - len(posted), len(entries), what)
    return posted


class LedgerService:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._consistent_reads = engine.execution_options(isolation_level="REPEATABLE READ")

    async def record_succeeded_orders(
        self, connection: AsyncConnection, orders: Sequence[SucceededOrder]
    ) -> list[PostedEntry]:
        """Posts DR psp_receivable / CR seller_payable per order, once per order and cause event, in
        `connection`'s transaction, with one `ledger.entry.posted` per entry in the outbox."""
        entries = [payment_order_succeeded_entry(order, uuid.uuid4()) for order in orders]
        return await post_and_announce(connection, entries, "orders")

    async def record_refunds(
        self, connection: AsyncConnection, refunds: Sequence[SucceededRefund]
    ) -> list[PostedEntry]:
        """Posts DR seller_payable / CR psp_receivable per refund, once per refund, in `connection`'s
        transaction, with one `ledger.entry.posted` per entry in the outbox."""
        entries = [refund_succeeded_entry(refund, uuid.uuid4()) for refund in refunds]
        return await post_and_announce(connection, entries, "refunds")

    async def record_payouts(self, connection: AsyncConnection, payouts: Sequence[PayoutEvent]) -> list[PostedEntry]:
        """Posts each payout step (requested, paid, failed) once per payout, in `connection`'s
        transaction, with one `ledger.entry.posted` per entry in the outbox."""
        entries = [payout_entry(payout, uuid.uuid4()) for payout in payouts]
        return await post_and_announce(connection, entries, "payout steps")

    async def get_account_balance(self, account: str, currency: str) -> Money:
        validate_account_query(account, currency)
        async with self._engine.connect() as connection:
            return Money(await db.fetch_account_balance(connection, account, currency), currency)

    async def list_entries(
        self, *, page_size: int, page_token: str, payment_order_id: str
    ) -> tuple[list[PostedEntry], str]:
        """One page of the journal as of the listing's first page, oldest first, and the next token."""
        validator = Validator()
        order_id = validator.require_uuid("payment_order_id", payment_order_id) if payment_order_id else None
        validator.raise_if_any()
        size = snapshot_paging.page_size(page_size)
        other_filter = "a listing with another payment_order_id filter"
        cursor = snapshot_paging.decode_token(page_token, payment_order_id, other_filter) if page_token else None
        async with self._engine.connect() as connection:
            snapshot = cursor.snapshot if cursor else await db.current_snapshot(connection)
            entries = await entries_db.fetch_entries(
                connection,
                snapshot=snapshot,
                after_seq=cursor.after_seq if cursor else 0,
                limit=size + 1,
                payment_order_id=order_id,
            )
        if len(entries) <= size:
            return entries, ""
        page = entries[:size]
        next_page = snapshot_paging.SnapshotCursor(snapshot, page[-1].seq, payment_order_id)
        return page, snapshot_paging.encode_token(next_page)

    async def trial_balance(self) -> TrialBalance:
        """Every account balance and the totals per currency, read at one snapshot."""
        async with self._consistent_reads.connect() as connection, connection.begin():
            return await db.trial_balance(connection)
