"""Configuration from SETTLE_* environment variables, validated once at start."""

from __future__ import annotations

import sys
from typing import Annotated, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common import crash_points

Scope = str
# Scopes: `payments` (checkouts create and read payments), `finance` (read-only ledger, wallet and
# reconciliation), `admin` (operators: executor admin API and everything finance may read).
KNOWN_SCOPES = frozenset({"payments", "finance", "admin"})


class ServiceSettings(BaseSettings):
    """Settings every service process shares."""

    model_config = SettingsConfigDict(env_prefix="SETTLE_", extra="ignore", frozen=True)

    database_url: Annotated[str, Field(min_length=1)] = Field(
        description="URL of the PostgreSQL server; each service uses its own database on it."
    )
    kafka_bootstrap_servers: Annotated[str, Field(min_length=1)]
    grpc_host: str = "127.0.0.1"
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # JSON object mapping each API key to its scopes, e.g. {"key-1": ["payments"]}.
    api_keys: dict[str, list[Scope]] = Field(default_factory=dict)
    log_level: str = "INFO"
    consumer_batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    outbox_batch_size: Annotated[int, Field(ge=1, le=5000)] = 1000
    outbox_poll_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    outbox_retention_hours: Annotated[int, Field(ge=1)] = 24 * 7
    db_pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    shutdown_grace_s: Annotated[int, Field(ge=0, le=300)] = 10
    # How long the broker waits for a silent consumer before giving its partitions to others. A
    # member killed without leaving holds its partitions that long, also against its own restart.
    kafka_session_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 10_000
    # Fault injection only (see services/common/crash_points.py): e.g. "relay.after_publish@3".
    crash_points: str = ""

    @field_validator("api_keys")
    @classmethod
    def _scopes_are_known(cls, value: dict[str, list[Scope]]) -> dict[str, list[Scope]]:
        for key, scopes in value.items():
            if len(key) < 16:
                raise ValueError("every API key must be at least 16 characters")
            unknown = set(scopes) - KNOWN_SCOPES
            if unknown:
                raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(KNOWN_SCOPES)}")
        return value

    @field_validator("crash_points")
    @classmethod
    def _crash_points_are_known(cls, value: str) -> str:
        crash_points.parse(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Loads settings or exits with one clear line per bad variable (never a traceback)."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        lines = [f"  {prefix}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
        print("settle: invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
