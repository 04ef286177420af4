"""The sandbox's command line."""

import pytest

from psp_sandbox.__main__ import parse_args
from psp_sandbox.idempotency import DEFAULT_RETENTION_S


def test_idempotency_retention_defaults_to_stripes_24_hours() -> None:
    assert parse_args([]).idempotency_retention_s == DEFAULT_RETENTION_S == 24 * 3600


def test_idempotency_retention_flag_is_taken() -> None:
    assert parse_args(["--idempotency-retention-s", "60"]).idempotency_retention_s == 60


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon", ""])
def test_idempotency_retention_must_be_a_positive_integer(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--idempotency-retention-s", value])

    assert raised.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err
