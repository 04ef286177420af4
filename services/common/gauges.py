"""Gauges sampled from the database by one small loop per service (outbox backlog, executions by state,
open mismatches), rather than on every scrape: a scrape then costs no query, and a slow database slows
only this loop, never `/metrics`.

Each query runs in its own read transaction under a short statement timeout; a failure is logged and
counted (settle_gauge_query_failures_total) and the gauge keeps its last value until the next success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# Reads the database and sets gauges; called inside a read transaction.
GaugeQuery = Callable[[AsyncConnection], Awaitable[None]]

DEFAULT_INTERVAL_S = 5.0
_TICK_S = 1.0
_STATEMENT_TIMEOUT_MS = 2_000


@dataclass
class _Registered:
    name: str
    sample: GaugeQuery
    interval_s: float
    next_due: float = 0.0


class GaugeSampler:
    def __init__(self, engine: AsyncEngine, metrics: ServiceMetrics) -> None:
        self._engine = engine
        self._metrics = metrics
        self._queries: list[_Registered] = []
        self._stopping = asyncio.Event()

    def add(self, name: str, sample: GaugeQuery, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._queries.append(_Registered(name, sample, interval_s))

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.sample_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=_TICK_S)

    async def sample_due(self) -> None:
        """Runs every query whose interval has passed (all of them the first time)."""
        now = asyncio.get_running_loop().time()
        for query in self._queries:
            if now < query.next_due:
                continue
            query.next_due = now + query.interval_s
            await self._sample(query)

    async def _sample(self, query: _Registered) -> None:
        try:
            async with asyncio.timeout(_STATEMENT_TIMEOUT_MS / 1000 * 2):
                async with self._engine.connect() as connection:
                    await connection.execute(text(f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}"))
                    await query.sample(connection)
                    await connection.rollback()  # read only: nothing to keep
        except Exception as error:
            # A down database is reported by health; here it only means the gauges are not refreshed.
            self._metrics.gauge_query_failures.labels(self._metrics.service, query.name).inc()
            log.warning("gauge query %s failed: %s", query.name, error)
