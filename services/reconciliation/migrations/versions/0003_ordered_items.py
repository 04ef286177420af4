"""Three-way matching: what the payment service (or the wallet) ordered, beside what was charged and booked.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("""
ALTER TABLE booked_items
    -- The amount the order asked for (signed like amount_minor), from payment.order.requested,
    -- payment.refund.requested or payout.requested; NULL until that event arrives.
    ADD COLUMN ordered_currency TEXT CHECK (ordered_currency ~ '^[A-Z]{3}$'),
    ADD COLUMN ordered_minor    BIGINT,
    DROP CONSTRAINT booked_items_status_check,
    -- 'ordered': requested, with neither an outcome from the executor nor an entry from the ledger yet.
    ADD CONSTRAINT booked_items_status_check CHECK (status IN ('ordered', 'outcome_only', 'booked', 'failed'))
""")


def downgrade() -> None:
    op.execute("""
DELETE FROM booked_items WHERE status = 'ordered';
ALTER TABLE booked_items
    DROP COLUMN ordered_currency,
    DROP COLUMN ordered_minor,
    DROP CONSTRAINT booked_items_status_check,
    ADD CONSTRAINT booked_items_status_check CHECK (status IN ('outcome_only', 'booked', 'failed'))
""")
