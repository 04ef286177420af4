"""The composition root every service shares: database engine, outbox relay, consumers, gRPC server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import crash_points, otel, tls
from services.common.config import ServiceSettings
from services.common.consumer import Consumer, EventHandler
from services.common.db import create_engine, service_database_url
from services.common.gauges import DEFAULT_INTERVAL_S, GaugeQuery, GaugeSampler
from services.common.grpc_server import create_server
from services.common.health import DependencyMonitor, broker_probe, database_probe
from services.common.kafka import create_consumer, create_producer
from services.common.metrics import MetricsServer, ServiceMetrics
from services.common.migrations import database_name
from services.common.relay import OutboxRelay
from services.common.runtime import BackgroundLoop, ServiceProcess

log = logging.getLogger(__name__)


@dataclass
class Platform:
    """What a service gets from the shared platform. Build with `Platform.create`, start with `start`."""

    service: str
    settings: ServiceSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    relay: OutboxRelay
    metrics: ServiceMetrics
    gauges: GaugeSampler
    loops: list[BackgroundLoop] = field(default_factory=list)
    # What /readyz reports: not ready until the process exists (build_process), then its health status.
    readiness: Callable[[], bool] = lambda: False

    @classmethod
    def create(cls, service: str, settings: ServiceSettings) -> Platform:
        crash_points.arm(settings.crash_points)
        otel.configure(service, enabled=settings.otel_enabled)
        metrics = ServiceMetrics(service)
        engine = create_engine(
            service_database_url(settings.database_url, database_name(service)),
            pool_size=settings.db_pool_size,
        )
        producer = create_producer(
            settings.kafka_bootstrap_servers, client_id=f"settle-{service}", security=settings.kafka_security()
        )
        relay = OutboxRelay(
            engine,
            producer,
            service=service,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            security=settings.kafka_security(),
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_ms / 1000,
            retention=timedelta(hours=settings.outbox_retention_hours),
            metrics=metrics,
        )
        platform = cls(service, settings, engine, producer, relay, metrics, GaugeSampler(engine, metrics))
        # Observability loops first: shutdown stops loops in reverse order, so they outlive the others.
        if settings.metrics_port:
            server = MetricsServer(
                metrics,
                settings.metrics_host or settings.grpc_host,
                settings.metrics_port,
                ready=lambda: platform.readiness(),  # noqa: PLW0108 - late bound: build_process sets it
            )
            platform.loops.append(BackgroundLoop("metrics-http", server.run, server.stop))
        platform.loops.append(BackgroundLoop("gauges", platform.gauges.run, platform.gauges.stop))
        platform.add_gauge_query("outbox", relay.sample_backlog)
        platform.loops.append(BackgroundLoop("outbox-relay", relay.run, relay.stop))
        return platform

    def add_gauge_query(self, name: str, sample: GaugeQuery, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Has the gauges loop run `sample` (reads the database, sets gauges) every `interval_s`."""
        self.gauges.add(name, sample, interval_s)

    def add_consumer(
        self,
        name: str,
        topics: Sequence[str],
        handler: EventHandler,
        on_commit: Callable[[], None] | None = None,
    ) -> Consumer:
        """Adds a consumer in the group `settle-<service>-<name>`; after each commit the relay is woken."""
        group_id = f"settle-{self.service}-{name}"
        kafka = create_consumer(
            self.settings.kafka_bootstrap_servers,
            group_id=group_id,
            topics=list(topics),
            client_id=group_id,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            security=self.settings.kafka_security(),
        )

        def committed() -> None:
            self.relay.wake()
            if on_commit:
                on_commit()

        consumer = Consumer(
            engine=self.engine,
            kafka=kafka,
            handler=handler,
            group_id=group_id,
            batch_size=self.settings.consumer_batch_size,
            on_commit=committed,
            metrics=self.metrics,
        )
        self.loops.append(BackgroundLoop(f"consumer-{name}", consumer.run, consumer.stop))
        return consumer

    def add_loop(self, loop: BackgroundLoop) -> None:
        self.loops.append(loop)

    def build_process(
        self,
        registrations: Sequence[tuple[Callable[[Any, Any], None], Any, str]],
        scopes: dict[str, frozenset[str]],
    ) -> tuple[ServiceProcess, int]:
        """Creates the gRPC server bound to the configured address; returns the process and bound port."""
        server, health_servicer = create_server(
            service=self.service,
            registrations=registrations,
            api_keys=self.settings.api_keys,
            scopes=scopes,
            metrics=self.metrics,
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        port = tls.bind(server, address, tls.server_tls(self.settings))  # plaintext only if SETTLE_TLS_MODE=off
        process = ServiceProcess(
            server=server,
            health_servicer=health_servicer,
            service_names=[name for _, _, name in registrations],
            loops=self.loops,
            grace_s=self.settings.shutdown_grace_s,
            cleanup=[self.close],
            dependencies=DependencyMonitor([database_probe(self.engine), broker_probe(self.producer)], self.metrics),
        )
        self.readiness = lambda: process.serving.is_serving
        return process, port

    async def start(self) -> None:
        await self.producer.start()

    async def close(self) -> None:
        await self.producer.stop()
        await self.engine.dispose()
        await asyncio.to_thread(otel.flush)  # exports buffered spans; blocking, so off the event loop
