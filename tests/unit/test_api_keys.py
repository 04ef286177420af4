"""API keys are stored hashed, compared in constant time, rotated without downtime; secrets may come
from files; TLS settings refuse to start half-configured."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.cli import api_key_store, keys
from services.cli.api_key_store import ApiKeys, KeyStoreError
from services.cli.certificates import ensure_local_tls
from services.common import api_keys
from services.common.api_keys import ApiKeyAuthority, ApiKeyRecord, hash_key
from services.common.config import ServiceSettings, load_settings
from services.common.errors import Unauthenticated
from services.common.secret_files import env_or_file
from services.executor.config import ExecutorSettings
from services.reconciliation.config import ReconciliationSettings

REQUIRED = {"database_url": "postgresql://localhost/x", "kafka_bootstrap_servers": "localhost:9092"}
PLAINTEXT = {**REQUIRED, "tls_mode": "off"}


def test_a_record_holds_the_sha256_of_the_key_never_the_key() -> None:
    key = "sk_settle_checkout_secret"
    record = ApiKeyRecord.of("checkout-2026-11", key, ["payments"])
    assert record.sha256 == hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in record.model_dump_json()


def test_the_authority_names_the_caller_by_key_id_and_scopes() -> None:
    authority = ApiKeyAuthority(
        [ApiKeyRecord.of("checkout-1", "c" * 32, ["payments"]), ApiKeyRecord.of("fin-1", "f" * 32, ["finance"])]
    )
    caller = authority.authenticate("f" * 32)
    assert (caller.key_id, caller.scopes) == ("fin-1", frozenset({"finance"}))
    for wrong in ("f" * 31, "", "F" * 32, hash_key("f" * 32)):  # a stolen record's hash is not a key either
        with pytest.raises(Unauthenticated):
            authority.authenticate(wrong)


def test_every_record_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = api_keys.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    records = [ApiKeyRecord.of(f"k{i}", f"key-number-{i:04d}-padding", ["admin"]) for i in range(5)]
    ApiKeyAuthority(records).authenticate("key-number-0000-padding")  # matches the first record
    assert len(compared) == 5


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "sha256": "abc", "scopes": ["payments"]}, "64 hex digits"),
        ({"id": "a", "sha256": "0" * 64, "scopes": ["root"]}, "unknown scopes"),
        ({"id": "a", "sha256": "0" * 64, "scopes": []}, "at least 1"),
        ({"id": "a b", "sha256": "0" * 64, "scopes": ["admin"]}, "pattern"),
        ({"id": "a", "sha256": "0" * 64, "scopes": ["admin"], "key": "plain"}, "Extra inputs"),
    ],
)
def test_malformed_records_are_refused(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ApiKeyRecord.model_validate(record)


def test_settings_read_hashed_records_and_refuse_plaintext_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    record = ApiKeyRecord.of("checkout-1", "k" * 32, ["payments"])
    monkeypatch.setenv("SETTLE_API_KEYS", json.dumps([record.model_dump(mode="json")]))
    assert ServiceSettings(**PLAINTEXT).api_keys == [record]  # type: ignore[arg-type]
    monkeypatch.setenv("SETTLE_API_KEYS", json.dumps({"k" * 32: ["payments"]}))
    with pytest.raises(ValidationError, match="plaintext keys"):
        ServiceSettings(**PLAINTEXT)  # type: ignore[arg-type]
    same_id = [record, ApiKeyRecord.of("checkout-1", "j" * 32, ["payments"])]
    with pytest.raises(ValidationError, match="unique"):
        ServiceSettings(**PLAINTEXT, api_keys=same_id)  # type: ignore[arg-type]


def test_rotation_keeps_both_keys_valid_until_the_old_one_is_retired(tmp_path: Path) -> None:
    store = ApiKeys.generate()
    old = store.current("checkout")
    new = store.rotate("checkout")
    assert store.checkout == new.key  # the CLI switches at once
    during = ApiKeyAuthority(store.records())
    assert during.authenticate(old.key).scopes == during.authenticate(new.key).scopes == frozenset({"payments"})
    store.retire(old.id)
    after = ApiKeyAuthority(store.records())
    assert after.authenticate(new.key).key_id == new.id
    with pytest.raises(Unauthenticated):
        after.authenticate(old.key)
    with pytest.raises(KeyStoreError, match="only checkout key"):
        store.retire(new.id)
    store.save(tmp_path)
    assert ApiKeys.load(tmp_path) == store


def test_the_key_files_are_private_and_services_get_only_hashes(tmp_path: Path) -> None:
    store = ApiKeys.load_or_create(tmp_path)
    for name in (api_key_store.KEYS_FILE, api_key_store.RECORDS_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    records_text = (tmp_path / api_key_store.RECORDS_FILE).read_text()
    assert all(key.key not in records_text for key in store.keys)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SETTLE_API_KEYS_FILE", str(tmp_path / api_key_store.RECORDS_FILE))
        authority = ApiKeyAuthority(ServiceSettings(**PLAINTEXT).api_keys)  # type: ignore[arg-type]
    assert authority.authenticate(store.admin).scopes == frozenset({"admin"})
    assert ApiKeys.load_or_create(tmp_path) == store  # reused across restarts


def test_a_key_file_of_the_first_format_still_loads(tmp_path: Path) -> None:
    (tmp_path / "api_keys.json").write_text(json.dumps({"checkout": "c" * 30, "finance": "f" * 30, "admin": "a" * 30}))
    store = ApiKeys.load(tmp_path)
    assert store is not None and (store.checkout, store.finance, store.admin) == ("c" * 30, "f" * 30, "a" * 30)


def test_settle_keys_new_prints_a_key_and_its_record(capsys: pytest.CaptureFixture[str]) -> None:
    keys.cmd_new(type("Options", (), {"role": "finance", "json": True})())  # type: ignore[arg-type]
    printed = json.loads(capsys.readouterr().out)
    record = ApiKeyRecord.model_validate(printed["record"])
    assert record.scopes == ("finance",) and record.sha256 == hash_key(printed["key"])
    assert record.id.startswith("finance-")


def test_every_secret_may_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "SETTLE_DATABASE_URL": "postgresql://user:from-file@db/x",
        "SETTLE_PSP_API_KEY": "sk_live_from_file",
        "SETTLE_LEDGER_API_KEY": "sk_settle_admin_from_file",
    }
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")  # editors and `echo` add a newline; it is not part of it
        monkeypatch.setenv(f"{name}_FILE", str(tmp_path / name))
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SETTLE_TLS_MODE", "off")
    executor = ExecutorSettings()  # type: ignore[call-arg]
    assert (executor.database_url, executor.psp_api_key) == (
        secrets["SETTLE_DATABASE_URL"],
        secrets["SETTLE_PSP_API_KEY"],
    )
    assert ReconciliationSettings().ledger_api_key == secrets["SETTLE_LEDGER_API_KEY"]  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"SETTLE_DATABASE_URL": "postgresql://x/y", "SETTLE_DATABASE_URL_FILE": "{dir}/url"}, "both set"),
        ({"SETTLE_DATABASE_URL_FILE": "{dir}/missing"}, "cannot read"),
        ({"SETTLE_DATABASE_URL": "postgresql://x/y", "SETTLE_API_KEYS_FILE": "{dir}/url"}, "not valid JSON"),
    ],
)
def test_a_bad_secret_file_stops_the_start_with_a_clear_message(
    environment: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "url").write_text("postgresql://x/y")
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SETTLE_TLS_MODE", "off")
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(dir=tmp_path))
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert message in capsys.readouterr().err


def test_tls_is_the_default_and_will_not_start_without_its_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SETTLE_TLS_MODE=tls needs SETTLE_TLS_CERT_FILE, SETTLE_TLS_KEY_FILE"):
        ServiceSettings(**REQUIRED)  # type: ignore[arg-type]
    files = ensure_local_tls(tmp_path, ["payment"])
    given = {"tls_cert_file": files.server_cert, "tls_key_file": files.server_key}
    with pytest.raises(ValidationError, match="needs SETTLE_TLS_CA_FILE"):
        ServiceSettings(**REQUIRED, tls_mode="mtls", **given)  # type: ignore[arg-type]
    settings = ServiceSettings(**REQUIRED, tls_mode="mtls", tls_ca_file=files.ca_cert, **given)  # type: ignore[arg-type]
    assert settings.tls_client_auth
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ValidationError, match=r"SETTLE_TLS_CA_FILE: .* is not a readable PEM file"):
        ServiceSettings(**REQUIRED, tls_ca_file=tmp_path / "empty.pem", **given)  # type: ignore[arg-type]
    assert not ServiceSettings(**PLAINTEXT).tls_client_auth  # type: ignore[arg-type]


def test_local_tls_files_are_private_reused_and_name_every_service(tmp_path: Path) -> None:
    files = ensure_local_tls(tmp_path / "tls", ["payment", "ledger"])
    made = sorted(path.name for path in files.directory.iterdir())
    assert made == ["ca-key.pem", "ca.pem", "client-key.pem", "client.pem", "server-key.pem", "server.pem"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files.directory.iterdir())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "payment", "ledger"} <= set(names.get_values_for_type(x509.DNSName))
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    before = {path.name: path.read_bytes() for path in files.directory.iterdir()}
    ensure_local_tls(tmp_path / "tls", ["payment", "ledger"])
    assert {path.name: path.read_bytes() for path in files.directory.iterdir()} == before


def test_one_setting_without_a_settings_class_also_comes_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("postgresql://db.internal/postgres\n")
    monkeypatch.delenv("SETTLE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SETTLE_DATABASE_URL_FILE", raising=False)
    assert env_or_file("SETTLE_DATABASE_URL") is None
    monkeypatch.setenv("SETTLE_DATABASE_URL_FILE", str(tmp_path / "url"))
    assert env_or_file("SETTLE_DATABASE_URL") == "postgresql://db.internal/postgres"
    monkeypatch.setenv("SETTLE_DATABASE_URL", "postgresql://other/postgres")
    with pytest.raises(SettingsError, match="both set"):
        env_or_file("SETTLE_DATABASE_URL")
