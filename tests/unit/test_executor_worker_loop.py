"""The worker loop's scheduling: bounded calls in flight, prompt wake-ups, drain on stop, DB outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError

from services.executor.adapters.claims_db import Claim
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus, Outcome
from services.executor.entrypoints.worker_loop import WorkerLoop
from services.executor.service.worker import Attempt


def _claim() -> Claim:
    order = ChargeOrder(str(uuid.uuid4()), "pay", "seller", "buyer", 100, "USD", "pm_card_visa")
    return Claim(order, attempts=1, budgeted_attempts=1)


class FakeWorker:
    """Implements the loop's Worker port in memory; each PSP call takes `call_s`."""

    worker_id = "fake-worker"

    def __init__(self, call_s: float = 0.02) -> None:
        self.due: list[Claim] = []
        self.call_s = call_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.claim_limits: list[int] = []
        self.recorded: list[str] = []
        self.claim_failures = 0
        self.sweeps = 0
        self.recoveries = 0
        self.released_earlier_runs: list[bool] = []

    async def claim(self, limit: int) -> list[Claim]:
        if self.claim_failures:
            self.claim_failures -= 1
            raise OperationalError("SELECT", {}, ConnectionError("database is down"))
        self.claim_limits.append(limit)
        claimed, self.due = self.due[:limit], self.due[limit:]
        return claimed

    async def charge(self, claim: Claim) -> Attempt:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.call_s)
        finally:
            self.in_flight -= 1
        return Attempt(claim, Outcome(ExecutionStatus.SUCCEEDED, psp_reference="pi_x"))

    async def record(self, attempts: Sequence[Attempt]) -> list[Execution]:
        self.recorded.extend(attempt.claim.order.payment_order_id for attempt in attempts)
        return [
            Execution(a.claim.order, ExecutionStatus.SUCCEEDED, 1, "pi_x", "", "", datetime.now(UTC)) for a in attempts
        ]

    async def release_stale_claims(self, *, including_earlier_runs: bool = False) -> list[Execution]:
        self.sweeps += 1
        self.released_earlier_runs.append(including_earlier_runs)
        return []

    async def recover_unknown(self) -> list[Execution]:
        self.recoveries += 1
        return []


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_never_more_calls_in_flight_than_the_concurrency_and_every_outcome_recorded() -> None:
    worker = FakeWorker()
    worker.due = [_claim() for _ in range(50)]
    expected = sorted(claim.order.payment_order_id for claim in worker.due)
    loop = WorkerLoop(worker, concurrency=8, claim_batch_size=5, poll_interval_s=0.01)
    task = asyncio.create_task(loop.run())
    await _until(lambda: len(worker.recorded) == 50)
    loop.stop()
    await asyncio.wait_for(task, 5)
    assert worker.max_in_flight <= 8
    assert all(limit <= 5 for limit in worker.claim_limits)  # never more than the batch size
    assert sorted(worker.recorded) == expected  # each exactly once


async def test_a_wake_up_starts_new_work_without_waiting_for_the_poll() -> None:
    worker = FakeWorker()
    loop = WorkerLoop(worker, concurrency=4, claim_batch_size=10, poll_interval_s=30)
    task = asyncio.create_task(loop.run())
    await _until(lambda: worker.sweeps == 1)
    worker.due = [_claim()]
    loop.wake()
    await _until(lambda: len(worker.recorded) == 1, timeout_s=2)
    loop.stop()
    await asyncio.wait_for(task, 5)


async def test_stop_waits_for_calls_in_flight_and_records_them() -> None:
    worker = FakeWorker(call_s=0.3)
    worker.due = [_claim() for _ in range(3)]
    loop = WorkerLoop(worker, concurrency=4, claim_batch_size=10, poll_interval_s=0.01)
    task = asyncio.create_task(loop.run())
    await _until(lambda: worker.in_flight == 3)
    loop.stop()
    await asyncio.wait_for(task, 5)
    assert len(worker.recorded) == 3
    assert worker.due == []


async def test_a_database_outage_is_waited_out() -> None:
    worker = FakeWorker()
    worker.claim_failures = 3
    worker.due = [_claim() for _ in range(2)]
    loop = WorkerLoop(worker, concurrency=4, claim_batch_size=10, poll_interval_s=0.01)
    task = asyncio.create_task(loop.run())
    await _until(lambda: len(worker.recorded) == 2)
    loop.stop()
    await asyncio.wait_for(task, 5)
    assert worker.claim_failures == 0


async def test_only_the_first_sweep_of_a_run_frees_an_earlier_runs_claims_and_every_sweep_recovers() -> None:
    worker = FakeWorker()
    loop = WorkerLoop(worker, concurrency=4, claim_batch_size=10, poll_interval_s=0.01, sweep_interval_s=0.02)
    task = asyncio.create_task(loop.run())
    await _until(lambda: worker.sweeps >= 3)
    loop.stop()
    await asyncio.wait_for(task, 5)
    assert worker.released_earlier_runs[0] is True
    assert not any(worker.released_earlier_runs[1:])  # later sweeps must not free this run's own claims
    assert worker.recoveries == worker.sweeps
