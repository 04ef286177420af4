"""Optional OpenTelemetry tracing (SETTLE_OTEL_ENABLED, off by default).

Off, nothing of OpenTelemetry runs: every entry point here returns after one `None` check, and the
hand-rolled traceparent (tracing.py) travels in metadata and headers as before. On, spans are made for
gRPC calls (served and made), Kafka produce (the relay) and consume (the consumer base), each a child of
the traceparent that arrived, and the span's own traceparent replaces it: in the ContextVar (so logs and
outbox rows carry it), in outgoing metadata and in Kafka headers. The ContextVar stays the one source of
parents; OpenTelemetry's own context is not used, so nothing has to be attached and detached across
awaits and stream yields.

The exporter is OTLP over gRPC, configured by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_SAMPLER, OTEL_BSP_*); service.name is settle-<service>.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    format_span_id,
    format_trace_id,
    set_span_in_context,
)

from services.common import tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

Attributes = Mapping[str, str | int]

_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def configure(service: str, *, enabled: bool) -> None:
    """Turns tracing on for this process with an OTLP exporter (once; later calls keep the first)."""
    if not enabled or _tracer is not None:
        return
    # Imported only when on: the exporter pulls in its own gRPC stubs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"settle-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)


def install(provider: TracerProvider | None) -> None:
    """Traces with `provider` (tests pass one with an in-memory exporter); None turns tracing off."""
    global _tracer, _provider  # noqa: PLW0603 - one tracer per process, like OpenTelemetry's global one
    _provider = provider
    _tracer = provider.get_tracer("settle") if provider is not None else None


def is_enabled() -> bool:
    return _tracer is not None


def flush() -> None:
    """Exports the spans still buffered (at shutdown)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5_000)


def start_span(name: str, kind: SpanKind, parent_traceparent: str, attributes: Attributes | None = None) -> Span | None:
    """A span child of `parent_traceparent` (a root span if that is empty or malformed); None when off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, context=_context_of(parent_traceparent), kind=kind, attributes=attributes)


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}-{int(context.trace_flags):02x}"


def end(span: Span, error: BaseException | str | None = None) -> None:
    if error is not None:
        if isinstance(error, BaseException):
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))
    span.end()


@contextmanager
def ending(spans: list[Span]) -> Iterator[None]:
    """Ends every span in `spans` after the block, marked failed with the exception if the block raised."""
    try:
        yield
    except BaseException as error:
        for span in spans:
            end(span, error)
        raise
    for span in spans:
        end(span)


@contextmanager
def continued(name: str, kind: SpanKind, traceparent: str, attributes: Attributes | None = None) -> Iterator[None]:
    """The work on an incoming request or event, for the block: off, the trace is continued as before
    (tracing.continue_trace); on, a span child of `traceparent` is the trace in progress, then ended."""
    span = start_span(name, kind, traceparent, attributes)
    if span is None:
        tracing.continue_trace(traceparent)
        yield
        return
    # set() rather than reset(token): a stream's generator may be closed from another context.
    previous = tracing.replace_current(traceparent_of(span))
    try:
        yield
    except BaseException as error:
        end(span, error)
        raise
    else:
        end(span)
    finally:
        tracing.replace_current(previous)


def _context_of(traceparent: str) -> Context:
    parsed = tracing.parse(traceparent)
    if parsed is None:
        return Context()  # explicitly empty: a root span, whatever OpenTelemetry's current context holds
    parent = SpanContext(
        trace_id=int(parsed.trace_id, 16),
        span_id=int(parsed.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parsed.flags),
    )
    return set_span_in_context(NonRecordingSpan(parent), Context())
