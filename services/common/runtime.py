"""Runs one service process: gRPC server plus background loops, with graceful shutdown.

Shutdown order (SIGTERM / SIGINT): report NOT_SERVING, stop accepting RPCs and let in-flight ones
finish within the grace period, stop consumers after their current batch (offsets committed), then
drain the outbox so nothing recorded is left unpublished.

While running, a dependency monitor (health.py) turns the health status NOT_SERVING whenever the
database or the broker cannot be reached, and back; once shutdown has begun it can no longer undo it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health

from services.common.health import DependencyMonitor, ServingStatus

log = logging.getLogger(__name__)


@dataclass
class BackgroundLoop:
    """A long-running loop (consumer, relay, worker) with a way to ask it to stop."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Callable[[], None]


@dataclass
class ServiceProcess:
    server: grpc.aio.Server
    health_servicer: health.aio.HealthServicer
    service_names: list[str]
    loops: Sequence[BackgroundLoop]
    grace_s: float = 10.0
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    dependencies: DependencyMonitor | None = None
    _stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.serving = ServingStatus(
            self.health_servicer, self.service_names, dependencies_up=self.dependencies is None
        )

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop)
        await self.server.start()
        await self.serving.started()
        loops = list(self.loops)
        if self.dependencies is not None:
            monitor = self.dependencies
            # First, so that it is stopped last: health stays truthful while the others drain.
            loops.insert(
                0, BackgroundLoop("health", lambda: monitor.run(self.serving.dependencies_checked), monitor.stop)
            )
        tasks: dict[asyncio.Task[None], BackgroundLoop] = {
            asyncio.create_task(item.run(), name=item.name): item for item in loops
        }
        stop_waiter = asyncio.create_task(self._stop_requested.wait())
        done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in done if task is not stop_waiter and task.exception() is not None]
        for task in failed:
            log.error("background loop %s crashed", task.get_name(), exc_info=task.exception())
        await self.shutdown(tasks)
        if failed:
            raise SystemExit(1)

    async def shutdown(self, tasks: dict[asyncio.Task[None], BackgroundLoop]) -> None:
        started = time.monotonic()
        log.info("shutting down: NOT_SERVING, finishing RPCs and loops within %.0f s each", self.grace_s)
        await self.serving.stopping()
        await self.server.stop(self.grace_s)
        # Loops are stopped in reverse order of registration: consumers before the relay that drains.
        for item in reversed(list(tasks.values())):
            item.stop()
            task = next(t for t, i in tasks.items() if i is item)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=self.grace_s)
            except TimeoutError:
                log.error("loop %s did not stop within %.0f s; cancelling", item.name, self.grace_s)
                task.cancel()
            except Exception as error:
                log.info("loop %s ended with %s (already reported)", item.name, type(error).__name__)
        for close in self.cleanup:
            await close()
        cancelled = [item.name for task, item in tasks.items() if task.cancelled()]
        log.info(
            "shut down in %.1f s: %s",
            time.monotonic() - started,
            f"cancelled after the grace period: {', '.join(cancelled)}"
            if cancelled
            else "every RPC and loop finished, the outbox drained",
        )
