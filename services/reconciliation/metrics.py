"""The reconciliation metrics: mismatches found by runs, and those still open, by kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.metrics import ServiceMetrics
from services.reconciliation.matching import MISMATCH_KINDS

# There is no index on open mismatches: the count scans the table, so it runs less often than the
# default gauge interval. Mismatches change when a run finishes or someone resolves one, not by the second.
OPEN_MISMATCHES_INTERVAL_S = 30.0


class ReconciliationMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._service = metrics.service
        self.found = metrics.counter(
            "settle_reconciliation_mismatches_found", "Mismatches written by reconciliation runs, by kind.", ["kind"]
        )
        self.open = metrics.gauge(
            "settle_reconciliation_open_mismatches", "Mismatches not yet resolved, by kind.", ["kind"]
        )

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        """Counts the mismatches of a new run from its summary ({kind: {currency: {"count": n}}})."""
        for kind, by_currency in summary.get("mismatches", {}).items():
            self.found.labels(self._service, kind).inc(sum(entry["count"] for entry in by_currency.values()))

    async def sample_open(self, connection: AsyncConnection) -> None:
        """A gauge query (services/common/gauges.py); kinds with none open read 0."""
        rows = await connection.execute(
            text("SELECT kind, count(*) AS open FROM mismatches WHERE resolved_at IS NULL GROUP BY kind")
        )
        counts = {row.kind: row.open for row in rows}
        for kind in MISMATCH_KINDS:
            self.open.labels(self._service, kind).set(counts.get(kind, 0))
