"""gRPC clients of a running Settle, authenticated with an API key (`x-api-key` metadata), over TLS
(or mTLS) when given a `ClientTls`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from settle.executor.v1 import executor_pb2_grpc
from settle.ledger.v1 import ledger_pb2_grpc
from settle.payment.v1 import payment_pb2_grpc
from settle.wallet.v1 import wallet_pb2_grpc

from services.common.client_telemetry import client_interceptors
from services.common.tls import ClientTls, channel_credentials

__all__ = ["ClientTls", "channel", "executor_stub", "ledger_stub", "payment_stub", "sync_channel", "wallet_stub"]


class _ApiKey:
    def __init__(self, api_key: str) -> None:
        self._metadata = (("x-api-key", api_key),)

    def _with_key(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = tuple(details.metadata or ()) + self._metadata
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under ONE call kind (an if/elif on its base classes), so streaming
# calls need their own interceptor object or they would go out without the key.
class _UnaryUnaryApiKey(_ApiKey, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _UnaryStreamApiKey(_ApiKey, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _StreamUnaryApiKey(_ApiKey, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._with_key(details), request_iterator)


def channel(address: str, api_key: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
    """A channel that sends `api_key` with every call; plaintext when `tls` is None (tests, local tools)."""
    interceptors = [_UnaryUnaryApiKey(api_key), _UnaryStreamApiKey(api_key), _StreamUnaryApiKey(api_key)]
    interceptors += client_interceptors()  # the trace in progress goes with every call
    if tls is None:
        return grpc.aio.insecure_channel(address, interceptors=interceptors)
    return grpc.aio.secure_channel(address, channel_credentials(tls), interceptors=interceptors)


def sync_channel(address: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A blocking channel without an API key: for health checks, which are public."""
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(tls))


def payment_stub(ch: grpc.aio.Channel) -> payment_pb2_grpc.PaymentServiceStub:
    return payment_pb2_grpc.PaymentServiceStub(ch)


def wallet_stub(ch: grpc.aio.Channel) -> wallet_pb2_grpc.WalletServiceStub:
    return wallet_pb2_grpc.WalletServiceStub(ch)


def ledger_stub(ch: grpc.aio.Channel) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(ch)


def executor_stub(ch: grpc.aio.Channel) -> executor_pb2_grpc.ExecutorServiceStub:
    return executor_pb2_grpc.ExecutorServiceStub(ch)
