"""Dead letters: the messages of the `<topic>.dlq` topics, listed, and replayed to the topics they came from.

A consumer dead-letters a poison event to `<topic>.dlq` with its original key, payload and headers
plus the reason (services/common/consumer.py). Consumers also record the poison event's id as
processed, so re-publishing it unchanged would be skipped as a duplicate: a replay carries a NEW
event id, derived from the dead letter's position in its DLQ topic. Replaying the same dead letter
twice therefore publishes the same event id twice, and consumers dedupe the second one.

Whether an operator has dealt with a dead letter is the committed offset of the group HANDLED_GROUP
in its partition (dlq_handled.py keeps it); listing marks each dead letter with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord, TopicPartition

from services.cli.kafka_topics import committed_offsets, existing_partitions, kafka_readers, log_bounds, read_records
from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    PAYLOAD_TYPES,
    dlq_topic,
)
from services.common.kafka import create_producer

HEADER_REPLAY_OF = "replay_of"
# Never change it: replayed event ids are uuid5(REPLAY_NAMESPACE, dead letter id), and a new
# namespace would turn the replay of an already replayed dead letter into a new event.
REPLAY_NAMESPACE = uuid.UUID("91e9275e-94d9-498c-bc7f-1d018a55cfb1")
# Its committed offset in a DLQ partition: every dead letter before it was replayed or acknowledged.
# Never renamed either: a new name forgets everything operators have dealt with.
HANDLED_GROUP = "settle-dlq-handled"
DLQ_TOPICS = tuple(dlq_topic(topic) for topic in PAYLOAD_TYPES)
_DLQ_SUFFIX = dlq_topic("")
# Replaced on replay: the dead-letter headers describe the failure, not the event.
_NOT_REPLAYED = frozenset({HEADER_DLQ_ERROR, HEADER_DLQ_SOURCE, HEADER_DLQ_CONSUMER, HEADER_EVENT_ID, HEADER_REPLAY_OF})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a `<topic>.dlq` topic, with what an operator needs to judge and replay it."""

    topic: str  # the DLQ topic
    partition: int
    offset: int
    timestamp: datetime
    key: bytes
    event_type: str
    event_id: str  # the dead-lettered event's id
    reason: str
    source: str  # "<topic>/<partition>/<offset>" the consumer read it from
    consumer: str  # the consumer group that dead-lettered it
    headers: tuple[tuple[str, bytes], ...]
    payload: bytes
    handled: bool = False  # replayed or acknowledged, as far as HANDLED_GROUP's offset tells

    @property
    def id(self) -> str:
        """Stable: a DLQ message never moves."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def payload_size(self) -> int:
        return len(self.payload)

    @property
    def source_topic(self) -> str:
        # Topic names cannot contain "/", so the topic is everything before the last two fields.
        parts = self.source.rsplit("/", 2)
        return parts[0] if len(parts) == 3 and parts[0] else self.topic.removesuffix(_DLQ_SUFFIX)

    @property
    def replay_event_id(self) -> str:
        return str(uuid.uuid5(REPLAY_NAMESPACE, self.id))

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "key": self.key.decode(errors="replace"),
            "event_type": self.event_type,
            "event_id": self.event_id,
            "reason": self.reason,
            "source": self.source,
            "consumer": self.consumer,
            "payload_size": self.payload_size,
            "handled": self.handled,
        }


def from_record(record: ConsumerRecord[bytes, bytes], *, handled: bool = False) -> DeadLetter:
    headers = tuple((name, value or b"") for name, value in (record.headers or ()))
    text = {name: value.decode(errors="replace") for name, value in headers}
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key or b"",
        event_type=text.get(HEADER_EVENT_TYPE, ""),
        event_id=text.get(HEADER_EVENT_ID, ""),
        reason=text.get(HEADER_DLQ_ERROR, ""),
        source=text.get(HEADER_DLQ_SOURCE, ""),
        consumer=text.get(HEADER_DLQ_CONSUMER, ""),
        headers=headers,
        payload=record.value or b"",
        handled=handled,
    )


def replay_headers(dead_letter: DeadLetter) -> list[tuple[str, bytes]]:
    kept = [(name, value) for name, value in dead_letter.headers if name not in _NOT_REPLAYED]
    return [
        *kept,
        (HEADER_EVENT_ID, dead_letter.replay_event_id.encode()),
        (HEADER_REPLAY_OF, dead_letter.event_id.encode()),
    ]


def dlq_topics(topics: Sequence[str] | None) -> list[str]:
    """The DLQ topics meant by `topics` (default: every Settle topic's DLQ)."""
    # Operators may name the source topic or its DLQ; both mean the DLQ.
    named = [topic if topic.endswith(_DLQ_SUFFIX) else dlq_topic(topic) for topic in topics or DLQ_TOPICS]
    return list(dict.fromkeys(named))


async def list_dead_letters(
    bootstrap_servers: str, topics: Sequence[str] | None = None, *, limit: int = 1000, unhandled_only: bool = False
) -> list[DeadLetter]:
    """The dead letters of `topics` (default: every Settle topic's DLQ), oldest first per partition, each
    marked handled or not; with `unhandled_only`, only those not yet replayed or acknowledged (read
    from the handled offset on, so the handled ones cost nothing).

    Reads up to the end offsets at the time of the call, so it returns while consumers go on
    dead-lettering.
    """
    async with kafka_readers(bootstrap_servers, "settle-dlq") as (admin, consumer):
        partitions = await existing_partitions(admin, dlq_topics(topics))
        bounds = await log_bounds(consumer, partitions)
        handled = await committed_offsets(admin, HANDLED_GROUP, partitions)
        first_unhandled = {partition: bounds[partition].resume(handled.get(partition)) for partition in partitions}
        ranges = {
            partition: (
                first_unhandled[partition] if unhandled_only else bounds[partition].start,
                bounds[partition].end,
            )
            for partition in partitions
        }
        records = await read_records(consumer, ranges, limit)
    return [
        from_record(record, handled=record.offset < first_unhandled[TopicPartition(record.topic, record.partition)])
        for record in records
    ]


async def replay(bootstrap_servers: str, dead_letters: Sequence[DeadLetter]) -> list[str]:
    """Re-publishes each dead letter to its source topic under its replay event id; returns those ids.

    Every consumer group of the source topic receives the replay, not only the one that failed:
    groups that applied the original must recognise the order by its business key (they do).
    """
    producer = create_producer(bootstrap_servers, client_id="settle-dlq-replay")
    await producer.start()
    try:
        deliveries = [
            await producer.send(
                dead_letter.source_topic,
                value=dead_letter.payload,
                key=dead_letter.key,
                headers=replay_headers(dead_letter),
            )
            for dead_letter in dead_letters
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return [dead_letter.replay_event_id for dead_letter in dead_letters]
