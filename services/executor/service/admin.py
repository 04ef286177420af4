"""The operators' use cases: inspect executions, list stuck ones, queue an UNKNOWN one again."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, NotFound, Validator
from services.common.logs import payment_order_context
from services.executor.adapters import db
from services.executor.domain import ChargeOrder, Execution, is_canonical_uuid

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN_S = 60
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_OLDER_THAN_S = 366 * 24 * 3600


def _require_order_id(payment_order_id: str) -> None:
    validator = Validator()
    if not is_canonical_uuid(payment_order_id):
        validator.add("payment_order_id", "must be a lower-case UUID")
    validator.raise_if_any()


def _not_found(payment_order_id: str) -> NotFound:
    return NotFound(f"no execution for payment order {payment_order_id}", reason="EXECUTION_NOT_FOUND")


class ExecutorAdmin:
    def __init__(self, engine: AsyncEngine, on_requeued: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._on_requeued = on_requeued  # wakes the worker so the retry starts now

    async def get_execution(self, payment_order_id: str) -> Execution[ChargeOrder]:
        _require_order_id(payment_order_id)
        async with self._engine.connect() as connection:
            execution = await db.get(connection, payment_order_id)
        if execution is None:
            raise _not_found(payment_order_id)
        return execution

    async def list_stuck(self, older_than_s: int, page_size: int) -> list[Execution[ChargeOrder]]:
        """Zero means the default for both, as the API documents."""
        validator = Validator()
        if not 0 <= older_than_s <= MAX_OLDER_THAN_S:
            validator.add("older_than_s", f"must be from 0 to {MAX_OLDER_THAN_S}")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            validator.add("page_size", f"must be from 0 to {MAX_PAGE_SIZE}")
        validator.raise_if_any()
        async with self._engine.connect() as connection:
            return await db.list_stuck(
                connection,
                older_than_s=older_than_s or DEFAULT_OLDER_THAN_S,
                limit=page_size or DEFAULT_PAGE_SIZE,
            )

    async def retry_execution(self, payment_order_id: str) -> Execution[ChargeOrder]:
        """UNKNOWN → NOT_STARTED with a fresh retry budget; the next call uses the same idempotency key."""
        _require_order_id(payment_order_id)
        async with self._engine.begin() as connection:
            requeued = await db.requeue_unknown(connection, payment_order_id)
            current = requeued or await db.get(connection, payment_order_id)
        if current is None:
            raise _not_found(payment_order_id)
        if requeued is None:
            raise FailedPrecondition(
                f"execution of payment order {payment_order_id} is {current.status}; only UNKNOWN "
                "executions can be retried",
                reason="EXECUTION_NOT_RETRYABLE",
            )
        with payment_order_context(payment_order_id):
            log.warning("operator queued an UNKNOWN execution for another attempt")
        self._on_requeued()
        return requeued
