"""Settlement files and their lines, what Settle booked (from its events), runs and mismatches.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA_SQL = """
-- A file is registered by the SHA-256 of its bytes: importing the same file again changes nothing.
CREATE TABLE settlement_files (
    file_id           TEXT        PRIMARY KEY CHECK (file_id ~ '^[0-9a-f]{64}$'),
    format            TEXT        NOT NULL CHECK (format IN ('sandbox', 'stripe', 'adyen', 'camt053')),
    file_name         TEXT        NOT NULL,
    lines_read        INTEGER     NOT NULL CHECK (lines_read >= 0),
    lines_imported    INTEGER     NOT NULL CHECK (lines_imported >= 0),
    lines_quarantined INTEGER     NOT NULL CHECK (lines_quarantined >= 0),
    imported_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per line understood; amounts signed in minor units as the PSP's balance (or the bank
-- account) saw them: > 0 in, < 0 out.
CREATE TABLE settlement_lines (
    file_id            TEXT        NOT NULL REFERENCES settlement_files,
    line               INTEGER     NOT NULL,
    kind               TEXT        NOT NULL,
    raw_type           TEXT        NOT NULL,
    psp_reference      TEXT        NOT NULL,
    merchant_reference TEXT        NOT NULL,
    currency           TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    gross_minor        BIGINT      NOT NULL,
    fee_minor          BIGINT      NOT NULL,
    net_minor          BIGINT      NOT NULL,
    occurred_at        TIMESTAMPTZ,
    batch              TEXT        NOT NULL DEFAULT '',
    status             TEXT        NOT NULL DEFAULT '',
    details            JSONB       NOT NULL DEFAULT '{}',
    PRIMARY KEY (file_id, line)
);
-- Whole (not partial) indexes: a join on equality cannot prove a partial index's predicate, and
-- matching probes these once per line or booked item.
CREATE INDEX settlement_lines_psp_reference ON settlement_lines (psp_reference, kind);
CREATE INDEX settlement_lines_merchant_reference ON settlement_lines (merchant_reference);

-- Lines a parser could not read: kept with their reason, never dropped.
CREATE TABLE quarantined_lines (
    file_id TEXT    NOT NULL REFERENCES settlement_files,
    line    INTEGER NOT NULL,
    reason  TEXT    NOT NULL,
    raw     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (file_id, line)
);

-- Totals a file states or implies (a statement, a batch, a payout) and what its lines add up to.
CREATE TABLE balance_checks (
    file_id         TEXT   NOT NULL REFERENCES settlement_files,
    scope           TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    expected_minor  BIGINT NOT NULL,
    actual_minor    BIGINT NOT NULL,
    PRIMARY KEY (file_id, scope, currency)
);

-- What Settle booked, one row per charge, refund or payout, assembled from the ledger's entries and the
-- executor's outcomes (whichever arrives first creates the row). Amounts are signed like settlement
-- lines: a charge +, a refund or payout -.
CREATE TABLE booked_items (
    item_id         UUID        PRIMARY KEY,  -- payment order, refund or payout id
    kind            TEXT        NOT NULL CHECK (kind IN ('charge', 'refund', 'payout')),
    psp_reference   TEXT        NOT NULL DEFAULT '',
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor    BIGINT      NOT NULL,
    -- 'booked' once the ledger posted it; 'failed' when the PSP declined / refused it (never booked).
    status          TEXT        NOT NULL CHECK (status IN ('outcome_only', 'booked', 'failed')),
    ledger_entry_id UUID,
    occurred_at     TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX booked_items_psp_reference ON booked_items (psp_reference);
CREATE INDEX booked_items_by_time ON booked_items (occurred_at);

CREATE TABLE runs (
    run_id       UUID        PRIMARY KEY,
    scope        TEXT        NOT NULL,  -- 'date:YYYY-MM-DD' or 'file:<sha256>'
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    summary      JSONB       NOT NULL DEFAULT '{}'
);

CREATE TABLE mismatches (
    mismatch_id     UUID        PRIMARY KEY,
    run_id          UUID        NOT NULL REFERENCES runs,
    kind            TEXT        NOT NULL,
    severity        TEXT        NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'info')),
    suggested_action TEXT       NOT NULL,
    file_id         TEXT,
    line            INTEGER,
    item_id         UUID,
    currency        TEXT        NOT NULL DEFAULT '',
    amount_minor    BIGINT      NOT NULL DEFAULT 0,
    expected_minor  BIGINT,
    description     TEXT        NOT NULL,
    resolved_at     TIMESTAMPTZ,
    resolved_by     TEXT,
    resolution      TEXT,
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL) AND (resolved_at IS NULL) = (resolution IS NULL))
);
CREATE INDEX mismatches_by_run ON mismatches (run_id, kind, mismatch_id);
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
