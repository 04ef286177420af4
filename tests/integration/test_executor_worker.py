"""The executor's worker on real PostgreSQL with the in-memory gateway: claims, outcomes, retries.

These tests run on a private executor database so that no other test's executions can be claimed
by (or claim from) the workers here, which keeps the counts exact.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, ensure_database, service_database_url
from services.common.infra import Infrastructure
from services.executor.adapters import db
from services.executor.adapters.psp.fake_gateway import FakePaymentGateway
from services.executor.adapters.tables import CHARGES
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus
from services.executor.entrypoints.worker_loop import WorkerLoop
from services.executor.psp_port import ChargeRequest, ChargeResult, PspOutcomeUnknown, PspRequestRejected
from services.executor.retry_policy import RetryPolicy
from services.executor.service.accepting import accept
from services.executor.service.psp_calls import ChargeCalls
from services.executor.service.worker import ExecutionWorker, WorkerConfig


@pytest.fixture(scope="module")
def private_database(migrated: Infrastructure) -> str:
    database = f"settle_executor_worker_{uuid.uuid4().hex[:8]}"
    ensure_database(migrated.database_url, database)
    config = Config()
    config.set_main_option("script_location", "services.executor:migrations")
    config.attributes["url"] = service_database_url(migrated.database_url, database)
    command.upgrade(config, "head")
    return database


@pytest_asyncio.fixture(scope="module")
async def engine(migrated: Infrastructure, private_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(service_database_url(migrated.database_url, private_database))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(autouse=True)
async def empty_tables(engine: AsyncEngine) -> None:
    """Each test starts with no executions, so a worker claims exactly the test's own."""
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE executions, outbox"))


@pytest.fixture
def gateway() -> Iterator[FakePaymentGateway]:
    yield FakePaymentGateway()


def _worker(
    engine: AsyncEngine, gateway: object, worker_id: str = "worker-a", budget: int = 3, max_recoveries: int = 2
) -> ExecutionWorker:
    config = WorkerConfig(
        worker_id=worker_id,
        policy=RetryPolicy(budget=budget, base_ms=1, max_ms=5),
        stale_claim_s=60,
        call_deadline_s=5,
        recovery_after_s=30,
        max_recoveries=max_recoveries,
    )
    return ExecutionWorker(engine, ChargeCalls(gateway), config, jitter=lambda ceiling: 0)  # type: ignore[arg-type]


def _order(token: str = "pm_card_visa", amount_minor: int = 1000) -> ChargeOrder:
    return ChargeOrder(str(uuid.uuid4()), "pay-1", "seller-1", "buyer-1", amount_minor, "USD", token)


async def _accept(engine: AsyncEngine, *orders: ChargeOrder) -> None:
    async with engine.begin() as connection:
        assert await accept(connection, CHARGES, orders) == []


async def _get(engine: AsyncEngine, order: ChargeOrder) -> Execution:
    async with engine.connect() as connection:
        execution = await db.get(connection, order.payment_order_id)
    assert execution is not None
    return execution


async def _events(engine: AsyncEngine, order: ChargeOrder) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT topic FROM outbox WHERE message_key = :key ORDER BY seq"),
            {"key": order.payment_order_id.encode()},
        )
        return [row.topic for row in rows]


async def _make_due(engine: AsyncEngine, order: ChargeOrder) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE executions SET next_attempt_at = now() WHERE payment_order_id = CAST(:id AS uuid)"),
            {"id": order.payment_order_id},
        )


async def test_a_request_is_charged_once_and_announced_once(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    order = _order()
    await _accept(engine, order)
    await _accept(engine, order)  # a redelivery of the same request
    worker = _worker(engine, gateway)
    await worker.run_once(10)
    await worker.run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert execution.attempts == 1 and execution.psp_reference.startswith("pi_fake_")
    assert len(gateway.charges_for(order.payment_order_id)) == 1
    assert gateway.charge_calls == 1
    assert await _events(engine, order) == ["payment.order.succeeded"]


async def test_a_claim_takes_no_more_than_its_limit(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    await _accept(engine, *[_order() for _ in range(100)])
    worker = _worker(engine, gateway)
    assert len(await worker.claim(8)) == 8
    async with engine.connect() as connection:
        executing = await connection.scalar(text("SELECT count(*) FROM executions WHERE status = 'EXECUTING'"))
    assert executing == 8  # the bound on PSP calls in flight rests on this
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE executions SET claimed_at = now() - interval '1 hour'"))
    config = WorkerConfig("sweeper", RetryPolicy(3, 1, 5), stale_claim_s=60, call_deadline_s=5, sweep_batch_size=3)
    assert len(await ExecutionWorker(engine, ChargeCalls(gateway), config).release_stale_claims()) == 3


async def test_a_decline_fails_the_order_without_a_charge(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    order = _order(token="pm_card_chargeDeclinedInsufficientFunds")
    await _accept(engine, order)
    await _worker(engine, gateway).run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.failure_code == "insufficient_funds"
    assert gateway.charges_for(order.payment_order_id) == []
    assert await _events(engine, order) == ["payment.order.failed"]


async def test_a_request_for_the_same_order_with_another_amount_is_a_conflict(engine: AsyncEngine) -> None:
    order = _order()
    other = ChargeOrder(order.payment_order_id, "pay-1", "seller-1", "buyer-1", 999, "USD", "pm_card_visa")
    async with engine.begin() as connection:
        conflicts = await accept(connection, CHARGES, [order, order, other])
    assert [conflict.requested for conflict in conflicts] == [other]
    assert "amount_minor" in conflicts[0].describe()
    assert (await _get(engine, order)).order.amount_minor == 1000


@pytest.mark.parametrize("after_charge", [False, True], ids=["before-charge", "timeout-after-charge"])
async def test_an_unknown_outcome_is_retried_with_the_same_key_and_charges_once(
    engine: AsyncEngine, gateway: FakePaymentGateway, after_charge: bool
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway)
    gateway.fail_next(PspOutcomeUnknown("HTTP 500"), after_charge=after_charge)
    await worker.run_once(10)
    pending = await _get(engine, order)
    assert pending.status is ExecutionStatus.NOT_STARTED
    assert pending.failure_code == "psp_outcome_unknown"
    assert await _events(engine, order) == []
    await asyncio.sleep(0.02)  # the backoff (at most 5 ms here)
    await worker.run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.SUCCEEDED and execution.attempts == 2
    assert execution.failure_code == ""
    assert len(gateway.charges_for(order.payment_order_id)) == 1
    assert await _events(engine, order) == ["payment.order.succeeded"]


async def test_a_retry_waits_for_its_backoff(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    order = _order()
    await _accept(engine, order)
    gateway.fail_next(PspOutcomeUnknown("HTTP 429", retry_after_s=30))
    worker = _worker(engine, gateway)
    await worker.run_once(10)
    assert await worker.run_once(10) == []  # not due for 30 s
    async with engine.connect() as connection:
        wait_s = await connection.scalar(
            text(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM executions "
                "WHERE payment_order_id = CAST(:id AS uuid)"
            ),
            {"id": order.payment_order_id},
        )
    assert 28 < float(wait_s) <= 30.1


async def test_after_the_budget_an_unknown_outcome_is_parked_without_an_event(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway, budget=2)
    gateway.fail_next(PspOutcomeUnknown("timeout"), times=2)
    await worker.run_once(10)
    await _make_due(engine, order)
    await worker.run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.UNKNOWN and execution.attempts == 2
    assert "retry budget of 2" in execution.failure_message
    assert await _events(engine, order) == []
    assert await worker.run_once(10) == []  # parked: no worker touches it again


async def test_a_rejected_request_is_parked_for_an_operator(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    order = _order()
    await _accept(engine, order)
    gateway.fail_next(PspRequestRejected("idempotency key reused with different parameters"))
    await _worker(engine, gateway).run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.UNKNOWN
    assert execution.failure_code == "psp_request_rejected"
    assert await _events(engine, order) == []


async def _age(engine: AsyncEngine, order: ChargeOrder, column: str, seconds: int) -> None:
    """Moves a timestamp `seconds` back: as if the claim had been taken (`claimed_at`) or the
    execution last changed (`updated_at`) that long ago."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                f"UPDATE executions SET {column} = {column} - make_interval(secs => :s) "
                "WHERE payment_order_id = CAST(:id AS uuid)"
            ),
            {"s": seconds, "id": order.payment_order_id},
        )


async def _age_claims(engine: AsyncEngine, order: ChargeOrder, seconds: int) -> None:
    await _age(engine, order, "claimed_at", seconds)


async def test_a_stale_claim_is_retried_with_the_same_key_and_the_late_outcome_is_refused(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    hung = _worker(engine, gateway, "worker-hung")
    alive = _worker(engine, gateway, "worker-alive")
    [claim] = await hung.claim(10)
    late_attempt = await hung.charge(claim)  # the PSP charged; the worker hangs before recording
    assert await alive.release_stale_claims() == []  # a fresh claim is left alone
    await _age_claims(engine, order, seconds=120)
    released = await alive.release_stale_claims()
    assert [(e.order.payment_order_id, e.status) for e in released] == [
        (order.payment_order_id, ExecutionStatus.NOT_STARTED)
    ]
    await alive.run_once(10)
    assert await hung.record([late_attempt]) == []  # its claim is gone: it cannot write over
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.SUCCEEDED and execution.attempts == 2
    assert gateway.charge_calls == 1  # the second attempt found the charge by asking the PSP first
    assert gateway.find_calls == 1
    assert len(gateway.charges_for(order.payment_order_id)) == 1
    assert await _events(engine, order) == ["payment.order.succeeded"]


async def test_a_worker_cannot_record_an_earlier_claim_of_its_own(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway)
    [first_claim] = await worker.claim(10)
    await _age_claims(engine, order, seconds=120)
    await worker.release_stale_claims()
    [second_claim] = await worker.claim(10)
    assert (first_claim.attempts, second_claim.attempts) == (1, 2)
    assert await worker.record([await worker.charge(first_claim)]) == []
    assert [e.status for e in await worker.record([await worker.charge(second_claim)])] == [ExecutionStatus.SUCCEEDED]


async def test_a_stale_claim_with_no_budget_left_is_parked(engine: AsyncEngine, gateway: FakePaymentGateway) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway, budget=1)
    await worker.claim(10)
    await _age_claims(engine, order, seconds=120)
    [released] = await worker.release_stale_claims()
    assert released.status is ExecutionStatus.UNKNOWN
    assert released.failure_code == "stale_claim"


async def test_a_retry_after_the_psp_forgot_the_key_finds_the_charge_instead_of_charging_again(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway)
    gateway.fail_next(PspOutcomeUnknown("read timeout"), after_charge=True)
    await worker.run_once(10)
    gateway.forget_idempotency_keys()  # a create under the same key would now charge again
    await _make_due(engine, order)
    await worker.run_once(10)
    execution = await _get(engine, order)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert (gateway.charge_calls, gateway.find_calls) == (1, 1)  # searched, found, created nothing
    assert len(gateway.charges_for(order.payment_order_id)) == 1
    assert execution.psp_reference == gateway.charges_for(order.payment_order_id)[0].psp_reference


async def test_a_retry_of_an_order_the_psp_has_no_record_of_charges_it_under_the_same_key(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway)
    gateway.fail_next(PspOutcomeUnknown("connection reset"))  # before the PSP did anything
    await worker.run_once(10)
    await _make_due(engine, order)
    await worker.run_once(10)
    assert (await _get(engine, order)).status is ExecutionStatus.SUCCEEDED
    assert (gateway.charge_calls, gateway.find_calls) == (2, 1)
    assert len(gateway.charges_for(order.payment_order_id)) == 1


async def test_a_restarted_worker_frees_its_predecessors_claims_at_once_and_no_one_elses(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    mine, theirs = _order(), _order()
    await _accept(engine, mine)
    await _worker(engine, gateway, "executor-0").claim(10)  # then the process is killed
    await _accept(engine, theirs)
    await _worker(engine, gateway, "executor-1").claim(10)  # alive
    restarted = _worker(engine, gateway, "executor-0")
    assert await restarted.release_stale_claims() == []  # not stale yet, and not asked for
    released = await restarted.release_stale_claims(including_earlier_runs=True)
    assert [(e.order.payment_order_id, e.status) for e in released] == [
        (mine.payment_order_id, ExecutionStatus.NOT_STARTED)
    ]
    assert (await _get(engine, theirs)).status is ExecutionStatus.EXECUTING
    await restarted.run_once(10)
    assert (await _get(engine, mine)).status is ExecutionStatus.SUCCEEDED


async def _age_updates(engine: AsyncEngine, order: ChargeOrder, seconds: int) -> None:
    await _age(engine, order, "updated_at", seconds)


async def test_recovery_completes_a_parked_execution_from_the_psps_record(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    order = _order()
    await _accept(engine, order)
    worker = _worker(engine, gateway, budget=1)
    gateway.fail_next(PspOutcomeUnknown("read timeout"), after_charge=True)
    await worker.run_once(10)
    assert (await _get(engine, order)).status is ExecutionStatus.UNKNOWN
    gateway.forget_idempotency_keys()
    assert await worker.recover_unknown() == []  # not parked long enough yet
    await _age_updates(engine, order, seconds=31)
    [requeued] = await worker.recover_unknown()
    assert requeued.status is ExecutionStatus.NOT_STARTED
    await worker.run_once(10)
    assert (await _get(engine, order)).status is ExecutionStatus.SUCCEEDED
    assert len(gateway.charges_for(order.payment_order_id)) == 1
    assert gateway.charge_calls == 1
    assert await _events(engine, order) == ["payment.order.succeeded"]


async def test_recovery_leaves_rejected_requests_and_gives_up_after_its_limit(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    rejected, unreachable = _order(), _order()
    worker = _worker(engine, gateway, budget=1, max_recoveries=2)
    await _accept(engine, rejected)
    gateway.fail_next(PspRequestRejected("no such payment method"))
    await worker.run_once(10)
    await _accept(engine, unreachable)
    for _ in range(3):  # the PSP stays unreachable through every recovery
        gateway.fail_next(PspOutcomeUnknown("connection refused"))
        await worker.run_once(10)
        await _age_updates(engine, rejected, seconds=31)
        await _age_updates(engine, unreachable, seconds=31)
        await worker.recover_unknown()
    assert (await _get(engine, rejected)).failure_code == "psp_request_rejected"
    parked = await _get(engine, unreachable)
    assert parked.status is ExecutionStatus.UNKNOWN  # an operator's RetryExecution is what is left
    assert parked.attempts == 3  # the first attempt and one per recovery
    assert gateway.charges == []


class CountingGateway:
    """A PaymentGateway that counts the calls made through it before passing them on."""

    def __init__(self, inner: FakePaymentGateway, calls: Counter[str]) -> None:
        self._inner = inner
        self.calls = calls
        self.total = 0

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.calls[request.payment_order_id] += 1
        self.total += 1
        await asyncio.sleep(0.002)  # a PSP round trip, so that the workers overlap
        return await self._inner.charge(request)

    async def find_charge(self, payment_order_id: str) -> ChargeResult | None:
        return await self._inner.find_charge(payment_order_id)

    async def close(self) -> None:
        await self._inner.close()


async def test_two_workers_racing_on_the_same_orders_call_the_psp_once_per_order(
    engine: AsyncEngine, gateway: FakePaymentGateway
) -> None:
    orders = [_order() for _ in range(300)]
    await _accept(engine, *orders)
    calls: Counter[str] = Counter()
    gateways = [CountingGateway(gateway, calls) for _ in range(2)]
    loops = [
        WorkerLoop(
            _worker(engine, counting, f"racer-{index}"),
            concurrency=16,
            claim_batch_size=10,
            poll_interval_s=0.01,
        )
        for index, counting in enumerate(gateways)
    ]
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        async with asyncio.timeout(60):
            while True:
                async with engine.connect() as connection:
                    done = await connection.scalar(text("SELECT count(*) FROM executions WHERE status = 'SUCCEEDED'"))
                if done == len(orders):
                    break
                await asyncio.sleep(0.05)
    finally:
        for loop in loops:
            loop.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert set(calls) == {order.payment_order_id for order in orders}
    assert set(calls.values()) == {1}  # never two calls for one order, not even replayed ones
    assert len(gateway.charges) == len(orders)
    assert all(counting.total > 0 for counting in gateways)  # both workers really took part
    async with engine.connect() as connection:
        events = await connection.scalar(text("SELECT count(*) FROM outbox WHERE topic = 'payment.order.succeeded'"))
    assert events == len(orders)
