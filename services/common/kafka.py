"""aiokafka producers and consumers configured the way Settle needs them, plaintext or over TLS/SASL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How clients reach the brokers: TLS (CA to trust; a client certificate for mutual TLS) and/or SASL."""

    protocol: SecurityProtocol = "PLAINTEXT"
    ca_file: Path | None = None  # None: the system's trusted roots
    cert_file: Path | None = None
    key_file: Path | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str = ""
    sasl_password: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r})"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
            )
        if self.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options


PLAINTEXT = KafkaSecurity()


def create_producer(bootstrap_servers: str, *, client_id: str, security: KafkaSecurity = PLAINTEXT) -> AIOKafkaProducer:
    # Idempotent producer with acks=all: a broker retry never writes a message twice and an
    # acknowledged message is on every in-sync replica. linger batches concurrent sends.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=30_000,
        **security.client_options(),
    )


def create_consumer(
    bootstrap_servers: str,
    *,
    group_id: str,
    topics: list[str],
    client_id: str,
    session_timeout_ms: int = 10_000,
    security: KafkaSecurity = PLAINTEXT,
) -> AIOKafkaConsumer:
    # Offsets are committed by hand, after the database commit of the batch they cover.
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=5000,
        # A short session lets a restarted member rejoin quickly: a broker that misses a member's
        # LeaveGroup (the embedded mock does) makes the next join wait out the old session.
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(1_000, session_timeout_ms // 3),
        **security.client_options(),
    )
