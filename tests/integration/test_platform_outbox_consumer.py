"""The shared platform on real PostgreSQL and Kafka: outbox → relay → broker → consumer, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from settle.common.v1.money_pb2 import Money
from settle.events.v1.events_pb2 import PaymentOrderRequested
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.consumer import Consumer, EventRejected
from services.common.events import (
    HEADER_DLQ_ERROR,
    PAYMENT_ORDER_REQUESTED,
    InboundEvent,
    OutboundEvent,
)
from services.common.infra import Infrastructure
from services.common.kafka import create_consumer, create_producer
from services.common.relay import OutboxRelay
from tests.fixtures import eventually, producer_for, read_until


class RecordingHandler:
    """Writes one row per applied event; rejects orders whose amount is negative."""

    def __init__(self, table: str) -> None:
        self.table = table

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        for event in events:
            assert isinstance(event.message, PaymentOrderRequested)
            if event.message.amount.amount_minor < 0:
                raise EventRejected(event, "amount must be positive")
            await connection.execute(
                text(f"INSERT INTO {self.table} (order_id) VALUES (:id)"),
                {"id": event.message.payment_order_id},
            )


async def _count(engine: AsyncEngine, table: str) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(text(f"SELECT order_id, count(*) AS n FROM {table} GROUP BY order_id"))
        return {row.order_id: row.n for row in rows}


def _request(order_id: str, amount: int) -> OutboundEvent:
    return OutboundEvent(
        PAYMENT_ORDER_REQUESTED,
        key=order_id,
        message=PaymentOrderRequested(payment_order_id=order_id, amount=Money(amount_minor=amount, currency="USD")),
    )


async def test_outbox_events_reach_the_consumer_once_even_when_redelivered(
    engines: dict[str, AsyncEngine], infra: Infrastructure, unique: str
) -> None:
    engine = engines["payment"]
    table = f"effects_{unique}"
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE TABLE {table} (order_id TEXT NOT NULL)"))
        await connection.execute(text("UPDATE outbox SET published_at = now() WHERE published_at IS NULL"))
    good = [str(uuid.uuid4()) for _ in range(50)]
    async with engine.begin() as connection:
        await outbox.append(connection, [_request(order_id, 100) for order_id in good])
        await outbox.append(connection, [_request("poison-" + unique, -5)])

    producer = create_producer(infra.kafka_bootstrap_servers, client_id="test")
    await producer.start()
    relay = OutboxRelay(engine, producer, service=f"test-{unique}", bootstrap_servers=infra.kafka_bootstrap_servers)
    relay_task = asyncio.create_task(relay.run())

    group = f"test-{unique}"
    consumer = Consumer(
        engine=engine,
        kafka=create_consumer(
            infra.kafka_bootstrap_servers, group_id=group, topics=[PAYMENT_ORDER_REQUESTED], client_id=group
        ),
        handler=RecordingHandler(table),
        group_id=group,
    )
    consumer_task = asyncio.create_task(consumer.run())
    try:

        async def all_applied() -> bool:
            return set(good) <= set((await _count(engine, table)).keys())

        await eventually(all_applied, timeout_s=20.0)
        # Re-publish everything (as after a crash between publish and marking sent): no double effect.
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE outbox SET published_at = NULL"))
        relay.wake()
        await eventually(lambda: _published_all(engine), timeout_s=20.0)
        await asyncio.sleep(1.0)
        counts = await _count(engine, table)
        assert all(counts[order_id] == 1 for order_id in good)
        assert "poison-" + unique not in counts
    finally:
        consumer.stop()
        relay.stop()
        await asyncio.wait_for(asyncio.gather(consumer_task, relay_task), timeout=15)
        await producer.stop()

    # The DLQ topic is shared with other tests: read it until our poison event shows up.
    poison_key = ("poison-" + unique).encode()
    dead_letters = await read_until(
        infra, PAYMENT_ORDER_REQUESTED + ".dlq", done=lambda found: len(found) >= 1, keys={poison_key}
    )
    assert b"amount must be positive" in dict(dead_letters[0].headers)[HEADER_DLQ_ERROR]


async def _published_all(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        pending = await connection.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    return pending == 0


async def test_a_new_broker_gets_the_retained_outbox_again(
    engines: dict[str, AsyncEngine], infra: Infrastructure, unique: str
) -> None:
    engine = engines["payment"]
    async with producer_for(infra, "test") as producer:
        service = f"svc-{unique}"
        relay = OutboxRelay(engine, producer, service=service, bootstrap_servers=infra.kafka_bootstrap_servers)
        async with engine.begin() as connection:
            await outbox.append(connection, [_request(str(uuid.uuid4()), 1)])
        await relay.drain()
        # First meeting with this broker: the marker was absent, so the window is queued again.
        await relay.replay_if_new_broker()
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")) > 0
        await relay.drain()
        # Second meeting: the marker is there, nothing is replayed.
        await relay.replay_if_new_broker()
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL")) == 0
