"""The operators' use cases: inspect an execution, list stuck ones, queue an UNKNOWN one again.

Charges, refunds and payouts go through one state machine (tables.py), so every use case covers the
three kinds; an execution is named by its kind and its id (the PSP idempotency key).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, NotFound, Validator
from services.common.logs import payment_order_context
from services.executor.adapters import db
from services.executor.adapters.tables import BY_KIND
from services.executor.domain import (
    ChargeOrder,
    Execution,
    ExecutionKind,
    PayoutOrder,
    RefundOrder,
    is_canonical_uuid,
)

log = logging.getLogger(__name__)

AnyExecution = Execution[ChargeOrder | RefundOrder | PayoutOrder]

DEFAULT_OLDER_THAN_S = 60
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_OLDER_THAN_S = 366 * 24 * 3600
# What each kind's id is the id of, for messages ("no refund execution for refund <id>").
_ID_OF = {ExecutionKind.CHARGE: "payment order", ExecutionKind.REFUND: "refund", ExecutionKind.PAYOUT: "payout"}


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    """The execution a request names."""

    kind: ExecutionKind
    execution_id: str

    @classmethod
    def named(cls, kind: ExecutionKind | None, execution_id: str, payment_order_id: str = "") -> ExecutionRef:
        """From `kind` and `id`, or from a charge's `payment_order_id` (how the API first named executions,
        kept for its callers). Raises InvalidArgument naming every field that is wrong."""
        validator = Validator()
        if payment_order_id and execution_id:
            validator.add("payment_order_id", "give either payment_order_id (a charge) or kind and id, not both")
        elif payment_order_id:
            if kind not in (None, ExecutionKind.CHARGE):
                validator.add("kind", f"must be CHARGE or unspecified with payment_order_id (a {kind} id goes in id)")
            if not is_canonical_uuid(payment_order_id):
                validator.add("payment_order_id", "must be a lower-case UUID")
        elif execution_id:
            if kind is None:
                validator.add("kind", "is required with id: CHARGE, REFUND or PAYOUT")
            if not is_canonical_uuid(execution_id):
                validator.add("id", f"must be a lower-case UUID (the {_ID_OF[kind] if kind else 'execution'} id)")
        else:
            validator.add("id", "is required (with kind), or payment_order_id for a charge")
        validator.raise_if_any()
        # Valid, kind is None only with a payment_order_id: a charge.
        return cls(kind or ExecutionKind.CHARGE, execution_id or payment_order_id)

    def __str__(self) -> str:
        return f"{self.kind} execution of {_ID_OF[self.kind]} {self.execution_id}"


def _log_context(execution: AnyExecution) -> contextlib.AbstractContextManager[None]:
    # Charges and refunds belong to a payment order: its id on the line puts it in the order's story.
    order = execution.order
    if isinstance(order, PayoutOrder):
        return contextlib.nullcontext()
    return payment_order_context(order.payment_order_id)


class ExecutorAdmin:
    def __init__(self, engine: AsyncEngine, on_requeued: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._on_requeued = on_requeued  # wakes the workers so the retry starts now

    async def get_execution(self, ref: ExecutionRef) -> AnyExecution:
        async with self._engine.connect() as connection:
            execution = await db.get_execution(connection, BY_KIND[ref.kind], ref.execution_id)
        if execution is None:
            raise NotFound(f"no {ref}", reason="EXECUTION_NOT_FOUND")
        return execution

    async def list_stuck(
        self, older_than_s: int, page_size: int, kind: ExecutionKind | None = None
    ) -> list[AnyExecution]:
        """Of `kind`, or of every kind when None, oldest first. Zero means the default for both numbers,
        as the API documents."""
        validator = Validator()
        if not 0 <= older_than_s <= MAX_OLDER_THAN_S:
            validator.add("older_than_s", f"must be from 0 to {MAX_OLDER_THAN_S}")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            validator.add("page_size", f"must be from 0 to {MAX_PAGE_SIZE}")
        validator.raise_if_any()
        limit = page_size or DEFAULT_PAGE_SIZE
        tables = [BY_KIND[kind]] if kind else list(BY_KIND.values())
        stuck: list[AnyExecution] = []
        async with self._engine.connect() as connection:
            # Each table's oldest `limit` (read from its `_stuck` index), then the oldest of them all.
            for table in tables:
                stuck += await db.list_stuck(
                    connection, table, older_than_s=older_than_s or DEFAULT_OLDER_THAN_S, limit=limit
                )
        return sorted(stuck, key=lambda execution: (execution.updated_at, execution.order.execution_id))[:limit]

    async def retry_execution(self, ref: ExecutionRef) -> AnyExecution:
        """UNKNOWN → NOT_STARTED with a fresh retry budget; the next call uses the same idempotency key."""
        table = BY_KIND[ref.kind]
        async with self._engine.begin() as connection:
            requeued = await db.requeue_unknown(connection, table, ref.execution_id)
            current = requeued or await db.get_execution(connection, table, ref.execution_id)
        if current is None:
            raise NotFound(f"no {ref}", reason="EXECUTION_NOT_FOUND")
        if requeued is None:
            raise FailedPrecondition(
                f"the {ref} is {current.status}; only UNKNOWN executions can be retried",
                reason="EXECUTION_NOT_RETRYABLE",
            )
        with _log_context(requeued):
            log.warning(
                "operator queued an UNKNOWN %s for another attempt",
                ref,
                extra={"execution_kind": str(ref.kind), "execution_id": ref.execution_id},
            )
        self._on_requeued()
        return requeued
