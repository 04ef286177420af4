"""Where a running Settle is: addresses, TLS files and API keys, written by `settle up` for every other
command. The keys themselves stay in `api_keys.json` (see api_key_store.py), not in `endpoints.json`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc import Channel as BlockingChannel
from grpc import aio as grpc_aio

from services.cli.api_key_store import ApiKeys
from services.cli.private_files import write_private
from services.common import clients
from services.common.tls import ClientTls

__all__ = ["DEFAULT_PORTS", "DEFAULT_SANDBOX_PORT", "SERVICES", "ApiKeys", "Endpoints", "default_data_dir"]

SERVICES = ("payment", "executor", "wallet", "ledger", "reconciliation")
DEFAULT_PORTS = {
    "payment": 50051,
    "executor": 50052,
    "wallet": 50053,
    "ledger": 50054,
    "reconciliation": 50055,
}
DEFAULT_SANDBOX_PORT = 12111
_TLS_FIELDS = ("ca_file", "cert_file", "key_file")


def default_data_dir() -> Path:
    return Path(os.environ.get("SETTLE_DATA_DIR", ".settle")).resolve()


@dataclass
class Endpoints:
    grpc: dict[str, str]
    psp_sandbox_url: str
    api_keys: ApiKeys
    database_url: str
    kafka_bootstrap_servers: str
    infra_mode: str
    pg_host: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    # How clients reach the services: the CA to trust and the client certificate (used under mTLS).
    # None: plaintext (services with SETTLE_TLS_MODE=off, as integration tests run them).
    tls: ClientTls | None = None
    tls_mode: str = "off"  # what the services run: off, tls or mtls
    metrics: dict[str, str] = field(default_factory=dict)  # each service's Prometheus /metrics URL

    def channel(self, service: str, role: str = "admin") -> grpc_aio.Channel:
        """A channel to one service, authenticated with the key of `role` (checkout, finance, admin)."""
        return clients.channel(self.grpc[service], getattr(self.api_keys, role), self.tls)

    def health_channel(self, service: str) -> BlockingChannel:
        """A blocking channel to one service for health checks (public: no API key)."""
        return clients.sync_channel(self.grpc[service], self.tls)

    def save(self, data_dir: Path) -> None:
        raw: dict[str, Any] = {name: value for name, value in vars(self).items() if name not in ("api_keys", "tls")}
        raw["tls"] = {name: str(getattr(self.tls, name) or "") for name in _TLS_FIELDS} if self.tls else None
        self.api_keys.save(data_dir)
        write_private(data_dir / "endpoints.json", json.dumps(raw, indent=2).encode())

    @classmethod
    def load(cls, data_dir: Path) -> Endpoints | None:
        path = data_dir / "endpoints.json"
        keys = ApiKeys.load(data_dir)
        if not path.exists() or keys is None:
            return None
        raw = json.loads(path.read_text())
        raw.pop("api_keys", None)  # written there before the keys moved to api_keys.json
        tls = raw.pop("tls", None)
        if tls:
            tls = ClientTls(**{name: Path(value) if value else None for name, value in tls.items()})
        return cls(**raw, api_keys=keys, tls=tls)

    @staticmethod
    def remove(data_dir: Path) -> None:
        (data_dir / "endpoints.json").unlink(missing_ok=True)
