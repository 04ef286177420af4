"""Health status, trace continuation and metric names, without infrastructure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health, health_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest

from services.cli.stack import free_port
from services.common import otel, tracing
from services.common.client_telemetry import _ClientTelemetry
from services.common.health import DependencyMonitor, Probe, ServingStatus
from services.common.metrics import MetricsServer, ServiceMetrics

INCOMING = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(servicer: health.aio.HealthServicer, service: str = "") -> int:
    response = await servicer.Check(health_pb2.HealthCheckRequest(service=service), None)
    return int(response.status)


async def test_serving_needs_a_start_and_reachable_dependencies() -> None:
    servicer = health.aio.HealthServicer()
    status = ServingStatus(servicer, ["settle.x.v1.X"], dependencies_up=False)
    await status.started()
    assert await _status(servicer) == NOT_SERVING  # no verdict on the dependencies yet
    await status.dependencies_checked(True)
    assert (await _status(servicer), await _status(servicer, "settle.x.v1.X")) == (SERVING, SERVING)
    await status.dependencies_checked(False)
    assert (await _status(servicer), await _status(servicer, "settle.x.v1.X")) == (NOT_SERVING, NOT_SERVING)


async def test_a_check_finishing_during_shutdown_never_reports_serving_again() -> None:
    servicer = health.aio.HealthServicer()
    status = ServingStatus(servicer, ["settle.x.v1.X"], dependencies_up=True)
    await status.started()
    await asyncio.gather(status.dependencies_checked(True), status.stopping(), status.dependencies_checked(True))
    await status.dependencies_checked(True)
    assert (await _status(servicer), await _status(servicer, "settle.x.v1.X")) == (NOT_SERVING, NOT_SERVING)


async def test_a_dependency_that_hangs_counts_as_down_within_the_timeout() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    async def answers() -> None:
        return None

    metrics = ServiceMetrics("wallet")
    monitor = DependencyMonitor([Probe("postgres", hangs), Probe("kafka", answers)], metrics, timeout_s=0.05)
    assert await asyncio.wait_for(monitor.check(), timeout=1) is False
    exposition = generate_latest(metrics.registry).decode()
    assert 'settle_dependency_up{dependency="postgres",service="wallet"} 0.0' in exposition
    assert 'settle_dependency_up{dependency="kafka",service="wallet"} 1.0' in exposition


def test_metric_families_are_named_settle_and_labelled_by_service() -> None:
    metrics = ServiceMetrics("payment")
    metrics.rpc_finished("settle.payment.v1.PaymentService/GetPayment", "NOT_FOUND", 0.003)
    exposition = generate_latest(metrics.registry).decode()
    labels = 'code="NOT_FOUND",method="settle.payment.v1.PaymentService/GetPayment",service="payment"'
    assert f"settle_rpc_requests_total{{{labels}}} 1.0" in exposition
    bucket = 'code="NOT_FOUND",le="0.005",method="settle.payment.v1.PaymentService/GetPayment",service="payment"'
    assert f"settle_rpc_duration_seconds_bucket{{{bucket}}} 1.0" in exposition
    names = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    assert all(name.startswith(("settle_", "process_")) for name in names)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider)
    yield exporter
    otel.install(None)


def test_without_tracing_an_incoming_trace_is_continued_with_a_new_span_id() -> None:
    assert not otel.is_enabled()
    with otel.continued("x process", SpanKind.CONSUMER, INCOMING):
        parsed = tracing.parse(tracing.current_traceparent())
        assert parsed is not None and parsed.trace_id == "a" * 32 and parsed.span_id != "b" * 16


def test_with_tracing_the_span_is_the_trace_in_progress_for_the_block(spans: InMemorySpanExporter) -> None:
    before = tracing.replace_current("")
    with otel.continued("x process", SpanKind.CONSUMER, INCOMING, {"messaging.system": "kafka"}):
        inside = tracing.parse(tracing.current_traceparent())
    assert tracing.active_traceparent() == ""  # put back afterwards
    tracing.replace_current(before)
    (span,) = spans.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == ("a" * 32, "b" * 16)
    assert inside is not None and inside.span_id == f"{span.context.span_id:016x}"
    assert span.kind == SpanKind.CONSUMER


def test_with_tracing_a_failure_marks_the_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="bad"), otel.continued("x process", SpanKind.CONSUMER, ""):
        raise ValueError("bad")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.parent is None  # no incoming trace: a root span


def _outgoing_traceparent() -> str:
    details = grpc.aio.ClientCallDetails("/settle.x.v1.X/Get", None, (("x-api-key", "k"),), None, None)
    outgoing, span = _ClientTelemetry()._outgoing(details)
    if span is not None:
        otel.end(span)
    metadata = dict(outgoing.metadata)
    assert metadata["x-api-key"] == "k"
    return str(metadata["traceparent"])


def test_calls_carry_the_trace_in_progress_or_start_their_own() -> None:
    before = tracing.replace_current(INCOMING)
    try:
        assert _outgoing_traceparent() == INCOMING
        tracing.replace_current("")
        first, second = _outgoing_traceparent(), _outgoing_traceparent()
        assert tracing.parse(first) and tracing.parse(second)
        assert first[3:35] != second[3:35]  # unrelated calls are unrelated traces
    finally:
        tracing.replace_current(before)


def test_with_tracing_calls_go_out_under_a_client_span(spans: InMemorySpanExporter) -> None:
    before = tracing.replace_current(INCOMING)
    try:
        sent = tracing.parse(_outgoing_traceparent())
    finally:
        tracing.replace_current(before)
    (span,) = spans.get_finished_spans()
    assert span.kind == SpanKind.CLIENT and span.name == "settle.x.v1.X/Get"
    assert span.context is not None and sent is not None
    assert (sent.trace_id, sent.span_id) == ("a" * 32, f"{span.context.span_id:016x}")


async def test_http_probes_live_while_running_and_ready_only_when_the_health_says_so() -> None:
    ready = False
    port = free_port()
    server = MetricsServer(ServiceMetrics("wallet"), "127.0.0.1", port, ready=lambda: ready)
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.listening.wait(), timeout=5)
    try:
        async with aiohttp.ClientSession() as http:

            async def status(path: str) -> int:
                async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                    return response.status

            assert (await status("/livez"), await status("/readyz")) == (200, 503)
            ready = True
            assert (await status("/livez"), await status("/readyz")) == (200, 200)
    finally:
        server.stop()
        await task
