"""The webhook events table, and completing an execution from a PSP webhook (SQL on a connection).

`complete_open` is the webhook's twin of `claims_db.record_outcomes`: the same columns change the same
way, but it takes no claim, because the PSP's definite word settles an execution whoever holds it. A
worker still holding a claim on it then finds it no longer EXECUTING and records nothing, so the
execution gets exactly one outcome and one outcome event.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.adapters.db import execution_of
from services.executor.adapters.tables import ExecutionTable
from services.executor.domain import Execution, OrderT, Outcome
from services.executor.psp_notices import PspNotice


async def record_event(connection: AsyncConnection, notice: PspNotice) -> bool:
    """Records the event as received; False if it was recorded before (a redelivery or a replay).

    A concurrent delivery of the same event waits here on the primary key until this transaction ends,
    and then finds it recorded.
    """
    result = await connection.execute(
        text(
            "INSERT INTO webhook_events (event_id, type, object_id, execution_id, event_created_at) "
            "VALUES (:event_id, :type, :object_id, :execution_id, :created_at) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ),
        {
            "event_id": notice.event_id,
            "type": notice.event_type,
            "object_id": notice.object_id,
            "execution_id": notice.execution_id,
            "created_at": notice.created_at,
        },
    )
    return result.first() is not None


async def set_disposition(connection: AsyncConnection, event_id: str, disposition: str) -> None:
    await connection.execute(
        text("UPDATE webhook_events SET disposition = :disposition WHERE event_id = :event_id"),
        {"event_id": event_id, "disposition": disposition},
    )


async def lock_execution(
    connection: AsyncConnection, table: ExecutionTable[OrderT], execution_id: str
) -> Execution[OrderT] | None:
    """The execution, locked until the transaction ends so that no worker records over the webhook."""
    row = (
        await connection.execute(
            text(f"SELECT {table.columns} FROM {table.name} WHERE {table.key} = CAST(:id AS uuid) FOR UPDATE"),
            {"id": execution_id},
        )
    ).first()
    return execution_of(table, row) if row is not None else None


async def complete_open(
    connection: AsyncConnection, table: ExecutionTable[OrderT], execution_id: str, outcome: Outcome
) -> Execution[OrderT] | None:
    """A not-yet-final execution → the final `outcome`, releasing any claim; None if it was final already."""
    if not outcome.status.is_final:
        raise ValueError(f"a webhook only records final outcomes, not {outcome.status}")
    row = (
        await connection.execute(
            text(
                f"UPDATE {table.name} SET status = :status, "
                "psp_reference = CASE WHEN CAST(:psp_reference AS text) <> '' "
                "  THEN :psp_reference ELSE psp_reference END, "
                "failure_code = :failure_code, failure_message = :failure_message, "
                "claimed_by = NULL, claimed_at = NULL, updated_at = now() "
                f"WHERE {table.key} = CAST(:id AS uuid) "
                "AND status IN ('NOT_STARTED', 'EXECUTING', 'UNKNOWN') "
                f"RETURNING {table.columns}"
            ),
            {
                "id": execution_id,
                "status": str(outcome.status),
                "psp_reference": outcome.psp_reference,
                "failure_code": outcome.failure_code,
                "failure_message": outcome.failure_message,
            },
        )
    ).first()
    return execution_of(table, row) if row is not None else None


async def prune(connection: AsyncConnection, *, older_than_s: int, limit: int) -> int:
    """Deletes up to `limit` of the oldest events received more than `older_than_s` ago."""
    result = await connection.execute(
        text(
            "DELETE FROM webhook_events WHERE event_id IN (SELECT event_id FROM webhook_events "
            "WHERE received_at < now() - make_interval(secs => :older_than_s) "
            "ORDER BY received_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
        ),
        {"older_than_s": older_than_s, "limit": limit},
    )
    return int(result.rowcount)
