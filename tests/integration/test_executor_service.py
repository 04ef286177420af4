"""The executor process end to end on real PostgreSQL, the Kafka broker, the PSP sandbox and the real
StripeGateway: requests in on Kafka, charges at the PSP, outcomes out on Kafka, admin API over gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from settle.executor.v1 import executor_pb2, executor_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from psp_sandbox.app import RunningSandbox, start_sandbox
from services.common.events import (
    HEADER_DLQ_ERROR,
    HEADER_EVENT_ID,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_REQUESTED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    dlq_topic,
)
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.infra import Infrastructure
from services.common.kafka import create_producer
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.config import ExecutorSettings
from services.executor.entrypoints.main import create_service
from services.executor.entrypoints.worker_loop import WorkerLoop
from services.executor.psp_port import ChargeRequest, ChargeResult, PaymentGateway
from services.executor.retry_policy import RetryPolicy
from services.executor.service.psp_calls import ChargeCalls
from services.executor.service.worker import ExecutionWorker, WorkerConfig
from tests.fixtures import PLAINTEXT, key_records, publish, running_service

ADMIN_KEY = "executor-test-admin-key"
PAYMENTS_KEY = "executor-test-payments-key"
WAIT_S = 60.0


class EventTap:
    """Collects every record of the outcome and dead-letter topics, by key, from the beginning."""

    TOPICS = (
        PAYMENT_ORDER_SUCCEEDED,
        PAYMENT_ORDER_FAILED,
        dlq_topic(PAYMENT_ORDER_REQUESTED),
        PAYMENT_REFUND_SUCCEEDED,
        PAYMENT_REFUND_FAILED,
        PAYOUT_PAID,
        PAYOUT_FAILED,
        dlq_topic(PAYOUT_REQUESTED),
    )

    def __init__(self, bootstrap_servers: str) -> None:
        self._consumer = AIOKafkaConsumer(
            *self.TOPICS,
            bootstrap_servers=bootstrap_servers,
            group_id=f"executor-test-tap-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: dict[tuple[str, str], list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self.records[(record.topic, (record.key or b"").decode())].append(record)
            if batch:
                self._arrived.set()

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def wait_for(self, topic: str, key: str, timeout_s: float = WAIT_S) -> ConsumerRecord[bytes, bytes]:
        async with asyncio.timeout(timeout_s):
            while not self.records.get((topic, key)):
                self._arrived.clear()
                await self._arrived.wait()
        return self.records[(topic, key)][0]


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox("127.0.0.1", 0)
    yield running
    await running.close()


@pytest_asyncio.fixture(scope="module")
async def tap(migrated: Infrastructure) -> AsyncIterator[EventTap]:
    event_tap = EventTap(migrated.kafka_bootstrap_servers)
    await event_tap.start()
    yield event_tap
    await event_tap.stop()


@pytest_asyncio.fixture(scope="module")
async def producer(migrated: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    kafka = create_producer(migrated.kafka_bootstrap_servers, client_id="executor-test")
    await kafka.start()
    yield kafka
    await kafka.stop()


def settings_for(infra: Infrastructure, sandbox: RunningSandbox, worker_id: str) -> ExecutorSettings:
    return ExecutorSettings(
        database_url=infra.database_url,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        api_keys=key_records({ADMIN_KEY: ["admin"], PAYMENTS_KEY: ["payments"]}),
        tls_mode=PLAINTEXT,
        psp_api_base=sandbox.url,
        psp_timeout_s=1.0,  # short, so that `timeout_after_charge` is a client timeout
        retry_budget=6,
        retry_base_ms=50,
        retry_max_ms=400,
        stale_claim_s=11,
        worker_concurrency=8,  # small, so that a slow PSP saturates it in the race test
        worker_id=worker_id,
        worker_poll_interval_ms=50,
        outbox_poll_interval_ms=50,
        shutdown_grace_s=5,
    )


@pytest_asyncio.fixture(scope="module")
async def executor(
    migrated: Infrastructure, sandbox: RunningSandbox, tap: EventTap
) -> AsyncIterator[executor_pb2_grpc.ExecutorServiceStub]:
    settings = settings_for(migrated, sandbox, f"executor-test-{uuid.uuid4().hex[:6]}")
    async with running_service(create_service(settings)) as channel:
        yield executor_pb2_grpc.ExecutorServiceStub(channel)


ADMIN = (("x-api-key", ADMIN_KEY),)
Kind: TypeAlias = executor_pb2.ExecutionKind.ValueType
CHARGE, REFUND, PAYOUT = (
    executor_pb2.EXECUTION_KIND_CHARGE,
    executor_pb2.EXECUTION_KIND_REFUND,
    executor_pb2.EXECUTION_KIND_PAYOUT,
)


def _request(order_id: str, token: str = "pm_card_visa", amount_minor: int = 4200) -> Any:
    return events_pb2.PaymentOrderRequested(
        payment_order_id=order_id,
        payment_id=f"pay-{order_id[:8]}",
        checkout_id="co-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        amount=Money(amount_minor=amount_minor, currency="USD"),
        payment_method_token=token,
    )


async def _publish(
    producer: AIOKafkaProducer, message: Any, *, key: str | None = None, event_id: str | None = None
) -> None:
    await publish(producer, PAYMENT_ORDER_REQUESTED, key or message.payment_order_id, message, event_id)


async def _charges(sandbox: RunningSandbox, order_id: str) -> list[dict[str, Any]]:
    return await _at_psp(sandbox, "charges", payment_order_id=order_id)


async def _at_psp(sandbox: RunningSandbox, what: str, **params: str) -> list[dict[str, Any]]:
    """The sandbox's own record of the `charges`, `refunds` or `payouts` it made."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox.url}/_sandbox/{what}", params=params) as response,
    ):
        response.raise_for_status()
        data: list[dict[str, Any]] = (await response.json())["data"]
        return data


async def _fault(sandbox: RunningSandbox, order_id: str, fault: str, **options: int) -> None:
    await _add_fault(sandbox, {"fault": fault, "match": {"idempotency_key": order_id}, **options})


async def _add_fault(sandbox: RunningSandbox, body: dict[str, Any]) -> None:
    await _sandbox_post(sandbox, "/_sandbox/faults", body)


async def _sandbox_post(sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{sandbox.url}{path}", json=body) as response:
        response.raise_for_status()


async def _execution(
    stub: executor_pb2_grpc.ExecutorServiceStub, execution_id: str, kind: Kind = CHARGE
) -> executor_pb2.Execution:
    # Charges by payment_order_id, as the API first named them (and older callers still do).
    request = (
        executor_pb2.GetExecutionRequest(payment_order_id=execution_id)
        if kind == CHARGE
        else executor_pb2.GetExecutionRequest(kind=kind, id=execution_id)
    )
    response: executor_pb2.GetExecutionResponse = await stub.GetExecution(request, metadata=ADMIN)
    return response.execution


def _succeeded(record: ConsumerRecord[bytes, bytes]) -> events_pb2.PaymentOrderSucceeded:
    message = events_pb2.PaymentOrderSucceeded()
    message.ParseFromString(record.value or b"")
    return message


async def test_a_request_on_kafka_is_charged_once_and_announced_on_kafka(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
) -> None:
    order_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id))
    record = await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    event = _succeeded(record)
    assert uuid.UUID(dict(record.headers)[HEADER_EVENT_ID].decode())
    [charge] = await _charges(sandbox, order_id)
    assert (charge["amount"], charge["currency"], charge["idempotency_key"]) == (4200, "usd", order_id)
    assert event.psp_reference == charge["payment_intent_id"]
    assert (event.amount.amount_minor, event.amount.currency, event.seller_id) == (4200, "USD", "seller-1")
    execution = await _execution(executor, order_id)
    assert execution.status == executor_pb2.EXECUTION_STATUS_SUCCEEDED and execution.attempts == 1


async def test_a_declined_card_fails_the_order_without_a_charge(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
) -> None:
    order_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id, token="pm_card_chargeDeclined"))
    record = await tap.wait_for(PAYMENT_ORDER_FAILED, order_id)
    event = events_pb2.PaymentOrderFailed()
    event.ParseFromString(record.value or b"")
    assert event.failure_code == "generic_decline" and event.failure_message
    assert await _charges(sandbox, order_id) == []
    assert (PAYMENT_ORDER_SUCCEEDED, order_id) not in tap.records


@pytest.mark.parametrize(
    ("fault", "options", "min_attempts"),
    [
        ("http_500", {}, 2),
        ("http_429", {"retry_after_s": 1}, 2),
        # The PSP charges, then answers after the client gave up: the retry must not charge again.
        ("timeout_after_charge", {"latency_ms": 2500}, 2),
        # The PSP charges and the connection drops before the answer: the retry finds the charge.
        ("drop_response", {}, 2),
        # Another request with the key is still in flight at the PSP: the outcome is unknown.
        ("http_409_in_flight", {}, 2),
    ],
)
async def test_a_psp_fault_is_retried_with_the_same_key_and_charges_once(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
    fault: str,
    options: dict[str, int],
    min_attempts: int,
) -> None:
    order_id = str(uuid.uuid4())
    await _fault(sandbox, order_id, fault, count=1, **options)
    started = asyncio.get_running_loop().time()
    await _publish(producer, _request(order_id))
    await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    if fault == "http_429":
        assert asyncio.get_running_loop().time() - started >= 1.0  # Retry-After was honoured
    charges = await _charges(sandbox, order_id)
    assert len(charges) == 1 and charges[0]["idempotency_key"] == order_id
    execution = await _execution(executor, order_id)
    assert execution.status == executor_pb2.EXECUTION_STATUS_SUCCEEDED
    assert execution.attempts >= min_attempts


async def test_after_the_psp_forgot_the_key_a_retry_finds_the_charge_by_searching_and_charges_nothing(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
) -> None:
    order_id = str(uuid.uuid4())
    # The PSP charges but the answer is lost, and the PSP keeps failing every search after it until
    # the retry budget is spent: the execution is parked with the charge made and unknown to us.
    await _fault(sandbox, order_id, "drop_response", count=1)
    await _add_fault(sandbox, {"fault": "http_500", "count": 5, "match": {"path_prefix": "/v1/payment_intents/search"}})
    await _publish(producer, _request(order_id))
    parked = await _until_status(executor, order_id, executor_pb2.EXECUTION_STATUS_UNKNOWN)
    assert parked.attempts == 6
    assert len(await _charges(sandbox, order_id)) == 1
    # Then the PSP's key retention passes: a create under the same key would now charge again.
    await _sandbox_post(sandbox, "/_sandbox/config", {"idempotency_retention_s": 1})
    await _sandbox_post(sandbox, "/_sandbox/clock", {"advance_s": 5})
    try:
        await executor.RetryExecution(executor_pb2.RetryExecutionRequest(payment_order_id=order_id), metadata=ADMIN)
        record = await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    finally:
        await _sandbox_post(sandbox, "/_sandbox/config", {"idempotency_retention_s": 24 * 3600})
    charges = await _charges(sandbox, order_id)
    assert len(charges) == 1  # found by the order id in metadata, not charged again
    assert _succeeded(record).psp_reference == charges[0]["payment_intent_id"]
    assert (await _execution(executor, order_id)).attempts == 7


async def test_a_request_delivered_twice_is_one_execution_and_one_charge(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
) -> None:
    order_id = str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id), event_id=event_id)
    await _publish(producer, _request(order_id), event_id=event_id)  # a redelivery
    await _publish(producer, _request(order_id))  # the payment service publishing the order again
    await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    await asyncio.sleep(1.5)  # time for any duplicate to show up
    assert len(await _charges(sandbox, order_id)) == 1
    assert len(tap.records[(PAYMENT_ORDER_SUCCEEDED, order_id)]) == 1
    assert (await _execution(executor, order_id)).attempts == 1


async def test_an_invalid_request_goes_to_the_dead_letter_topic_with_the_reason(
    executor: executor_pb2_grpc.ExecutorServiceStub, producer: AIOKafkaProducer, tap: EventTap
) -> None:
    order_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id, amount_minor=0))
    record = await tap.wait_for(dlq_topic(PAYMENT_ORDER_REQUESTED), order_id)
    reason = dict(record.headers)[HEADER_DLQ_ERROR].decode()
    assert "VALIDATION_FAILED" in reason and "amount.amount_minor" in reason
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _execution(executor, order_id)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info_reason(missing.value) == "EXECUTION_NOT_FOUND"


async def _until_status(
    stub: executor_pb2_grpc.ExecutorServiceStub, order_id: str, status: int, kind: Kind = CHARGE
) -> executor_pb2.Execution:
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                execution = await _execution(stub, order_id, kind)
                if execution.status == status:
                    return execution
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:  # not accepted yet
                    raise
            await asyncio.sleep(0.05)


async def test_an_execution_parked_after_the_budget_is_listed_and_retried_by_an_operator(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
) -> None:
    order_id = str(uuid.uuid4())
    await _fault(sandbox, order_id, "http_500", count=6)  # as many as the retry budget
    await _publish(producer, _request(order_id))
    parked = await _until_status(executor, order_id, executor_pb2.EXECUTION_STATUS_UNKNOWN)
    assert parked.attempts == 6 and parked.failure_code == "psp_outcome_unknown"
    assert await _charges(sandbox, order_id) == []
    assert (PAYMENT_ORDER_FAILED, order_id) not in tap.records  # never failed on a guess

    await asyncio.sleep(1.2)
    stuck = await executor.ListStuck(executor_pb2.ListStuckRequest(older_than_s=1, page_size=500), metadata=ADMIN)
    assert order_id in [execution.payment_order_id for execution in stuck.executions]
    update_times = [execution.update_time.ToDatetime() for execution in stuck.executions]
    assert update_times == sorted(update_times)  # oldest first

    retried = await executor.RetryExecution(
        executor_pb2.RetryExecutionRequest(payment_order_id=order_id), metadata=ADMIN
    )
    assert retried.execution.status == executor_pb2.EXECUTION_STATUS_NOT_STARTED
    await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    assert len(await _charges(sandbox, order_id)) == 1
    assert (await _execution(executor, order_id)).attempts == 7

    with pytest.raises(grpc.aio.AioRpcError) as not_retryable:
        await executor.RetryExecution(executor_pb2.RetryExecutionRequest(payment_order_id=order_id), metadata=ADMIN)
    assert not_retryable.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(not_retryable.value) == "EXECUTION_NOT_RETRYABLE"


async def test_the_admin_api_validates_and_reports_missing_executions(
    executor: executor_pb2_grpc.ExecutorServiceStub,
) -> None:
    calls = [
        (executor.GetExecution(executor_pb2.GetExecutionRequest(payment_order_id="nope"), metadata=ADMIN),
         grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED"),
        (executor.ListStuck(executor_pb2.ListStuckRequest(page_size=501), metadata=ADMIN),
         grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED"),
        (executor.RetryExecution(
            executor_pb2.RetryExecutionRequest(payment_order_id=str(uuid.uuid4())), metadata=ADMIN),
         grpc.StatusCode.NOT_FOUND, "EXECUTION_NOT_FOUND"),
    ]  # fmt: skip
    for call, code, reason in calls:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert (error.value.code(), error_info_reason(error.value)) == (code, reason)


async def test_the_admin_api_names_the_field_of_every_invalid_execution_reference(
    executor: executor_pb2_grpc.ExecutorServiceStub,
) -> None:
    some_id = str(uuid.uuid4())
    requests: list[tuple[Any, dict[str, str]]] = [
        (executor_pb2.GetExecutionRequest(), {"id": "is required (with kind), or payment_order_id for a charge"}),
        (executor_pb2.GetExecutionRequest(id=some_id), {"kind": "is required with id: CHARGE, REFUND or PAYOUT"}),
        (executor_pb2.GetExecutionRequest(kind=REFUND, id="nope"), {"id": "must be a lower-case UUID (the refund id)"}),
        (executor_pb2.GetExecutionRequest(kind=PAYOUT, payment_order_id=some_id),
         {"kind": "must be CHARGE or unspecified with payment_order_id (a payout id goes in id)"}),
        (executor_pb2.GetExecutionRequest(payment_order_id=some_id, id=some_id),
         {"payment_order_id": "give either payment_order_id (a charge) or kind and id, not both"}),
        (executor_pb2.GetExecutionRequest(kind=Kind(7), id=some_id),
         {"kind": "7 is not an ExecutionKind (CHARGE 1, REFUND 2, PAYOUT 3)"}),
        (executor_pb2.RetryExecutionRequest(kind=PAYOUT, id=some_id.upper()),
         {"id": "must be a lower-case UUID (the payout id)"}),
        (executor_pb2.ListStuckRequest(kind=Kind(4)), {"kind": "4 is not an ExecutionKind (CHARGE 1, REFUND 2, PAYOUT 3)"}),
    ]  # fmt: skip
    for request, violations in requests:
        method = {
            executor_pb2.GetExecutionRequest: executor.GetExecution,
            executor_pb2.RetryExecutionRequest: executor.RetryExecution,
            executor_pb2.ListStuckRequest: executor.ListStuck,
        }[type(request)]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await method(request, metadata=ADMIN)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert field_violations(error.value) == violations, request


@pytest.mark.parametrize(
    ("kind", "message"),
    [(CHARGE, "no charge execution of payment order"), (REFUND, "no refund execution of refund"),
     (PAYOUT, "no payout execution of payout")],
)  # fmt: skip
async def test_a_missing_execution_is_not_found_in_its_own_kind(
    executor: executor_pb2_grpc.ExecutorServiceStub, kind: Kind, message: str
) -> None:
    missing_id = str(uuid.uuid4())
    calls = [
        executor.GetExecution(executor_pb2.GetExecutionRequest(kind=kind, id=missing_id), metadata=ADMIN),
        executor.RetryExecution(executor_pb2.RetryExecutionRequest(kind=kind, id=missing_id), metadata=ADMIN),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert (error.value.code(), error_info_reason(error.value)) == (
            grpc.StatusCode.NOT_FOUND,
            "EXECUTION_NOT_FOUND",
        )
        assert error.value.details() == f"{message} {missing_id}"


async def test_the_admin_api_needs_an_admin_key(executor: executor_pb2_grpc.ExecutorServiceStub) -> None:
    request = executor_pb2.GetExecutionRequest(payment_order_id=str(uuid.uuid4()))
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await executor.GetExecution(request)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as checkout:
        await executor.GetExecution(request, metadata=(("x-api-key", PAYMENTS_KEY),))
    assert checkout.value.code() == grpc.StatusCode.PERMISSION_DENIED


class CountingGateway:
    """A PaymentGateway that counts the calls made through it before passing them on."""

    def __init__(self, inner: PaymentGateway) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.calls[request.payment_order_id] += 1
        return await self._inner.charge(request)

    async def find_charge(self, payment_order_id: str) -> ChargeResult | None:
        return await self._inner.find_charge(payment_order_id)

    async def close(self) -> None:
        await self._inner.close()


async def test_a_second_worker_racing_on_the_same_orders_never_causes_a_second_charge(
    executor: executor_pb2_grpc.ExecutorServiceStub,
    producer: AIOKafkaProducer,
    sandbox: RunningSandbox,
    tap: EventTap,
    engines: dict[str, AsyncEngine],
) -> None:
    # A second replica's worker (its own id, its own real Stripe client) on the same database as the
    # running executor. (Two whole processes would also share the consumer group, which the embedded
    # mock broker cannot rebalance; the claims are what this test is about.)
    config = WorkerConfig(
        worker_id=f"executor-racer-{uuid.uuid4().hex[:6]}",
        policy=RetryPolicy(budget=6, base_ms=50, max_ms=400),
        stale_claim_s=10,
        call_deadline_s=6,
    )
    gateway = CountingGateway(StripeGateway("sk_test_settle_sandbox", sandbox.url, timeout_s=1.0))
    racer = WorkerLoop(
        ExecutionWorker(engines["executor"], ChargeCalls(gateway), config),
        concurrency=16,
        claim_batch_size=10,
        poll_interval_s=0.005,
    )
    order_ids = [str(uuid.uuid4()) for _ in range(100)]
    # A slow PSP keeps the running executor's slots busy, so both workers hold claims at once.
    await _add_fault(sandbox, {"fault": "latency", "latency_ms": 300, "count": 100, "match": {"path_prefix": "/v1/"}})
    racer_task = asyncio.create_task(racer.run())
    try:
        await asyncio.gather(*(_publish(producer, _request(order_id)) for order_id in order_ids))
        for order_id in order_ids:
            await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id)
    finally:
        racer.stop()
        await asyncio.wait_for(racer_task, 30)
        await gateway.close()
        async with aiohttp.ClientSession() as session, session.delete(f"{sandbox.url}/_sandbox/faults"):
            pass
    await asyncio.sleep(1.0)  # time for any duplicate to show up
    for order_id in order_ids:
        assert len(await _charges(sandbox, order_id)) == 1
        assert len(tap.records[(PAYMENT_ORDER_SUCCEEDED, order_id)]) == 1
        assert (await _execution(executor, order_id)).attempts == 1  # one PSP call, by one worker
    assert set(gateway.calls) & set(order_ids)  # the racer really won some of the claims


def _decoded(record: ConsumerRecord[bytes, bytes], message: Any) -> Any:
    message.ParseFromString(record.value or b"")
    return message


async def test_refunds_of_a_charge_are_executed_once_each_and_announced_on_the_order_key(
    executor: executor_pb2_grpc.ExecutorServiceStub, producer: AIOKafkaProducer, tap: EventTap
) -> None:
    order_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id, amount_minor=1000))
    charge = _succeeded(await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id))
    partial, too_much = str(uuid.uuid4()), str(uuid.uuid4())
    for refund_id, amount in ((partial, 700), (too_much, 400)):
        request = events_pb2.RefundRequested(
            refund_id=refund_id,
            payment_order_id=order_id,
            payment_id=charge.payment_id,
            seller_id="seller-1",
            amount=Money(amount_minor=amount, currency="USD"),
            charge_psp_reference=charge.psp_reference,
        )
        await publish(producer, PAYMENT_REFUND_REQUESTED, order_id, request)
        await publish(producer, PAYMENT_REFUND_REQUESTED, order_id, request)  # a redelivery: one refund

    succeeded = _decoded(await tap.wait_for(PAYMENT_REFUND_SUCCEEDED, order_id), events_pb2.RefundSucceeded())
    failed = _decoded(await tap.wait_for(PAYMENT_REFUND_FAILED, order_id), events_pb2.RefundFailed())

    assert (succeeded.refund_id, succeeded.amount.amount_minor) == (partial, 700)
    assert succeeded.psp_reference.startswith("re_")
    assert (failed.refund_id, failed.failure_code) == (too_much, "amount_too_large")
    assert len(tap.records[(PAYMENT_REFUND_SUCCEEDED, order_id)]) == 1


async def test_payouts_are_paid_once_through_psp_faults_and_a_closed_account_fails(
    executor: executor_pb2_grpc.ExecutorServiceStub, producer: AIOKafkaProducer, sandbox: RunningSandbox, tap: EventTap
) -> None:
    paid_id, failed_id = str(uuid.uuid4()), str(uuid.uuid4())
    await _fault(sandbox, paid_id, "http_500", count=2)
    for payout_id, destination in ((paid_id, "ba_test_success"), (failed_id, "ba_test_account_closed")):
        request = events_pb2.PayoutRequested(
            payout_id=payout_id,
            seller_id="seller-1",
            amount=Money(amount_minor=900, currency="EUR"),
            destination=destination,
        )
        await publish(producer, PAYOUT_REQUESTED, payout_id, request)
    await publish(producer, PAYOUT_REQUESTED, "x", events_pb2.PayoutRequested(payout_id="not-a-uuid"))

    paid = _decoded(await tap.wait_for(PAYOUT_PAID, paid_id), events_pb2.PayoutPaid())
    failed = _decoded(await tap.wait_for(PAYOUT_FAILED, failed_id), events_pb2.PayoutFailed())
    dead = await tap.wait_for(dlq_topic(PAYOUT_REQUESTED), "x")

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox.url}/_sandbox/payouts") as response,
    ):
        payouts = [p for p in (await response.json())["data"] if p["payout_id"] == paid_id]
    assert len(payouts) == 1 and payouts[0]["idempotency_key"] == paid_id
    assert paid.psp_reference == payouts[0]["stripe_payout_id"]
    assert (failed.failure_code, failed.amount.amount_minor) == ("account_closed", 900)
    assert b"payout_id" in dict(dead.headers)["dlq_error"]


async def test_a_refund_and_a_payout_parked_after_the_budget_are_listed_and_retried_by_an_operator(
    executor: executor_pb2_grpc.ExecutorServiceStub, producer: AIOKafkaProducer, sandbox: RunningSandbox, tap: EventTap
) -> None:
    order_id = str(uuid.uuid4())
    await _publish(producer, _request(order_id, amount_minor=1000))
    charge = _succeeded(await tap.wait_for(PAYMENT_ORDER_SUCCEEDED, order_id))
    refund_id, payout_id = str(uuid.uuid4()), str(uuid.uuid4())
    for key in (refund_id, payout_id):
        await _fault(sandbox, key, "http_500", count=6)  # as many as the retry budget
    refund_request = events_pb2.RefundRequested(
        refund_id=refund_id,
        payment_order_id=order_id,
        payment_id=charge.payment_id,
        seller_id="seller-1",
        amount=Money(amount_minor=400, currency="USD"),
        charge_psp_reference=charge.psp_reference,
    )
    payout_request = events_pb2.PayoutRequested(
        payout_id=payout_id,
        seller_id="seller-1",
        amount=Money(amount_minor=900, currency="EUR"),
        destination="ba_test_success",
    )
    await publish(producer, PAYMENT_REFUND_REQUESTED, order_id, refund_request)
    await publish(producer, PAYOUT_REQUESTED, payout_id, payout_request)

    refund = await _until_status(executor, refund_id, executor_pb2.EXECUTION_STATUS_UNKNOWN, REFUND)
    payout = await _until_status(executor, payout_id, executor_pb2.EXECUTION_STATUS_UNKNOWN, PAYOUT)
    assert (refund.kind, refund.id, refund.payment_order_id, refund.payment_id) == (
        REFUND,
        refund_id,
        order_id,
        charge.payment_id,
    )
    assert (payout.kind, payout.id, payout.payment_order_id, payout.amount.amount_minor) == (PAYOUT, payout_id, "", 900)
    assert (
        (refund.attempts, refund.failure_code) == (payout.attempts, payout.failure_code) == (6, "psp_outcome_unknown")
    )
    assert (
        await _at_psp(sandbox, "refunds", payment_order_id=order_id) == []
        and await _at_psp(sandbox, "payouts", payout_id=payout_id) == []
    )

    await asyncio.sleep(1.2)
    every_kind = await executor.ListStuck(executor_pb2.ListStuckRequest(older_than_s=1, page_size=500), metadata=ADMIN)
    assert {(REFUND, refund_id), (PAYOUT, payout_id)} <= {(e.kind, e.id) for e in every_kind.executions}
    update_times = [execution.update_time.ToDatetime() for execution in every_kind.executions]
    assert update_times == sorted(update_times)  # oldest first, across kinds
    refunds_only = await executor.ListStuck(
        executor_pb2.ListStuckRequest(older_than_s=1, page_size=500, kind=REFUND), metadata=ADMIN
    )
    assert refund_id in [e.id for e in refunds_only.executions] and {e.kind for e in refunds_only.executions} == {
        REFUND
    }

    for kind, execution_id in ((REFUND, refund_id), (PAYOUT, payout_id)):
        retried = await executor.RetryExecution(
            executor_pb2.RetryExecutionRequest(kind=kind, id=execution_id),
            metadata=ADMIN,
        )
        assert (retried.execution.kind, retried.execution.status) == (kind, executor_pb2.EXECUTION_STATUS_NOT_STARTED)
    refunded = _decoded(await tap.wait_for(PAYMENT_REFUND_SUCCEEDED, order_id), events_pb2.RefundSucceeded())
    paid = _decoded(await tap.wait_for(PAYOUT_PAID, payout_id), events_pb2.PayoutPaid())
    await asyncio.sleep(1.0)  # time for any duplicate to show up

    [psp_refund] = await _at_psp(sandbox, "refunds", payment_order_id=order_id)
    [psp_payout] = await _at_psp(sandbox, "payouts", payout_id=payout_id)
    assert (psp_refund["idempotency_key"], psp_refund["amount"]) == (refund_id, 400)
    assert psp_payout["idempotency_key"] == payout_id
    assert (refunded.refund_id, refunded.psp_reference) == (refund_id, psp_refund["stripe_refund_id"])
    assert paid.psp_reference == psp_payout["stripe_payout_id"]
    assert len(tap.records[(PAYMENT_REFUND_SUCCEEDED, order_id)]) == len(tap.records[(PAYOUT_PAID, payout_id)]) == 1
    for kind, execution_id in ((REFUND, refund_id), (PAYOUT, payout_id)):
        execution = await _execution(executor, execution_id, kind)
        assert (execution.status, execution.attempts) == (executor_pb2.EXECUTION_STATUS_SUCCEEDED, 7)
        with pytest.raises(grpc.aio.AioRpcError) as not_retryable:
            await executor.RetryExecution(
                executor_pb2.RetryExecutionRequest(kind=kind, id=execution_id),
                metadata=ADMIN,
            )
        assert error_info_reason(not_retryable.value) == "EXECUTION_NOT_RETRYABLE"
