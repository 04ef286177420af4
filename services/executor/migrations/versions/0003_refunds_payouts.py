"""Executions of refunds and payouts: the same state machine as charges, keyed by refund id and payout id.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"

# The state columns and their rules, exactly as on `executions` (0001, 0002).
_STATE = """
    traceparent          TEXT        NOT NULL DEFAULT '',
    status               TEXT        NOT NULL DEFAULT 'NOT_STARTED'
        CHECK (status IN ('NOT_STARTED', 'EXECUTING', 'SUCCEEDED', 'FAILED', 'UNKNOWN')),
    attempts             INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    budgeted_attempts    INTEGER     NOT NULL DEFAULT 0 CHECK (budgeted_attempts BETWEEN 0 AND attempts),
    recoveries           INTEGER     NOT NULL DEFAULT 0 CHECK (recoveries >= 0),
    psp_reference        TEXT        NOT NULL DEFAULT '',
    failure_code         TEXT        NOT NULL DEFAULT '',
    failure_message      TEXT        NOT NULL DEFAULT '',
    claimed_by           TEXT,
    claimed_at           TIMESTAMPTZ,
    next_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'EXECUTING') = (claimed_by IS NOT NULL AND claimed_at IS NOT NULL)),
    CHECK (status <> 'SUCCEEDED' OR psp_reference <> ''),
    CHECK (status <> 'FAILED' OR failure_code <> '')
"""


def _indexes(table: str) -> str:
    return f"""
    CREATE INDEX {table}_due ON {table} (next_attempt_at) WHERE status = 'NOT_STARTED';
    CREATE INDEX {table}_claimed ON {table} (claimed_at) WHERE status = 'EXECUTING';
    CREATE INDEX {table}_stuck ON {table} (updated_at) WHERE status IN ('EXECUTING', 'UNKNOWN');
    CREATE INDEX {table}_unknown ON {table} (updated_at) WHERE status = 'UNKNOWN';
    """


def upgrade() -> None:
    op.execute(
        f"""
        -- One row per refund; the refund id is the PSP idempotency key of the refund.
        CREATE TABLE refund_executions (
            refund_id            UUID        PRIMARY KEY,
            payment_order_id     TEXT        NOT NULL,
            payment_id           TEXT        NOT NULL,
            seller_id            TEXT        NOT NULL,
            amount_minor         BIGINT      NOT NULL CHECK (amount_minor > 0),
            currency             TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            charge_psp_reference TEXT        NOT NULL CHECK (charge_psp_reference <> ''),
            reason               TEXT        NOT NULL DEFAULT '',
            {_STATE}
        );
        {_indexes("refund_executions")}
        -- One row per payout; the payout id is the PSP idempotency key of the payout.
        CREATE TABLE payout_executions (
            payout_id            UUID        PRIMARY KEY,
            seller_id            TEXT        NOT NULL,
            amount_minor         BIGINT      NOT NULL CHECK (amount_minor > 0),
            currency             TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            destination          TEXT        NOT NULL CHECK (destination <> ''),
            batch_id             TEXT        NOT NULL DEFAULT '',
            {_STATE}
        );
        {_indexes("payout_executions")}
        """
    )
