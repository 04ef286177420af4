"""gRPC server bootstrap: authentication by API key and scope, error mapping, health, reflection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.api_keys import ApiKeyAuthority, ApiKeyRecord
from services.common.errors import PermissionDenied, SettleError, Unauthenticated
from services.common.grpc_errors import internal_status, to_grpc_status
from services.common.handler_wrapping import Around, wrap_handler
from services.common.metrics import ServiceMetrics
from services.common.rpc_telemetry import TelemetryInterceptor

log = logging.getLogger(__name__)

# Methods anyone may call: health checks (load balancers, probes) and reflection (tooling).
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _presented_key(metadata: Mapping[str, str | bytes]) -> str:
    value = metadata.get("x-api-key") or metadata.get("authorization") or ""
    text = value.decode() if isinstance(value, bytes) else value
    return text.removeprefix("Bearer ").strip()


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, authorises by scope and maps domain errors for every method of a service."""

    def __init__(self, *, service: str, authority: ApiKeyAuthority, scopes: Mapping[str, frozenset[str]]) -> None:
        self._service = service
        self._authority = authority
        # Method name (e.g. "CreatePayment") → scopes any one of which allows the call.
        self._scopes = scopes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_PUBLIC_PREFIXES):
            return handler
        method_name = details.method.rsplit("/", 1)[-1]
        metadata = dict(details.invocation_metadata or ())
        return wrap_handler(handler, _guarded(lambda: self._authorise(method_name, metadata), self._service))

    def _authorise(self, method_name: str, metadata: Mapping[str, str | bytes]) -> None:
        presented = _presented_key(metadata)
        if not presented:
            log.warning("refused %s: no API key", method_name)
            raise Unauthenticated("an API key is required (metadata `x-api-key`)", reason="API_KEY_MISSING")
        try:
            caller = self._authority.authenticate(presented)
        except Unauthenticated:
            log.warning("refused %s: unknown API key", method_name)  # never the key itself
            raise
        allowed = self._scopes.get(method_name, frozenset())  # a method missing here is closed to all
        if not caller.scopes & allowed:
            # The key id (never the key) says who tried: a misconfigured client, or a leaked key probing.
            log.warning(
                "refused %s to API key %s: scope missing",
                method_name,
                caller.key_id,
                extra={"api_key_id": caller.key_id},
            )
            raise PermissionDenied(
                f"{method_name} needs one of the scopes {sorted(allowed)}; this key has {sorted(caller.scopes)}"
            )


async def _abort(context: grpc.aio.ServicerContext, error: BaseException, service: str) -> None:
    if isinstance(error, SettleError):
        status = to_grpc_status(error, service)
    else:
        log.exception("unexpected error in gRPC handler", exc_info=error)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def _guarded(authorise: Callable[[], None], service: str) -> Around:
    """Authorises each call before the handler runs and maps what it raises to a gRPC status."""

    @asynccontextmanager
    async def guard(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        # The trace was continued from the metadata by the TelemetryInterceptor, outside this one.
        try:
            authorise()
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort(context, error, service)

    return guard


def create_server(
    *,
    service: str,
    registrations: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    api_keys: Sequence[ApiKeyRecord],
    scopes: Mapping[str, frozenset[str]],
    metrics: ServiceMetrics | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """Builds a server with the given servicers (add function, servicer, full service name).

    The caller binds a port and starts it; tests bind port 0 on a real server.
    """
    server = grpc.aio.server(
        # Telemetry first, so it is the outermost: it times the whole call and sees its final code.
        interceptors=[
            TelemetryInterceptor(metrics or ServiceMetrics(service)),
            ServiceInterceptor(service=service, authority=ApiKeyAuthority(api_keys), scopes=scopes),
        ],
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        maximum_concurrent_rpcs=2048,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    for add, servicer, full_name in registrations:
        add(servicer, server)
        names.append(full_name)
    reflection.enable_server_reflection(names, server)
    return server, health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer, names: list[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *names]:
        await health_servicer.set(name, status)
