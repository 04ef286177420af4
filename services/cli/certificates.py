"""TLS material for a local Settle (`settle up`): a private CA, a certificate for the services and one
for the CLI and tests, made with `cryptography` on first start and reused afterwards.

Everything is under `<data_dir>/tls/`, each file 0600, created that way (never world-readable for a
moment). The CA's key never leaves this directory; production brings its own CA and certificates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.cli.private_files import write_private

_CA_DAYS = 3650
_LEAF_DAYS = 397  # what browsers accept at most; a long-lived dev stack renews below
_RENEW_BEFORE = timedelta(days=30)
_CLOCK_SKEW = timedelta(minutes=5)
LOCAL_IPS = ("127.0.0.1", "::1")

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class LocalTls:
    """The files of a local Settle's TLS: CA, the services' certificate and the CLI's client certificate."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"


def ensure_local_tls(directory: Path, service_names: Sequence[str]) -> LocalTls:
    """Creates what is missing or about to expire; keeps what is valid (clients keep trusting the CA)."""
    files = LocalTls(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (_still_valid(files.ca_cert) and files.ca_key.exists()):
        ca_key, ca = create_ca("Settle local CA")
        write_private(files.ca_key, private_pem(ca_key))
        write_private(files.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
        files.server_cert.unlink(missing_ok=True)  # signed by the old CA: no longer trusted
        files.client_cert.unlink(missing_ok=True)
    ca_key = _load_key(files.ca_key)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    if not _still_valid(files.server_cert):
        # Services present it as servers and, under mTLS, as clients of each other (reconciliation → ledger).
        names = ["localhost", *service_names]
        key, cert = issue(ca_key, ca, "settle-services", dns_names=names, ips=LOCAL_IPS, server=True, client=True)
        _write_pair(files.server_key, files.server_cert, key, cert)
    if not _still_valid(files.client_cert):
        key, cert = issue(ca_key, ca, "settle-cli", client=True)
        _write_pair(files.client_key, files.client_cert, key, cert)
    return files


def create_ca(common_name: str, days: int = _CA_DAYS) -> tuple[Key, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: Key,
    ca: x509.Certificate,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = _LEAF_DAYS,
) -> tuple[Key, x509.Certificate]:
    """A leaf certificate signed by `ca`, for server and/or client authentication."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def private_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_pair(key_path: Path, cert_path: Path, key: Key, cert: x509.Certificate) -> None:
    write_private(key_path, private_pem(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=signs_certificates, crl_sign=signs_certificates,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _load_key(path: Path) -> Key:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _still_valid(cert_path: Path) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc - datetime.now(UTC) > _RENEW_BEFORE
