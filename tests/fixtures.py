"""Fixtures shared across test packages (kept out of conftest.py so it stays about infrastructure).

Also the helpers the integration tests share: running a service process, publishing events the way the
outbox relay does, reading topics, waiting for a condition, and the payment service's test client.
Test modules import them from here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import grpc
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money
from settle.events.v1.events_pb2 import PaymentOrderSucceeded
from settle.payment.v1 import payment_pb2, payment_pb2_grpc

from psp_sandbox.app import RunningSandbox, start_sandbox
from services.common.api_keys import ApiKeyRecord
from services.common.events import PAYMENT_ORDER_SUCCEEDED
from services.common.infra import Infrastructure
from services.common.kafka import create_producer
from services.common.outbox import envelope_headers
from services.common.runtime import ServiceProcess
from services.payment.entrypoints.main import PaymentSettings, create_service

CHECKOUT_KEY = "test-checkout-key-0001"
FINANCE_KEY = "test-finance-key-00001"
CHECKOUT = (("x-api-key", CHECKOUT_KEY),)
ADMIN_KEY = "test-admin-key-0000001"
FINANCE = (("x-api-key", FINANCE_KEY),)
ADMIN = (("x-api-key", ADMIN_KEY),)
# In-process services under test serve plaintext, through the explicit switch (SETTLE_TLS_MODE=off):
# test_transport_security.py covers TLS and mTLS.
PLAINTEXT = "off"


def key_records(keys: dict[str, list[str]]) -> list[ApiKeyRecord]:
    """The hashed records services receive (SETTLE_API_KEYS) for plaintext test keys."""
    return [
        ApiKeyRecord.of(f"test-{'-'.join(scopes)}-{i}", key, scopes) for i, (key, scopes) in enumerate(keys.items())
    ]


# The API keys the services under test accept: the checkout (payments), finance reads, operators (admin).
API_KEYS = key_records({CHECKOUT_KEY: ["payments"], FINANCE_KEY: ["finance"], ADMIN_KEY: ["admin"]})


@asynccontextmanager
async def running_service(created: Awaitable[tuple[ServiceProcess, int]]) -> AsyncIterator[grpc.aio.Channel]:
    """Runs the process `created` (a service's `create_service(...)`) until the block ends; yields a
    channel to its gRPC port."""
    process, port = await created
    task = asyncio.create_task(process.run())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        process.request_stop()
        await asyncio.wait_for(task, timeout=30)


@asynccontextmanager
async def producer_for(infra: Infrastructure, client_id: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started Kafka producer for publishing test events, stopped when the block ends."""
    producer = create_producer(infra.kafka_bootstrap_servers, client_id=client_id)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 45.0) -> None:
    """Polls `check` until it holds; fails the test if it does not within `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def publish(
    producer: AIOKafkaProducer, topic: str, key: str, message: Message, event_id: str | None = None
) -> str:
    """Publishes `message` like an outbox relay does (same envelope headers); returns its event id."""
    event_id = event_id or str(uuid.uuid4())
    headers = envelope_headers(event_id, message.DESCRIPTOR.full_name, datetime.now(UTC))
    await producer.send_and_wait(
        topic,
        value=message.SerializeToString(),
        key=key.encode(),
        headers=[(name, value.encode()) for name, value in headers.items()],
    )
    return event_id


def succeeded(order_id: str, seller_id: str, amount_minor: int, currency: str = "USD") -> PaymentOrderSucceeded:
    return PaymentOrderSucceeded(
        payment_order_id=order_id,
        payment_id=str(uuid.uuid4()),
        seller_id=seller_id,
        amount=Money(amount_minor=amount_minor, currency=currency),
        psp_reference=f"pi_{order_id[:8]}",
    )


async def publish_succeeded(
    producer: AIOKafkaProducer, message: PaymentOrderSucceeded, event_id: str | None = None
) -> str:
    """Publishes like the executor's outbox relay does: same topic, key and envelope headers."""
    return await publish(producer, PAYMENT_ORDER_SUCCEEDED, message.payment_order_id, message, event_id)


async def read_topic(
    infra: Infrastructure,
    topic: str,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool],
    enough: Callable[[Sequence[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Reads `topic` from the beginning, keeping the records `keep` accepts, until `enough` says so or
    `timeout_s` has passed.

    No consumer group: every partition is read, without waiting for a group join.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    kept: list[ConsumerRecord[bytes, bytes]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while not enough(kept) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            kept += [record for records in batch.values() for record in records if keep(record)]
        return kept
    finally:
        await consumer.stop()


async def read_until(
    infra: Infrastructure,
    topic: str,
    done: Callable[[Sequence[ConsumerRecord[bytes, bytes]]], bool],
    keys: set[bytes],
    timeout_s: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Reads `topic` from the beginning, keeping the records with one of `keys`, until `done` says so;
    fails the test if it does not within `timeout_s`."""
    found = await read_topic(infra, topic, keep=lambda record: record.key in keys, enough=done, timeout_s=timeout_s)
    assert done(found), f"records not found on {topic} in time"
    return found


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
        api_keys=API_KEYS,
        tls_mode=PLAINTEXT,
        **overrides,  # type: ignore[arg-type]
    )
    async with running_service(create_service(settings)) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield PaymentApi(payment_pb2_grpc.PaymentServiceStub(channel), channel)


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


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A fresh PSP sandbox on a free port (modules that share one define their own)."""
    running = await start_sandbox("127.0.0.1", 0)
    yield running
    await running.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
