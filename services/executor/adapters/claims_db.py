"""The worker's statements on an executions table (tables.py): claim, record outcomes, release stale claims.

A claim is identified by (claimed_by, attempts): every claim increments `attempts`, so a worker whose
claim was released and taken by another (or by itself, again) can no longer record over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.adapters.db import execution_of
from services.executor.adapters.tables import ExecutionTable
from services.executor.domain import REQUEST_REJECTED, Execution, OrderT, Outcome

# The locking subqueries below are MATERIALIZED CTEs so that they run exactly once. Written inline
# (`FROM (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`), PostgreSQL may put the subquery on the inner
# side of a nested loop and rescan it per outer row, each rescan locking n more rows: a claim with
# LIMIT 8 took 100 rows in a test, which broke the bound on calls in flight.

# The statements return the table's columns qualified: they join the table with a CTE or unnest.


@dataclass(frozen=True, slots=True)
class Claim(Generic[OrderT]):
    """An execution this worker holds: it may call the PSP for it and record the outcome."""

    order: OrderT
    attempts: int  # PSP calls including this one; the claim token
    budgeted_attempts: int  # the same, counted against the current retry budget


async def claim_due(
    connection: AsyncConnection, table: ExecutionTable[OrderT], *, worker_id: str, limit: int
) -> list[Claim[OrderT]]:
    """NOT_STARTED → EXECUTING for up to `limit` due executions. Commit before calling the PSP.

    SKIP LOCKED lets concurrent workers claim disjoint rows; a row another worker claimed first
    no longer matches `status = 'NOT_STARTED'` when re-checked under its lock.
    """
    result = await connection.execute(
        text(
            f"WITH due AS MATERIALIZED (SELECT {table.key} FROM {table.name} "
            "  WHERE status = 'NOT_STARTED' AND next_attempt_at <= now() "
            "  ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table.name} e SET status = 'EXECUTING', claimed_by = :worker_id, claimed_at = now(), "
            "attempts = e.attempts + 1, budgeted_attempts = e.budgeted_attempts + 1, updated_at = now() "
            f"FROM due WHERE e.{table.key} = due.{table.key} AND e.status = 'NOT_STARTED' "
            f"RETURNING {table.qualified_columns('e')}"
        ),
        {"worker_id": worker_id, "limit": limit},
    )
    return [Claim(table.order_of(row), row.attempts, row.budgeted_attempts) for row in result]


async def record_outcomes(
    connection: AsyncConnection,
    table: ExecutionTable[OrderT],
    *,
    worker_id: str,
    outcomes: Sequence[tuple[Claim[OrderT], Outcome]],
) -> list[Execution[OrderT]]:
    """Applies outcomes to the claims this worker still holds; returns the executions updated."""
    if not outcomes:
        return []
    result = await connection.execute(
        text(
            f"UPDATE {table.name} e SET status = o.status, "
            "psp_reference = CASE WHEN o.psp_reference <> '' THEN o.psp_reference ELSE e.psp_reference END, "
            "failure_code = o.failure_code, failure_message = o.failure_message, "
            "next_attempt_at = CASE WHEN o.status = 'NOT_STARTED' "
            "  THEN now() + o.delay_ms * interval '1 millisecond' ELSE e.next_attempt_at END, "
            "claimed_by = NULL, claimed_at = NULL, updated_at = now() "
            "FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]), "
            "  CAST(:references AS text[]), CAST(:codes AS text[]), CAST(:messages AS text[]), "
            "  CAST(:delays AS bigint[])) AS o(id, attempts, status, psp_reference, "
            "  failure_code, failure_message, delay_ms) "
            f"WHERE e.{table.key} = o.id AND e.status = 'EXECUTING' "
            "AND e.claimed_by = :worker_id AND e.attempts = o.attempts "
            f"RETURNING {table.qualified_columns('e')}"
        ),
        {
            "worker_id": worker_id,
            "ids": [claim.order.execution_id for claim, _ in outcomes],
            "attempts": [claim.attempts for claim, _ in outcomes],
            "statuses": [str(outcome.status) for _, outcome in outcomes],
            "references": [outcome.psp_reference for _, outcome in outcomes],
            "codes": [outcome.failure_code for _, outcome in outcomes],
            "messages": [outcome.failure_message for _, outcome in outcomes],
            "delays": [outcome.retry_delay_ms for _, outcome in outcomes],
        },
    )
    return [execution_of(table, row) for row in result]


async def release_stale(
    connection: AsyncConnection,
    table: ExecutionTable[OrderT],
    *,
    stale_claim_s: int,
    retry_budget: int,
    limit: int,
    earlier_run_of: str | None = None,
) -> list[Execution[OrderT]]:
    """Claims older than `stale_claim_s` (their worker died or hung mid-call) go back to NOT_STARTED,
    due now, to be retried with the same idempotency key; or to UNKNOWN once the budget is used up,
    so that an order that kills its worker cannot loop forever.

    `earlier_run_of` also releases every claim of that worker id at once, whatever its age: a worker
    starting under a stable id (a replica's name) knows that claims under its id are a dead
    predecessor's, so recovery after a crash need not wait for the deadline.
    """
    result = await connection.execute(
        text(
            f"WITH stale AS MATERIALIZED (SELECT {table.key} FROM {table.name} "
            "  WHERE status = 'EXECUTING' AND (claimed_at < now() - make_interval(secs => :stale_claim_s) "
            "    OR claimed_by = :earlier_run_of) "
            "  ORDER BY claimed_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table.name} e SET "
            "status = CASE WHEN e.budgeted_attempts >= :budget THEN 'UNKNOWN' ELSE 'NOT_STARTED' END, "
            "failure_code = 'stale_claim', "
            "failure_message = 'claim by ' || e.claimed_by || ' ended before its outcome was recorded', "
            "claimed_by = NULL, claimed_at = NULL, next_attempt_at = now(), updated_at = now() "
            f"FROM stale WHERE e.{table.key} = stale.{table.key} AND e.status = 'EXECUTING' "
            f"RETURNING {table.qualified_columns('e')}"
        ),
        {"stale_claim_s": stale_claim_s, "budget": retry_budget, "limit": limit, "earlier_run_of": earlier_run_of},
    )
    return [execution_of(table, row) for row in result]


async def requeue_for_recovery(
    connection: AsyncConnection, table: ExecutionTable[OrderT], *, unknown_for_s: int, max_recoveries: int, limit: int
) -> list[Execution[OrderT]]:
    """UNKNOWN for `unknown_for_s` → NOT_STARTED with a fresh budget, at most `max_recoveries` times.

    The next attempt asks the PSP first (any attempt after the first does): it completes the
    execution from the PSP's record of the order if there is one, and only creates a charge, under
    the same idempotency key, if the PSP has none. Requests the PSP rejected are left to an operator:
    sending them again would be rejected again.
    """
    result = await connection.execute(
        text(
            f"WITH due AS MATERIALIZED (SELECT {table.key} FROM {table.name} "
            "  WHERE status = 'UNKNOWN' AND failure_code <> :rejected AND recoveries < :max_recoveries "
            "  AND updated_at < now() - make_interval(secs => :unknown_for_s) "
            "  ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED) "
            f"UPDATE {table.name} e SET status = 'NOT_STARTED', budgeted_attempts = 0, "
            "recoveries = e.recoveries + 1, next_attempt_at = now(), updated_at = now() "
            f"FROM due WHERE e.{table.key} = due.{table.key} AND e.status = 'UNKNOWN' "
            f"RETURNING {table.qualified_columns('e')}"
        ),
        {
            "rejected": REQUEST_REJECTED,
            "max_recoveries": max_recoveries,
            "unknown_for_s": unknown_for_s,
            "limit": limit,
        },
    )
    return [execution_of(table, row) for row in result]
