"""Reconciliation runs: one per scope (a settlement day or a file) and set of files, with its summary.

A run's id is derived from its scope and the files it covers, so running the same inputs again returns
the same run, its same mismatches and byte-identical reports; a new file for the day makes a new run.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.reconciliation.matching import MatchingRules, reconcile

_RUN_NAMESPACE = uuid.UUID("0b9e4f2c-7a51-4d1e-8f36-2c5d9a7e1b40")


@dataclass(frozen=True, slots=True)
class Run:
    run_id: uuid.UUID
    scope: str
    file_ids: list[str]
    summary: dict[str, Any]
    repeated: bool


def run_id_of(scope: str, file_ids: list[str]) -> uuid.UUID:
    return uuid.uuid5(_RUN_NAMESPACE, scope + "|" + ",".join(sorted(file_ids)))


async def run(engine: AsyncEngine, scope: str, file_ids: list[str], as_of: datetime, rules: MatchingRules) -> Run:
    """Reconciles `file_ids` under `scope` once; a repeat returns the first run unchanged."""
    run_id = run_id_of(scope, file_ids)
    async with engine.begin() as connection:
        inserted = (
            await connection.execute(
                text(
                    "INSERT INTO runs (run_id, scope) VALUES (:run, :scope) ON CONFLICT (run_id) DO NOTHING "
                    "RETURNING run_id"
                ),
                {"run": run_id, "scope": scope},
            )
        ).first()
        if inserted is not None:
            await reconcile(connection, run_id, sorted(file_ids), as_of, rules)
            summary = await _summarise(connection, run_id, sorted(file_ids), rules)
            await connection.execute(
                text("UPDATE runs SET summary = CAST(:summary AS jsonb), finished_at = now() WHERE run_id = :run"),
                {"run": run_id, "summary": json.dumps(summary, sort_keys=True)},
            )
        stored = await connection.scalar(text("SELECT summary FROM runs WHERE run_id = :run"), {"run": run_id})
    return Run(run_id, scope, sorted(file_ids), dict(stored), repeated=inserted is None)


async def _summarise(
    connection: AsyncConnection, run_id: uuid.UUID, file_ids: list[str], rules: MatchingRules
) -> dict[str, Any]:
    """Counts and amounts per kind and currency: what a finance user reads first."""
    files = (
        await connection.execute(
            text(
                "SELECT coalesce(sum(lines_read), 0) AS read, coalesce(sum(lines_imported), 0) AS imported, "
                "coalesce(sum(lines_quarantined), 0) AS quarantined FROM settlement_files "
                "WHERE file_id = ANY(CAST(:files AS text[]))"
            ),
            {"files": file_ids},
        )
    ).one()
    mismatched_lines = (
        "SELECT DISTINCT file_id, line FROM mismatches WHERE run_id = :run AND line IS NOT NULL "
        "AND kind <> 'UNEXPECTED_FEE'"
    )
    per_currency = await connection.execute(
        text(
            "SELECT l.currency, count(*) AS lines, sum(l.gross_minor) AS gross, "
            f"count(*) FILTER (WHERE (l.file_id, l.line) IN ({mismatched_lines})) AS unmatched_lines, "
            f"coalesce(sum(l.gross_minor) FILTER (WHERE (l.file_id, l.line) IN ({mismatched_lines})), 0) AS unmatched "
            "FROM settlement_lines l WHERE l.file_id = ANY(CAST(:files AS text[])) GROUP BY l.currency "
            "ORDER BY l.currency"
        ),
        {"files": file_ids, "run": run_id},
    )
    kinds = await connection.execute(
        text(
            "SELECT kind, currency, count(*) AS n, sum(amount_minor) AS amount FROM mismatches WHERE run_id = :run "
            "GROUP BY kind, currency ORDER BY kind, currency"
        ),
        {"run": run_id},
    )
    checks = await connection.execute(
        text(
            "SELECT scope, currency, expected_minor, actual_minor FROM balance_checks "
            "WHERE file_id = ANY(CAST(:files AS text[])) ORDER BY scope, currency"
        ),
        {"files": file_ids},
    )
    quarantined = await connection.execute(
        text(
            "SELECT file_id, line, reason FROM quarantined_lines WHERE file_id = ANY(CAST(:files AS text[])) "
            "ORDER BY file_id, line LIMIT 1000"
        ),
        {"files": file_ids},
    )
    mismatches: dict[str, dict[str, dict[str, int]]] = {}
    for row in kinds:
        mismatches.setdefault(row.kind, {})[row.currency or "-"] = {"count": row.n, "amount_minor": int(row.amount)}
    return {
        "lines_read": int(files.read),
        "lines_imported": int(files.imported),
        "lines_quarantined": int(files.quarantined),
        "quarantined": [{"line": q.line, "reason": q.reason} for q in quarantined],
        "currencies": {
            row.currency: {
                "lines": row.lines,
                "gross_minor": int(row.gross),
                "unmatched_lines": row.unmatched_lines,
                "unmatched_gross_minor": int(row.unmatched),
                "matched_lines": row.lines - row.unmatched_lines,
            }
            for row in per_currency
        },
        "mismatches": mismatches,
        "mismatch_count": sum(entry["count"] for by_ccy in mismatches.values() for entry in by_ccy.values()),
        "balance_checks": [
            {
                "scope": c.scope,
                "currency": c.currency,
                "expected_minor": c.expected_minor,
                "actual_minor": c.actual_minor,
                "balanced": c.expected_minor == c.actual_minor,
            }
            for c in checks
        ],
        "rules": {"window_days": rules.window_days, "settlement_delay_days": rules.settlement_delay_days},
    }
