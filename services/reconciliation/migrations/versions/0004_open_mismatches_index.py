"""Open mismatches by kind, read every 30 s by the open-mismatches gauge and by `settle status`.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    # Partial: resolved mismatches pile up run after run, open ones stay few.
    op.execute("CREATE INDEX mismatches_open ON mismatches (kind) WHERE resolved_at IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX mismatches_open")
