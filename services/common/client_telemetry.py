"""Trace context for the gRPC calls a client makes: the trace in progress goes out as `traceparent`
metadata, with tracing on (otel.py) under a client span that ends when the call does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
from opentelemetry.trace import Span, SpanKind

from services.common import otel, tracing
from services.common.rpc_telemetry import rpc_attributes

_finishing: set[asyncio.Task[None]] = set()  # references to span-ending tasks until they are done


def _method_of(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _ClientTelemetry:
    def _outgoing(self, details: grpc.aio.ClientCallDetails) -> tuple[grpc.aio.ClientCallDetails, Span | None]:
        method = _method_of(details).lstrip("/")
        parent = tracing.active_traceparent()
        span = otel.start_span(method, SpanKind.CLIENT, parent, rpc_attributes(method))
        # Outside any trace (a CLI command), each call starts its own, as a root client span would.
        traceparent = otel.traceparent_of(span) if span is not None else parent or tracing.new_traceparent()
        metadata = (*tuple(details.metadata or ()), ("traceparent", traceparent))
        outgoing = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return outgoing, span

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        outgoing, span = self._outgoing(details)
        try:
            call = await continuation(outgoing, request)
        except BaseException as error:
            if span is not None:
                otel.end(span, error)
            raise
        if span is not None:
            call.add_done_callback(partial(_end_when_done, span))
        return call


def _end_when_done(span: Span, call: grpc.aio.Call) -> None:
    # The status of a finished call is read with an await, which a done callback cannot do itself.
    task = asyncio.get_running_loop().create_task(_end_client_span(span, call))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


async def _end_client_span(span: Span, call: grpc.aio.Call) -> None:
    code = await call.code()
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    otel.end(span, None if code == grpc.StatusCode.OK else code.name)


# grpc.aio files each interceptor under ONE call kind, hence one class per kind.
class _UnaryUnaryTelemetry(_ClientTelemetry, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _UnaryStreamTelemetry(_ClientTelemetry, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await self._call(continuation, details, request)


class _StreamUnaryTelemetry(_ClientTelemetry, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


class _StreamStreamTelemetry(_ClientTelemetry, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await self._call(continuation, details, requests)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send the trace in progress with every call made on a channel."""
    return [_UnaryUnaryTelemetry(), _UnaryStreamTelemetry(), _StreamUnaryTelemetry(), _StreamStreamTelemetry()]
