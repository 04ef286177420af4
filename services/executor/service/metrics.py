"""The executor's metrics: executions by state, PSP call retries and outcomes, per kind of execution.

The gauge counts only the states that drain (NOT_STARTED, EXECUTING, UNKNOWN): each count reads one
partial index, so it stays cheap however many executions have finished. Finished ones (SUCCEEDED,
FAILED) are counted as they happen by settle_executor_outcomes_total; counting them from the table
would scan it every few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.metrics import ServiceMetrics
from services.executor.adapters.tables import CHARGES, PAYOUTS, REFUNDS, ExecutionTable
from services.executor.domain import Execution, ExecutionStatus

KINDS = {CHARGES.name: "charge", REFUNDS.name: "refund", PAYOUTS.name: "payout"}
# Each has a partial index on exactly `status = <state>` (due, claimed, unknown) in every table.
GAUGED_STATES = (ExecutionStatus.NOT_STARTED, ExecutionStatus.EXECUTING, ExecutionStatus.UNKNOWN)

_COUNTS_SQL = " UNION ALL ".join(
    f"SELECT '{kind}' AS kind, '{state.value}' AS state, "
    f"(SELECT count(*) FROM {table} WHERE status = '{state.value}') AS executions"
    for table, kind in KINDS.items()
    for state in GAUGED_STATES
)


class ExecutorMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self._service = metrics.service
        self.executions = metrics.gauge(
            "settle_executor_executions",
            "Executions waiting, in flight or parked (NOT_STARTED, EXECUTING, UNKNOWN), by kind and state.",
            ["kind", "state"],
        )
        self.psp_retries = metrics.counter(
            "settle_executor_psp_retries",
            "PSP calls without a definite answer that were queued for another attempt, by kind.",
            ["kind"],
        )
        self.outcomes = metrics.counter(
            "settle_executor_outcomes",
            "Executions that reached SUCCEEDED, FAILED or UNKNOWN (parked), by kind and outcome.",
            ["kind", "outcome"],
        )

    def recorded(self, table: ExecutionTable[Any], executions: Sequence[Execution[Any]]) -> None:
        """Counts the outcomes of attempts just committed."""
        kind = KINDS[table.name]
        for execution in executions:
            if execution.status == ExecutionStatus.NOT_STARTED:
                self.psp_retries.labels(self._service, kind).inc()
            else:
                self.outcomes.labels(self._service, kind, execution.status.value).inc()

    async def sample_executions(self, connection: AsyncConnection) -> None:
        """A gauge query (services/common/gauges.py)."""
        for row in await connection.execute(text(_COUNTS_SQL)):
            self.executions.labels(self._service, row.kind, row.state).set(row.executions)
