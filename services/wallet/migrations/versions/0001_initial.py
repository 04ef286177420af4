"""The wallet service's first schema: the platform tables (outbox, processed events) and its own.

Revision ID: 0001
"""

from alembic import op

from services.common.migrations import PLATFORM_SCHEMA_SQL

revision = "0001"
down_revision = None

SCHEMA_SQL = """
-- One row per (seller, currency). Changed only by single atomic statements (x = x + delta) that also
-- write the balance entries explaining the change, in the same transaction.
CREATE TABLE balances (
    seller_id       TEXT        NOT NULL CHECK (length(seller_id) BETWEEN 1 AND 64),
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    pending_minor   BIGINT      NOT NULL DEFAULT 0,
    -- Negative when refunds exceed what the seller has: a debt, visible and never hidden.
    available_minor BIGINT      NOT NULL DEFAULT 0,
    reserved_minor  BIGINT      NOT NULL DEFAULT 0 CHECK (reserved_minor >= 0),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, currency)
);

-- The audit trail: every change of every bucket, immutable. Each bucket of `balances` equals the sum
-- of its entries. A move between buckets (release, payout reservation) is two entries of one cause.
CREATE TABLE balance_entries (
    entry_id         UUID        PRIMARY KEY,
    -- Order for paging: keyset on seq, filtered by the snapshot pinned in the page token (txid).
    seq              BIGSERIAL   NOT NULL UNIQUE,
    seller_id        TEXT        NOT NULL,
    currency         TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    bucket           TEXT        NOT NULL CHECK (bucket IN ('pending', 'available', 'reserved')),
    amount_minor     BIGINT      NOT NULL CHECK (amount_minor <> 0),
    kind             TEXT        NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,31}$'),
    payment_order_id UUID,
    -- The event (or scheduled job run) that caused the entry.
    event_id         UUID        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The writing transaction: entries commit out of seq order, so a listing pins a snapshot.
    txid             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- One event changes one bucket at most once: a replayed event writes nothing.
    CONSTRAINT balance_entries_event_bucket_unique UNIQUE (event_id, bucket),
    CONSTRAINT balance_entries_sale_shape CHECK (
        kind <> 'sale' OR (bucket = 'pending' AND amount_minor > 0 AND payment_order_id IS NOT NULL)
    )
);
-- One order is credited once, even when it arrives again under a different event id. (Kinds that
-- may repeat per order, such as partial refunds, are keyed by their own id instead.)
CREATE UNIQUE INDEX balance_entries_one_sale_per_order
    ON balance_entries (kind, payment_order_id) WHERE kind = 'sale';
CREATE INDEX balance_entries_by_seller ON balance_entries (seller_id, seq);

CREATE FUNCTION wallet_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed; write a compensating entry instead',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER balance_entries_immutable BEFORE UPDATE OR DELETE ON balance_entries
    FOR EACH ROW EXECUTE FUNCTION wallet_reject_change();
CREATE TRIGGER balance_entries_no_truncate BEFORE TRUNCATE ON balance_entries
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_reject_change();
"""


def upgrade() -> None:
    op.execute(PLATFORM_SCHEMA_SQL)
    if SCHEMA_SQL.strip():
        op.execute(SCHEMA_SQL)
