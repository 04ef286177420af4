"""Metrics and trace context for the gRPC calls a server serves (client_telemetry.py: calls made).

Every method but health and reflection (probes and tooling, not traffic) is timed and counted by method
and final status code, and its trace is continued from the `traceparent` metadata: the trace in
progress for the handler, and with tracing on (otel.py) a server span.

The server interceptor must be the outermost (first in the list): it then sees the status code the
authentication and error-mapping interceptor settled on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from services.common import otel, tracing
from services.common.handler_wrapping import wrap_handler
from services.common.metrics import ServiceMetrics

_UNOBSERVED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# The codes that mean the server failed (OpenTelemetry's semantic conventions for gRPC server spans).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def rpc_attributes(method: str) -> dict[str, str | int]:
    service, _, name = method.rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _final_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()  # None when the handler neither aborted nor set a code: success
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK


@asynccontextmanager
async def _observed(
    metrics: ServiceMetrics, method: str, traceparent: str, context: grpc.aio.ServicerContext
) -> AsyncIterator[None]:
    started_s = time.perf_counter()
    span = otel.start_span(method, SpanKind.SERVER, traceparent, rpc_attributes(method))
    if span is None:
        tracing.continue_trace(traceparent)
    else:
        # Each RPC runs in a task of its own, so the ContextVar needs no restoring afterwards.
        tracing.replace_current(otel.traceparent_of(span))
    code = grpc.StatusCode.UNKNOWN  # an exception that is not an abort ends the call UNKNOWN
    try:
        yield
        code = _final_code(context)
    except grpc.aio.AbortError:
        code = _final_code(context)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        code = grpc.StatusCode.CANCELLED  # the client went away or the deadline passed
        raise
    finally:
        metrics.rpc_finished(method, code.name, time.perf_counter() - started_s)
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            otel.end(span, code.name if code in _SERVER_ERRORS else None)


class TelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_UNOBSERVED_PREFIXES):
            return handler
        metadata: Mapping[str, str | bytes] = dict(details.invocation_metadata or ())
        observe = partial(_observed, self._metrics, details.method.lstrip("/"), _text(metadata.get("traceparent")))
        return wrap_handler(handler, observe)
