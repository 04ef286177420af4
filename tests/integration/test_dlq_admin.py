"""`settle dlq` on the real broker: listing dead letters, replaying them under deterministic event ids,
recording what was dealt with (replayed or acknowledged) so that `settle status` stops counting it, the
CLI glue, and a dead letter written by a real consumer (the executor's) replayed past its dedupe."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2

from services.cli.dlq import add_parser
from services.cli.dlq_handled import Action, read_audit
from services.cli.dlq_letters import (
    HANDLED_GROUP,
    HEADER_REPLAY_OF,
    REPLAY_NAMESPACE,
    DeadLetter,
    list_dead_letters,
    replay,
)
from services.cli.endpoints import ApiKeys, Endpoints
from services.cli.status_probes import kafka_view
from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    PAYMENT_ORDER_REQUESTED,
    dlq_topic,
)
from services.common.infra import Infrastructure
from services.common.outbox import envelope_headers
from services.executor.config import ExecutorSettings
from services.executor.entrypoints.main import create_service
from tests.fixtures import PLAINTEXT, eventually, producer_for, publish, read_until, running_service

CONSUMER = "settle-test-outcomes"
REASON = "EXECUTION_CONFLICT: payment order already has an execution for a different charge"


def _request(order_id: str, amount_minor: int = 4200) -> events_pb2.PaymentOrderRequested:
    return events_pb2.PaymentOrderRequested(
        payment_order_id=order_id,
        payment_id=f"pay-{order_id[:8]}",
        checkout_id="co-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        amount=Money(amount_minor=amount_minor, currency="USD"),
        payment_method_token="pm_card_visa",
    )


async def _write_dead_letter(producer: AIOKafkaProducer, source: str, key: str, *, offset: int = 7) -> str:
    """Writes a dead letter exactly as a consumer's outbox relay does; returns the original event id."""
    event_id = str(uuid.uuid4())
    message = _request(key)
    headers = {
        **envelope_headers(event_id, message.DESCRIPTOR.full_name, datetime.now(UTC)),
        HEADER_DLQ_ERROR: REASON,
        HEADER_DLQ_SOURCE: f"{source}/0/{offset}",
        HEADER_DLQ_CONSUMER: CONSUMER,
    }
    await producer.send_and_wait(
        dlq_topic(source),
        value=message.SerializeToString(),
        key=key.encode(),
        headers=[(name, value.encode()) for name, value in headers.items()],
    )
    return event_id


@pytest.fixture
async def producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    async with producer_for(infra, "dlq-admin-test") as started:
        yield started


@pytest.fixture
def source(unique: str) -> str:
    """A source topic of this test alone, so its DLQ holds only this test's dead letters."""
    return f"dlq-admin-test.{unique}"


async def _only(infra: Infrastructure, source: str) -> DeadLetter:
    [dead_letter] = await list_dead_letters(infra.kafka_bootstrap_servers, [dlq_topic(source)])
    return dead_letter


async def _replayed(infra: Infrastructure, source: str, key: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_until(infra, source, lambda records: len(records) >= count, keys={key.encode()})


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


async def test_list_shows_a_dead_letter_with_its_reason_and_origin(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str
) -> None:
    key = str(uuid.uuid4())
    event_id = await _write_dead_letter(producer, source, key)

    dead_letter = await _only(infra, source)

    assert dead_letter.id == f"{dlq_topic(source)}/{dead_letter.partition}/{dead_letter.offset}"
    assert (dead_letter.topic, dead_letter.key, dead_letter.event_id) == (dlq_topic(source), key.encode(), event_id)
    assert (dead_letter.reason, dead_letter.source, dead_letter.consumer) == (REASON, f"{source}/0/7", CONSUMER)
    assert dead_letter.event_type == events_pb2.PaymentOrderRequested.DESCRIPTOR.full_name
    assert dead_letter.payload == _request(key).SerializeToString()
    assert dead_letter.payload_size == len(dead_letter.payload)
    assert dead_letter.source_topic == source
    assert abs((datetime.now(UTC) - dead_letter.timestamp).total_seconds()) < 60


async def test_list_reads_several_topics_and_stops_at_the_limit(
    infra: Infrastructure, producer: AIOKafkaProducer, unique: str
) -> None:
    sources = [f"dlq-admin-test.{unique}.{index}" for index in range(2)]
    for source in sources:
        for _ in range(3):
            await _write_dead_letter(producer, source, str(uuid.uuid4()))

    # Source and DLQ names are both accepted; a topic that does not exist is simply empty.
    topics = [sources[0], dlq_topic(sources[1]), f"dlq-admin-test.{unique}.missing"]
    everything = await list_dead_letters(infra.kafka_bootstrap_servers, topics)
    limited = await list_dead_letters(infra.kafka_bootstrap_servers, topics, limit=4)

    assert sorted(dead_letter.source_topic for dead_letter in everything) == sorted(sources * 3)
    assert len({dead_letter.id for dead_letter in everything}) == 6
    assert len(limited) == 4 and {dead_letter.id for dead_letter in limited} <= {d.id for d in everything}


async def test_replay_republishes_the_original_under_a_new_deterministic_event_id(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str
) -> None:
    key = str(uuid.uuid4())
    original_id = await _write_dead_letter(producer, source, key)
    dead_letter = await _only(infra, source)

    [event_id] = await replay(infra.kafka_bootstrap_servers, [dead_letter])

    assert event_id == str(uuid.uuid5(REPLAY_NAMESPACE, dead_letter.id)) != original_id
    [record] = await _replayed(infra, source, key, 1)
    headers = _headers(record)
    assert headers[HEADER_EVENT_ID] == event_id
    assert headers[HEADER_REPLAY_OF] == original_id
    assert headers[HEADER_EVENT_TYPE] == events_pb2.PaymentOrderRequested.DESCRIPTOR.full_name
    assert not {HEADER_DLQ_ERROR, HEADER_DLQ_SOURCE, HEADER_DLQ_CONSUMER} & headers.keys()
    assert (record.key, record.value) == (key.encode(), _request(key).SerializeToString())


async def test_replaying_a_dead_letter_twice_publishes_the_same_event_id(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str
) -> None:
    key = str(uuid.uuid4())
    await _write_dead_letter(producer, source, key)
    dead_letter = await _only(infra, source)

    first = await replay(infra.kafka_bootstrap_servers, [dead_letter])
    second = await replay(infra.kafka_bootstrap_servers, [await _only(infra, source)])

    assert first == second
    records = await _replayed(infra, source, key, 2)
    assert [_headers(record)[HEADER_EVENT_ID] for record in records] == first * 2


def _options(*argv: str) -> argparse.Namespace:
    """Parses `settle <argv>` with the dlq command added the way the `settle` parser adds commands."""
    parser = argparse.ArgumentParser(prog="settle")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path, default=None)
    add_parser(parser.add_subparsers(dest="command", required=True), [data_dir])
    return parser.parse_args(argv)


async def _settle(*argv: str) -> int:
    # The command runs its own event loop (asyncio.run), so it cannot run on the test's.
    options = _options(*argv)
    code: int = await asyncio.to_thread(options.handler, options)
    return code


@pytest.fixture
def kafka_env(infra: Infrastructure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap_servers)


@pytest.mark.usefixtures("kafka_env")
async def test_settle_dlq_list_json_prints_one_object(
    producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(uuid.uuid4())
    event_id = await _write_dead_letter(producer, source, key)

    assert await _settle("dlq", "list", "--topic", source, "--json") == 0

    [shown] = json.loads(capsys.readouterr().out)["dead_letters"]
    assert shown["id"] == f"{dlq_topic(source)}/{shown['partition']}/{shown['offset']}"
    assert (shown["key"], shown["event_id"], shown["reason"]) == (key, event_id, REASON)
    assert (shown["source"], shown["consumer"]) == (f"{source}/0/7", CONSUMER)
    assert shown["payload_size"] == len(_request(key).SerializeToString())


async def test_settle_dlq_finds_kafka_through_the_running_settles_endpoints(
    infra: Infrastructure,
    producer: AIOKafkaProducer,
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    Endpoints(
        grpc={},
        psp_sandbox_url="",
        api_keys=ApiKeys.generate(),
        database_url="",
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        infra_mode="embedded",
    ).save(tmp_path)
    await _write_dead_letter(producer, source, str(uuid.uuid4()))

    assert await _settle("dlq", "list", "--data-dir", str(tmp_path), "--topic", source) == 0

    dead_letter = await _only(infra, source)
    table = capsys.readouterr().out
    assert dead_letter.id in table and REASON in table and CONSUMER in table and "total: 1" in table


async def test_settle_dlq_without_kafka_settings_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", raising=False)

    assert await _settle("dlq", "list", "--data-dir", str(tmp_path)) == 2

    assert "SETTLE_KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


@pytest.mark.usefixtures("kafka_env")
async def test_settle_dlq_replay_of_an_unknown_id_fails_and_replays_nothing(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _write_dead_letter(producer, source, str(uuid.uuid4()))
    known = (await _only(infra, source)).id
    unknown = f"{dlq_topic(source)}/0/999999"

    assert await _settle("dlq", "replay", known, unknown) == 2
    assert await _settle("dlq", "replay", "no-such-dead-letter") == 2
    assert await _settle("dlq", "replay") == 2  # neither ids nor --all

    errors = capsys.readouterr().err
    assert f"unknown dead letters: {unknown}" in errors and "no-such-dead-letter" in errors
    assert known not in errors
    assert source not in await _topics(infra)  # nothing was published to the source topic


async def _topics(infra: Infrastructure) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        topics: set[str] = await consumer.topics()
        return topics
    finally:
        await consumer.stop()


@pytest.mark.usefixtures("kafka_env")
async def test_settle_dlq_replay_dry_run_publishes_nothing_and_a_replay_says_where_it_went(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(uuid.uuid4())
    await _write_dead_letter(producer, source, key)
    dead_letter = await _only(infra, source)
    expected = f"{dead_letter.id} to {source} as event {dead_letter.replay_event_id}"

    assert await _settle("dlq", "replay", "--all", "--topic", source, "--dry-run") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"would replay {expected}",
        f"{dead_letter.topic}/{dead_letter.partition}: every dead letter before offset {dead_letter.offset + 1} "
        "would be handled",
    ]
    assert source not in await _topics(infra)
    assert not (await _only(infra, source)).handled  # a dry run records nothing either

    assert await _settle("dlq", "replay", dead_letter.id) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"replayed {expected}"
    [record] = await _replayed(infra, source, key, 1)
    assert _headers(record)[HEADER_EVENT_ID] == dead_letter.replay_event_id


async def _dead_letters_of(infra: Infrastructure, key: str, count: int) -> list[DeadLetter]:
    """The dead letters of payment order requests with `key`, once there are at least `count`."""
    found: list[DeadLetter] = []

    async def enough() -> bool:
        nonlocal found
        listed = await list_dead_letters(infra.kafka_bootstrap_servers, [PAYMENT_ORDER_REQUESTED], limit=100_000)
        found = [dead_letter for dead_letter in listed if dead_letter.key == key.encode()]
        return len(found) >= count

    await eventually(enough, timeout_s=60)
    return found


async def test_a_real_consumers_dead_letter_is_listed_and_its_replay_passes_the_dedupe_once(
    migrated: Infrastructure, producer: AIOKafkaProducer
) -> None:
    settings = ExecutorSettings(
        database_url=migrated.database_url,
        kafka_bootstrap_servers=migrated.kafka_bootstrap_servers,
        psp_api_base="http://127.0.0.1:9",  # never called: invalid requests are rejected before any charge
        tls_mode=PLAINTEXT,
        worker_id=f"dlq-admin-test-{uuid.uuid4().hex[:6]}",
        outbox_poll_interval_ms=50,
        shutdown_grace_s=5,
    )
    order_id = str(uuid.uuid4())
    async with running_service(create_service(settings)):
        original_id = await publish(producer, PAYMENT_ORDER_REQUESTED, order_id, _request(order_id, amount_minor=0))
        [dead_letter] = await _dead_letters_of(migrated, order_id, 1)
        assert "VALIDATION_FAILED" in dead_letter.reason and "amount.amount_minor" in dead_letter.reason
        assert (dead_letter.event_id, dead_letter.consumer) == (original_id, "settle-executor-requests")
        assert dead_letter.source_topic == PAYMENT_ORDER_REQUESTED

        # Still invalid, so the executor dead-letters the replay again: proof it was not skipped as
        # the already processed original.
        [replay_id] = await replay(migrated.kafka_bootstrap_servers, [dead_letter])
        _, again = await _dead_letters_of(migrated, order_id, 2)
        assert (again.event_id, dict(again.headers)[HEADER_REPLAY_OF]) == (replay_id, original_id.encode())

        # A second replay of the same dead letter is a duplicate: the marker, published after it on
        # the same key (so partition), is dead-lettered next, with nothing in between.
        await replay(migrated.kafka_bootstrap_servers, [dead_letter])
        marker_id = await publish(producer, PAYMENT_ORDER_REQUESTED, order_id, _request(order_id, amount_minor=0))
        found = await _dead_letters_of(migrated, order_id, 3)
        assert [d.event_id for d in found] == [original_id, replay_id, marker_id]


async def _handled_offset(infra: Infrastructure, dead_letter: DeadLetter) -> int:
    """HANDLED_GROUP's committed offset in the dead letter's partition, read as any Kafka tool would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        partition = TopicPartition(dead_letter.topic, dead_letter.partition)
        offsets = await admin.list_consumer_group_offsets(HANDLED_GROUP, partitions=[partition])
        return int(offsets[partition].offset)
    finally:
        await admin.close()


async def _dead_letters_on_one_partition(
    producer: AIOKafkaProducer, infra: Infrastructure, source: str
) -> list[DeadLetter]:
    key = str(uuid.uuid4())  # one key, so one partition: their order is their offsets'
    for offset in range(3):
        await _write_dead_letter(producer, source, key, offset=offset)
    listed = await list_dead_letters(infra.kafka_bootstrap_servers, [source])
    assert len(listed) == 3 and len({d.partition for d in listed}) == 1 and not any(d.handled for d in listed)
    return listed


async def _unhandled_ids(infra: Infrastructure, source: str) -> list[str]:
    return [d.id for d in await list_dead_letters(infra.kafka_bootstrap_servers, [source], unhandled_only=True)]


@pytest.mark.usefixtures("kafka_env")
async def test_replayed_dead_letters_are_recorded_as_handled_and_status_stops_counting_them(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = await _dead_letters_on_one_partition(producer, infra, source)
    before = await kafka_view(infra.kafka_bootstrap_servers, [dlq_topic(source)])
    assert (before.dead_letters, before.handled_dead_letters) == ({dlq_topic(source): 3}, {dlq_topic(source): 0})

    assert await _settle("dlq", "replay", first.id, second.id) == 0

    out = capsys.readouterr().out
    assert f"{first.topic}/{first.partition}: every dead letter before offset {second.offset + 1} handled" in out
    assert await _handled_offset(infra, first) == second.offset + 1  # OffsetCommit, then OffsetFetch
    assert await _unhandled_ids(infra, source) == [third.id]
    after = await kafka_view(infra.kafka_bootstrap_servers, [dlq_topic(source)])
    assert (after.dead_letters, after.handled_dead_letters) == ({dlq_topic(source): 1}, {dlq_topic(source): 2})
    audit = await read_audit(infra.kafka_bootstrap_servers)
    assert audit[first.id].action is Action.REPLAYED and audit[first.id].replay_event_id == first.replay_event_id

    # `list` shows only what is left to do; `--all` shows everything, and how each was handled.
    assert await _settle("dlq", "list", "--topic", source, "--json") == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)["dead_letters"]] == [third.id]
    assert await _settle("dlq", "list", "--topic", source, "--all", "--json") == 0
    shown = {d["id"]: d for d in json.loads(capsys.readouterr().out)["dead_letters"]}
    assert [shown[d.id]["handled"] for d in (first, second, third)] == [True, True, False]
    assert shown[first.id]["handling"]["action"] == "replayed" and shown[third.id]["handling"] is None
    assert await _settle("dlq", "list", "--topic", source, "--all") == 0
    table = capsys.readouterr().out
    assert "HANDLED" in table and "replayed by" in table and "total: 3" in table

    # `replay --all` means what is left: the third, and nothing twice.
    assert await _settle("dlq", "replay", "--all", "--topic", source) == 0
    assert capsys.readouterr().out.startswith(f"replayed {third.id} ")
    assert await _unhandled_ids(infra, source) == []
    assert (await kafka_view(infra.kafka_bootstrap_servers, [dlq_topic(source)])).dead_letters == {dlq_topic(source): 0}


@pytest.mark.usefixtures("kafka_env")
async def test_a_dead_letter_handled_behind_an_unhandled_one_stays_listed_until_those_before_it_are_handled(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = await _dead_letters_on_one_partition(producer, infra, source)

    assert await _settle("dlq", "replay", third.id) == 0

    out = capsys.readouterr().out
    assert f"not counted as handled yet: {third.id}, because {first.id} before it is not" in out
    assert await _unhandled_ids(infra, source) == [first.id, second.id, third.id]

    reason = "duplicate of an outcome already applied (INC-42)"
    assert await _settle("dlq", "ack", first.id, second.id, "--reason", reason) == 0

    out = capsys.readouterr().out
    assert f"acknowledged {first.id} (not replayed): {reason}" in out
    assert await _unhandled_ids(infra, source) == [third.id]
    audit = await read_audit(infra.kafka_bootstrap_servers)
    assert (audit[second.id].action, audit[second.id].reason) == (Action.ACKNOWLEDGED, reason)

    # Handled again now that nothing unhandled is before it: the second replay is deduped by consumers.
    assert await _settle("dlq", "replay", third.id) == 0
    assert await _unhandled_ids(infra, source) == []
    assert await _settle("dlq", "ack", first.id, "--reason", reason) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{first.id} was handled already: nothing to do"
    assert await _handled_offset(infra, first) == third.offset + 1
    # Acknowledged ones were never replayed: the source topic holds the third's two replays only.
    replayed = await _replayed(infra, source, third.key.decode(), 2)
    assert {_headers(record)[HEADER_REPLAY_OF] for record in replayed} == {third.event_id}


@pytest.mark.usefixtures("kafka_env")
async def test_ack_refuses_what_it_cannot_audit_or_could_hide_too_much(
    infra: Infrastructure, producer: AIOKafkaProducer, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _write_dead_letter(producer, source, str(uuid.uuid4()))
    dead_letter = await _only(infra, source)

    with pytest.raises(SystemExit):  # argparse: --reason is required
        _options("dlq", "ack", dead_letter.id)
    assert await _settle("dlq", "ack", dead_letter.id, "--reason", "   ") == 2
    assert await _settle("dlq", "ack", "--all", "--reason", "noise") == 2
    assert await _settle("dlq", "ack", "--all", "--topic", source, "--reason", "noise", "--dry-run") == 0

    errors = capsys.readouterr().err
    assert "--reason must say why" in errors and "--all needs --topic" in errors
    assert not (await _only(infra, source)).handled
    assert dead_letter.id not in await read_audit(infra.kafka_bootstrap_servers)
