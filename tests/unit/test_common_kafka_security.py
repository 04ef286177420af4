"""Kafka client security from settings: TLS (trusting a CA, with a client certificate for mutual TLS) and
SASL; a half-configured setup refuses to start instead of falling back to plaintext.

The embedded broker speaks plaintext only, so these check what the clients are given (a real SSL
context that loads the files, SASL credentials) rather than a TLS handshake with a broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli.certificates import ensure_local_tls
from services.common.config import ServiceSettings
from services.common.kafka import KafkaSecurity, create_consumer, create_producer

BASE = {"database_url": "postgresql://db/postgres", "kafka_bootstrap_servers": "kafka:9093", "tls_mode": "off"}


def settings(**values: object) -> ServiceSettings:
    return ServiceSettings(**BASE, **values)  # type: ignore[arg-type]


def test_plaintext_by_default() -> None:
    security = settings().kafka_security()
    assert security.protocol == "PLAINTEXT"
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}


async def test_mutual_tls_loads_the_ca_and_the_client_certificate(tmp_path: Path) -> None:
    files = ensure_local_tls(tmp_path, ["kafka"])
    security = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=files.ca_cert,
        kafka_ssl_cert_file=files.client_cert,
        kafka_ssl_key_file=files.client_key,
    ).kafka_security()

    options = security.client_options()

    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL" and isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "Settle local CA"),),)]
    producer = create_producer("kafka:9093", client_id="t", security=security)
    consumer = create_consumer("kafka:9093", group_id="g", topics=["t"], client_id="t", security=security)
    assert producer.client._security_protocol == "SSL" and consumer._client._security_protocol == "SSL"


def test_sasl_over_tls_carries_the_credentials_but_never_prints_them() -> None:
    security = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="settle-payment",
        kafka_sasl_password="s3cr3t-password",
    ).kafka_security()

    options = security.client_options()

    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "settle-payment", "s3cr3t-password",
    )  # fmt: skip
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cr3t" not in repr(security)
    assert "s3cr3t" not in repr(settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                                         kafka_sasl_username="u", kafka_sasl_password="s3cr3t"))  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"}, "needs SETTLE_KAFKA_SASL_MECHANISM"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/x.pem"}, "go together"),
        ({"kafka_ssl_ca_file": "/ca.pem"}, "need SETTLE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"),
        ({"kafka_security_protocol": "TLS"}, "PLAINTEXT"),
    ],
)
def test_a_half_configured_security_refuses_to_start(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_the_default_value_is_plaintext() -> None:
    assert KafkaSecurity().client_options() == {"security_protocol": "PLAINTEXT"}
