"""Recovery of UNKNOWN executions: how many times recovery has queued an execution again.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(
        """
        -- Bounds automatic recovery: past the limit an UNKNOWN execution waits for an operator.
        ALTER TABLE executions ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0 CHECK (recoveries >= 0);
        -- The recovery sweep: UNKNOWN executions, longest unchanged first.
        CREATE INDEX executions_unknown ON executions (updated_at) WHERE status = 'UNKNOWN';
        """
    )
