"""The executor's configuration is validated at start, with limits that are consistent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.executor.config import ExecutorSettings

REQUIRED = {"database_url": "postgresql://localhost/x", "kafka_bootstrap_servers": "localhost:9092", "tls_mode": "off"}


def test_defaults_match_the_design() -> None:
    settings = ExecutorSettings(**REQUIRED)  # type: ignore[arg-type]
    assert settings.psp_api_base == "http://127.0.0.1:12111"
    assert settings.psp_timeout_s == 10
    assert (settings.worker_concurrency, settings.claim_batch_size, settings.retry_budget) == (64, 200, 8)
    assert (settings.retry_base_ms, settings.retry_max_ms, settings.stale_claim_s) == (200, 30_000, 60)
    assert settings.worker_id  # hostname-pid


def test_settings_come_from_settle_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLE_DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("SETTLE_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SETTLE_WORKER_ID", "executor-7")
    monkeypatch.setenv("SETTLE_RETRY_BUDGET", "3")
    monkeypatch.setenv("SETTLE_TLS_MODE", "off")
    settings = ExecutorSettings()  # type: ignore[call-arg]
    assert (settings.worker_id, settings.retry_budget) == ("executor-7", 3)


def test_a_stale_claim_deadline_shorter_than_a_psp_call_is_refused() -> None:
    with pytest.raises(ValidationError, match="stale_claim_s"):
        ExecutorSettings(**REQUIRED, psp_timeout_s=30, stale_claim_s=60)  # type: ignore[arg-type]


def test_a_maximum_backoff_below_the_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="retry_max_ms"):
        ExecutorSettings(**REQUIRED, retry_base_ms=500, retry_max_ms=100)  # type: ignore[arg-type]


def test_an_unknown_crash_point_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="unknown crash point"):
        ExecutorSettings(**REQUIRED, crash_points="executor.before_the_call")  # type: ignore[arg-type]
