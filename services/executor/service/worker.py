"""Executing charges, refunds and payouts: claim due executions, call the PSP outside any
transaction, record outcomes. One worker per kind (psp_calls.py); the state machine is shared.

Every step is its own transaction, and the PSP is only called between committed states:
claim (NOT_STARTED → EXECUTING, committed) → PSP call → outcome + outbox event (committed).
A crash between the two leaves a claim that is released (at once by the worker's next run under the
same id, else when it goes stale) for another attempt. Every attempt after the first asks the PSP
for its record of the order before it creates anything: the idempotency key protects a retry only
while the PSP remembers it (24 hours at Stripe), and an attempt can come later than that (an
operator's retry, recovery of a parked execution). The create that may follow still carries the
same key, so an attempt racing an earlier one in flight gets the first one's answer, not a charge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import otel, outbox
from services.common.crash_points import (
    EXECUTOR_AFTER_OUTCOME_COMMIT,
    EXECUTOR_AFTER_PSP_RESPONSE,
    EXECUTOR_BEFORE_PSP_CALL,
    crash_point,
)
from services.executor.adapters import claims_db
from services.executor.adapters.claims_db import Claim
from services.executor.domain import Execution, OrderT, Outcome
from services.executor.psp_port import ChargeResult, PspError
from services.executor.retry_policy import Jitter, RetryPolicy, full_jitter
from services.executor.service.metrics import KINDS, ExecutorMetrics
from services.executor.service.outcomes import decide
from services.executor.service.psp_calls import PspCalls

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    policy: RetryPolicy
    stale_claim_s: int
    # A ceiling on one gateway call on top of the adapter's own HTTP timeout; an attempt makes at
    # most two calls (search, create), and both together stay inside the stale-claim deadline.
    call_deadline_s: float
    # UNKNOWN executions are queued again after this long, at most `max_recoveries` times.
    recovery_after_s: int = 60
    max_recoveries: int = 5
    sweep_batch_size: int = 500


@dataclass(frozen=True, slots=True)
class Attempt(Generic[OrderT]):
    claim: Claim[OrderT]
    outcome: Outcome


class ExecutionWorker(Generic[OrderT]):
    def __init__(
        self,
        engine: AsyncEngine,
        calls: PspCalls[OrderT],
        config: WorkerConfig,
        *,
        on_events: Callable[[], None] = lambda: None,
        jitter: Jitter = full_jitter,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._calls = calls
        self._table = calls.table
        self._config = config
        self._on_events = on_events  # wakes the outbox relay after a commit that wrote events
        self._jitter = jitter
        self._metrics = metrics

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    async def claim(self, limit: int) -> list[Claim[OrderT]]:
        async with self._engine.begin() as connection:
            return await claims_db.claim_due(connection, self._table, worker_id=self._config.worker_id, limit=limit)

    async def charge(self, claim: Claim[OrderT]) -> Attempt[OrderT]:
        """Makes one attempt for a claimed execution (a charge, refund or payout). Never raises: every
        answer becomes an outcome."""
        # The request's trace continues here (a span of its own with tracing on), so the outcome event
        # and the log lines of the attempt join the trace of the payment that asked for it.
        kind = KINDS[self._table.name]
        with otel.continued(f"{kind} attempt", SpanKind.INTERNAL, claim.order.traceparent, {"settle.kind": kind}):
            return await self._attempt(claim)

    async def _attempt(self, claim: Claim[OrderT]) -> Attempt[OrderT]:
        order = claim.order
        with self._calls.log_context(order):
            crash_point(EXECUTOR_BEFORE_PSP_CALL)
            answer: ChargeResult | BaseException
            try:
                answer = await self._ask_psp(claim)
            except (PspError, TimeoutError) as error:
                answer = error
            except Exception as error:
                # A bug in an adapter must not kill the worker; it counts as an unknown outcome
                # (the charge may have happened), retried within the budget and then parked.
                log.exception("unexpected error from the payment gateway")
                answer = error
            crash_point(EXECUTOR_AFTER_PSP_RESPONSE)
            outcome = decide(answer, attempts=claim.budgeted_attempts, policy=self._config.policy, jitter=self._jitter)
            log.log(
                logging.INFO if outcome.publishes_event else logging.WARNING,
                "attempt %d: %s %s",
                claim.attempts,
                outcome.status,
                outcome.failure_code,
                extra={
                    "execution_id": order.execution_id,
                    "psp_reference": outcome.psp_reference,
                    "retry_delay_ms": outcome.retry_delay_ms,
                },
            )
            return Attempt(claim, outcome)

    async def _ask_psp(self, claim: Claim[OrderT]) -> ChargeResult:
        if claim.attempts > 1:
            async with asyncio.timeout(self._config.call_deadline_s):
                found = await self._calls.find(claim.order)
            if found is not None:
                log.info("attempt %d: the PSP already has this execution's result", claim.attempts)
                return found
        async with asyncio.timeout(self._config.call_deadline_s):
            return await self._calls.create(claim.order)

    async def record(self, attempts: Sequence[Attempt[OrderT]]) -> list[Execution[OrderT]]:
        """Records outcomes and their events in one transaction, for the claims still held."""
        if not attempts:
            return []
        async with self._engine.begin() as connection:
            recorded = await claims_db.record_outcomes(
                connection,
                self._table,
                worker_id=self._config.worker_id,
                outcomes=[(attempt.claim, attempt.outcome) for attempt in attempts],
            )
            events = [self._calls.outcome_event(execution) for execution in recorded if execution.status.is_final]
            await outbox.append(connection, events)
        crash_point(EXECUTOR_AFTER_OUTCOME_COMMIT)
        if self._metrics is not None:
            self._metrics.recorded(self._table, recorded)
        if events:
            self._on_events()
        recorded_ids = {execution.order.execution_id for execution in recorded}
        for attempt in attempts:
            if attempt.claim.order.execution_id not in recorded_ids:
                with self._calls.log_context(attempt.claim.order):
                    # Harmless either way, so not a warning: the claim went stale and was released (already
                    # warned by release_stale_claims; whoever holds it now records instead), or, most often,
                    # a PSP webhook recorded the PSP's word first (service/webhooks.py), the same answer
                    # under the same idempotency key.
                    log.info(
                        "claim lost before its outcome was recorded (released as stale, or completed by a PSP "
                        "webhook); outcome %s dropped",
                        attempt.outcome.status,
                    )
        return recorded

    async def release_stale_claims(self, *, including_earlier_runs: bool = False) -> list[Execution[OrderT]]:
        """Releases stale claims; with `including_earlier_runs`, also all claims under this worker's id,
        which at start can only be a crashed predecessor's."""
        async with self._engine.begin() as connection:
            released = await claims_db.release_stale(
                connection,
                self._table,
                stale_claim_s=self._config.stale_claim_s,
                retry_budget=self._config.policy.budget,
                limit=self._config.sweep_batch_size,
                earlier_run_of=self._config.worker_id if including_earlier_runs else None,
            )
        for execution in released:
            with self._calls.log_context(execution.order):
                log.warning("released a claim that ended without an outcome; now %s", execution.status)
        return released

    async def recover_unknown(self) -> list[Execution[OrderT]]:
        """Queues UNKNOWN executions again, to be completed from the PSP's record of them."""
        async with self._engine.begin() as connection:
            requeued = await claims_db.requeue_for_recovery(
                connection,
                self._table,
                unknown_for_s=self._config.recovery_after_s,
                max_recoveries=self._config.max_recoveries,
                limit=self._config.sweep_batch_size,
            )
        for execution in requeued:
            with self._calls.log_context(execution.order):
                log.warning("recovery: asking the PSP again about an UNKNOWN execution (%s)", execution.failure_code)
        return requeued

    async def run_once(self, limit: int) -> list[Execution[OrderT]]:
        """Claims up to `limit` due executions, charges them concurrently, records the outcomes."""
        claims = await self.claim(limit)
        attempts = await asyncio.gather(*(self.charge(claim) for claim in claims))
        return await self.record(attempts)
