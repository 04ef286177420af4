"""A run's reports for finance: the mismatches as CSV, and a human-readable HTML page with a chart.

Both are functions of the run's stored rows only (no clock, no randomness, a fixed order), so running
the same day again produces byte-identical files. Every text that came from a settlement file is
escaped: CSV cells can never be formulas, HTML is escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.report_cells import major_units, text_cell
from services.reconciliation.matching import MISMATCH_KINDS

CSV_COLUMNS = (
    "kind",
    "severity",
    "currency",
    "amount_minor",
    "amount",
    "expected_minor",
    "file_id",
    "line",
    "item_id",
    "description",
    "suggested_action",
    "resolved_by",
    "resolution",
)
_SEVERITY_ORDER = "CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
_BAR_WIDTH = 480


@dataclass(frozen=True, slots=True)
class Report:
    summary: dict[str, Any]
    mismatches_csv: str
    html: str


async def mismatch_rows(connection: AsyncConnection, run_id: uuid.UUID) -> list[Any]:
    result = await connection.execute(
        text(
            "SELECT mismatch_id, kind, severity, suggested_action, file_id, line, item_id, currency, amount_minor, "
            "expected_minor, description, resolved_by, resolution FROM mismatches WHERE run_id = :run "
            f"ORDER BY {_SEVERITY_ORDER}, kind, currency, file_id NULLS LAST, line NULLS LAST, item_id NULLS LAST"
        ),
        {"run": run_id},
    )
    return list(result)


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as canonical JSON (sorted keys), the same bytes for the same run."""
    return json.dumps(summary, sort_keys=True, separators=(",", ":"))


def _amount(amount_minor: int, currency: str) -> str:
    try:
        return major_units(amount_minor, currency)
    except ValueError:
        return str(amount_minor)


def mismatches_csv(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.kind,
                row.severity,
                text_cell(row.currency),
                row.amount_minor,
                _amount(row.amount_minor, row.currency),
                "" if row.expected_minor is None else row.expected_minor,
                text_cell(row.file_id or ""),
                "" if row.line is None else row.line,
                str(row.item_id or ""),
                text_cell(row.description),
                text_cell(row.suggested_action),
                text_cell(row.resolved_by or ""),
                text_cell(row.resolution or ""),
            ]
        )
    return out.getvalue()


def _chart(counts: dict[str, int]) -> str:
    """A horizontal bar chart of mismatches per kind, as inline SVG (no script, no external file)."""
    peak = max(counts.values(), default=0) or 1
    bars = []
    for index, kind in enumerate(sorted(MISMATCH_KINDS)):
        count = counts.get(kind, 0)
        y = 10 + index * 28
        width = round(_BAR_WIDTH * count / peak)
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="12">{html.escape(kind)}</text>'
            f'<rect x="190" y="{y}" width="{width}" height="20" fill="#b03a2e"></rect>'
            f'<text x="{196 + width}" y="{y + 15}" font-size="12">{count}</text>'
        )
    height = 20 + 28 * len(MISMATCH_KINDS)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_BAR_WIDTH + 260}" height="{height}" role="img" '
        f'aria-label="mismatches per kind">{"".join(bars)}</svg>'
    )


def summary_html(run_id: uuid.UUID, scope: str, summary: dict[str, Any], rows: list[Any]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.kind] = counts.get(row.kind, 0) + 1
    currencies = summary.get("currencies", {})
    currency_rows = "".join(
        f"<tr><td>{html.escape(ccy)}</td><td>{c['lines']}</td><td>{c['matched_lines']}</td>"
        f"<td>{c['unmatched_lines']}</td><td>{_amount(c['gross_minor'], ccy)}</td>"
        f"<td>{_amount(c['unmatched_gross_minor'], ccy)}</td></tr>"
        for ccy, c in sorted(currencies.items())
    )
    check_rows = "".join(
        f"<tr><td>{html.escape(c['scope'])}</td><td>{html.escape(c['currency'])}</td>"
        f"<td>{_amount(c['expected_minor'], c['currency'])}</td><td>{_amount(c['actual_minor'], c['currency'])}</td>"
        f"<td>{'yes' if c['balanced'] else '<strong>no</strong>'}</td></tr>"
        for c in summary.get("balance_checks", [])
    )
    mismatch_rows_html = "".join(
        f"<tr><td>{html.escape(r.severity)}</td><td>{html.escape(r.kind)}</td><td>{html.escape(r.currency)}</td>"
        f"<td>{_amount(r.amount_minor, r.currency)}</td><td>{'' if r.line is None else r.line}</td>"
        f"<td>{html.escape(str(r.item_id or ''))}</td><td>{html.escape(r.description)}</td>"
        f"<td>{html.escape(r.suggested_action)}</td></tr>"
        for r in rows[:5000]
    )
    more = f"<p>{len(rows) - 5000} more in the CSV.</p>" if len(rows) > 5000 else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Settle reconciliation '
        f"{html.escape(scope)}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>\n"
        f"<h1>Reconciliation {html.escape(scope)}</h1>\n<p>Run {run_id}. Lines read {summary.get('lines_read', 0)}, "
        f"imported {summary.get('lines_imported', 0)}, quarantined {summary.get('lines_quarantined', 0)}; "
        f"mismatches {len(rows)}.</p>\n<h2>Mismatches per kind</h2>\n{_chart(counts)}\n"
        "<h2>Per currency</h2>\n<table><tr><th>currency</th><th>lines</th><th>matched</th><th>unmatched</th>"
        f"<th>gross</th><th>unmatched gross</th></tr>{currency_rows}</table>\n"
        "<h2>Balance checks</h2>\n<table><tr><th>scope</th><th>currency</th><th>expected</th><th>actual</th>"
        f"<th>balanced</th></tr>{check_rows}</table>\n"
        "<h2>Mismatches</h2>\n<table><tr><th>severity</th><th>kind</th><th>currency</th><th>amount</th>"
        "<th>line</th><th>item</th><th>description</th><th>suggested action</th></tr>"
        f"{mismatch_rows_html}</table>{more}\n</body></html>\n"
    )


async def build(connection: AsyncConnection, run_id: uuid.UUID) -> Report:
    """The run's three reports, from the database alone."""
    run = (await connection.execute(text("SELECT scope, summary FROM runs WHERE run_id = :run"), {"run": run_id})).one()
    rows = await mismatch_rows(connection, run_id)
    summary = dict(run.summary)
    return Report(summary, mismatches_csv(rows), summary_html(run_id, run.scope, summary, rows))
