"""Refunds of payment orders.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA_SQL = """
CREATE TABLE refunds (
    id               UUID        PRIMARY KEY,
    payment_order_id UUID        NOT NULL REFERENCES payment_orders (id),
    -- The caller's key: one refund per key, whatever the order (a key names one request).
    idempotency_key  TEXT        NOT NULL UNIQUE CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     BYTEA       NOT NULL CHECK (octet_length(request_hash) = 32),
    amount_minor     BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency         TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason           TEXT        NOT NULL DEFAULT '' CHECK (char_length(reason) <= 500),
    status           TEXT        NOT NULL DEFAULT 'REQUESTED' CHECK (status IN ('REQUESTED', 'SUCCEEDED', 'FAILED')),
    psp_reference    TEXT        NOT NULL DEFAULT '',
    failure_code     TEXT        NOT NULL DEFAULT '',
    failure_message  TEXT        NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refunds_by_order ON refunds (payment_order_id);

-- What was asked never changes, and an outcome is final.
CREATE FUNCTION refunds_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_order_id <> OLD.payment_order_id OR NEW.amount_minor <> OLD.amount_minor
       OR NEW.currency <> OLD.currency OR NEW.idempotency_key <> OLD.idempotency_key
       OR NEW.request_hash <> OLD.request_hash THEN
        RAISE EXCEPTION 'refund %: order, amount and request are immutable', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status <> OLD.status AND OLD.status <> 'REQUESTED' THEN
        RAISE EXCEPTION 'refund %: status % is final', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refunds_guard BEFORE UPDATE ON refunds FOR EACH ROW EXECUTE FUNCTION refunds_guard();
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
