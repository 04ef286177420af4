"""Releases: a sale moves from pending to available once its hold period has passed, once per order.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA_SQL = """
-- A release is two entries of one cause (pending -x, available +x); each order is released once.
CREATE UNIQUE INDEX balance_entries_one_release_per_order
    ON balance_entries (payment_order_id, bucket) WHERE kind = 'release';
ALTER TABLE balance_entries ADD CONSTRAINT balance_entries_release_shape CHECK (
    kind <> 'release' OR (payment_order_id IS NOT NULL AND (
        (bucket = 'pending' AND amount_minor < 0) OR (bucket = 'available' AND amount_minor > 0)))
);
-- The release job's scan: sales by age.
CREATE INDEX balance_entries_sales_by_age ON balance_entries (created_at) WHERE kind = 'sale';
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
