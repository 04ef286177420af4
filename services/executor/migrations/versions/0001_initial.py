"""The executor service's first schema: the platform tables (outbox, processed events) and its own.

Revision ID: 0001
"""

from alembic import op

from services.common.migrations import PLATFORM_SCHEMA_SQL

revision = "0001"
down_revision = None

SCHEMA_SQL = """
-- One row per payment order: the executor's record of charging it through the PSP. The payment order
-- id is the primary key and the PSP idempotency key, so an order can only ever have one execution.
CREATE TABLE executions (
    payment_order_id     UUID        PRIMARY KEY,
    payment_id           TEXT        NOT NULL,
    seller_id            TEXT        NOT NULL,
    buyer_id             TEXT        NOT NULL,
    amount_minor         BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency             TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method_token TEXT        NOT NULL CHECK (payment_method_token <> ''),
    -- The trace of the request, continued by the PSP call so one trace spans request to outcome.
    traceparent          TEXT        NOT NULL DEFAULT '',
    status               TEXT        NOT NULL DEFAULT 'NOT_STARTED'
        CHECK (status IN ('NOT_STARTED', 'EXECUTING', 'SUCCEEDED', 'FAILED', 'UNKNOWN')),
    -- PSP calls made over the execution's life, and those counted against the current retry budget
    -- (an operator's RetryExecution grants a fresh budget without rewriting history).
    attempts             INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    budgeted_attempts    INTEGER     NOT NULL DEFAULT 0 CHECK (budgeted_attempts BETWEEN 0 AND attempts),
    psp_reference        TEXT        NOT NULL DEFAULT '',
    failure_code         TEXT        NOT NULL DEFAULT '',
    failure_message      TEXT        NOT NULL DEFAULT '',
    claimed_by           TEXT,
    claimed_at           TIMESTAMPTZ,
    next_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Exactly the EXECUTING rows hold a claim: a claim can neither leak nor be missing.
    CONSTRAINT executions_claim_iff_executing
        CHECK ((status = 'EXECUTING') = (claimed_by IS NOT NULL AND claimed_at IS NOT NULL)),
    CONSTRAINT executions_succeeded_has_reference
        CHECK (status <> 'SUCCEEDED' OR psp_reference <> ''),
    CONSTRAINT executions_failed_has_code
        CHECK (status <> 'FAILED' OR failure_code <> '')
);

-- The worker's claim query: due executions, longest overdue first.
CREATE INDEX executions_due ON executions (next_attempt_at) WHERE status = 'NOT_STARTED';
-- The stale-claim sweep.
CREATE INDEX executions_claimed ON executions (claimed_at) WHERE status = 'EXECUTING';
-- ListStuck.
CREATE INDEX executions_stuck ON executions (updated_at) WHERE status IN ('EXECUTING', 'UNKNOWN');
"""


def upgrade() -> None:
    op.execute(PLATFORM_SCHEMA_SQL)
    if SCHEMA_SQL.strip():
        op.execute(SCHEMA_SQL)
