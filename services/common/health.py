"""Health that reflects the dependencies: a process reports SERVING only while it is started, not shutting
down, and its database and broker answered the last check.

A load balancer or orchestrator then routes around a replica that cannot reach PostgreSQL or Kafka
instead of sending it requests that would fail. Each check is bounded by a short timeout, so a
black-holed dependency reads as down within seconds rather than hanging the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from grpc_health.v1 import health
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.grpc_server import mark_serving
from services.common.metrics import ServiceMetrics

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 3.0
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Probe:
    """One dependency and how to reach it: `check` raises (or times out) when it cannot."""

    dependency: str
    check: Callable[[], Awaitable[object]]


def database_probe(engine: AsyncEngine) -> Probe:
    async def select_one() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return Probe("postgres", select_one)


def broker_probe(producer: AIOKafkaProducer) -> Probe:
    # A metadata request answered by any broker: the same path every produce depends on.
    return Probe("kafka", producer.client.fetch_all_metadata)


class ServingStatus:
    """What the health service reports for "" and every service name, decided in one place.

    Each change is published under a lock and computed inside it from the latest flags, so a check that
    finishes while shutdown begins can never publish SERVING after shutdown published NOT_SERVING.
    """

    def __init__(
        self, servicer: health.aio.HealthServicer, service_names: Sequence[str], *, dependencies_up: bool
    ) -> None:
        self._servicer = servicer
        self._names = list(service_names)
        self._lock = asyncio.Lock()
        self._started = False
        self._stopping = False
        # False when a monitor will check them: SERVING waits for its first verdict (milliseconds).
        self._dependencies_up = dependencies_up
        self._published: bool | None = None

    @property
    def is_serving(self) -> bool:
        """What was last published: the readiness an HTTP probe sees (Kubernetes probes cannot speak TLS)."""
        return bool(self._published)

    async def started(self) -> None:
        self._started = True
        await self._publish()

    async def stopping(self) -> None:
        self._stopping = True
        await self._publish()
        # And the servicer itself ignores any later change: NOT_SERVING until the process ends.
        await self._servicer.enter_graceful_shutdown()

    async def dependencies_checked(self, up: bool) -> None:
        self._dependencies_up = up
        await self._publish()

    async def _publish(self) -> None:
        async with self._lock:
            serving = self._started and not self._stopping and self._dependencies_up
            if serving != self._published:
                await mark_serving(self._servicer, self._names, serving=serving)
                self._published = serving


class DependencyMonitor:
    """Checks every probe every `interval_s`; sets settle_dependency_up and reports the verdict."""

    def __init__(
        self,
        probes: Sequence[Probe],
        metrics: ServiceMetrics,
        *,
        interval_s: float = CHECK_INTERVAL_S,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._probes = list(probes)
        self._metrics = metrics
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._last: dict[str, bool] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, report: Callable[[bool], Awaitable[None]]) -> None:
        while not self._stopping.is_set():
            await report(await self.check())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_s)

    async def check(self) -> bool:
        """Runs the probes concurrently; True if every dependency answered in time."""
        results = await asyncio.gather(*(self._check_one(probe) for probe in self._probes))
        return all(results)

    async def _check_one(self, probe: Probe) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                await probe.check()
            up, reason = True, ""
        except Exception as error:
            up, reason = False, f"{type(error).__name__}: {error}"
        self._metrics.dependency_up.labels(self._metrics.service, probe.dependency).set(1 if up else 0)
        if self._last.get(probe.dependency, True) != up:
            # Logged on change only: a long outage is one line, not one every few seconds.
            if up:
                log.info("%s is reachable again", probe.dependency)
            else:
                log.error("%s is unreachable; reporting NOT_SERVING: %s", probe.dependency, reason)
        self._last[probe.dependency] = up
        return up
