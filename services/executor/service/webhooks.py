"""Acting on verified PSP webhook events, each exactly once.

An event is recorded by id in the same transaction as its effect, so a redelivery or a replay changes
nothing. Its effect: an event giving the PSP's definite word on an execution that has none yet (UNKNOWN,
EXECUTING, or NOT_STARTED waiting for a retry) completes it as recovery would, with the same outcome
(`definite_outcome`) and the same outcome event in the outbox, so wallet and ledger hear of it once. An
event about an execution already final is recorded and otherwise ignored; if it contradicts the recorded
outcome (or the object differs from the request) it is logged and counted for reconciliation, never
"fixed" here: the executor's recorded outcome has already been announced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.events import OutboundEvent
from services.common.logs import payment_order_context
from services.common.tracing import continue_trace
from services.executor.adapters import webhook_db
from services.executor.adapters.tables import CHARGES, PAYOUTS, REFUNDS, ExecutionTable
from services.executor.domain import Execution, ExecutionStatus, OrderT, RefundOrder, is_canonical_uuid
from services.executor.psp_notices import NoticeKind, PspNotice
from services.executor.service.outcome_events import outcome_event, payout_outcome_event, refund_outcome_event
from services.executor.service.outcomes import definite_outcome
from services.executor.service.webhook_metrics import WebhookMetrics

log = logging.getLogger(__name__)


class Disposition(StrEnum):
    APPLIED = "applied"  # completed an execution that had no outcome yet
    ALREADY_FINAL = "already_final"  # agrees with the outcome recorded before
    CONTRADICTS_RECORDED = "contradicts_recorded"  # disagrees with the execution: a reconciliation matter
    NOT_FINAL = "not_final"  # the object is still pending at the PSP
    UNMATCHED = "unmatched"  # no execution has the id in the object's metadata (not Settle's, or none)
    IGNORED_TYPE = "ignored_type"  # about an object the executor does not execute (a charge, a dispute)
    DUPLICATE = "duplicate"  # received before: nothing done (not stored; the first receipt is)


@dataclass(frozen=True)
class _Kind(Generic[OrderT]):
    table: ExecutionTable[OrderT]
    outcome_event: Callable[[Execution[OrderT]], OutboundEvent]


_KINDS: dict[NoticeKind, _Kind[Any]] = {
    NoticeKind.CHARGE: _Kind(CHARGES, outcome_event),
    NoticeKind.REFUND: _Kind(REFUNDS, refund_outcome_event),
    NoticeKind.PAYOUT: _Kind(PAYOUTS, payout_outcome_event),
}


class WebhookProcessor:
    def __init__(
        self,
        engine: AsyncEngine,
        on_events: Callable[[], None] = lambda: None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._on_events = on_events  # wakes the outbox relay after a commit that wrote an event
        self._metrics = metrics

    async def process(self, notice: PspNotice) -> Disposition:
        completed: tuple[ExecutionTable[Any], Execution[Any]] | None = None
        async with self._engine.begin() as connection:
            if await webhook_db.record_event(connection, notice):
                disposition, completed = await self._apply(connection, notice)
                await webhook_db.set_disposition(connection, notice.event_id, disposition)
            else:
                disposition = Disposition.DUPLICATE
        if self._metrics is not None:
            self._metrics.processed(disposition)
            if completed is not None:
                self._metrics.completed(*completed)
        if completed is not None:
            self._on_events()
        return disposition

    async def prune(self, *, older_than_s: int, limit: int) -> int:
        """Forgets events received long ago; a redelivery after that would find its execution final anyway."""
        async with self._engine.begin() as connection:
            return await webhook_db.prune(connection, older_than_s=older_than_s, limit=limit)

    async def _apply(
        self, connection: AsyncConnection, notice: PspNotice
    ) -> tuple[Disposition, tuple[ExecutionTable[Any], Execution[Any]] | None]:
        """What the event means, and the execution it completed (with its table) if it did."""
        kind = _KINDS.get(notice.kind) if notice.kind is not None else None
        if kind is None:
            return Disposition.IGNORED_TYPE, None
        if notice.result is None:
            return Disposition.NOT_FINAL, None
        if not is_canonical_uuid(notice.execution_id):
            return Disposition.UNMATCHED, None
        execution = await webhook_db.lock_execution(connection, kind.table, notice.execution_id)
        if execution is None:
            return Disposition.UNMATCHED, None
        with payment_order_context(getattr(execution.order, "payment_order_id", "")):
            differences = _differences(execution, notice)
            if differences:
                log.warning(
                    "PSP webhook contradicts the execution: %s",
                    "; ".join(differences),
                    extra=_ids(notice, execution),
                )
                return Disposition.CONTRADICTS_RECORDED, None
            if execution.status.is_final:
                return Disposition.ALREADY_FINAL, None
            continue_trace(execution.order.traceparent)  # the outcome event continues the request's trace
            completed = await webhook_db.complete_open(
                connection, kind.table, notice.execution_id, definite_outcome(notice.result)
            )
            assert completed is not None, "the execution is locked and was not final"
            await outbox.append(connection, [kind.outcome_event(completed)])
            log.info(
                "PSP webhook completed a %s execution: %s",
                execution.status,
                completed.status,
                extra=_ids(notice, completed),
            )
            return Disposition.APPLIED, (kind.table, completed)


def _differences(execution: Execution[Any], notice: PspNotice) -> list[str]:
    """How the PSP's object and word disagree with the execution (empty when they agree)."""
    order = execution.order
    differences = []
    if notice.amount_minor != order.amount_minor or notice.currency != order.currency:
        differences.append(
            f"the PSP object is for {notice.amount_minor} {notice.currency}, the request for "
            f"{order.amount_minor} {order.currency}"
        )
    if isinstance(order, RefundOrder) and notice.charge_psp_reference != order.charge_psp_reference:
        differences.append(
            f"the PSP refunded {notice.charge_psp_reference!r}, the request was for {order.charge_psp_reference!r}"
        )
    result = notice.result
    if result is not None and execution.status.is_final:
        recorded_success = execution.status is ExecutionStatus.SUCCEEDED
        if result.succeeded != recorded_success:
            psp_word = "succeeded" if result.succeeded else f"failed ({result.failure_code})"
            differences.append(f"the PSP says {psp_word}, the executor recorded {execution.status}")
        elif result.psp_reference and execution.psp_reference and result.psp_reference != execution.psp_reference:
            differences.append(
                f"the PSP object is {result.psp_reference}, the executor recorded {execution.psp_reference}"
            )
    return differences


def _ids(notice: PspNotice, execution: Execution[Any]) -> dict[str, str]:
    return {
        "psp_event_id": notice.event_id,
        "psp_event_type": notice.event_type,
        "psp_object_id": notice.object_id,
        "execution_id": execution.order.execution_id,
        "execution_status": str(execution.status),
        "psp_reference": execution.psp_reference,
    }
