"""`settle dlq` records what was dealt with: the handled offset moves only over a run of handled dead
letters, and the audit record of each round-trips."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import TopicPartition

from services.cli.dlq_handled import Action, AuditEntry, plan
from services.cli.dlq_letters import DeadLetter

TOPIC = "payout.paid.dlq"
AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def letter(offset: int, *, partition: int = 0, handled: bool = False) -> DeadLetter:
    return DeadLetter(
        TOPIC, partition, offset, AT, b"key", "t", f"event-{offset}", "bad", "", "", (), b"", handled=handled
    )


def ids(*offsets: int, partition: int = 0) -> set[str]:
    return {f"{TOPIC}/{partition}/{offset}" for offset in offsets}


def test_handling_the_oldest_unhandled_moves_the_offset_past_the_run_dealt_with() -> None:
    listed = [letter(0, handled=True), letter(1), letter(2), letter(3)]
    handling = plan(listed, ids(1, 2))
    assert handling.offsets == {TopicPartition(TOPIC, 0): 3}
    assert handling.behind_unhandled == []


def test_handling_one_behind_an_unhandled_one_moves_nothing_and_says_which_blocks_it() -> None:
    listed = [letter(5), letter(6), letter(7)]
    handling = plan(listed, ids(7))
    assert handling.offsets == {}
    assert [(done.offset, first.offset) for done, first in handling.behind_unhandled] == [(7, 5)]


def test_gaps_in_offsets_and_partitions_are_each_their_own_run() -> None:
    listed = [letter(9, partition=1), letter(2), letter(4), letter(3, partition=1)]
    handling = plan(listed, ids(2, 4) | ids(9, partition=1))
    assert handling.offsets == {TopicPartition(TOPIC, 0): 5}  # 3 is missing from partition 0: a gap
    assert [(done.id, first.id) for done, first in handling.behind_unhandled] == [(f"{TOPIC}/1/9", f"{TOPIC}/1/3")]


def test_an_audit_entry_round_trips_and_a_foreign_record_is_skipped() -> None:
    entry = AuditEntry(f"{TOPIC}/0/3", Action.ACKNOWLEDGED, "alice", AT, "event-3", reason="payout was cancelled")
    assert AuditEntry.from_bytes(entry.to_bytes()) == entry
    assert entry.summary() == "acknowledged by alice: payout was cancelled"
    assert [AuditEntry.from_bytes(value) for value in (b"", b"[]", b'{"action": "x"}', None)] == [None] * 4
