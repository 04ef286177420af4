"""Observability on real PostgreSQL and Kafka: Prometheus metrics scraped over HTTP, health that follows
the database, and one OpenTelemetry trace from a gRPC call through Kafka.

One payment service for the module (its consumer group joins once: the embedded broker makes a
rejoining group wait out the session timeout).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from settle.common.v1.money_pb2 import Money
from settle.events.v1.events_pb2 import PaymentOrderRequested
from settle.payment.v1 import payment_pb2
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.cli.stack import free_port
from services.common import clients, otel, outbox, tracing
from services.common.consumer import Consumer
from services.common.db import create_engine, service_database_url
from services.common.events import (
    HEADER_TRACEPARENT,
    PAYLOAD_TYPES,
    PAYMENT_ORDER_REQUESTED,
    InboundEvent,
    OutboundEvent,
)
from services.common.gauges import GaugeSampler
from services.common.grpc_server import create_server
from services.common.health import DependencyMonitor, broker_probe, database_probe
from services.common.infra import Infrastructure
from services.common.kafka import create_consumer, create_producer
from services.common.metrics import MetricsServer, ServiceMetrics
from services.common.migrations import database_name
from services.common.relay import OutboxRelay
from services.common.runtime import BackgroundLoop, ServiceProcess
from services.payment.entrypoints.main import PaymentSettings, create_service
from tests.fixtures import (
    API_KEYS,
    CHECKOUT,
    CHECKOUT_KEY,
    create_request,
    eventually,
    producer_for,
    publish,
    read_until,
)

Labels = dict[str, str]


@dataclass
class PaymentService:
    address: str
    metrics_port: int
    channel: grpc.aio.Channel


@pytest_asyncio.fixture(scope="module")
async def payment(migrated: Infrastructure) -> AsyncIterator[PaymentService]:
    metrics_port = free_port()
    settings = PaymentSettings(
        database_url=migrated.database_url,
        kafka_bootstrap_servers=migrated.kafka_bootstrap_servers,
        grpc_port=0,
        api_keys=API_KEYS,
        tls_mode="off",
        metrics_port=metrics_port,
    )
    process, port = await create_service(settings)
    task = asyncio.create_task(process.run())
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        yield PaymentService(address, metrics_port, channel)
    finally:
        await channel.close()
        process.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def _scrape(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def _samples(exposition: str, name: str, **labels: str) -> list[tuple[Labels, float]]:
    """The samples called `name` whose labels include `labels`."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def _value(exposition: str, name: str, **labels: str) -> float | None:
    found = _samples(exposition, name, **labels)
    assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
    return found[0][1] if found else None


async def test_rpcs_are_timed_by_method_and_code_and_the_platform_gauges_are_served(
    payment: PaymentService, http: aiohttp.ClientSession, unique: str
) -> None:
    stub = clients.payment_stub(payment.channel)
    await stub.CreatePayment(create_request(unique), metadata=CHECKOUT)
    with pytest.raises(grpc.aio.AioRpcError) as missing_key:
        await stub.CreatePayment(create_request(unique))
    assert missing_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=str(uuid.uuid4())), metadata=CHECKOUT)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unknown_watched:  # a server stream
        async for _ in stub.WatchPayment(
            payment_pb2.WatchPaymentRequest(payment_id=str(uuid.uuid4())), metadata=CHECKOUT
        ):
            pass
    assert unknown_watched.value.code() == grpc.StatusCode.NOT_FOUND

    served = await _scrape(http, payment.metrics_port)
    method = "settle.payment.v1.PaymentService/"
    for name, code in [("CreatePayment", "OK"), ("CreatePayment", "UNAUTHENTICATED"),
                       ("GetPayment", "NOT_FOUND"), ("WatchPayment", "NOT_FOUND")]:  # fmt: skip
        labels = {"service": "payment", "method": method + name, "code": code}
        assert (_value(served, "settle_rpc_duration_seconds_count", **labels) or 0) >= 1, labels
        assert (_value(served, "settle_rpc_requests_total", **labels) or 0) >= 1, labels
        buckets = _samples(served, "settle_rpc_duration_seconds_bucket", **labels)
        assert {sample_labels["le"] for sample_labels, _ in buckets} >= {"0.005", "1.0", "+Inf"}
    # Health checks are probes, not traffic.
    assert not _samples(served, "settle_rpc_requests_total", method="grpc.health.v1.Health/Check")
    # Plain-HTTP probes beside the TLS gRPC port, for orchestrators that cannot speak TLS to gRPC.
    for path, body in [("/livez", "ok\n"), ("/readyz", "ready\n")]:
        async with http.get(f"http://127.0.0.1:{payment.metrics_port}{path}") as response:
            assert (response.status, await response.text()) == (200, body)

    async def platform_metrics_served() -> bool:
        exposition = await _scrape(http, payment.metrics_port)
        published = _value(
            exposition, "settle_events_published_total", service="payment", topic=PAYMENT_ORDER_REQUESTED
        )
        return (
            (published or 0) >= 2  # one request per seller order
            and _value(exposition, "settle_outbox_backlog_events", service="payment") is not None
            and _value(exposition, "settle_outbox_oldest_unpublished_age_seconds", service="payment") is not None
            and _value(exposition, "settle_dependency_up", service="payment", dependency="postgres") == 1
            and _value(exposition, "settle_dependency_up", service="payment", dependency="kafka") == 1
            # The outcomes consumer has joined its group and fetched: each partition's lag is known.
            and bool(_samples(exposition, "settle_consumer_lag_messages", group="settle-payment-outcomes"))
        )

    await eventually(platform_metrics_served)


async def test_outbox_backlog_and_oldest_age_follow_the_unpublished_rows(
    engines: dict[str, AsyncEngine], migrated: Infrastructure, http: aiohttp.ClientSession, unique: str
) -> None:
    engine = engines["ledger"]  # no ledger service runs in this module: nothing else publishes its outbox
    metrics = ServiceMetrics("ledger")
    port = free_port()
    server = MetricsServer(metrics, "127.0.0.1", port)
    server_task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.listening.wait(), timeout=5)
    async with producer_for(migrated, f"test-{unique}") as producer:
        relay = OutboxRelay(
            engine,
            producer,
            service=f"test-{unique}",
            bootstrap_servers=migrated.kafka_bootstrap_servers,
            metrics=metrics,
        )
        sampler = GaugeSampler(engine, metrics)

        async def broken(connection: AsyncConnection) -> None:
            await connection.execute(text("SELECT * FROM no_such_table"))

        sampler.add("broken", broken, interval_s=3600)  # fails, counted, and the others still run
        sampler.add("outbox", relay.sample_backlog, interval_s=0.001)

        async def sampled() -> tuple[float | None, float | None]:
            await asyncio.sleep(0.002)
            await sampler.sample_due()
            exposition = await _scrape(http, port)
            return (
                _value(exposition, "settle_outbox_backlog_events", service="ledger"),
                _value(exposition, "settle_outbox_oldest_unpublished_age_seconds", service="ledger"),
            )

        try:
            await relay.drain()  # whatever earlier tests left
            assert await sampled() == (0, 0)
            order_ids = [str(uuid.uuid4()) for _ in range(3)]
            async with engine.begin() as connection:
                await outbox.append(connection, [_requested(order_id) for order_id in order_ids])
            await asyncio.sleep(0.5)
            backlog, age_s = await sampled()
            assert backlog == 3
            assert age_s is not None and age_s >= 0.5

            await relay.drain()
            assert await sampled() == (0, 0)
            exposition = await _scrape(http, port)
            assert (
                _value(exposition, "settle_events_published_total", service="ledger", topic=PAYMENT_ORDER_REQUESTED)
                == 3
            )
            assert _value(exposition, "settle_gauge_query_failures_total", service="ledger", query="outbox") is None
            assert _value(exposition, "settle_gauge_query_failures_total", service="ledger", query="broken") == 1
        finally:
            server.stop()
            await server_task


def _requested(order_id: str) -> OutboundEvent:
    return OutboundEvent(
        PAYMENT_ORDER_REQUESTED,
        key=order_id,
        message=PaymentOrderRequested(payment_order_id=order_id, amount=Money(amount_minor=100, currency="USD")),
    )


@dataclass
class _SlowHandler:
    """Lets the first `free` events through, then holds each batch until released."""

    free: int
    released: asyncio.Event = field(default_factory=asyncio.Event)
    handled: int = 0

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        if self.handled >= self.free:
            await self.released.wait()
        self.handled += len(events)


async def test_consumer_lag_rises_while_the_group_is_behind_and_dead_letters_are_counted(
    engines: dict[str, AsyncEngine],
    migrated: Infrastructure,
    http: aiohttp.ClientSession,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = f"test.observability.{unique}"
    monkeypatch.setitem(PAYLOAD_TYPES, topic, PaymentOrderRequested)
    group = f"test-lag-{unique}"
    metrics = ServiceMetrics("ledger")
    port = free_port()
    server = MetricsServer(metrics, "127.0.0.1", port)
    handler = _SlowHandler(free=2)
    async with producer_for(migrated, f"test-{unique}") as producer:
        for _ in range(5):  # one key: one partition, in order
            await publish(producer, topic, unique, PaymentOrderRequested(payment_order_id=str(uuid.uuid4())))
        consumer = Consumer(
            engine=engines["ledger"],
            kafka=create_consumer(migrated.kafka_bootstrap_servers, group_id=group, topics=[topic], client_id=group),
            handler=handler,
            group_id=group,
            batch_size=2,
            metrics=metrics,
            lag_report_interval_s=0,
        )
        tasks = [asyncio.create_task(server.run()), asyncio.create_task(consumer.run())]
        await asyncio.wait_for(server.listening.wait(), timeout=5)
        try:

            def lag_is(expected: float) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    # Every assigned partition has a series; only the one with our key has records.
                    found = _samples(
                        await _scrape(http, port), "settle_consumer_lag_messages", group=group, topic=topic
                    )
                    return bool(found) and sum(value for _, value in found) == expected

                return check

            # The first batch (2 of 5) is done, the second is held: 3 are not consumed yet.
            await eventually(lag_is(3))
            assert handler.handled == 2
            handler.released.set()
            await eventually(lag_is(0))

            # A record without an event id can never be applied: it is dead-lettered, and counted once.
            await producer.send_and_wait(topic, value=b"junk", key=unique.encode())

            async def dead_lettered() -> bool:
                exposition = await _scrape(http, port)
                return _value(exposition, "settle_dlq_messages_total", group=group, topic=topic) == 1

            await eventually(dead_lettered)
            exposition = await _scrape(http, port)
            assert _value(exposition, "settle_events_consumed_total", group=group, topic=topic) == 6
        finally:
            handler.released.set()
            consumer.stop()
            server.stop()
            await asyncio.gather(*tasks)


class _TcpProxy:
    """Forwards TCP connections to PostgreSQL; `cut()` makes it unreachable, `restore()` reachable again."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        socket_dir = url.query.get("host") or (url.host if url.host and url.host.startswith("/") else None)
        if isinstance(socket_dir, tuple):
            socket_dir = socket_dir[0]
        port = url.port or 5432
        if socket_dir:  # embedded PostgreSQL listens on a unix socket only
            path = f"{socket_dir}/.s.PGSQL.{port}"
            self._connect: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = lambda: (
                asyncio.open_unix_connection(path)
            )
        else:
            host = url.host or "127.0.0.1"
            self._connect = lambda: asyncio.open_connection(host, port)
        self.port = free_port()
        self.url = url.difference_update_query(["host"]).set(host="127.0.0.1", port=self.port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await self._connect()
        self._open |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()
                self._open.discard(sink)

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_health_is_not_serving_while_the_database_is_unreachable(migrated: Infrastructure) -> None:
    proxy = _TcpProxy(migrated.database_url)
    await proxy.restore()
    engine = create_engine(
        service_database_url(proxy.url.render_as_string(hide_password=False), database_name("payment"))
    )
    producer = create_producer(migrated.kafka_bootstrap_servers, client_id="test-health")
    await producer.start()
    metrics = ServiceMetrics("payment")
    server, health_servicer = create_server(service="payment", registrations=[], api_keys=[], scopes={})
    port = server.add_insecure_port("127.0.0.1:0")
    monitor = DependencyMonitor(
        [database_probe(engine), broker_probe(producer)], metrics, interval_s=0.2, timeout_s=1.0
    )
    relay = OutboxRelay(
        engine, producer, service="payment", bootstrap_servers=migrated.kafka_bootstrap_servers, poll_interval_s=0.05
    )
    process = ServiceProcess(
        server=server,
        health_servicer=health_servicer,
        service_names=["settle.payment.v1.PaymentService"],
        loops=[BackgroundLoop("outbox-relay", relay.run, relay.stop)],
        grace_s=1,
        dependencies=monitor,
    )
    task = asyncio.create_task(process.run())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status_is(expected: int, service: str = "") -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            return bool(response.status == expected)

        return check

    def up(dependency: str) -> float:
        value = metrics.registry.get_sample_value(
            "settle_dependency_up", {"service": "payment", "dependency": dependency}
        )
        return -1.0 if value is None else value

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        await eventually(status_is(serving), timeout_s=10)
        assert (up("postgres"), up("kafka")) == (1, 1)

        await proxy.cut()
        await eventually(status_is(not_serving), timeout_s=15)
        assert await status_is(not_serving, "settle.payment.v1.PaymentService")()
        assert (up("postgres"), up("kafka")) == (0, 1)

        await asyncio.sleep(1)  # the relay meets the outage too, and must wait it out, not end the process
        assert not task.done()

        await proxy.restore()
        await eventually(status_is(serving), timeout_s=15)
        assert up("postgres") == 1
        order_id = str(uuid.uuid4())
        async with engine.begin() as connection:
            await outbox.append(connection, [_requested(order_id)])
        await read_until(migrated, PAYMENT_ORDER_REQUESTED, lambda found: len(found) == 1, keys={order_id.encode()})
    finally:
        await channel.close()
        process.request_stop()
        await asyncio.wait_for(task, timeout=15)
        await proxy.cut()
        await producer.stop()
        await engine.dispose()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test (the services check per call, so running ones follow)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "settle-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider)
    yield exporter
    otel.install(None)


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


async def test_one_trace_runs_from_the_grpc_call_through_the_relay_to_the_consumer(
    payment: PaymentService,
    spans: InMemorySpanExporter,
    engines: dict[str, AsyncEngine],
    migrated: Infrastructure,
    unique: str,
) -> None:
    async with clients.channel(payment.address, CHECKOUT_KEY) as channel:
        created = await clients.payment_stub(channel).CreatePayment(create_request(unique, sellers=1))
    order_id = created.payment.orders[0].payment_order_id

    def finished(kind: SpanKind, name: str) -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.kind == kind and s.name == name]

    method = "settle.payment.v1.PaymentService/CreatePayment"
    (client,) = finished(SpanKind.CLIENT, method)
    await eventually(lambda: _true(bool(finished(SpanKind.SERVER, method))))
    (server,) = finished(SpanKind.SERVER, method)
    assert client.context is not None and server.context is not None and server.parent is not None
    trace_id = client.context.trace_id
    assert server.context.trace_id == trace_id
    assert server.parent.span_id == client.context.span_id
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == 0

    # The relay published the order's request under a producer span, child of the server span, and the
    # record's traceparent header names that producer span.
    (record,) = await read_until(
        migrated, PAYMENT_ORDER_REQUESTED, lambda found: len(found) >= 1, keys={order_id.encode()}
    )
    traceparent = dict(record.headers)[HEADER_TRACEPARENT].decode()
    publish_name = f"{PAYMENT_ORDER_REQUESTED} publish"
    producer = next(
        s for s in finished(SpanKind.PRODUCER, publish_name) if s.context and s.context.trace_id == trace_id
    )
    assert producer.context is not None and producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    parsed = tracing.parse(traceparent)
    assert parsed is not None and parsed.flags & 1  # sampled
    assert (parsed.trace_id, parsed.span_id) == (f"{trace_id:032x}", _hex(producer.context.span_id))

    # A consumer continues it: a consume span, child of the producer span, is the trace in progress for
    # the handler (so its log lines and the events it writes carry the same trace id).
    group = f"test-trace-{unique}"
    handler = _TraceRecordingHandler(order_id)
    consumer = Consumer(
        engine=engines["ledger"],
        kafka=create_consumer(
            migrated.kafka_bootstrap_servers, group_id=group, topics=[PAYMENT_ORDER_REQUESTED], client_id=group
        ),
        handler=handler,
        group_id=group,
        batch_size=1,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _true(handler.trace_id is not None))
    finally:
        consumer.stop()
        await task
    assert handler.trace_id == f"{trace_id:032x}"
    consumed = [
        s
        for s in finished(SpanKind.CONSUMER, f"{PAYMENT_ORDER_REQUESTED} process")
        if s.parent is not None and s.parent.span_id == producer.context.span_id
    ]
    assert len(consumed) == 1
    assert consumed[0].context is not None and consumed[0].context.trace_id == trace_id


async def _true(value: bool) -> bool:
    return value


@dataclass
class _TraceRecordingHandler:
    payment_order_id: str
    trace_id: str | None = None

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        for event in events:
            assert isinstance(event.message, PaymentOrderRequested)
            if event.message.payment_order_id == self.payment_order_id:
                self.trace_id = tracing.current_trace_id()
