"""Reports escape whatever a settlement file put in them, and are the same bytes for the same rows."""

from __future__ import annotations

import csv
import io
import uuid
from types import SimpleNamespace

from services.reconciliation.reports import mismatches_csv, summary_html


def _row(description: str) -> SimpleNamespace:
    return SimpleNamespace(
        kind="MISSING_IN_LEDGER",
        severity="critical",
        suggested_action="book it",
        file_id="ab" * 32,
        line=7,
        item_id=None,
        currency="EUR",
        amount_minor=-1234,
        expected_minor=None,
        description=description,
        resolved_by=None,
        resolution=None,
    )


def test_csv_cells_from_a_file_are_never_formulas_and_amounts_are_exact() -> None:
    rows = [_row('=HYPERLINK("http://evil")'), _row("+1 charge"), _row("plain")]
    parsed = list(csv.reader(io.StringIO(mismatches_csv(rows))))
    assert [r[9] for r in parsed[1:]] == ['\'=HYPERLINK("http://evil")', "'+1 charge", "plain"]
    assert parsed[1][3:5] == ["-1234", "-12.34"]


def test_html_escapes_file_text_and_is_deterministic() -> None:
    run_id = uuid.UUID(int=1)
    summary = {"lines_read": 3, "currencies": {}, "balance_checks": []}
    rows = [_row("<script>alert(1)</script>")]
    page = summary_html(run_id, "file:x", summary, rows)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert page == summary_html(run_id, "file:x", summary, rows)
