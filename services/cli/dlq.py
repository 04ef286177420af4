"""`settle dlq`: list dead-lettered events and replay them to the topics they came from.

A consumer dead-letters a poison event to `<topic>.dlq` with its original key, payload and headers
plus the reason (services/common/consumer.py). Consumers also record the poison event's id as
processed, so re-publishing it unchanged would be skipped as a duplicate: a replay carries a NEW
event id, derived from the dead letter's position in its DLQ topic. Replaying the same dead letter
twice therefore publishes the same event id twice, and consumers dedupe the second one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.cli.endpoints import Endpoints, default_data_dir
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

    @property
    def id(self) -> str:
        """Stable: a DLQ message never moves."""
        return f"{self.topic}/{self.partition}/{self.offset}"

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
        }


def from_record(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
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
    )


def replay_headers(dead_letter: DeadLetter) -> list[tuple[str, bytes]]:
    kept = [(name, value) for name, value in dead_letter.headers if name not in _NOT_REPLAYED]
    return [
        *kept,
        (HEADER_EVENT_ID, dead_letter.replay_event_id.encode()),
        (HEADER_REPLAY_OF, dead_letter.event_id.encode()),
    ]


def _dlq_topics(topics: Sequence[str] | None) -> list[str]:
    # Operators may name the source topic or its DLQ; both mean the DLQ.
    named = [topic if topic.endswith(_DLQ_SUFFIX) else dlq_topic(topic) for topic in topics or DLQ_TOPICS]
    return list(dict.fromkeys(named))


async def _existing_partitions(bootstrap_servers: str, topics: Sequence[str]) -> list[TopicPartition]:
    # From the metadata of all topics: asking for a missing topic by name can have the broker
    # auto-create it, and a DLQ topic is meant to appear only with its first dead letter.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="settle-dlq")
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    partitions = {topic["topic"]: sorted(p["partition"] for p in topic["partitions"]) for topic in described}
    return [TopicPartition(topic, partition) for topic in topics for partition in partitions.get(topic, ())]


async def _read_partition(
    consumer: AIOKafkaConsumer, partition: TopicPartition, end: int, limit: int
) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    while len(found) < limit and await consumer.position(partition) < end:
        batch = await consumer.getmany(partition, timeout_ms=1000, max_records=limit - len(found))
        found += [from_record(record) for record in batch.get(partition, []) if record.offset < end]
    return found


async def list_dead_letters(
    bootstrap_servers: str, topics: Sequence[str] | None = None, *, limit: int = 1000
) -> list[DeadLetter]:
    """The dead letters of `topics` (default: every Settle topic's DLQ), oldest first per partition.

    Reads up to the end offsets at the time of the call, so it returns while consumers go on
    dead-lettering. No consumer group: listing never moves anybody's committed offsets.
    """
    partitions = await _existing_partitions(bootstrap_servers, _dlq_topics(topics))
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, client_id="settle-dlq"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        found: list[DeadLetter] = []
        for partition in partitions:
            if len(found) >= limit:
                break
            found += await _read_partition(consumer, partition, ends[partition], limit - len(found))
        return found
    finally:
        await consumer.stop()


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


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    dlq = commands.add_parser("dlq", help="list and replay dead-lettered events")
    dlq.set_defaults(handler=cmd_dlq)
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    topic_help = "a topic or its .dlq; repeatable (default: every Settle topic)"

    listing = actions.add_parser("list", parents=parents, help="show the dead letters")
    listing.add_argument("--topic", dest="topics", action="append", metavar="TOPIC", help=topic_help)
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.add_argument("--limit", type=int, default=1000, help="show at most this many (default: 1000)")

    replaying = actions.add_parser(
        "replay", parents=parents, help="re-publish dead letters to their source topics under new event ids"
    )
    replaying.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids as `settle dlq list` shows them")
    replaying.add_argument("--all", action="store_true", help="replay every dead letter (of --topic)")
    replaying.add_argument("--topic", dest="topics", action="append", metavar="TOPIC", help=topic_help)
    replaying.add_argument("--dry-run", action="store_true", help="only show what would be replayed")


def _bootstrap_servers(data_dir: Path) -> str | None:
    configured = os.environ.get("SETTLE_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured
    endpoints = Endpoints.load(data_dir)
    return endpoints.kafka_bootstrap_servers if endpoints else None


def cmd_dlq(options: argparse.Namespace) -> int:
    data_dir = options.data_dir or default_data_dir()
    servers = _bootstrap_servers(data_dir)
    if servers is None:
        print(
            f"settle dlq: no Kafka to read: set SETTLE_KAFKA_BOOTSTRAP_SERVERS, or start Settle "
            f"(`settle up`) so that {data_dir / 'endpoints.json'} exists",
            file=sys.stderr,
        )
        return 2
    try:
        if options.dlq_command == "list":
            return asyncio.run(_list(servers, options))
        return asyncio.run(_replay(servers, options))
    except KafkaError as error:
        print(f"settle dlq: Kafka at {servers} failed: {error}", file=sys.stderr)
        return 1


async def _list(servers: str, options: argparse.Namespace) -> int:
    dead_letters = await list_dead_letters(servers, options.topics, limit=options.limit)
    if options.json:
        print(json.dumps({"dead_letters": [dead_letter.as_json() for dead_letter in dead_letters]}))
    else:
        print(_render(dead_letters, options.limit))
    return 0


def _render(dead_letters: Sequence[DeadLetter], limit: int) -> str:
    if not dead_letters:
        return "no dead letters"
    rows = [
        ("ID", "TIME (UTC)", "CONSUMER", "KEY", "REASON"),
        *(
            (
                dead_letter.id,
                dead_letter.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                dead_letter.consumer or "-",
                _shorten(dead_letter.key.decode(errors="replace"), 40) or "-",
                _shorten(dead_letter.reason, 100) or "-",
            )
            for dead_letter in dead_letters
        ),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)), row[4]]) for row in rows
    ]
    more = f" (the first {limit}; raise --limit to see more)" if len(dead_letters) >= limit else ""
    return "\n".join([*lines, f"total: {len(dead_letters)}{more}"])


def _shorten(text: str, width: int) -> str:
    # Reasons can span lines (tracebacks in messages); a table row must not.
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


async def _replay(servers: str, options: argparse.Namespace) -> int:
    if bool(options.ids) == options.all:
        print("settle dlq replay: give dead-letter ids or --all (not both)", file=sys.stderr)
        return 2
    topics = options.topics or [dead_letter_id.rsplit("/", 2)[0] for dead_letter_id in options.ids]
    # Replay means all of them: no listing limit.
    available = await list_dead_letters(servers, topics, limit=sys.maxsize)
    chosen, unknown = ([*available], []) if options.all else _pick(available, options.ids)
    if unknown:
        print(
            f"settle dlq replay: unknown dead letters: {', '.join(unknown)} "
            "(ids look like <topic>.dlq/<partition>/<offset>; see `settle dlq list`)",
            file=sys.stderr,
        )
        return 2
    if not chosen:
        print("no dead letters to replay")
        return 0
    event_ids = [dead_letter.replay_event_id for dead_letter in chosen]
    if not options.dry_run:
        event_ids = await replay(servers, chosen)
    verb = "would replay" if options.dry_run else "replayed"
    for dead_letter, event_id in zip(chosen, event_ids, strict=True):
        print(f"{verb} {dead_letter.id} to {dead_letter.source_topic} as event {event_id}")
    return 0


def _pick(available: Sequence[DeadLetter], ids: Sequence[str]) -> tuple[list[DeadLetter], list[str]]:
    """The dead letters with `ids` in the order given, and the ids that match none."""
    by_id = {dead_letter.id: dead_letter for dead_letter in available}
    unique_ids = list(dict.fromkeys(ids))
    return [by_id[i] for i in unique_ids if i in by_id], [i for i in unique_ids if i not in by_id]
