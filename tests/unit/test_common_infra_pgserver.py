"""Embedded PostgreSQL: a pgserver command killed by a signal (a crash between fork and exec) is retried
on a clean data directory; a real failure (an exit code) is not."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.common import infra


class FakePgserver:
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.calls = 0
        self.postgres_server = SimpleNamespace(PostgresServer=SimpleNamespace(_instances={}))

    def get_server(self, pgdata: str, cleanup_mode: str) -> Any:
        self.calls += 1
        path = Path(pgdata).resolve()
        self.postgres_server.PostgresServer._instances[path] = "broken"
        (path / "half-written").write_text("x")
        if self.failures:
            raise subprocess.CalledProcessError(self.failures.pop(0), ["initdb"])
        return "server"


def test_a_crashed_command_is_retried_on_a_clean_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.time, "sleep", lambda seconds: None)
    fake = FakePgserver([-11])
    pg_dir = tmp_path / "postgres"
    pg_dir.mkdir()
    assert infra._start_pgserver(fake, pg_dir) == "server"
    assert fake.calls == 2


def test_an_exit_code_or_repeated_crashes_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra.time, "sleep", lambda seconds: None)
    pg_dir = tmp_path / "postgres"
    pg_dir.mkdir()
    with pytest.raises(subprocess.CalledProcessError):
        infra._start_pgserver(FakePgserver([1]), pg_dir)
    with pytest.raises(subprocess.CalledProcessError):
        infra._start_pgserver(FakePgserver([-11, -11, -11]), pg_dir)
