"""Refund debits: a succeeded refund is taken from the seller's available balance, once per refund.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA_SQL = """
ALTER TABLE balance_entries ADD COLUMN refund_id UUID;
-- From `available`, even while the sale is still pending: the seller owes it now, and a debt there
-- holds payouts until later sales cover it (the bucket may go negative).
ALTER TABLE balance_entries ADD CONSTRAINT balance_entries_refund_shape CHECK (
    kind <> 'refund' OR (bucket = 'available' AND amount_minor < 0 AND refund_id IS NOT NULL
                         AND payment_order_id IS NOT NULL)
);
-- One debit per refund, even when its event arrives again under a different event id.
CREATE UNIQUE INDEX balance_entries_one_debit_per_refund ON balance_entries (refund_id) WHERE kind = 'refund';
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
