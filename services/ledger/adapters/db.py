"""The ledger's tables, set-based: one statement posts a whole batch of entries (reads: entries_db.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.money import Money
from services.ledger.domain import JournalEntry, PostedEntry, TrialBalance

# One round trip per batch: insert the entries (one already posted for the same cause event, or the
# same order, refund, payout step or reversed entry, inserts nothing: ON CONFLICT without a target
# covers every unique index), the postings of the entries actually inserted, and those postings summed
# per (account, currency) into the balances, in a fixed order, so the single hot `psp_receivable` row
# is updated once per batch and concurrent batches never deadlock. The database checks double entry
# at commit (constraint triggers).
_POST_ENTRIES = text("""
WITH new_entries AS (
    INSERT INTO journal_entries (entry_id, kind, payment_order_id, cause_event_id, refund_id, payout_id,
                                 reverses_entry_id, memo, psp_reference)
    SELECT entry_id, kind, payment_order_id, cause_event_id, refund_id, payout_id, reverses_entry_id, memo,
           psp_reference
    FROM unnest(CAST(:entry_ids AS uuid[]), CAST(:kinds AS text[]), CAST(:order_ids AS uuid[]),
                CAST(:cause_ids AS uuid[]), CAST(:refund_ids AS uuid[]), CAST(:payout_ids AS uuid[]),
                CAST(:reversed_ids AS uuid[]), CAST(:memos AS text[]), CAST(:psp_references AS text[]))
         AS e(entry_id, kind, payment_order_id, cause_event_id, refund_id, payout_id, reverses_entry_id, memo,
              psp_reference)
    -- One order for every batch (no two wait on each other in a cycle), and a payout's request before
    -- its outcome when both come in one batch, so that the journal and the events follow its steps.
    ORDER BY payment_order_id, payout_id, kind <> 'payout_requested', cause_event_id
    ON CONFLICT DO NOTHING
    RETURNING entry_id, seq, created_at
), new_postings AS (
    INSERT INTO postings (entry_id, position, account, currency, amount_minor)
    SELECT p.entry_id, p.position, p.account, p.currency, p.amount_minor
    FROM unnest(CAST(:posting_entry_ids AS uuid[]), CAST(:positions AS smallint[]),
                CAST(:accounts AS text[]), CAST(:currencies AS text[]), CAST(:amounts AS bigint[]))
         AS p(entry_id, position, account, currency, amount_minor)
    JOIN new_entries USING (entry_id)
    RETURNING account, currency, amount_minor
), new_balances AS (
    INSERT INTO account_balances AS b (account, currency, balance_minor)
    SELECT account, currency, sum(amount_minor) FROM new_postings
    GROUP BY account, currency ORDER BY account, currency
    ON CONFLICT (account, currency) DO UPDATE
        SET balance_minor = b.balance_minor + excluded.balance_minor, updated_at = now()
)
SELECT entry_id, seq, created_at FROM new_entries
""")


async def post_entries(connection: AsyncConnection, entries: Sequence[JournalEntry]) -> list[PostedEntry]:
    """Posts the entries not posted yet; returns those it posted, in journal order."""
    if not entries:
        return []
    postings = [
        (entry.entry_id, position, posting) for entry in entries for position, posting in enumerate(entry.postings)
    ]
    result = await connection.execute(
        _POST_ENTRIES,
        {
            "entry_ids": [entry.entry_id for entry in entries],
            "kinds": [entry.kind for entry in entries],
            "order_ids": [entry.payment_order_id for entry in entries],
            "cause_ids": [entry.cause_event_id for entry in entries],
            "refund_ids": [entry.refund_id for entry in entries],
            "payout_ids": [entry.payout_id for entry in entries],
            "reversed_ids": [entry.reverses_entry_id for entry in entries],
            "memos": [entry.memo for entry in entries],
            "psp_references": [entry.psp_reference for entry in entries],
            "posting_entry_ids": [entry_id for entry_id, _, _ in postings],
            "positions": [position for _, position, _ in postings],
            "accounts": [posting.account for _, _, posting in postings],
            "currencies": [posting.amount.currency for _, _, posting in postings],
            "amounts": [posting.amount.amount_minor for _, _, posting in postings],
        },
    )
    by_id = {entry.entry_id: entry for entry in entries}
    posted = [PostedEntry(row.seq, by_id[row.entry_id], row.created_at) for row in result]
    return sorted(posted, key=lambda entry: entry.seq)


async def fetch_account_balance(connection: AsyncConnection, account: str, currency: str) -> int:
    balance = await connection.scalar(
        text("SELECT balance_minor FROM account_balances WHERE account = :account AND currency = :currency"),
        {"account": account, "currency": currency},
    )
    return int(balance or 0)


async def current_snapshot(connection: AsyncConnection) -> str:
    return str(await connection.scalar(text("SELECT CAST(pg_current_snapshot() AS text)")))


async def trial_balance(connection: AsyncConnection) -> TrialBalance:
    """Run it in a REPEATABLE READ transaction, so balances and postings are read at one snapshot."""
    balances = await connection.execute(
        text("SELECT account, currency, balance_minor FROM account_balances ORDER BY account, currency")
    )
    totals = await connection.execute(
        text(
            "SELECT currency, CAST(sum(balance_minor) AS BIGINT) AS total FROM account_balances "
            "GROUP BY currency ORDER BY currency"
        )
    )
    mismatches = await connection.scalar(
        text("""
        SELECT count(*)
        FROM account_balances AS b
        FULL JOIN (SELECT account, currency, sum(amount_minor) AS total FROM postings GROUP BY account, currency)
            AS p USING (account, currency)
        WHERE coalesce(b.balance_minor, 0) <> coalesce(p.total, 0)
        """)
    )
    return TrialBalance(
        accounts=tuple((row.account, Money(row.balance_minor, row.currency)) for row in balances),
        totals=tuple(Money(row.total, row.currency) for row in totals),
        balances_match_postings=mismatches == 0,
    )
