"""W3C trace context carried through gRPC metadata, Kafka headers and log lines."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_current: ContextVar[str] = ContextVar("traceparent", default="")


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def current_traceparent() -> str:
    """The traceparent of the work in progress (a fresh trace when there is none)."""
    value = _current.get()
    if not value:
        value = new_traceparent()
        _current.set(value)
    return value


def current_trace_id() -> str:
    match = _TRACEPARENT.match(_current.get())
    return match.group(1) if match else ""


def continue_trace(traceparent: str) -> None:
    """Continues the trace of an incoming request or event with a new span id."""
    match = _TRACEPARENT.match(traceparent or "")
    _current.set(new_traceparent(match.group(1) if match else None))
