"""The wallet service's first schema: the platform tables (outbox, processed events) and its own.

Revision ID: 0001
"""

from alembic import op

from services.common.migrations import PLATFORM_SCHEMA_SQL

revision = "0001"
down_revision = None

SCHEMA_SQL = """
"""


def upgrade() -> None:
    op.execute(PLATFORM_SCHEMA_SQL)
    if SCHEMA_SQL.strip():
        op.execute(SCHEMA_SQL)
