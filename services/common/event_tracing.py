"""The trace of a consumer handler's work on a batch of events (see otel.py for tracing on and off)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.trace import SpanKind

from services.common import otel
from services.common.events import InboundEvent


@contextmanager
def consuming(events: Sequence[InboundEvent], group_id: str) -> Iterator[None]:
    """A lone event's trace is the one in progress for the block (under a consume span with tracing on),
    so the events the handler writes continue it. A batch has no single trace: with tracing on, each
    event gets a consume span of its own, ended with the batch."""
    if len(events) == 1:
        event = events[0]
        with otel.continued(
            f"{event.topic} process", SpanKind.CONSUMER, event.traceparent, _attributes(event, group_id)
        ):
            yield
        return
    if not otel.is_enabled():
        yield
        return
    spans = [
        span
        for event in events
        if (
            span := otel.start_span(
                f"{event.topic} process", SpanKind.CONSUMER, event.traceparent, _attributes(event, group_id)
            )
        )
    ]
    with otel.ending(spans):
        yield


def _attributes(event: InboundEvent, group_id: str) -> otel.Attributes:
    return {
        "messaging.system": "kafka",
        "messaging.operation": "process",
        "messaging.destination.name": event.topic,
        "messaging.consumer.group.name": group_id,
        "messaging.destination.partition.id": str(event.partition),
        "messaging.kafka.message.offset": event.offset,
    }
