"""The ledger service's first schema: the platform tables (outbox, processed events) and its own.

Revision ID: 0001
"""

from alembic import op

from services.common.migrations import PLATFORM_SCHEMA_SQL

revision = "0001"
down_revision = None

SCHEMA_SQL = """
-- One row per journal entry. Immutable: a correction is a reversing entry.
CREATE TABLE journal_entries (
    entry_id         UUID        PRIMARY KEY,
    -- Posting order, for paging (keyset on seq, filtered by the snapshot pinned in the page token).
    seq              BIGSERIAL   NOT NULL UNIQUE,
    kind             TEXT        NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,63}$'),
    payment_order_id UUID,
    -- The event that caused the entry: a replayed event posts nothing.
    cause_event_id   UUID        NOT NULL UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The writing transaction, so a listing can skip entries its snapshot does not see.
    txid             xid8        NOT NULL DEFAULT pg_current_xact_id()
);
-- Kinds that happen once per payment order are unique per order, whatever event carries them.
-- (Kinds that may repeat per order, such as partial refunds, are keyed by their own cause instead.)
CREATE UNIQUE INDEX journal_entries_once_per_order
    ON journal_entries (kind, payment_order_id) WHERE kind = 'payment_order_succeeded';
CREATE INDEX journal_entries_by_order ON journal_entries (payment_order_id, seq)
    WHERE payment_order_id IS NOT NULL;

-- The sides of an entry: signed amounts, positive = debit, negative = credit, never zero.
CREATE TABLE postings (
    entry_id     UUID     NOT NULL REFERENCES journal_entries (entry_id),
    position     SMALLINT NOT NULL CHECK (position >= 0),
    -- The chart of accounts (services/ledger/domain.py).
    account      TEXT     NOT NULL CHECK (account ~ '^(psp_receivable|bank_cash|platform_revenue|psp_fees|refunds_clearing|seller_payable:[^\\x01-\\x1f]{1,64})$'),
    currency     TEXT     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor BIGINT   NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (entry_id, position)
);

-- Balances for O(1) reads, maintained in the transaction that writes the postings. Debits - credits.
CREATE TABLE account_balances (
    account       TEXT        NOT NULL,
    currency      TEXT        NOT NULL,
    balance_minor BIGINT      NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account, currency)
);

-- Double entry, enforced by the database at commit (constraint triggers, deferred so that an entry and
-- its postings can be written by separate statements of one transaction):
-- * postings_balanced, on postings: a posting may only be written by the transaction that creates its
--   entry, so an entry's postings are final once it commits (no leg added to an old entry);
-- * journal_entries_balanced, on journal_entries: at commit, every entry created by the transaction
--   has at least two postings and they sum to zero per currency (an entry with no posting at all is
--   caught here, as it fires no posting trigger).
-- Together: every committed entry has >= 2 postings summing to zero per currency. The full check runs
-- once per entry, not once per posting, as it is the same check and the hot path posts batches.
CREATE FUNCTION ledger_check_posting_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM journal_entries
                   WHERE entry_id = NEW.entry_id AND txid = pg_current_xact_id()) THEN
        RAISE EXCEPTION 'journal entry % is immutable: postings can only be written with their entry',
            NEW.entry_id USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_owner();

CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    posting_count bigint;
    unbalanced    text;
BEGIN
    SELECT coalesce(sum(n), 0), string_agg(total || ' ' || currency, ', ') FILTER (WHERE total <> 0)
      INTO posting_count, unbalanced
      FROM (SELECT currency, count(*) AS n, sum(amount_minor) AS total
              FROM postings WHERE entry_id = NEW.entry_id GROUP BY currency) AS per_currency;
    IF posting_count < 2 THEN
        RAISE EXCEPTION 'journal entry % has % posting(s); at least 2 are required',
            NEW.entry_id, posting_count USING ERRCODE = 'check_violation';
    END IF;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % does not balance: its postings sum to % (must be zero per currency)',
            NEW.entry_id, unbalanced USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced();

CREATE FUNCTION ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed; post a reversing entry instead',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
"""


def upgrade() -> None:
    op.execute(PLATFORM_SCHEMA_SQL)
    if SCHEMA_SQL.strip():
        op.execute(SCHEMA_SQL)
