"""`settle reconcile` on a whole running Settle: the sandbox's settlement file for the day the other
end-to-end tests moved money on reconciles without a single false mismatch, and injected discrepancies
are found."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.cli.stack import Stack


def _settle(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _settlement_file(stack: Stack, folder: Path, name: str, days_later: int = 0, **switches: str) -> Path:
    base = stack.endpoints.psp_sandbox_url
    with urllib.request.urlopen(f"{base}/_sandbox/clock", timeout=10) as response:
        day = (datetime.fromtimestamp(json.load(response)["now"], UTC) + timedelta(days=days_later)).date()
    query = f"?{urllib.parse.urlencode(switches)}" if switches else ""
    path = folder / name
    with urllib.request.urlopen(f"{base}/_sandbox/settlements/{day.isoformat()}{query}", timeout=60) as response:
        path.write_bytes(response.read())
    return path


def _reconcile(stack: Stack, path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return _settle(stack, "reconcile", "--file", str(path), "--format", "sandbox", "--out", str(out), "--json")


def test_the_days_settlement_reconciles_cleanly_and_discrepancies_are_found(stack: Stack, tmp_path: Path) -> None:
    quiet = _settle(stack, "audit", "--wait", "60")  # every event published...
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    time.sleep(2)  # ...and consumed by reconciliation's index
    clean = _settlement_file(stack, tmp_path, "clean.csv")

    first = _reconcile(stack, clean, tmp_path / "clean")
    again = _reconcile(stack, clean, tmp_path / "again")

    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["lines_imported"] == summary["lines_read"] > 0
    assert (summary["mismatch_count"], summary["mismatches"]) == (0, {}), summary
    assert summary["matched"] == summary["lines_imported"]
    repeated = json.loads(again.stdout)
    assert repeated["already_imported"] and repeated["run_id"] == summary["run_id"]
    for name in ("summary.json", "mismatches.csv", "report.html"):  # byte-identical reports
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert "<svg" in (tmp_path / "clean" / "report.html").read_text()

    # Tomorrow's file (today's lines are settled: imported again they would be duplicates) with a charge
    # the PSP settled that Settle never saw, and a fee: both found and classified.
    odd = _settlement_file(stack, tmp_path, "odd.csv", days_later=1, unknown_charges="1", extra_fee_lines="1")
    found = json.loads(_reconcile(stack, odd, tmp_path / "odd").stdout)
    assert found["mismatches"] == {
        "MISSING_IN_LEDGER": {"USD": {"count": 1, "amount_minor": 1234}},
        "UNEXPECTED_FEE": {"USD": {"count": 1, "amount_minor": 500}},
    }

    truncated = _reconcile(stack, _settlement_file(stack, tmp_path, "cut.csv", truncate="1"), tmp_path / "cut")
    assert truncated.returncode == 1 and "truncated" in truncated.stderr
