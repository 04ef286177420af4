"""W3C trace context carried through gRPC metadata, Kafka headers and log lines.

The traceparent of the work in progress lives in one ContextVar. Without OpenTelemetry, an incoming
traceparent is continued with a fresh span id; with it (services/common/otel.py), the ContextVar holds
the traceparent of the real span in progress, so logs, outbox headers and outgoing calls agree with it.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from typing import NamedTuple

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: ContextVar[str] = ContextVar("traceparent", default="")


class TraceParent(NamedTuple):
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    flags: int  # bit 0: sampled


def parse(traceparent: str) -> TraceParent | None:
    """The parts of a version-00 traceparent, or None if it is missing or malformed."""
    match = _TRACEPARENT.match(traceparent or "")
    if match is None:
        return None
    return TraceParent(match.group(1), match.group(2), int(match.group(3), 16))


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def current_traceparent() -> str:
    """The traceparent of the work in progress (a fresh trace when there is none)."""
    value = _current.get()
    if not value:
        value = new_traceparent()
        _current.set(value)
    return value


def active_traceparent() -> str:
    """The traceparent of the work in progress, or "" when there is none (never starts a trace)."""
    return _current.get()


def current_trace_id() -> str:
    parsed = parse(_current.get())
    return parsed.trace_id if parsed else ""


def continue_trace(traceparent: str) -> None:
    """Continues the trace of an incoming request or event with a new span id."""
    parsed = parse(traceparent)
    _current.set(new_traceparent(parsed.trace_id if parsed else None))


def replace_current(traceparent: str) -> str:
    """Makes `traceparent` the one of the work in progress; returns the one it replaces (to put back)."""
    previous = _current.get()
    _current.set(traceparent)
    return previous
