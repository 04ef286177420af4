"""Payout entries, PSP fees and reversals: the `payouts_in_transit:<seller>` accounts, each payout step
once per payout, and an entry reversed at most once.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA_SQL = """
-- The chart of accounts (services/ledger/accounts.py) gains payouts_in_transit:<seller>. account_balances
-- has no CHECK of its own: its rows only ever come from postings.
ALTER TABLE postings DROP CONSTRAINT postings_account_check;
ALTER TABLE postings ADD CONSTRAINT postings_account_check
    CHECK (account ~ '^(psp_receivable|bank_cash|platform_revenue|psp_fees|refunds_clearing|(seller_payable|payouts_in_transit):[^\\x01-\\x1f]{1,64})$');

ALTER TABLE journal_entries
    ADD COLUMN payout_id         UUID,
    -- A reversal: the entry it negates (entries are never changed; a correction is a new entry).
    ADD COLUMN reverses_entry_id UUID REFERENCES journal_entries (entry_id),
    -- For a fee, what it is for; for a reversal, why. Empty for entries booked from events.
    ADD COLUMN memo              TEXT NOT NULL DEFAULT '' CHECK (char_length(memo) <= 500),
    -- The PSP's reference: of what a fee is for, or of a paid or failed payout. Empty otherwise.
    ADD COLUMN psp_reference     TEXT NOT NULL DEFAULT '';
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_payout_has_id
    CHECK (kind NOT IN ('payout_requested', 'payout_paid', 'payout_failed') OR payout_id IS NOT NULL);
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_fee_has_reference
    CHECK (kind <> 'psp_fee' OR char_length(psp_reference) BETWEEN 1 AND 255);
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_reversal_has_entry_and_reason
    CHECK ((kind = 'reversal') = (reverses_entry_id IS NOT NULL) AND (kind <> 'reversal' OR memo <> ''));
-- Each step of a payout is booked once, whatever event id it arrives under. Only the payout kinds: a
-- reversal keeps the payout id of the entry it reverses, and a payout's entries may each be reversed.
CREATE UNIQUE INDEX journal_entries_once_per_payout_step ON journal_entries (payout_id, kind)
    WHERE kind IN ('payout_requested', 'payout_paid', 'payout_failed');
-- An entry is reversed at most once (also what a repeated ReverseEntry finds its reversal by).
CREATE UNIQUE INDEX journal_entries_once_per_reversed_entry ON journal_entries (reverses_entry_id)
    WHERE reverses_entry_id IS NOT NULL;
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
