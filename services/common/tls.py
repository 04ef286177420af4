"""TLS for gRPC: server credentials (TLS, or mTLS that requires a client certificate signed by the CA)
and client channel credentials (the CA to trust, plus a client certificate for mTLS), from PEM files.

Files are read when a server binds or a channel opens, so certificates renewed on disk are picked up
by the next channel without a restart (a server picks them up at its next start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    # With `require_client_cert`, the CA that must have signed every client's certificate.
    ca_file: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class ClientTls:
    """How a client checks the server (the CA; None = the system's roots) and proves who it is (mTLS)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")


def server_tls(settings: ServiceSettings) -> ServerTls | None:
    """The server side of a service's settings; None when SETTLE_TLS_MODE=off."""
    if settings.tls_mode == "off":
        return None
    assert settings.tls_cert_file and settings.tls_key_file  # checked by the settings' validation
    return ServerTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file, settings.tls_client_auth)


def client_tls(settings: ServiceSettings) -> ClientTls | None:
    """How a service calls another one: trusting its CA, and with its own certificate as client identity
    (sent only if the server asks, i.e. under mTLS). None when SETTLE_TLS_MODE=off."""
    if settings.tls_mode == "off":
        return None
    return ClientTls(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
    if not tls.require_client_cert:
        return grpc.ssl_server_credentials([pair])
    if tls.ca_file is None:
        raise ValueError("mTLS needs the CA file that signs client certificates")
    return grpc.ssl_server_credentials([pair], root_certificates=tls.ca_file.read_bytes(), require_client_auth=True)


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        private_key=tls.key_file.read_bytes() if tls.key_file else None,
        certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
    )


def bind(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    """Binds `address` with TLS when given (then plaintext is refused), else plaintext; returns the port."""
    if tls is None:
        log.warning("gRPC on %s WITHOUT TLS (SETTLE_TLS_MODE=off): for tests and local development only", address)
        return int(server.add_insecure_port(address))
    port = int(server.add_secure_port(address, server_credentials(tls)))
    log.info("gRPC on %s with %s", address, "mTLS" if tls.require_client_cert else "TLS")
    return port
