"""The wallet's use cases. Each change runs inside the caller's transaction with its outbox events."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox, snapshot_paging
from services.common.events import WALLET_BALANCE_UPDATED, OutboundEvent
from services.wallet.adapters import db, payouts_db
from services.wallet.domain import Balance, BalanceEntry, Bucket, RefundDebit, Sale, validate_query

log = logging.getLogger(__name__)


def balance_updated(entry: BalanceEntry) -> OutboundEvent:
    """The `wallet.balance.updated` event of one entry (key: the seller, so a seller's events are ordered)."""
    deltas = {bucket: 0 for bucket in Bucket}
    deltas[entry.bucket] = entry.amount.amount_minor
    return OutboundEvent(
        WALLET_BALANCE_UPDATED,
        key=entry.seller_id,
        message=events_pb2.WalletBalanceUpdated(
            seller_id=entry.seller_id,
            currency=entry.amount.currency,
            payment_order_id=str(entry.payment_order_id or ""),
            pending_delta_minor=deltas[Bucket.PENDING],
            available_delta_minor=deltas[Bucket.AVAILABLE],
            reserved_delta_minor=deltas[Bucket.RESERVED],
            kind=entry.kind,
            cause_event_id=str(entry.event_id),
            refund_id=str(entry.refund_id or ""),
            payout_id=str(entry.payout_id or ""),
        ),
    )


class WalletService:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record_sales(self, connection: AsyncConnection, sales: Sequence[Sale]) -> list[BalanceEntry]:
        """Credits each sale to its seller's pending balance, once per payment order, in `connection`'s
        transaction, and records one `wallet.balance.updated` per credited order in the outbox.

        A sale whose order was already credited (a replay, or the same order under another event id)
        changes nothing and emits nothing.
        """
        return await self._announce(connection, await db.credit_sales(connection, sales), len(sales), "sales")

    async def record_refunds(self, connection: AsyncConnection, refunds: Sequence[RefundDebit]) -> list[BalanceEntry]:
        """Debits each refund from its seller's available balance, once per refund, and records one
        `wallet.balance.updated` per debited refund in the outbox."""
        return await self._announce(connection, await db.debit_refunds(connection, refunds), len(refunds), "refunds")

    async def release_due(self, *, delay_s: int, limit: int, as_of: datetime | None = None) -> list[BalanceEntry]:
        """Moves sales held at least `delay_s` at `as_of` (default: now) from pending to available (one
        transaction, at most `limit` sales), with their `wallet.balance.updated` events. The background
        job passes the wall clock; an operator or a test passes another instant."""
        async with self._engine.begin() as connection:
            entries = await db.release_due(connection, delay_s=delay_s, limit=limit, as_of=as_of or datetime.now(UTC))
            return await self._announce(connection, entries, len(entries), "release entries")

    @staticmethod
    async def _announce(
        connection: AsyncConnection, entries: list[BalanceEntry], asked: int, what: str
    ) -> list[BalanceEntry]:
        """One `wallet.balance.updated` per entry written, in the outbox of the same transaction."""
        await outbox.append(connection, [balance_updated(entry) for entry in entries])
        if len(entries) < asked:
            log.info("wallet: %d of %d %s were already applied", asked - len(entries), asked, what)
        return entries

    async def get_balance(self, seller_id: str, currency: str, as_of: datetime | None = None) -> Balance:
        """The seller's balance in `currency` now, or as of an instant (the sum of the entries written
        until then); all zero for a seller without one."""
        validate_query(seller_id, currency)
        async with self._engine.connect() as connection:
            sums = await payouts_db.bucket_sums_as_of(connection, seller_id, currency, as_of)
            if as_of is not None:
                return Balance(
                    seller_id,
                    currency,
                    int(sums.pending_minor),
                    int(sums.available_minor),
                    int(sums.reserved_minor),
                    sums.updated_at,
                    int(sums.paid_minor),
                )
            balance = await db.fetch_balance(connection, seller_id, currency)
        return dataclasses.replace(
            balance or Balance.empty(seller_id, currency), payouts_paid_minor=int(sums.paid_minor)
        )

    async def list_entries(self, seller_id: str, *, page_size: int, page_token: str) -> tuple[list[BalanceEntry], str]:
        """One page of the seller's entries as of the listing's first page, oldest first, and the next
        page's token ("" on the last)."""
        validate_query(seller_id)
        size = snapshot_paging.page_size(page_size)
        cursor = snapshot_paging.decode_token(page_token, seller_id, "another seller") if page_token else None
        async with self._engine.connect() as connection:
            snapshot = cursor.snapshot if cursor else await db.current_snapshot(connection)
            entries = await db.fetch_entries(
                connection, seller_id, snapshot=snapshot, after_seq=cursor.after_seq if cursor else 0, limit=size + 1
            )
        if len(entries) <= size:
            return entries, ""
        page = entries[:size]
        next_page = snapshot_paging.SnapshotCursor(snapshot, page[-1].seq, seller_id)
        return page, snapshot_paging.encode_token(next_page)

    async def find_drift(self, seller_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Balances of `seller_ids` that differ from the sum of their entries (always empty)."""
        async with self._engine.connect() as connection:
            return await db.find_drift(connection, seller_ids)
