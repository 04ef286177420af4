"""One hot seller under many concurrent credits, refunds, releases and payouts: no lost update, no
deadlock, and every balance equal to its entries (the driver is bench/hot_seller.py's, which measures)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.hot_seller import HotSeller
from services.common.db import create_engine, service_database_url
from services.common.infra import Infrastructure
from services.common.migrations import upgrade

# A database of its own: the driver's release job releases every sale in the database.
DATABASE = "settle_wallet_hot_seller"
WORKERS = 12


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    upgrade("wallet", infra.database_url, database=DATABASE)
    created = create_engine(service_database_url(infra.database_url, DATABASE), pool_size=WORKERS)
    yield created
    await created.dispose()


async def test_a_hot_seller_loses_no_update_and_never_deadlocks(engine: AsyncEngine, unique: str) -> None:
    hot = HotSeller(engine, f"hot-{unique}", [f"other-{unique}-{i}" for i in range(4)])
    await hot.setup()

    await hot.run(workers=WORKERS, operations=60)

    assert hot.tally.deadlocks == 0
    assert hot.tally.operations == WORKERS * 60
    assert hot.tally.paid_minor > 0 and hot.tally.refunds_minor > 0  # every kind of change happened
    assert await hot.money_adds_up()
