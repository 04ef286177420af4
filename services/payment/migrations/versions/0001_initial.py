"""The payment service's first schema: the platform tables (outbox, processed events) and its own.

Revision ID: 0001
"""

from alembic import op

from services.common.migrations import PLATFORM_SCHEMA_SQL

revision = "0001"
down_revision = None

# Statuses are TEXT with CHECK constraints (not a PG enum) so adding one later is a plain constraint swap.
# `version` on payment_events is bumped whenever the payment or any of its orders changes: WatchPayment polls
# that single row instead of the orders.
SCHEMA_SQL = """
CREATE TABLE payment_events (
    id                   UUID        PRIMARY KEY,
    checkout_id          TEXT        NOT NULL UNIQUE CHECK (char_length(checkout_id) BETWEEN 1 AND 64),
    buyer_id             TEXT        NOT NULL CHECK (char_length(buyer_id) BETWEEN 1 AND 64),
    payment_method_token TEXT        NOT NULL CHECK (char_length(payment_method_token) BETWEEN 1 AND 255),
    currency             TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor          BIGINT      NOT NULL CHECK (total_minor > 0),
    request_hash         BYTEA       NOT NULL CHECK (octet_length(request_hash) = 32),
    done                 BOOLEAN     NOT NULL DEFAULT false,
    version              BIGINT      NOT NULL DEFAULT 1,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- ListPayments: keyset pagination newest first, with and without the buyer filter.
CREATE INDEX payment_events_newest ON payment_events (created_at DESC, id DESC);
CREATE INDEX payment_events_buyer_newest ON payment_events (buyer_id, created_at DESC, id DESC);

CREATE TABLE payment_orders (
    id              UUID        PRIMARY KEY,
    payment_id      UUID        NOT NULL REFERENCES payment_events (id),
    position        SMALLINT    NOT NULL CHECK (position >= 0),
    seller_id       TEXT        NOT NULL CHECK (char_length(seller_id) BETWEEN 1 AND 64),
    amount_minor    BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency        TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    line_items      JSONB       NOT NULL CHECK (jsonb_typeof(line_items) = 'array'),
    status          TEXT        NOT NULL DEFAULT 'NOT_STARTED' CHECK (status IN
                        ('NOT_STARTED', 'EXECUTING', 'SUCCEEDED', 'FAILED', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    wallet_updated  BOOLEAN     NOT NULL DEFAULT false,
    ledger_updated  BOOLEAN     NOT NULL DEFAULT false,
    psp_reference   TEXT,
    failure_code    TEXT,
    failure_message TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Also the index that loads a payment's orders.
    UNIQUE (payment_id, seller_id)
);

-- The last line of defence for the order state machine, whatever code issues the UPDATE: what was
-- charged never changes, a terminal status never goes back, and confirmations are never withdrawn.
CREATE FUNCTION payment_orders_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_id <> OLD.payment_id OR NEW.seller_id <> OLD.seller_id
       OR NEW.amount_minor <> OLD.amount_minor OR NEW.currency <> OLD.currency
       OR NEW.line_items <> OLD.line_items OR NEW.position <> OLD.position THEN
        RAISE EXCEPTION 'payment order %: seller, amount and line items are immutable', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
           (OLD.status = 'NOT_STARTED' AND NEW.status IN ('EXECUTING', 'SUCCEEDED', 'FAILED'))
        OR (OLD.status = 'EXECUTING' AND NEW.status IN ('SUCCEEDED', 'FAILED'))
        OR (OLD.status = 'SUCCEEDED' AND NEW.status IN ('PARTIALLY_REFUNDED', 'REFUNDED'))
        OR (OLD.status = 'PARTIALLY_REFUNDED' AND NEW.status = 'REFUNDED')) THEN
        RAISE EXCEPTION 'payment order %: status % cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (OLD.wallet_updated AND NOT NEW.wallet_updated) OR (OLD.ledger_updated AND NOT NEW.ledger_updated) THEN
        RAISE EXCEPTION 'payment order %: wallet/ledger confirmations cannot be withdrawn', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_orders_guard BEFORE UPDATE ON payment_orders
    FOR EACH ROW EXECUTE FUNCTION payment_orders_guard();

CREATE FUNCTION payment_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.checkout_id <> OLD.checkout_id OR NEW.buyer_id <> OLD.buyer_id OR NEW.currency <> OLD.currency
       OR NEW.total_minor <> OLD.total_minor OR NEW.request_hash <> OLD.request_hash
       OR NEW.payment_method_token <> OLD.payment_method_token OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'payment %: only done and version may change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.version <= OLD.version THEN
        RAISE EXCEPTION 'payment %: version must increase', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_events_guard BEFORE UPDATE ON payment_events FOR EACH ROW EXECUTE FUNCTION payment_events_guard();
"""


def upgrade() -> None:
    op.execute(PLATFORM_SCHEMA_SQL)
    if SCHEMA_SQL.strip():
        op.execute(SCHEMA_SQL)
