"""Executing charges: claim due executions, call the PSP outside any transaction, record outcomes.

Every step is its own transaction, and the PSP is only called between committed states:
claim (NOT_STARTED → EXECUTING, committed) → PSP call → outcome + outbox event (committed).
A crash between the two leaves a claim that goes stale and is released for a retry with the same
idempotency key, which the PSP answers with the original result instead of charging again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import outbox
from services.common.logs import payment_order_context
from services.common.tracing import continue_trace
from services.executor.adapters import claims_db
from services.executor.adapters.claims_db import Claim
from services.executor.domain import Execution, Outcome
from services.executor.psp_port import ChargeRequest, ChargeResult, PaymentGateway, PspError
from services.executor.retry_policy import Jitter, RetryPolicy, full_jitter
from services.executor.service.outcome_events import outcome_event
from services.executor.service.outcomes import decide

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    policy: RetryPolicy
    stale_claim_s: int
    # A ceiling on one gateway call on top of the adapter's own HTTP timeout, so that no call can
    # outlive its claim.
    charge_deadline_s: float
    sweep_batch_size: int = 500


@dataclass(frozen=True, slots=True)
class Attempt:
    claim: Claim
    outcome: Outcome


class ExecutionWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        gateway: PaymentGateway,
        config: WorkerConfig,
        *,
        on_events: Callable[[], None] = lambda: None,
        jitter: Jitter = full_jitter,
    ) -> None:
        self._engine = engine
        self._gateway = gateway
        self._config = config
        self._on_events = on_events  # wakes the outbox relay after a commit that wrote events
        self._jitter = jitter

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    async def claim(self, limit: int) -> list[Claim]:
        async with self._engine.begin() as connection:
            return await claims_db.claim_due(connection, worker_id=self._config.worker_id, limit=limit)

    async def charge(self, claim: Claim) -> Attempt:
        """Calls the PSP once for a claimed execution. Never raises: every answer becomes an outcome."""
        order = claim.order
        continue_trace(order.traceparent)
        with payment_order_context(order.payment_order_id):
            answer: ChargeResult | BaseException
            try:
                async with asyncio.timeout(self._config.charge_deadline_s):
                    answer = await self._gateway.charge(
                        ChargeRequest(
                            payment_order_id=order.payment_order_id,
                            amount_minor=order.amount_minor,
                            currency=order.currency,
                            payment_method_token=order.payment_method_token,
                            payment_id=order.payment_id,
                            seller_id=order.seller_id,
                            buyer_id=order.buyer_id,
                        )
                    )
            except (PspError, TimeoutError) as error:
                answer = error
            except Exception as error:
                # A bug in an adapter must not kill the worker; it counts as an unknown outcome
                # (the charge may have happened), retried within the budget and then parked.
                log.exception("unexpected error from the payment gateway")
                answer = error
            outcome = decide(answer, attempts=claim.budgeted_attempts, policy=self._config.policy, jitter=self._jitter)
            log.log(
                logging.INFO if outcome.publishes_event else logging.WARNING,
                "attempt %d: %s %s",
                claim.attempts,
                outcome.status,
                outcome.failure_code,
                extra={"psp_reference": outcome.psp_reference, "retry_delay_ms": outcome.retry_delay_ms},
            )
            return Attempt(claim, outcome)

    async def record(self, attempts: Sequence[Attempt]) -> list[Execution]:
        """Records outcomes and their events in one transaction, for the claims still held."""
        if not attempts:
            return []
        async with self._engine.begin() as connection:
            recorded = await claims_db.record_outcomes(
                connection,
                worker_id=self._config.worker_id,
                outcomes=[(attempt.claim, attempt.outcome) for attempt in attempts],
            )
            events = [outcome_event(execution) for execution in recorded if execution.status.is_final]
            await outbox.append(connection, events)
        if events:
            self._on_events()
        recorded_ids = {execution.order.payment_order_id for execution in recorded}
        for attempt in attempts:
            if attempt.claim.order.payment_order_id not in recorded_ids:
                with payment_order_context(attempt.claim.order.payment_order_id):
                    # The claim went stale and was released; whoever holds it now records instead.
                    log.warning(
                        "claim lost before its outcome was recorded; outcome %s dropped", attempt.outcome.status
                    )
        return recorded

    async def release_stale_claims(self) -> list[Execution]:
        async with self._engine.begin() as connection:
            released = await claims_db.release_stale(
                connection,
                stale_claim_s=self._config.stale_claim_s,
                retry_budget=self._config.policy.budget,
                limit=self._config.sweep_batch_size,
            )
        for execution in released:
            with payment_order_context(execution.order.payment_order_id):
                log.warning("released a stale claim; now %s", execution.status)
        return released

    async def run_once(self, limit: int) -> list[Execution]:
        """Claims up to `limit` due executions, charges them concurrently, records the outcomes."""
        claims = await self.claim(limit)
        attempts = await asyncio.gather(*(self.charge(claim) for claim in claims))
        return await self.record(attempts)
