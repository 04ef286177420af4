"""The consumer base: batched, exactly-once effects over at-least-once delivery.

For each batch from Kafka, in ONE database transaction: skip events already processed, apply the
handler's effect, record the event ids as processed, and route poison events to `<topic>.dlq`
through the outbox. Only after that commit are the Kafka offsets committed. A crash anywhere means
redelivery, and redelivery is a no-op.

If the batch as a whole fails, it is retried one event per transaction so that a single bad event
is isolated and dead-lettered instead of blocking its partition. Database or broker outages are not
the event's fault: those are retried with backoff and never dead-lettered.

Metrics: records consumed and dead-lettered are counted once their transaction commits (a batch that
is rolled back and isolated would otherwise count its dead letters twice); the lag of each assigned
partition is refreshed between batches (consumer_lag.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import consumer_lag, outbox
from services.common.crash_points import CONSUMER_AFTER_DB_COMMIT, CONSUMER_BEFORE_DB_COMMIT, crash_point
from services.common.event_tracing import consuming
from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TIME,
    HEADER_EVENT_TYPE,
    HEADER_TRACEPARENT,
    PAYLOAD_TYPES,
    InboundEvent,
    dlq_topic,
)
from services.common.metrics import ServiceMetrics
from services.common.transient_errors import is_infrastructure_error, next_backoff

log = logging.getLogger(__name__)


class EventRejected(Exception):
    """Raised by a handler for an event that can never be applied (it goes to the DLQ)."""

    def __init__(self, event: InboundEvent, reason: str) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason


class EventHandler(Protocol):
    """Applies the effect of a batch of new (never processed) events inside `connection`'s transaction."""

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None: ...


class PoisonRecord(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(record: ConsumerRecord[bytes, bytes]) -> InboundEvent:
    """Decodes a Kafka record into an event, or raises PoisonRecord saying why it cannot be."""
    headers = {name: value.decode(errors="replace") for name, value in (record.headers or ())}
    payload_type = PAYLOAD_TYPES.get(record.topic)
    if payload_type is None:
        raise PoisonRecord(f"no payload type is registered for topic {record.topic!r}")
    try:
        event_id = uuid.UUID(headers.get(HEADER_EVENT_ID, ""))
    except ValueError:
        raise PoisonRecord("missing or malformed event_id header") from None
    expected_type = payload_type.DESCRIPTOR.full_name
    if headers.get(HEADER_EVENT_TYPE) != expected_type:
        raise PoisonRecord(f"event_type header {headers.get(HEADER_EVENT_TYPE)!r} is not {expected_type!r}")
    message = payload_type()
    try:
        message.ParseFromString(record.value or b"")
    except DecodeError as error:
        raise PoisonRecord(f"payload is not a valid {expected_type}: {error}") from None
    try:
        event_time = datetime.fromisoformat(headers[HEADER_EVENT_TIME])
    except (KeyError, ValueError):
        event_time = datetime.now(UTC)
    return InboundEvent(
        event_id=event_id,
        topic=record.topic,
        key=(record.key or b"").decode(errors="replace"),
        message=message,
        event_time=event_time,
        traceparent=headers.get(HEADER_TRACEPARENT, ""),
        partition=record.partition,
        offset=record.offset,
    )


class Consumer:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        kafka: AIOKafkaConsumer,
        handler: EventHandler,
        group_id: str,
        batch_size: int = 500,
        poll_timeout_ms: int = 200,
        on_commit: Callable[[], None] | None = None,
        metrics: ServiceMetrics | None = None,
        lag_report_interval_s: float = consumer_lag.DEFAULT_INTERVAL_S,
    ) -> None:
        self._engine = engine
        self._kafka = kafka
        self._handler = handler
        self._group_id = group_id
        self._batch_size = batch_size
        self._poll_timeout_ms = poll_timeout_ms
        self._on_commit = on_commit or (lambda: None)
        self._stopping = asyncio.Event()
        self._metrics = metrics or ServiceMetrics("")
        self._uncommitted_dead_letters: list[str] = []  # source topics, counted when the transaction commits
        self._lag = consumer_lag.PartitionLag(kafka, self._metrics, group_id, lag_report_interval_s)
        self.processed_total = 0
        self.dead_lettered_total = 0

    def stop(self) -> None:
        """Finishes the batch in progress, commits it, then returns from run()."""
        self._stopping.set()

    async def run(self) -> None:
        await self._kafka.start()
        try:
            await self._run()
        finally:
            await self._kafka.stop()

    async def _run(self) -> None:
        backoff_s = 0.1
        while not self._stopping.is_set():
            # Here, between batches, positions are those of the records processed and committed.
            await self._lag.report()
            try:
                batch = await self._kafka.getmany(timeout_ms=self._poll_timeout_ms, max_records=self._batch_size)
            except KafkaError as error:
                # A broker hiccup (rebalance, leader move) must not end the process: poll again later.
                log.warning("consumer %s: broker error while polling, retrying: %s", self._group_id, error)
                await asyncio.sleep(backoff_s)
                backoff_s = next_backoff(backoff_s)
                continue
            if not batch:
                continue
            try:
                await self.process(batch)
                backoff_s = 0.1
            except Exception as error:
                if not is_infrastructure_error(error):
                    raise
                log.warning("consumer %s: infrastructure error, retrying batch: %s", self._group_id, error)
                for partition, records in batch.items():
                    self._kafka.seek(partition, records[0].offset)
                await asyncio.sleep(backoff_s)
                backoff_s = next_backoff(backoff_s)

    async def process(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        records = [record for partition_records in batch.values() for record in partition_records]
        try:
            async with self._transaction() as connection:
                await self._apply(connection, records)
                crash_point(CONSUMER_BEFORE_DB_COMMIT)
        except Exception as error:
            if is_infrastructure_error(error):
                raise
            log.warning("consumer %s: batch failed (%s); isolating events one by one", self._group_id, error)
            for record in records:
                await self._apply_alone(record)
        crash_point(CONSUMER_AFTER_DB_COMMIT)
        self._on_commit()
        await self._commit_offsets(batch)
        self.processed_total += len(records)
        for partition, partition_records in batch.items():
            self._metrics.events_consumed.labels(self._metrics.service, self._group_id, partition.topic).inc(
                len(partition_records)
            )

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A database transaction; the dead letters written in it are counted once it commits."""
        self._uncommitted_dead_letters.clear()
        async with self._engine.begin() as connection:
            yield connection
        for topic in self._uncommitted_dead_letters:
            self.dead_lettered_total += 1
            self._metrics.dead_lettered.labels(self._metrics.service, self._group_id, topic).inc()
        self._uncommitted_dead_letters.clear()

    async def _apply(self, connection: AsyncConnection, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        events: list[InboundEvent] = []
        for record in records:
            try:
                events.append(decode(record))
            except PoisonRecord as poison:
                await self._dead_letter(connection, record, poison.reason)
        fresh = await self._claim_unprocessed(connection, events)
        if fresh:
            with consuming(fresh, self._group_id):
                await self._handler.handle(connection, fresh)

    async def _apply_alone(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            async with self._transaction() as connection:
                await self._apply(connection, [record])
        except Exception as error:
            if is_infrastructure_error(error):
                raise
            reason = error.reason if isinstance(error, EventRejected) else f"{type(error).__name__}: {error}"
            async with self._transaction() as connection:
                await self._dead_letter(connection, record, reason)
                try:
                    event = decode(record)
                except PoisonRecord:
                    return
                await self._claim_unprocessed(connection, [event])

    async def _claim_unprocessed(
        self, connection: AsyncConnection, events: Sequence[InboundEvent]
    ) -> list[InboundEvent]:
        """Records the events as processed and returns those that were not already (in batch order)."""
        if not events:
            return []
        # Sorted so that two consumers holding overlapping batches (after a rebalance) lock the same
        # processed_events keys in the same order and cannot deadlock.
        ordered = sorted(events, key=lambda e: e.event_id)
        inserted = await connection.execute(
            text(
                "INSERT INTO processed_events (event_id, topic) "
                "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:topics AS text[])) "
                "ON CONFLICT DO NOTHING RETURNING event_id"
            ),
            {"ids": [str(e.event_id) for e in ordered], "topics": [e.topic for e in ordered]},
        )
        new_ids = {row.event_id for row in inserted}
        fresh: list[InboundEvent] = []
        for event in events:
            if event.event_id in new_ids:
                new_ids.discard(event.event_id)  # a duplicate inside the same batch applies once
                fresh.append(event)
        return fresh

    async def _dead_letter(
        self, connection: AsyncConnection, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        headers = {name: value.decode(errors="replace") for name, value in (record.headers or ())}
        headers[HEADER_DLQ_ERROR] = reason[:1000]
        headers[HEADER_DLQ_SOURCE] = f"{record.topic}/{record.partition}/{record.offset}"
        headers[HEADER_DLQ_CONSUMER] = self._group_id
        await outbox.append_raw(
            connection,
            topic=dlq_topic(record.topic),
            key=record.key or b"",
            payload=record.value or b"",
            event_id=str(uuid.uuid4()),
            event_type=headers.get(HEADER_EVENT_TYPE, "unknown"),
            headers=headers,
        )
        self._uncommitted_dead_letters.append(record.topic)
        log.error(
            "consumer %s: dead-lettered %s/%d/%d: %s",
            self._group_id,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )

    async def _commit_offsets(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        offsets = {partition: records[-1].offset + 1 for partition, records in batch.items()}
        try:
            await self._kafka.commit(offsets)
        except CommitFailedError as error:
            # A rebalance moved the partitions: the new owner redelivers, and dedupe makes that a no-op.
            log.warning("consumer %s: offset commit failed after rebalance: %s", self._group_id, error)
