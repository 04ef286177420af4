"""One async SQLAlchemy engine (psycopg 3) per service database."""

from __future__ import annotations

import psycopg
from psycopg import sql
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def service_database_url(server_url: str, database: str) -> URL:
    """The SQLAlchemy URL of `database` on the server that `server_url` points at."""
    return make_url(server_url).set(drivername="postgresql+psycopg", database=database)


def libpq_url(url: URL) -> str:
    """`url` as a plain libpq connection string (for psycopg and pgbench)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_database(server_url: str, database: str) -> None:
    """Creates `database` if it does not exist yet (CREATE DATABASE cannot run in a transaction)."""
    admin_url = libpq_url(service_database_url(server_url, "postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def create_engine(url: URL, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per transaction. After a database restart the first use of
        # a stale connection fails and the connection is discarded; consumers retry such errors.
        pool_recycle=1800,
        # Statement timeouts bound every query: a stuck lock must surface as an error, not a hang.
        connect_args={"options": "-c statement_timeout=30000 -c lock_timeout=10000"},
    )
