"""The SQL behind `settle status` (status.py): one small read per question, on one service database.

Every query is cheap however large the tables: each is answered from a partial index the services keep
for their own loops (`outbox_unpublished`, and per executions table one per waiting state and `_stuck`).
So executions are counted in the states that drain (NOT_STARTED, EXECUTING, UNKNOWN), as the executor's
`settle_executor_executions` gauge does; finished ones would take a scan of the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import outbox
from services.executor.service.metrics import GAUGED_STATES, KINDS

# The executor's tables by kind (charge, refund, payout), named as the executor's metrics name them.
EXECUTION_TABLES = {kind: table for table, kind in KINDS.items()}
_DRAINING_STATES = tuple(state.value for state in GAUGED_STATES)


@dataclass(frozen=True, slots=True)
class Backlog:
    """Outbox rows the relay has not handed to Kafka yet."""

    unpublished: int
    oldest_age_s: float | None  # None when there are none


@dataclass(frozen=True, slots=True)
class Executions:
    """One executions table: rows per state, and those that wait for recovery or an operator."""

    by_status: dict[str, int]  # NOT_STARTED, EXECUTING, UNKNOWN
    unknown: int  # parked: the PSP gave no definite word within the retry budget
    stale_executing: int  # claimed longer ago than the threshold: the worker that holds it is likely gone
    oldest_stuck_age_s: float | None

    @property
    def stuck(self) -> int:
        return self.unknown + self.stale_executing


@dataclass(frozen=True, slots=True)
class LastRun:
    scope: str  # 'date:YYYY-MM-DD' or 'file:<sha256>'
    finished_at: datetime | None
    mismatch_count: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    last_run: LastRun | None
    open_mismatches: dict[str, int]  # kind → unresolved mismatches in the latest run of each scope


def _age_s(value: object) -> float | None:
    return None if value is None else round(float(str(value)), 1)


async def outbox_backlog(connection: AsyncConnection) -> Backlog:
    unpublished, oldest_age_s = await outbox.backlog(connection)
    return Backlog(unpublished, None if oldest_age_s is None else round(oldest_age_s, 1))


async def executions(connection: AsyncConnection, table: str, stale_after_s: float) -> Executions:
    counts = ", ".join(
        f"(SELECT count(*) FROM {table} WHERE status = '{state}') AS {state}" for state in _DRAINING_STATES
    )
    row = (await connection.execute(text(f"SELECT {counts}"))).one()
    by_status = {state: int(row._mapping[state.lower()]) for state in _DRAINING_STATES}
    stale = "status = 'EXECUTING' AND claimed_at < now() - make_interval(secs => :stale_after_s)"
    row = (
        await connection.execute(
            text(
                f"SELECT count(*) FILTER (WHERE status = 'UNKNOWN') AS unknown, "
                f"count(*) FILTER (WHERE {stale}) AS stale_executing, "
                f"EXTRACT(EPOCH FROM now() - min(updated_at) FILTER (WHERE status = 'UNKNOWN' OR {stale})) AS oldest "
                f"FROM {table} WHERE status IN ('EXECUTING', 'UNKNOWN')"
            ),
            {"stale_after_s": stale_after_s},
        )
    ).one()
    return Executions(by_status, int(row.unknown), int(row.stale_executing), _age_s(row.oldest))


# A day may be reconciled again with a new file (a new run of the same scope), and a file run overlaps
# the run of its day: only the latest run of each scope counts, and a mismatch found by two of them once.
_OPEN_MISMATCHES = """
SELECT kind, count(DISTINCT (kind, coalesce(file_id, ''), coalesce(line, -1), item_id, description)) AS n
FROM mismatches
WHERE resolved_at IS NULL
  AND run_id IN (SELECT DISTINCT ON (scope) run_id FROM runs ORDER BY scope, started_at DESC)
GROUP BY kind ORDER BY kind
"""


async def reconciliation(connection: AsyncConnection) -> Reconciliation:
    row = (
        await connection.execute(
            text(
                "SELECT scope, finished_at, coalesce(CAST(summary ->> 'mismatch_count' AS integer), 0) AS mismatches "
                "FROM runs ORDER BY started_at DESC LIMIT 1"
            )
        )
    ).first()
    last_run = LastRun(row.scope, row.finished_at, int(row.mismatches)) if row else None
    open_mismatches = {row.kind: int(row.n) for row in await connection.execute(text(_OPEN_MISMATCHES))}
    return Reconciliation(last_run, open_mismatches)
