"""Shared helpers for the payment integration tests: a running service, a client, Kafka I/O.

No tests live here; the test modules import these helpers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from google.protobuf.message import Message
from settle.payment.v1 import payment_pb2, payment_pb2_grpc

from services.common.infra import Infrastructure
from services.common.outbox import envelope_headers
from services.payment.entrypoints.main import PaymentSettings, create_service

CHECKOUT_KEY = "test-checkout-key-0001"
FINANCE_KEY = "test-finance-key-00001"
CHECKOUT = (("x-api-key", CHECKOUT_KEY),)


@dataclass
class PaymentApi:
    stub: payment_pb2_grpc.PaymentServiceStub
    channel: grpc.aio.Channel


@asynccontextmanager
async def running_payment_service(infra: Infrastructure, **overrides: object) -> AsyncIterator[PaymentApi]:
    settings = PaymentSettings(
        database_url=infra.database_url,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        grpc_port=0,
        api_keys={CHECKOUT_KEY: ["payments"], FINANCE_KEY: ["finance"]},
        **overrides,  # type: ignore[arg-type]
    )
    process, port = await create_service(settings)
    task = asyncio.create_task(process.run())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield PaymentApi(payment_pb2_grpc.PaymentServiceStub(channel), channel)
    finally:
        await channel.close()
        process.request_stop()
        await asyncio.wait_for(task, timeout=30)


def line_item(sku: str = "sku-1", quantity: int = 1, unit: int = 1_000) -> payment_pb2.LineItem:
    return payment_pb2.LineItem(sku=sku, description=f"item {sku}", quantity=quantity, unit_amount_minor=unit)


def create_request(
    unique: str, sellers: int = 2, *, checkout: str = "", buyer: str = ""
) -> payment_pb2.CreatePaymentRequest:
    return payment_pb2.CreatePaymentRequest(
        checkout_id=checkout or f"co-{unique}",
        buyer_id=buyer or f"buyer-{unique}",
        payment_method_token="pm_card_visa",
        currency="USD",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id=f"seller-{index}-{unique}",
                line_items=[line_item("a", 2, 1_250), line_item("b", 1, 100 * (index + 1))],
            )
            for index in range(sellers)
        ],
    )


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def publish(
    producer: AIOKafkaProducer, topic: str, key: str, message: Message, event_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Publishes `message` with the envelope headers the outbox relay would add; returns its event id."""
    event_id = event_id or uuid.uuid4()
    headers = envelope_headers(str(event_id), message.DESCRIPTOR.full_name, datetime.now(UTC))
    await producer.send_and_wait(
        topic,
        value=message.SerializeToString(),
        key=key.encode(),
        headers=[(name, value.encode()) for name, value in headers.items()],
    )
    return event_id


async def read_until(
    infra: Infrastructure,
    topic: str,
    done: Callable[[Sequence[ConsumerRecord[bytes, bytes]]], bool],
    keys: set[bytes],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Reads `topic` from the beginning, keeping the records with one of `keys`, until `done` says so.

    No consumer group: every partition is read, without waiting for a group join.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while not done(found):
            assert asyncio.get_running_loop().time() < deadline, f"records not found on {topic} in time"
            batch = await consumer.getmany(timeout_ms=500)
            found.extend(r for records in batch.values() for r in records if r.key in keys)
        return found
    finally:
        await consumer.stop()
