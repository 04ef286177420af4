"""The record of dead letters an operator has dealt with: replayed, or acknowledged (not to be replayed).

It lives in Kafka, next to the dead letters it describes (no database of its own), in two parts:
- the offsets of the consumer group HANDLED_GROUP (dlq_letters.py): in a DLQ partition, every dead letter
  before the committed offset was dealt with. The offset only moves forward, over a run of dead letters
  all handled: one handled behind an unhandled one leaves it where it is, so the later one stays listed
  until it is handled again after the earlier ones (a second replay is deduped by the consumers).
  `settle status` compares it with the end offsets, as it does a service group's lag;
- the topic AUDIT_TOPIC: one JSON record per dead letter handled (what, who, when and, for an
  acknowledgement, why), keyed by the dead letter's id. The offset says *that* a dead letter was dealt
  with; the audit says *how and why*, which an incident review needs, stays with the cluster the dead
  letters are in (a log file on one operator's machine would not), and `settle dlq list --all` shows.

The audit is written before the offset is committed, so nothing counts as handled without its record.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from itertools import takewhile

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.cli.dlq_letters import HANDLED_GROUP, DeadLetter
from services.cli.kafka_topics import existing_partitions, kafka_readers, log_bounds, read_records
from services.common.kafka import create_producer

AUDIT_TOPIC = "settle.dlq.audit"
REASON_MAX_LENGTH = 500


class Action(StrEnum):
    REPLAYED = "replayed"
    ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What was done with one dead letter."""

    dead_letter_id: str
    action: Action
    by: str  # the operator's login on the machine the CLI ran on
    at: datetime
    event_id: str  # the dead-lettered event's id
    replay_event_id: str = ""  # the event id it was replayed under (replays only)
    reason: str = ""  # why it is not replayed (acknowledgements only)

    def as_json(self) -> dict[str, str]:
        return {**asdict(self), "at": self.at.isoformat()}

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_json()).encode()

    @classmethod
    def from_bytes(cls, value: bytes | None) -> AuditEntry | None:
        """None for a record this version cannot read (written by hand or by another tool)."""
        try:
            fields = json.loads(value or b"")
            return cls(**{**fields, "action": Action(fields["action"]), "at": datetime.fromisoformat(fields["at"])})
        except (ValueError, TypeError, KeyError):
            return None

    def summary(self) -> str:
        """One short line: `replayed by alice` / `acknowledged by bob: <reason>`."""
        return f"{self.action} by {self.by}" + (f": {self.reason}" if self.reason else "")


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def audit_entries(dead_letters: Sequence[DeadLetter], action: Action, reason: str = "") -> list[AuditEntry]:
    by, at = operator(), datetime.now(UTC)
    replayed = action is Action.REPLAYED
    return [
        AuditEntry(d.id, action, by, at, d.event_id, d.replay_event_id if replayed else "", reason)
        for d in dead_letters
    ]


@dataclass(frozen=True, slots=True)
class HandledPlan:
    """Where the handled offsets move when some dead letters are dealt with now."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # partition → its new handled offset
    # Dealt with now yet still unhandled, each with the first unhandled dead letter before it.
    behind_unhandled: list[tuple[DeadLetter, DeadLetter]] = field(default_factory=list)


def plan(listed: Sequence[DeadLetter], dealt_with: Collection[str]) -> HandledPlan:
    """`listed` must hold every unhandled dead letter of the partitions concerned (as `list_dead_letters`
    returns them); `dealt_with` are the ids handled now."""
    unhandled: dict[TopicPartition, list[DeadLetter]] = {}
    for dead_letter in sorted(listed, key=lambda d: d.offset):
        if not dead_letter.handled:
            unhandled.setdefault(dead_letter.topic_partition, []).append(dead_letter)
    result = HandledPlan()
    for partition, letters in unhandled.items():
        run = list(takewhile(lambda d: d.id in dealt_with, letters))
        if run:
            result.offsets[partition] = run[-1].offset + 1
        rest = letters[len(run) :]
        result.behind_unhandled.extend((d, rest[0]) for d in rest if d.id in dealt_with)
    return result


async def write_audit(bootstrap_servers: str, entries: Sequence[AuditEntry]) -> None:
    producer = create_producer(bootstrap_servers, client_id="settle-dlq-audit")
    await producer.start()
    try:
        # Awaiting each delivery raises if one failed, so that no offset moves without its record.
        deliveries = [
            await producer.send(AUDIT_TOPIC, value=entry.to_bytes(), key=entry.dead_letter_id.encode())
            for entry in entries
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def read_audit(bootstrap_servers: str) -> dict[str, AuditEntry]:
    """The latest audit entry of every dead letter handled (a record is keyed, so ordered, by its id)."""
    async with kafka_readers(bootstrap_servers, "settle-dlq") as (admin, consumer):
        bounds = await log_bounds(consumer, await existing_partitions(admin, [AUDIT_TOPIC]))
        records = await read_records(consumer, {p: (b.start, b.end) for p, b in bounds.items()}, sys.maxsize)
    entries = [AuditEntry.from_bytes(record.value) for record in records]
    return {entry.dead_letter_id: entry for entry in entries if entry is not None}


async def commit_handled(bootstrap_servers: str, offsets: Mapping[TopicPartition, int], note: str) -> None:
    """Moves the handled offsets forward to `offsets`, never back (another operator may have moved one
    further meanwhile). Two operators committing at the same instant can at worst move one back: dead
    letters then show as unhandled again, never the other way round."""
    if not offsets:
        return
    # A group with manually assigned partitions commits without joining (no member, no rebalance).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=HANDLED_GROUP, enable_auto_commit=False, client_id="settle-dlq"
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        current = {partition: await consumer.committed(partition) for partition in offsets}
        forward = {
            partition: (offset, note)
            for partition, offset in offsets.items()
            if current[partition] is None or offset > current[partition]
        }
        if forward:
            await consumer.commit(forward)
    finally:
        await consumer.stop()


async def record_handled(
    bootstrap_servers: str, dead_letters: Sequence[DeadLetter], handling: HandledPlan, action: Action, reason: str = ""
) -> list[AuditEntry]:
    """Audit first, then the offsets: nothing counts as handled without its record."""
    entries = audit_entries(dead_letters, action, reason)
    await write_audit(bootstrap_servers, entries)
    first = entries[0] if entries else None
    note = f"{action} by {first.by} at {first.at:%Y-%m-%dT%H:%M:%SZ}" if first else ""
    await commit_handled(bootstrap_servers, handling.offsets, note)
    return entries
