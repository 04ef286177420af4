"""Payouts: destinations, batches, payouts, and the balance entries that reserve, pay and return them.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"

SCHEMA_SQL = """
-- Where a seller's payouts go: a bank account at the PSP.
CREATE TABLE payout_destinations (
    seller_id   TEXT        PRIMARY KEY CHECK (length(seller_id) BETWEEN 1 AND 64),
    destination TEXT        NOT NULL CHECK (destination ~ '^ba_[A-Za-z0-9_]{1,200}$'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- An accepted batch file. Its content hash is unique: the same file under another id is a duplicate.
CREATE TABLE payout_batches (
    batch_id       TEXT        PRIMARY KEY CHECK (length(batch_id) BETWEEN 1 AND 64),
    content_sha256 TEXT        NOT NULL UNIQUE CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    item_count     INTEGER     NOT NULL CHECK (item_count > 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- REQUESTED (funds reserved) -> PAID | FAILED (funds returned). The payout id is the PSP idempotency key.
CREATE TABLE payouts (
    payout_id       UUID        PRIMARY KEY,
    seq             BIGSERIAL   NOT NULL UNIQUE,
    seller_id       TEXT        NOT NULL,
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor    BIGINT      NOT NULL CHECK (amount_minor > 0),
    destination     TEXT        NOT NULL CHECK (destination ~ '^ba_[A-Za-z0-9_]{1,200}$'),
    status          TEXT        NOT NULL DEFAULT 'REQUESTED' CHECK (status IN ('REQUESTED', 'PAID', 'FAILED')),
    origin          TEXT        NOT NULL CHECK (origin IN ('MANUAL', 'SCHEDULED', 'BATCH')),
    idempotency_key TEXT        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    TEXT        NOT NULL,
    batch_id        TEXT        REFERENCES payout_batches,
    batch_line      INTEGER,
    metadata        JSONB       NOT NULL DEFAULT '{}',
    psp_reference   TEXT        NOT NULL DEFAULT '',
    failure_code    TEXT        NOT NULL DEFAULT '',
    failure_message TEXT        NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A caller's key names one payout of that seller, whatever it is retried as.
    CONSTRAINT payouts_key_unique UNIQUE (seller_id, idempotency_key),
    CONSTRAINT payouts_batch_shape CHECK ((origin = 'BATCH') = (batch_id IS NOT NULL AND batch_line IS NOT NULL)),
    CONSTRAINT payouts_paid_has_reference CHECK (status <> 'PAID' OR psp_reference <> ''),
    CONSTRAINT payouts_failed_has_code CHECK (status <> 'FAILED' OR failure_code <> '')
);
CREATE INDEX payouts_by_seller ON payouts (seller_id, seq);
CREATE INDEX payouts_by_batch ON payouts (batch_id, batch_line) WHERE batch_id IS NOT NULL;

-- A payout moves money between buckets: reserved (available -x, reserved +x), paid (reserved -x),
-- returned after a failure (reserved -x, available +x). Each step once per payout and bucket.
ALTER TABLE balance_entries ADD COLUMN payout_id UUID;
ALTER TABLE balance_entries ADD CONSTRAINT balance_entries_payout_shape CHECK (
    kind NOT IN ('payout_reserved', 'payout_paid', 'payout_returned') OR (payout_id IS NOT NULL AND (
        (kind = 'payout_reserved' AND ((bucket = 'available' AND amount_minor < 0)
                                       OR (bucket = 'reserved' AND amount_minor > 0)))
        OR (kind = 'payout_paid' AND bucket = 'reserved' AND amount_minor < 0)
        OR (kind = 'payout_returned' AND ((bucket = 'reserved' AND amount_minor < 0)
                                          OR (bucket = 'available' AND amount_minor > 0)))))
);
CREATE UNIQUE INDEX balance_entries_one_step_per_payout
    ON balance_entries (payout_id, kind, bucket) WHERE payout_id IS NOT NULL;
-- Point-in-time balances and paid totals read a seller's entries by time.
CREATE INDEX balance_entries_by_seller_time ON balance_entries (seller_id, currency, created_at);
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
