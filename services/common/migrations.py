"""Per-service Alembic migrations, applied by `settle up`, `settle migrate` and the tests.

Each service keeps its numbered steps in `services/<name>/migrations/versions/`; its `env.py` only
calls `run_migrations()`. The tables of the shared platform (outbox, processed events) are created by
each service's first step from `PLATFORM_SCHEMA_SQL`, since every service owns its own copy.
"""

from __future__ import annotations

from alembic import command, context
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from services.common.db import ensure_database, service_database_url

# Serialises concurrent migrators (several replicas starting at once) on one database.
_MIGRATION_LOCK_ID = 7_302_114

PLATFORM_SCHEMA_SQL = """
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    message_key  BYTEA       NOT NULL,
    payload      BYTEA       NOT NULL,
    headers      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE processed_events (
    event_id     UUID        PRIMARY KEY,
    topic        TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


def database_name(service: str) -> str:
    return f"settle_{service}"


def upgrade(service: str, server_url: str, database: str | None = None) -> None:
    """Creates the service's database (or another one with its schema) if needed and applies every
    pending migration."""
    database = database or database_name(service)
    ensure_database(server_url, database)
    config = Config()
    config.set_main_option("script_location", f"services.{service}:migrations")
    config.attributes["url"] = service_database_url(server_url, database)
    command.upgrade(config, "head")


def run_migrations() -> None:
    """The body of every service's Alembic env.py (online mode only)."""
    engine = create_engine(context.config.attributes["url"], poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()
