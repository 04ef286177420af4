"""Refund entries: one reversal per refund, whatever event carries it.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA_SQL = """
ALTER TABLE journal_entries ADD COLUMN refund_id UUID;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_refund_has_id
    CHECK (kind <> 'refund_succeeded' OR (refund_id IS NOT NULL AND payment_order_id IS NOT NULL));
-- An order may be refunded in several parts, so a refund is unique by its own id, not by its order.
CREATE UNIQUE INDEX journal_entries_once_per_refund ON journal_entries (refund_id) WHERE kind = 'refund_succeeded';
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
