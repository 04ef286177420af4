"""Session-wide real infrastructure for every test: PostgreSQL and a Kafka-protocol broker.

The mode follows INFRA.md: external when SETTLE_DATABASE_URL / SETTLE_KAFKA_BOOTSTRAP_SERVERS are set,
containers when SETTLE_INFRA=containers, embedded otherwise. If it cannot start, the run fails loudly:
integration tests are never skipped.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, service_database_url
from services.common.infra import Infrastructure, choose_mode, start_infrastructure
from services.common.migrations import database_name, upgrade

pytest_plugins = ["tests.fixtures"]


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    with tempfile.TemporaryDirectory(prefix="settle-test-") as data_dir:
        infrastructure = start_infrastructure(choose_mode(), Path(data_dir))
        try:
            yield infrastructure
        finally:
            infrastructure.close()


@pytest.fixture(scope="session")
def migrated(infra: Infrastructure) -> Infrastructure:
    """Every service's database, created and migrated once per session."""
    for service in ("payment", "executor", "wallet", "ledger"):
        upgrade(service, infra.database_url)
    return infra


@pytest_asyncio.fixture(scope="session")
async def engines(migrated: Infrastructure) -> AsyncIterator[dict[str, AsyncEngine]]:
    engines = {
        service: create_engine(service_database_url(migrated.database_url, database_name(service)))
        for service in ("payment", "executor", "wallet", "ledger")
    }
    yield engines
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests sharing the session's databases and topics never collide."""
    return uuid.uuid4().hex[:10]
