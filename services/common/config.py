"""Configuration from SETTLE_* environment variables, validated once at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from services.common import crash_points
from services.common.api_keys import KNOWN_SCOPES, ApiKeyRecord, check_unique
from services.common.kafka import KafkaSecurity, SaslMechanism, SecurityProtocol
from services.common.secret_files import SecretFilesSource

__all__ = ["KNOWN_SCOPES", "ServiceSettings", "load_settings"]

TlsMode = Literal["off", "tls", "mtls"]


class ServiceSettings(BaseSettings):
    """Settings every service process shares."""

    model_config = SettingsConfigDict(env_prefix="SETTLE_", extra="ignore", frozen=True)

    database_url: Annotated[str, Field(min_length=1)] = Field(
        description="URL of the PostgreSQL server; each service uses its own database on it."
    )
    kafka_bootstrap_servers: Annotated[str, Field(min_length=1)]
    grpc_host: str = "127.0.0.1"
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 0
    # The keys callers may present, hashed: a JSON list of {"id", "sha256", "scopes"} records (see
    # services/common/api_keys.py), from SETTLE_API_KEYS or the file SETTLE_API_KEYS_FILE names.
    # Several records with the same scopes are a rotation in progress.
    api_keys: list[ApiKeyRecord] = Field(default_factory=list)
    # `tls` (the default) serves gRPC over TLS only; `mtls` also requires a client certificate signed
    # by SETTLE_TLS_CA_FILE; `off` serves plaintext, for tests and local development only. The default
    # is not `off` so that a deployment that forgets its certificates fails at start, never runs open.
    tls_mode: TlsMode = "tls"
    tls_cert_file: Path | None = None  # PEM certificate chain of this service (also its client identity)
    tls_key_file: Path | None = None  # PEM private key of that certificate
    tls_ca_file: Path | None = None  # PEM CA: checks client certificates (mtls) and the servers it calls
    log_level: str = "INFO"
    # Prometheus `/metrics` over HTTP on this port (deployments use 9464); 0 serves none (in-process tests).
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    metrics_host: str = ""  # empty: the same interface as gRPC (SETTLE_GRPC_HOST)
    # OpenTelemetry tracing, exported over OTLP as the standard OTEL_* variables configure it.
    otel_enabled: bool = False
    consumer_batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    outbox_batch_size: Annotated[int, Field(ge=1, le=5000)] = 1000
    outbox_poll_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    outbox_retention_hours: Annotated[int, Field(ge=1)] = 24 * 7
    db_pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    shutdown_grace_s: Annotated[int, Field(ge=0, le=300)] = 10
    # How long the broker waits for a silent consumer before giving its partitions to others. A
    # member killed without leaving holds its partitions that long, also against its own restart.
    kafka_session_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 10_000
    # How the clients reach the brokers. A managed cluster wants SSL (with a client certificate for
    # mutual TLS) or SASL_SSL; PLAINTEXT is for the embedded broker and private test networks.
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_ssl_ca_file: Path | None = None  # None: the system's trusted roots
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")  # or SETTLE_KAFKA_SASL_PASSWORD_FILE
    # Fault injection only (see services/common/crash_points.py): e.g. "relay.after_publish@3".
    crash_points: str = ""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _not_plaintext_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            raise ValueError(
                "holds plaintext keys (the old {key: scopes} format); give a list of "
                '{"id", "sha256", "scopes"} records instead (`settle keys new` prints one)'
            )
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_are_unique(cls, value: list[ApiKeyRecord]) -> list[ApiKeyRecord]:
        check_unique(value)
        return value

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        uses_sasl = self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        if uses_sasl and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"SETTLE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs SETTLE_KAFKA_SASL_MECHANISM, "
                "SETTLE_KAFKA_SASL_USERNAME and SETTLE_KAFKA_SASL_PASSWORD (or its _FILE)"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("SETTLE_KAFKA_SSL_CERT_FILE and SETTLE_KAFKA_SSL_KEY_FILE go together")
        uses_tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if not uses_tls and any(files):
            raise ValueError("SETTLE_KAFKA_SSL_* files need SETTLE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL")
        return self

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password.get_secret_value(),
        )

    @model_validator(mode="after")
    def _tls_files_are_given(self) -> Self:
        if self.tls_mode == "off":
            return self
        needed = {"SETTLE_TLS_CERT_FILE": self.tls_cert_file, "SETTLE_TLS_KEY_FILE": self.tls_key_file}
        if self.tls_mode == "mtls":
            needed["SETTLE_TLS_CA_FILE"] = self.tls_ca_file
        missing = [name for name, path in needed.items() if path is None]
        if missing:
            raise ValueError(
                f"SETTLE_TLS_MODE={self.tls_mode} needs {', '.join(missing)}; "
                "SETTLE_TLS_MODE=off serves plaintext (tests and local development only)"
            )
        given = {**needed, "SETTLE_TLS_CA_FILE": self.tls_ca_file}
        for name, path in given.items():
            if path is not None and not _is_pem(path):
                raise ValueError(f"{name}: {path} is not a readable PEM file")
        return self

    @property
    def tls_client_auth(self) -> bool:
        """Whether the server requires and verifies client certificates (mTLS)."""
        return self.tls_mode == "mtls"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Every setting may also come from a file (SETTLE_<NAME>_FILE); see secret_files.py.
        return init_settings, env_settings, SecretFilesSource(settings_cls), dotenv_settings, file_secret_settings

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
        lines = [f"  {_variable(prefix, e['loc'])}{e['msg'].removeprefix('Value error, ')}" for e in error.errors()]
    except SettingsError as error:
        lines = [f"  {error}"]
    print("settle: invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
    raise SystemExit(2) from None


def _variable(prefix: str, loc: tuple[int | str, ...]) -> str:
    # Errors about several settings at once (a model validator's) have no location; they name them.
    if not loc:
        return ""
    detail = ".".join(str(part) for part in loc[1:])  # e.g. which API key record, which of its fields
    return f"{prefix}{str(loc[0]).upper()}{f' [{detail}]' if detail else ''}: "


def _is_pem(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return b"-----BEGIN " in file.read(64 * 1024)
    except OSError:
        return False
