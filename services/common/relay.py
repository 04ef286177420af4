"""The outbox relay: publishes stored events to Kafka and marks them sent.

Rows are claimed with FOR UPDATE SKIP LOCKED, so several relays (replicas) never publish the same
batch concurrently; a crash between publish and marking re-publishes, which consumers dedupe by event
id. Published rows are kept for a retention window so that a *new* broker (embedded mode restarts, a
disaster recovery cluster) can be refilled: the relay detects one by the absence of its marker in
the control topic and re-publishes the window.

With tracing on (otel.py), each message is published under a producer span, child of the trace stored
with the row, and its traceparent header names that span so that consumers continue from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.trace import Span, SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import otel, outbox
from services.common.crash_points import RELAY_AFTER_PUBLISH, RELAY_BEFORE_PUBLISH, crash_point
from services.common.events import HEADER_TRACEPARENT
from services.common.kafka import PLAINTEXT, KafkaSecurity
from services.common.metrics import ServiceMetrics
from services.common.transient_errors import is_infrastructure_error, next_backoff

CONTROL_TOPIC = "settle.control.relay-markers"

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        service: str,
        bootstrap_servers: str,
        security: KafkaSecurity = PLAINTEXT,
        batch_size: int = 1000,
        poll_interval_s: float = 0.1,
        retention: timedelta = timedelta(days=7),
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._security = security
        self._service = service
        self._bootstrap_servers = bootstrap_servers
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retention = retention
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._metrics = metrics or ServiceMetrics(service)
        self.published_total = 0

    def wake(self) -> None:
        """Called after a commit that added outbox rows, so they go out without waiting for a poll."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        await self.replay_if_new_broker()
        last_cleanup = datetime.now(UTC)
        backoff_s = 0.1
        while not self._stopping.is_set():
            try:
                published = await self.publish_batch()
                if datetime.now(UTC) - last_cleanup > timedelta(minutes=10):
                    await self.delete_expired()
                    last_cleanup = datetime.now(UTC)
                backoff_s = 0.1
            except Exception as error:
                # The database or broker away for a while must not end the process: what is not marked
                # published is published on a later attempt (at least once, deduped by event id).
                if not is_infrastructure_error(error):
                    raise
                log.warning("outbox relay: infrastructure error, retrying in %.1f s: %s", backoff_s, error)
                await asyncio.sleep(backoff_s)
                backoff_s = next_backoff(backoff_s)
                continue
            if published < self._batch_size:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
        await self.drain()

    async def drain(self) -> None:
        """Publishes everything pending (graceful shutdown flushes the outbox)."""
        while await self.publish_batch() > 0:
            pass

    async def publish_batch(self) -> int:
        async with self._engine.begin() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT seq, topic, message_key, payload, headers FROM outbox "
                        "WHERE published_at IS NULL ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
                    ),
                    {"limit": self._batch_size},
                )
            ).all()
            if not rows:
                return 0
            crash_point(RELAY_BEFORE_PUBLISH)
            deliveries = []
            spans: list[Span] = []
            with otel.ending(spans):
                for row in rows:
                    headers = self._traced(row.topic, row.headers, spans)
                    deliveries.append(
                        await self._producer.send(
                            row.topic, value=bytes(row.payload), key=bytes(row.message_key), headers=headers
                        )
                    )
                # Wait for every acknowledgement before marking: a row is marked only once Kafka has it.
                await asyncio.gather(*deliveries)
            crash_point(RELAY_AFTER_PUBLISH)
            await connection.execute(
                text("UPDATE outbox SET published_at = now() WHERE seq = ANY(:seqs)"),
                {"seqs": [row.seq for row in rows]},
            )
        self.published_total += len(rows)
        per_topic: dict[str, int] = {}
        for row in rows:
            per_topic[row.topic] = per_topic.get(row.topic, 0) + 1
        for topic, count in per_topic.items():
            self._metrics.events_published.labels(self._metrics.service, topic).inc(count)
        return len(rows)

    def _traced(self, topic: str, stored: dict[str, str], spans: list[Span]) -> list[tuple[str, bytes]]:
        """The record's headers; with tracing on, under a new producer span (appended to `spans`)."""
        if not otel.is_enabled():
            return [(name, value.encode()) for name, value in stored.items()]
        headers = dict(stored)
        span = otel.start_span(
            f"{topic} publish",
            SpanKind.PRODUCER,
            stored.get(HEADER_TRACEPARENT, ""),
            {"messaging.system": "kafka", "messaging.destination.name": topic, "messaging.operation": "publish"},
        )
        if span is not None:
            spans.append(span)
            headers[HEADER_TRACEPARENT] = otel.traceparent_of(span)
        return [(name, value.encode()) for name, value in headers.items()]

    async def sample_backlog(self, connection: AsyncConnection) -> None:
        """Sets the backlog gauges: unpublished rows and the age of the oldest (a gauge query, every few
        seconds). Both read the partial index of unpublished rows only."""
        backlog, age_s = await outbox.backlog(connection)
        self._metrics.outbox_backlog.labels(self._metrics.service).set(backlog)
        self._metrics.outbox_oldest_age_s.labels(self._metrics.service).set(age_s or 0.0)

    async def delete_expired(self) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM outbox WHERE published_at < :cutoff"),
                {"cutoff": datetime.now(UTC) - self._retention},
            )

    async def replay_if_new_broker(self) -> None:
        if await self._broker_has_seen_us():
            return
        async with self._engine.begin() as connection:
            result = await connection.execute(
                text("UPDATE outbox SET published_at = NULL WHERE published_at >= :since"),
                {"since": datetime.now(UTC) - self._retention},
            )
        if result.rowcount:
            log.warning(
                "new broker detected: re-publishing %d retained outbox events",
                result.rowcount,
                extra={"service": self._service},
            )

    async def _broker_has_seen_us(self) -> bool:
        """Writes this service's marker and reports whether an older one was already there."""
        marker = await self._producer.send_and_wait(
            CONTROL_TOPIC, value=b"relay-started", key=self._service.encode(), partition=0
        )
        partition = TopicPartition(CONTROL_TOPIC, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, enable_auto_commit=False, **self._security.client_options()
        )
        await consumer.start()
        try:
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            while True:
                batch = await consumer.getmany(partition, timeout_ms=2000, max_records=1000)
                records = batch.get(partition, [])
                if not records:
                    return False
                for record in records:
                    if record.offset >= marker.offset:
                        return False
                    if record.key == self._service.encode():
                        return True
        finally:
            await consumer.stop()
