"""Where a running Settle is: addresses and API keys, written by `settle up` for every other command."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grpc import aio as grpc_aio

from services.common import clients

SERVICES = ("payment", "executor", "wallet", "ledger", "reconciliation")
DEFAULT_PORTS = {
    "payment": 50051,
    "executor": 50052,
    "wallet": 50053,
    "ledger": 50054,
    "reconciliation": 50055,
}
DEFAULT_SANDBOX_PORT = 12111


def default_data_dir() -> Path:
    return Path(os.environ.get("SETTLE_DATA_DIR", ".settle")).resolve()


@dataclass
class ApiKeys:
    """One key per scope: checkouts (`payments`), finance (`finance`, read-only), operators (`admin`)."""

    checkout: str
    finance: str
    admin: str

    @classmethod
    def generate(cls) -> ApiKeys:
        return cls(*(f"sk_settle_{role}_{secrets.token_urlsafe(18)}" for role in ("checkout", "finance", "admin")))

    def as_setting(self) -> dict[str, list[str]]:
        return {self.checkout: ["payments"], self.finance: ["finance"], self.admin: ["admin"]}

    @classmethod
    def load_or_create(cls, data_dir: Path) -> ApiKeys:
        """Keys persist with the data so clients keep working across restarts."""
        path = data_dir / "api_keys.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        keys = cls.generate()
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(keys), indent=2))
        path.chmod(0o600)
        return keys


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

    def channel(self, service: str, role: str = "admin") -> grpc_aio.Channel:
        """A channel to one service, authenticated with the key of `role` (checkout, finance, admin)."""
        return clients.channel(self.grpc[service], getattr(self.api_keys, role))

    def save(self, data_dir: Path) -> None:
        path = data_dir / "endpoints.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @classmethod
    def load(cls, data_dir: Path) -> Endpoints | None:
        path = data_dir / "endpoints.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["api_keys"] = ApiKeys(**raw["api_keys"])
        return cls(**raw)

    @staticmethod
    def remove(data_dir: Path) -> None:
        (data_dir / "endpoints.json").unlink(missing_ok=True)
