"""Prometheus metrics of one service process: its own registry, the metric families every service has,
and the `/metrics` endpoint (SETTLE_METRICS_PORT).

A registry per process rather than prometheus_client's global one, so that tests can run several services
in one interpreter without their series colliding. Every family carries a `service` label: one dashboard
query covers all five services whatever the scraper names its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

# From 1 ms (a read served from cache) to 30 s (a reconciliation run or a long watch).
_RPC_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The metric families of one service process, registered in a registry of its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_* (CPU, memory, open files), read on scrape
        self.rpc_duration_s = self.histogram(
            "settle_rpc_duration_seconds", "Time to serve a gRPC call, by method and status code.", ["method", "code"]
        )
        self.rpc_requests = self.counter(
            "settle_rpc_requests", "gRPC calls served, by method and status code.", ["method", "code"]
        )
        self.consumer_lag = self.gauge(
            "settle_consumer_lag_messages",
            "Messages in a partition not yet consumed by the group (highwater minus position).",
            ["group", "topic", "partition"],
        )
        self.outbox_backlog = self.gauge("settle_outbox_backlog_events", "Outbox rows not yet published.", [])
        self.outbox_oldest_age_s = self.gauge(
            "settle_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row (0 if none).", []
        )
        self.events_published = self.counter(
            "settle_events_published", "Events the outbox relay published to Kafka.", ["topic"]
        )
        self.events_consumed = self.counter(
            "settle_events_consumed", "Kafka records a consumer group processed and committed.", ["group", "topic"]
        )
        self.dead_lettered = self.counter(
            "settle_dlq_messages",
            "Records a consumer group sent to `<topic>.dlq`, by source topic.",
            ["group", "topic"],
        )
        self.dependency_up = self.gauge(
            "settle_dependency_up", "1 if the last reachability check of a dependency passed, else 0.", ["dependency"]
        )
        self.gauge_query_failures = self.counter(
            "settle_gauge_query_failures", "Periodic gauge queries that failed or timed out.", ["query"]
        )

    # Family constructors that add the `service` label; callers pass the service as the first label value.
    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(name, documentation, ["service", *labels], registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: list[str]) -> Gauge:
        return Gauge(name, documentation, ["service", *labels], registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: list[str]) -> Histogram:
        return Histogram(name, documentation, ["service", *labels], registry=self.registry, buckets=_RPC_BUCKETS_S)

    def rpc_finished(self, method: str, code: str, duration_s: float) -> None:
        self.rpc_duration_s.labels(self.service, method, code).observe(duration_s)
        self.rpc_requests.labels(self.service, method, code).inc()


class MetricsServer:
    """Serves the registry at http://host:port/metrics until stopped (a BackgroundLoop)."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int, ready: Callable[[], bool] = lambda: True) -> None:
        self._metrics = metrics
        self._ready = ready
        self._host = host
        self._port = port
        self._stopping = asyncio.Event()
        self.listening = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        # Plain-HTTP probes for orchestrators, beside the TLS-only gRPC port: /livez answers while the
        # event loop runs (a dependency outage must not get the process restarted), /readyz follows the
        # gRPC health status (started, PostgreSQL and Kafka reachable, not shutting down).
        app.router.add_get("/livez", self._live)
        app.router.add_get("/readyz", self._readiness)
        # A scrape takes milliseconds: shutdown need not wait the default minute for one in flight.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        # Bound here rather than by aiohttp so that a taken port fails the start with a clear error.
        sock = socket.create_server((self._host, self._port), reuse_port=False)
        try:
            await web.SockSite(runner, sock).start()
            self.listening.set()
            log.info("metrics at http://%s:%d/metrics", self._host, self._port)
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            sock.close()

    async def _live(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readiness(self, _: web.Request) -> web.Response:
        return web.Response(text="ready\n") if self._ready() else web.Response(status=503, text="not ready\n")

    async def _scrape(self, _: web.Request) -> web.Response:
        # Collecting reads in-memory values only (gauges are sampled by their own loop), so it is cheap
        # enough to do on the event loop.
        return web.Response(body=generate_latest(self._metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
