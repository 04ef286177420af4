"""Transport security of every Settle server, on a real ledger API over real PostgreSQL: TLS, mTLS with
certificates from a CA, plaintext and strangers refused, API keys checked by scope and rotated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.certificates import LocalTls, create_ca, ensure_local_tls, issue, private_pem
from services.cli.private_files import write_private
from services.common import clients, tls
from services.common.api_keys import ApiKeyRecord
from services.common.grpc_errors import error_info_reason
from services.common.grpc_server import create_server
from services.common.tls import ClientTls, ServerTls
from services.ledger.entrypoints.grpc import LedgerServicer
from services.ledger.entrypoints.main import SCOPES, SERVICE_NAME
from services.ledger.service import LedgerService
from services.reconciliation.config import ReconciliationSettings
from tests.fixtures import API_KEYS, CHECKOUT_KEY, FINANCE_KEY

CALL_TIMEOUT_S = 10


@dataclass(frozen=True)
class Pki:
    settle: LocalTls  # the CA, the services' certificate and the CLI's client certificate
    stranger: ClientTls  # a client certificate from a CA the servers do not know

    @property
    def server(self) -> ServerTls:
        return ServerTls(self.settle.server_cert, self.settle.server_key)

    @property
    def mutual(self) -> ServerTls:
        return ServerTls(self.settle.server_cert, self.settle.server_key, self.settle.ca_cert, require_client_cert=True)

    @property
    def client(self) -> ClientTls:
        return ClientTls(self.settle.ca_cert, self.settle.client_cert, self.settle.client_key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    settle = ensure_local_tls(directory / "settle", ["ledger"])
    other_ca_key, other_ca = create_ca("Someone else's CA")
    key, cert = issue(other_ca_key, other_ca, "intruder", client=True)
    write_private(directory / "intruder.pem", cert.public_bytes(Encoding.PEM))
    write_private(directory / "intruder-key.pem", private_pem(key))
    # The intruder trusts Settle's CA (the server is real); the server must not trust the intruder's.
    stranger = ClientTls(settle.ca_cert, directory / "intruder.pem", directory / "intruder-key.pem")
    return Pki(settle, stranger)


@asynccontextmanager
async def ledger_api(
    engine: AsyncEngine, server_tls: ServerTls | None, records: Sequence[ApiKeyRecord] = API_KEYS
) -> AsyncIterator[str]:
    """The ledger's real API (server, interceptors, scopes) bound as a service binds it; yields its address."""
    servicer = LedgerServicer(LedgerService(engine))
    registrations = [(ledger_pb2_grpc.add_LedgerServiceServicer_to_server, servicer, SERVICE_NAME)]
    server, _ = create_server(service="ledger", registrations=registrations, api_keys=records, scopes=SCOPES)
    port = tls.bind(server, "127.0.0.1:0", server_tls)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def trial_balance(address: str, key: str, client_tls: ClientTls | None) -> ledger_pb2.TrialBalanceResponse:
    async with clients.channel(address, key, client_tls) as channel:
        response: ledger_pb2.TrialBalanceResponse = await clients.ledger_stub(channel).TrialBalance(
            ledger_pb2.TrialBalanceRequest(), timeout=CALL_TIMEOUT_S
        )
        return response


async def refused(address: str, key: str, client_tls: ClientTls | None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await trial_balance(address, key, client_tls)
    return error.value


async def test_a_tls_client_that_trusts_the_ca_is_served(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.server) as address:
        response = await trial_balance(address, FINANCE_KEY, ClientTls(pki.settle.ca_cert))
    assert response.IsInitialized()


async def test_a_plaintext_client_is_refused_by_a_tls_server(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.server) as address:
        error = await refused(address, FINANCE_KEY, None)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_does_not_trust_the_servers_ca_does_not_talk_to_it(
    engines: dict[str, AsyncEngine], pki: Pki, tmp_path: Path
) -> None:
    _, other_ca = create_ca("Not Settle's CA")
    write_private(tmp_path / "other-ca.pem", other_ca.public_bytes(Encoding.PEM))
    async with ledger_api(engines["ledger"], pki.server) as address:
        error = await refused(address, FINANCE_KEY, ClientTls(tmp_path / "other-ca.pem"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_serves_a_client_certificate_signed_by_the_ca(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.mutual) as address:
        response = await trial_balance(address, FINANCE_KEY, pki.client)
    assert response.IsInitialized()


async def test_mtls_refuses_a_client_without_a_certificate(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.mutual) as address:
        error = await refused(address, FINANCE_KEY, ClientTls(pki.settle.ca_cert))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_a_certificate_from_an_unknown_ca(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.mutual) as address:
        error = await refused(address, FINANCE_KEY, pki.stranger)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_service_calls_another_with_its_own_certificate_under_mtls(
    engines: dict[str, AsyncEngine], pki: Pki
) -> None:
    """Reconciliation books fees in the ledger: its settings' certificate is its client identity."""
    settings = ReconciliationSettings(
        database_url="postgresql://unused/x",
        kafka_bootstrap_servers="127.0.0.1:1",
        tls_mode="mtls",
        tls_cert_file=pki.settle.server_cert,
        tls_key_file=pki.settle.server_key,
        tls_ca_file=pki.settle.ca_cert,
    )
    async with ledger_api(engines["ledger"], tls.server_tls(settings)) as address:
        response = await trial_balance(address, FINANCE_KEY, tls.client_tls(settings))
    assert response.IsInitialized()


async def test_over_tls_a_key_still_needs_the_methods_scope(engines: dict[str, AsyncEngine], pki: Pki) -> None:
    async with ledger_api(engines["ledger"], pki.mutual) as address:
        wrong_scope = await refused(address, CHECKOUT_KEY, pki.client)
        no_key = await refused(address, "", pki.client)
        unknown_key = await refused(address, "sk_settle_finance_" + "x" * 32, pki.client)
    assert (wrong_scope.code(), error_info_reason(wrong_scope)) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    assert (no_key.code(), error_info_reason(no_key)) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")
    assert (unknown_key.code(), error_info_reason(unknown_key)) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")


async def test_during_a_rotation_both_keys_work_and_a_retired_key_does_not(
    engines: dict[str, AsyncEngine], pki: Pki
) -> None:
    old_key, new_key = "sk_settle_finance_old_" + "o" * 24, "sk_settle_finance_new_" + "n" * 24
    old = ApiKeyRecord.of("finance-2026-10", old_key, ["finance"])
    new = ApiKeyRecord.of("finance-2026-11", new_key, ["finance"])
    async with ledger_api(engines["ledger"], pki.server, [old, new]) as address:
        for key in (old_key, new_key):
            assert (await trial_balance(address, key, pki.client)).IsInitialized()
    async with ledger_api(engines["ledger"], pki.server, [new]) as address:  # restarted without the old record
        assert (await trial_balance(address, new_key, pki.client)).IsInitialized()
        retired = await refused(address, old_key, pki.client)
    assert retired.code() == grpc.StatusCode.UNAUTHENTICATED
