"""Kafka as the CLI's views read it (`settle status`, `settle dlq`): which partitions exist, where each
log starts and ends, where a consumer group stands, and the messages in between.

Nothing here joins a group or commits an offset: reading never moves anybody's position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError

# A partition that stops returning messages before its end offset (a broker in trouble) must not hang
# the command: after this many empty fetches of a second each, reading gives up.
_MAX_EMPTY_FETCHES = 30


@dataclass(frozen=True, slots=True)
class Bounds:
    """A partition's log: the earliest message kept and one past the last."""

    start: int
    end: int

    def resume(self, committed: int | None) -> int:
        """Where a group with offset `committed` goes on. A group that never committed, whose offset
        expired or fell out of retention starts at the earliest message kept; one past the end is from
        an earlier topic of that name (deleted and re-created), so it counts for nothing either."""
        if committed is None or committed > self.end:
            return self.start
        return max(committed, self.start)

    def unread(self, committed: int | None) -> int:
        return self.end - self.resume(committed)

    @property
    def size(self) -> int:
        return self.end - self.start


@asynccontextmanager
async def kafka_readers(
    bootstrap_servers: str, client_id: str, request_timeout_ms: int = 30_000
) -> AsyncIterator[tuple[Any, AIOKafkaConsumer]]:
    """An admin client and a consumer without a group, started, and stopped when the block ends."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id=client_id, request_timeout_ms=request_timeout_ms
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=client_id,
        request_timeout_ms=request_timeout_ms,
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            yield admin, consumer
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def existing_partitions(admin: Any, topics: Sequence[str]) -> list[TopicPartition]:
    """The partitions of those of `topics` that exist, in the order of `topics`."""
    # From the metadata of all topics: naming a missing topic could have the broker auto-create it, and
    # a DLQ topic is meant to appear only with its first dead letter.
    described = await admin.describe_topics()
    partitions = {topic["topic"]: sorted(p["partition"] for p in topic["partitions"]) for topic in described}
    return [TopicPartition(topic, partition) for topic in topics for partition in partitions.get(topic, ())]


async def log_bounds(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, Bounds]:
    if not partitions:
        return {}
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    return {partition: Bounds(starts[partition], ends[partition]) for partition in partitions}


async def committed_offsets(admin: Any, group: str, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """`group`'s committed offset in each of `partitions` where it has one."""
    if not partitions:
        return {}
    # Partitions named explicitly: the embedded broker cannot answer "all of the group's offsets".
    found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    # -1: the group never committed there.
    return {partition: meta.offset for partition, meta in found.items() if meta is not None and meta.offset >= 0}


async def read_records(
    consumer: AIOKafkaConsumer, ranges: Mapping[TopicPartition, tuple[int, int]], limit: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """The messages of each partition from its first offset up to (not including) its end, partition
    after partition in the order of `ranges`, at most `limit` in all."""
    if not ranges:
        return []
    consumer.assign(list(ranges))
    for partition, (first, _) in ranges.items():
        consumer.seek(partition, first)
    found: list[ConsumerRecord[bytes, bytes]] = []
    for partition, (_, end) in ranges.items():
        empty_fetches = 0
        while len(found) < limit and (position := await consumer.position(partition)) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000, max_records=limit - len(found))
            records = [record for record in batch.get(partition, []) if record.offset < end]
            empty_fetches = 0 if records else empty_fetches + 1
            if empty_fetches >= _MAX_EMPTY_FETCHES:
                raise KafkaTimeoutError(f"{partition.topic}/{partition.partition}: nothing from offset {position}")
            found += records
    return found
