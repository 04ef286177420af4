"""No caller reads or changes another scope's data: every RPC of every service, found in the generated
descriptors, refuses a call without a key (UNAUTHENTICATED) and a key without one of its scopes
(PERMISSION_DENIED). Against the five real services, built as their processes build them, over TLS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from settle.executor.v1 import executor_pb2
from settle.ledger.v1 import ledger_pb2
from settle.payment.v1 import payment_pb2
from settle.reconciliation.v1 import reconciliation_pb2
from settle.wallet.v1 import wallet_pb2

from services.cli.certificates import ensure_local_tls
from services.cli.endpoints import SERVICES as STACK_SERVICES
from services.common import clients
from services.common.api_keys import KNOWN_SCOPES
from services.common.grpc_errors import error_info_reason
from services.common.infra import Infrastructure
from services.common.migrations import upgrade
from services.common.runtime import ServiceProcess
from services.common.tls import ClientTls
from services.executor.config import ExecutorSettings
from services.executor.entrypoints import grpc as executor_grpc
from services.executor.entrypoints import main as executor_main
from services.ledger.config import LedgerSettings
from services.ledger.entrypoints import main as ledger_main
from services.payment.config import PaymentSettings
from services.payment.entrypoints import grpc as payment_grpc
from services.payment.entrypoints import main as payment_main
from services.reconciliation.config import ReconciliationSettings
from services.reconciliation.entrypoints import grpc as reconciliation_grpc
from services.reconciliation.entrypoints import main as reconciliation_main
from services.wallet.config import WalletSettings
from services.wallet.entrypoints import main as wallet_main
from tests.fixtures import ADMIN_KEY, API_KEYS, CHECKOUT_KEY, FINANCE_KEY

KEY_OF_SCOPE = {"payments": CHECKOUT_KEY, "finance": FINANCE_KEY, "admin": ADMIN_KEY}
CALL_TIMEOUT_S = 10


@dataclass(frozen=True)
class Service:
    name: str
    descriptor: ServiceDescriptor
    scopes: Mapping[str, frozenset[str]]
    create: Callable[[Any], Awaitable[tuple[ServiceProcess, int]]]
    settings_class: type[Any]
    extra: Mapping[str, object]


SERVICES = [
    Service("payment", payment_pb2.DESCRIPTOR.services_by_name["PaymentService"], payment_grpc.SCOPES,
            payment_main.create_service, PaymentSettings, {}),
    Service("executor", executor_pb2.DESCRIPTOR.services_by_name["ExecutorService"], executor_grpc.SCOPES,
            executor_main.create_service, ExecutorSettings,
            {"psp_api_base": "http://127.0.0.1:9", "worker_id": f"scope-test-{uuid.uuid4().hex[:6]}"}),
    Service("wallet", wallet_pb2.DESCRIPTOR.services_by_name["WalletService"], wallet_main.SCOPES,
            wallet_main.create_service, WalletSettings, {"payout_schedule_interval_s": 0}),
    Service("ledger", ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"], ledger_main.SCOPES,
            ledger_main.create_service, LedgerSettings, {}),
    Service("reconciliation", reconciliation_pb2.DESCRIPTOR.services_by_name["ReconciliationService"],
            reconciliation_grpc.SCOPES, reconciliation_main.create_service, ReconciliationSettings,
            {"nightly_check_interval_s": 0}),
]  # fmt: skip


@asynccontextmanager
async def running(created: Awaitable[tuple[ServiceProcess, int]]) -> AsyncIterator[int]:
    process, port = await created
    task = asyncio.create_task(process.run())
    try:
        yield port
    finally:
        process.request_stop()
        await asyncio.wait_for(task, timeout=30)


@dataclass(frozen=True)
class Running:
    addresses: dict[str, str]
    tls: ClientTls


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def settle(migrated: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """Every service on its own port, with TLS from its settings as in production."""
    upgrade("reconciliation", migrated.database_url)
    files = ensure_local_tls(tmp_path_factory.mktemp("tls"), [service.name for service in SERVICES])
    common = {
        "database_url": migrated.database_url,
        "kafka_bootstrap_servers": migrated.kafka_bootstrap_servers,
        "grpc_port": 0,
        "api_keys": API_KEYS,
        "tls_mode": "tls",
        "tls_cert_file": files.server_cert,
        "tls_key_file": files.server_key,
    }
    async with AsyncExitStack() as stack:
        found = {}
        for service in SERVICES:
            settings = service.settings_class(**common, **service.extra)
            port = await stack.enter_async_context(running(service.create(settings)))
            found[service.name] = f"127.0.0.1:{port}"
        yield Running(found, ClientTls(files.ca_cert))


async def call(settle: Running, service: Service, method: MethodDescriptor, key: str) -> grpc.aio.AioRpcError:
    """Calls `method` with an empty request; returns the error it must end with."""
    path = f"/{service.descriptor.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    serialize, deserialize = request_class.SerializeToString, response_class.FromString
    async with clients.channel(settle.addresses[service.name], key, settle.tls) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            if method.client_streaming:
                stream_unary = channel.stream_unary(
                    path, request_serializer=serialize, response_deserializer=deserialize
                )
                await stream_unary(iter([request_class()]), timeout=CALL_TIMEOUT_S)
            elif method.server_streaming:
                unary_stream = channel.unary_stream(
                    path, request_serializer=serialize, response_deserializer=deserialize
                )
                async for _ in unary_stream(request_class(), timeout=CALL_TIMEOUT_S):
                    pass
            else:
                unary = channel.unary_unary(path, request_serializer=serialize, response_deserializer=deserialize)
                await unary(request_class(), timeout=CALL_TIMEOUT_S)
    return error.value


@pytest.mark.parametrize("service", SERVICES, ids=[service.name for service in SERVICES])
def test_every_rpc_declares_its_scopes_and_none_is_shared_by_checkouts_and_finance(service: Service) -> None:
    assert set(service.scopes) == set(service.descriptor.methods_by_name), "an RPC without scopes, or a stale name"
    for name, allowed in service.scopes.items():
        assert allowed and allowed <= KNOWN_SCOPES, name
        assert not {"payments", "finance"} <= allowed, f"{name} would let checkouts and finance read each other's data"


@pytest.mark.parametrize("service", SERVICES, ids=[service.name for service in SERVICES])
async def test_every_rpc_refuses_callers_without_a_key_or_its_scope(settle: Running, service: Service) -> None:
    checked = 0
    for method in service.descriptor.methods:
        anonymous = await call(settle, service, method, "")
        assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED, method.name
        for scope in sorted(KNOWN_SCOPES - service.scopes.get(method.name, frozenset())):
            denied = await call(settle, service, method, KEY_OF_SCOPE[scope])
            assert (denied.code(), error_info_reason(denied)) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING"), (
                f"{method.name} with a {scope} key"
            )
            checked += 1
    assert checked >= len(service.descriptor.methods)  # every RPC is closed to at least one scope


def test_the_walk_covers_every_service_settle_runs() -> None:
    assert sorted(service.name for service in SERVICES) == sorted(STACK_SERVICES)
