"""The payment service on real PostgreSQL and Kafka, through a real gRPC channel.

One module, so the service (and its consumer group) starts once: the embedded broker makes a
rejoining consumer group wait for the session timeout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from settle.payment.v1 import payment_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_REQUESTED,
    PAYMENT_REFUND_SUCCEEDED,
    WALLET_BALANCE_UPDATED,
    dlq_topic,
)
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.infra import Infrastructure
from services.common.kafka import create_producer
from tests.fixtures import (
    CHECKOUT,
    FINANCE_KEY,
    PaymentApi,
    create_request,
    eventually,
    line_item,
    publish,
    read_until,
    running_payment_service,
)


@pytest_asyncio.fixture(scope="module")
async def api(migrated: Infrastructure) -> AsyncIterator[PaymentApi]:
    async with running_payment_service(migrated, max_seller_orders=5, watch_poll_interval_ms=50) as running:
        yield running


async def _create(api: PaymentApi, request: payment_pb2.CreatePaymentRequest) -> payment_pb2.CreatePaymentResponse:
    response: payment_pb2.CreatePaymentResponse = await api.stub.CreatePayment(request, metadata=CHECKOUT)
    return response


async def _failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_create_stores_the_payment_its_orders_and_one_request_event_per_order(
    api: PaymentApi, engines: dict[str, AsyncEngine], infra: Infrastructure, unique: str
) -> None:
    response = await _create(api, create_request(unique, sellers=3))
    payment = response.payment
    assert not response.replayed
    assert [o.amount.amount_minor for o in payment.orders] == [2_600, 2_700, 2_800]
    assert payment.total.amount_minor == 8_100 and payment.total.currency == "USD"
    assert all(o.status == payment_pb2.PAYMENT_ORDER_STATUS_NOT_STARTED for o in payment.orders)
    assert not payment.done

    async with engines["payment"].connect() as connection:
        stored = (
            await connection.execute(
                text(
                    "SELECT checkout_id, total_minor, octet_length(request_hash) AS h FROM payment_events WHERE id = :id"
                ),
                {"id": payment.payment_id},
            )
        ).one()
        orders = (
            await connection.execute(
                text(
                    "SELECT id, seller_id, amount_minor, status, line_items FROM payment_orders "
                    "WHERE payment_id = :id ORDER BY position"
                ),
                {"id": payment.payment_id},
            )
        ).all()
    assert (stored.checkout_id, stored.total_minor, stored.h) == (f"co-{unique}", 8_100, 32)
    assert [str(o.id) for o in orders] == [o.payment_order_id for o in payment.orders]
    assert {o.status for o in orders} == {"NOT_STARTED"}
    assert orders[0].line_items[0] == {"sku": "a", "description": "item a", "quantity": 2, "unit_amount_minor": 1250}

    order_ids = {o.payment_order_id.encode() for o in payment.orders}
    records = await read_until(infra, PAYMENT_ORDER_REQUESTED, lambda found: len(found) >= 3, order_ids)
    assert {r.key for r in records} == order_ids
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers["event_type"] == "settle.events.v1.PaymentOrderRequested"
        assert headers["content_type"] == "application/x-protobuf"
        uuid.UUID(headers["event_id"])
        event = events_pb2.PaymentOrderRequested.FromString(record.value)
        order = next(o for o in payment.orders if o.payment_order_id == event.payment_order_id)
        assert record.key == event.payment_order_id.encode()
        assert (event.payment_id, event.checkout_id, event.buyer_id) == (
            payment.payment_id,
            f"co-{unique}",
            f"buyer-{unique}",
        )
        assert (event.seller_id, event.amount) == (order.seller_id, order.amount)
        assert event.payment_method_token == "pm_card_visa"


async def test_every_invalid_field_is_named_in_one_invalid_argument(api: PaymentApi, unique: str) -> None:
    request = create_request(unique, sellers=2)
    request.currency = "usd"
    request.payment_method_token = "4242 4242 4242 4242"
    request.seller_orders[1].seller_id = request.seller_orders[0].seller_id
    request.seller_orders[1].line_items[0].quantity = 0
    request.seller_orders[0].line_items.append(line_item("c", 1, -1))
    error = await _failure(_create(api, request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info_reason(error) == "VALIDATION_FAILED"
    violations = field_violations(error)
    assert set(violations) == {
        "currency",
        "payment_method_token",
        "seller_orders[1].seller_id",
        "seller_orders[1].line_items[0].quantity",
        "seller_orders[0].line_items[2].unit_amount_minor",
    }
    assert "card numbers are not accepted" in violations["payment_method_token"]
    assert "4242" not in error.details()


async def test_the_seller_order_limit_comes_from_configuration(api: PaymentApi, unique: str) -> None:
    error = await _failure(_create(api, create_request(unique, sellers=6)))
    assert field_violations(error).keys() == {"seller_orders"}


async def test_a_repeated_checkout_returns_the_original_and_a_different_body_is_refused(
    api: PaymentApi, engines: dict[str, AsyncEngine], unique: str
) -> None:
    first = await _create(api, create_request(unique))
    again = await _create(api, create_request(unique))
    assert again.replayed
    assert again.payment == first.payment

    different = create_request(unique)
    different.seller_orders[0].line_items[0].quantity = 3
    error = await _failure(_create(api, different))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(error) == "CHECKOUT_ID_REUSED_WITH_DIFFERENT_REQUEST"
    assert f"co-{unique}" in error.details()
    async with engines["payment"].connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM payment_orders o JOIN payment_events p ON p.id = o.payment_id WHERE p.checkout_id = :c"
            ),
            {"c": f"co-{unique}"},
        )
    assert count == 2


async def test_concurrent_identical_creates_make_one_payment(
    api: PaymentApi, engines: dict[str, AsyncEngine], unique: str
) -> None:
    responses = await asyncio.gather(*(_create(api, create_request(unique, sellers=4)) for _ in range(12)))
    assert len({r.payment.payment_id for r in responses}) == 1
    assert sorted(r.replayed for r in responses) == [False] + [True] * 11
    assert all(r.payment.orders == responses[0].payment.orders for r in responses)
    order_ids = [o.payment_order_id for o in responses[0].payment.orders]
    async with engines["payment"].connect() as connection:
        payments = await connection.scalar(
            text("SELECT count(*) FROM payment_events WHERE checkout_id = :c"), {"c": f"co-{unique}"}
        )
        events = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE topic = :t AND convert_from(message_key, 'UTF8') = ANY(:ids)"),
            {"t": PAYMENT_ORDER_REQUESTED, "ids": order_ids},
        )
    assert (payments, events) == (1, 4)


async def test_calls_need_a_key_with_the_payments_scope(api: PaymentApi, unique: str) -> None:
    missing = await _failure(api.stub.CreatePayment(create_request(unique)))
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info_reason(missing) == "API_KEY_MISSING"
    wrong = await _failure(
        api.stub.CreatePayment(create_request(unique), metadata=(("x-api-key", "not-a-key-at-all-000"),))
    )
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    finance = (("x-api-key", FINANCE_KEY),)
    denied = await _failure(api.stub.CreatePayment(create_request(unique), metadata=finance))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info_reason(denied) == "SCOPE_MISSING"
    denied_read = await _failure(api.stub.ListPayments(payment_pb2.ListPaymentsRequest(), metadata=finance))
    assert denied_read.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_get_payment_and_payment_order(api: PaymentApi, unique: str) -> None:
    created = (await _create(api, create_request(unique))).payment
    got = await api.stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=created.payment_id), metadata=CHECKOUT)
    assert got.payment == created
    order = created.orders[1]
    got_order = await api.stub.GetPaymentOrder(
        payment_pb2.GetPaymentOrderRequest(payment_order_id=order.payment_order_id), metadata=CHECKOUT
    )
    assert got_order.payment_order == order

    missing = await _failure(
        api.stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=str(uuid.uuid4())), metadata=CHECKOUT)
    )
    assert (missing.code(), error_info_reason(missing)) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND")
    missing_order = await _failure(
        api.stub.GetPaymentOrder(
            payment_pb2.GetPaymentOrderRequest(payment_order_id=str(uuid.uuid4())), metadata=CHECKOUT
        )
    )
    assert error_info_reason(missing_order) == "PAYMENT_ORDER_NOT_FOUND"
    malformed = await _failure(api.stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id="nope"), metadata=CHECKOUT))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(malformed).keys() == {"payment_id"}
    malformed_order = await _failure(
        api.stub.GetPaymentOrder(payment_pb2.GetPaymentOrderRequest(payment_order_id=""), metadata=CHECKOUT)
    )
    assert field_violations(malformed_order).keys() == {"payment_order_id"}


async def test_list_pages_through_a_buyers_payments_newest_first_without_gaps(api: PaymentApi, unique: str) -> None:
    buyer = f"pager-{unique}"
    created = []
    for index in range(23):
        response = await _create(api, create_request(f"{unique}-{index}", sellers=1, buyer=buyer))
        created.append(response.payment.payment_id)
    # A concurrent burst shares creation times; the id breaks the tie.
    burst = await asyncio.gather(
        *(_create(api, create_request(f"{unique}-b{index}", sellers=1, buyer=buyer)) for index in range(10))
    )
    created.extend(r.payment.payment_id for r in burst)

    seen: list[payment_pb2.Payment] = []
    token = ""
    pages = 0
    while True:
        page = await api.stub.ListPayments(
            payment_pb2.ListPaymentsRequest(page_size=7, page_token=token, buyer_id=buyer), metadata=CHECKOUT
        )
        pages += 1
        seen.extend(page.payments)
        token = page.next_page_token
        if not token:
            break
    assert pages == 5
    assert sorted(p.payment_id for p in seen) == sorted(created)
    keys = [(p.create_time.ToDatetime(), p.payment_id) for p in seen]
    assert keys == sorted(keys, reverse=True)
    assert all(len(p.orders) == 1 and p.buyer_id == buyer for p in seen)
    assert seen[-1].payment_id == created[0]

    # Without a filter or a size: everyone's payments, 50 per page.
    everyone = await api.stub.ListPayments(payment_pb2.ListPaymentsRequest(), metadata=CHECKOUT)
    assert len(everyone.payments) >= len(created)
    assert len(everyone.payments) == 50 or not everyone.next_page_token


async def test_bad_page_tokens_and_sizes_are_invalid_arguments(api: PaymentApi, unique: str) -> None:
    buyer = f"tok-{unique}"
    for index in range(3):
        await _create(api, create_request(f"{unique}-{index}", sellers=1, buyer=buyer))
    first = await api.stub.ListPayments(payment_pb2.ListPaymentsRequest(page_size=1, buyer_id=buyer), metadata=CHECKOUT)
    token = first.next_page_token
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad, buyer_filter in ((tampered, buyer), ("%%%", buyer), (token, f"other-{unique}")):
        error = await _failure(
            api.stub.ListPayments(
                payment_pb2.ListPaymentsRequest(page_size=1, page_token=bad, buyer_id=buyer_filter), metadata=CHECKOUT
            )
        )
        assert (error.code(), error_info_reason(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    too_big = await _failure(api.stub.ListPayments(payment_pb2.ListPaymentsRequest(page_size=501), metadata=CHECKOUT))
    assert field_violations(too_big).keys() == {"page_size"}


# --- outcomes consumer and WatchPayment ---

SUCCEEDED = payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED
FAILED = payment_pb2.PAYMENT_ORDER_STATUS_FAILED
NOT_STARTED = payment_pb2.PAYMENT_ORDER_STATUS_NOT_STARTED


@pytest_asyncio.fixture(scope="module")
async def producer(migrated: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    kafka = create_producer(migrated.kafka_bootstrap_servers, client_id="payment-outcome-tests")
    await kafka.start()
    yield kafka
    await kafka.stop()


async def _payment(api: PaymentApi, payment_id: str) -> payment_pb2.Payment:
    response = await api.stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment_id), metadata=CHECKOUT)
    payment: payment_pb2.Payment = response.payment
    return payment


def _succeeded(order: payment_pb2.PaymentOrder, psp_reference: str) -> events_pb2.PaymentOrderSucceeded:
    return events_pb2.PaymentOrderSucceeded(
        payment_order_id=order.payment_order_id,
        payment_id=order.payment_id,
        seller_id=order.seller_id,
        amount=order.amount,
        psp_reference=psp_reference,
    )


def _wallet(order: payment_pb2.PaymentOrder) -> events_pb2.WalletBalanceUpdated:
    return events_pb2.WalletBalanceUpdated(
        seller_id=order.seller_id,
        currency=order.amount.currency,
        payment_order_id=order.payment_order_id,
        pending_delta_minor=order.amount.amount_minor,
        kind="sale",
    )


def _ledger(order: payment_pb2.PaymentOrder) -> events_pb2.LedgerEntryPosted:
    return events_pb2.LedgerEntryPosted(
        entry_id=str(uuid.uuid4()), kind="payment_order_succeeded", payment_order_id=order.payment_order_id
    )


async def _processed(engine: AsyncEngine, event_ids: list[str]) -> bool:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM processed_events WHERE event_id = ANY(:ids)"), {"ids": event_ids}
        )
    return count == len(set(event_ids))


async def test_outcomes_and_confirmations_drive_the_orders_to_done_and_redelivery_is_a_no_op(
    api: PaymentApi, producer: AIOKafkaProducer, engines: dict[str, AsyncEngine], infra: Infrastructure, unique: str
) -> None:
    payment = (await api.stub.CreatePayment(create_request(unique, sellers=2), metadata=CHECKOUT)).payment
    charged, declined = payment.orders

    # Confirmations may overtake the charge (different topics): they only set their flags.
    sent: list[tuple[str, str, Message, str]] = []
    for topic, key, message in (
        (LEDGER_ENTRY_POSTED, charged.payment_order_id, _ledger(charged)),
        (WALLET_BALANCE_UPDATED, charged.seller_id, _wallet(charged)),
    ):
        sent.append((topic, key, message, await publish(producer, topic, key, message)))

    async def flags_set() -> bool:
        order = (await _payment(api, payment.payment_id)).orders[0]
        return order.wallet_updated and order.ledger_updated

    await eventually(flags_set, timeout_s=30.0)
    early = await _payment(api, payment.payment_id)
    assert early.orders[0].status == NOT_STARTED and not early.done

    failed = events_pb2.PaymentOrderFailed(
        payment_order_id=declined.payment_order_id,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    for topic, key, message in (
        (PAYMENT_ORDER_SUCCEEDED, charged.payment_order_id, _succeeded(charged, f"pi_{unique}")),
        (PAYMENT_ORDER_FAILED, declined.payment_order_id, failed),
    ):
        sent.append((topic, key, message, await publish(producer, topic, key, message)))

    async def done() -> bool:
        return (await _payment(api, payment.payment_id)).done

    await eventually(done, timeout_s=30.0)
    final = await _payment(api, payment.payment_id)
    first, second = final.orders
    assert (first.status, first.psp_reference) == (SUCCEEDED, f"pi_{unique}")
    assert first.wallet_updated and first.ledger_updated
    assert (second.status, second.failure_code) == (FAILED, "card_declined")
    assert second.failure_message == "Your card was declined."
    assert not second.wallet_updated and not second.ledger_updated

    async with engines["payment"].connect() as connection:
        version_before = await connection.scalar(
            text("SELECT version FROM payment_events WHERE id = :id"), {"id": payment.payment_id}
        )
    # Every event again with its own id (redelivery), then again under a new id (a duplicate effect),
    # and a contradicting late outcome (dead-lettered): nothing changes any more.
    contradiction = events_pb2.PaymentOrderFailed(payment_order_id=charged.payment_order_id, failure_code="late")
    fresh_ids = []
    for topic, key, message, event_id in sent:
        await publish(producer, topic, key, message, event_id)
        fresh_ids.append(await publish(producer, topic, key, message))
    fresh_ids.append(await publish(producer, PAYMENT_ORDER_FAILED, charged.payment_order_id, contradiction))
    # The fresh events follow the redelivered ones on the same partitions: once they are processed,
    # so were the redeliveries.
    await eventually(lambda: _processed(engines["payment"], fresh_ids), timeout_s=30.0)
    assert await _payment(api, payment.payment_id) == final
    async with engines["payment"].connect() as connection:
        version_after = await connection.scalar(
            text("SELECT version FROM payment_events WHERE id = :id"), {"id": payment.payment_id}
        )
    assert version_after == version_before
    dead = await read_until(infra, dlq_topic(PAYMENT_ORDER_FAILED), bool, {charged.payment_order_id.encode()})
    assert "failed contradicts its final status SUCCEEDED" in dict(dead[0].headers)["dlq_error"].decode()


async def test_events_for_unknown_orders_or_other_amounts_are_dead_lettered(
    api: PaymentApi, producer: AIOKafkaProducer, infra: Infrastructure, unique: str
) -> None:
    payment = (await api.stub.CreatePayment(create_request(unique, sellers=1), metadata=CHECKOUT)).payment
    order = payment.orders[0]
    stranger = str(uuid.uuid4())
    await publish(producer, LEDGER_ENTRY_POSTED, stranger, events_pb2.LedgerEntryPosted(payment_order_id=stranger))
    wrong_amount = _succeeded(order, f"pi_{unique}")
    wrong_amount.amount.CopyFrom(Money(amount_minor=order.amount.amount_minor + 1, currency="USD"))
    await publish(producer, PAYMENT_ORDER_SUCCEEDED, order.payment_order_id, wrong_amount)

    ledger_dlq = await read_until(infra, dlq_topic(LEDGER_ENTRY_POSTED), lambda f: len(f) >= 1, {stranger.encode()})
    error = dict(ledger_dlq[0].headers)["dlq_error"].decode()
    assert f"payment order {stranger} does not exist" in error
    succeeded_dlq = await read_until(
        infra, dlq_topic(PAYMENT_ORDER_SUCCEEDED), lambda f: len(f) >= 1, {order.payment_order_id.encode()}
    )
    assert (
        "succeeded for 2601 USD but the order is for 2600 USD" in dict(succeeded_dlq[0].headers)["dlq_error"].decode()
    )
    assert (await _payment(api, payment.payment_id)).orders[0].status == NOT_STARTED


async def test_watch_streams_each_change_until_the_payment_is_done(
    api: PaymentApi, producer: AIOKafkaProducer, unique: str
) -> None:
    payment = (await api.stub.CreatePayment(create_request(unique, sellers=1), metadata=CHECKOUT)).payment
    order = payment.orders[0]
    stream = api.stub.WatchPayment(
        payment_pb2.WatchPaymentRequest(payment_id=payment.payment_id), metadata=CHECKOUT, timeout=60
    )
    updates: list[payment_pb2.Payment] = []

    async def collect() -> None:
        async for response in stream:
            updates.append(response.payment)

    collector = asyncio.create_task(collect())
    await eventually(lambda: _true(bool(updates)), timeout_s=30.0)
    assert updates[0].orders[0].status == NOT_STARTED
    for topic, key, message in (
        (PAYMENT_ORDER_SUCCEEDED, order.payment_order_id, _succeeded(order, f"pi_{unique}")),
        (WALLET_BALANCE_UPDATED, order.seller_id, _wallet(order)),
        (LEDGER_ENTRY_POSTED, order.payment_order_id, _ledger(order)),
    ):
        await publish(producer, topic, key, message)
        await asyncio.sleep(0.3)
    await asyncio.wait_for(collector, timeout=30)  # the stream ends by itself once done
    assert updates[-1].done and updates[-1].orders[0].status == SUCCEEDED
    assert len(updates) >= 2
    assert sum(u.done for u in updates) == 1


async def _true(value: bool) -> bool:
    return value


def _refund_request(
    order: payment_pb2.PaymentOrder, key: str, amount_minor: int | None = None, currency: str = "USD"
) -> payment_pb2.RefundPaymentOrderRequest:
    request = payment_pb2.RefundPaymentOrderRequest(
        payment_order_id=order.payment_order_id, idempotency_key=key, reason="requested_by_customer"
    )
    if amount_minor is not None:
        request.amount.CopyFrom(Money(amount_minor=amount_minor, currency=currency))
    return request


async def _refund(
    api: PaymentApi, request: payment_pb2.RefundPaymentOrderRequest
) -> payment_pb2.RefundPaymentOrderResponse:
    response: payment_pb2.RefundPaymentOrderResponse = await api.stub.RefundPaymentOrder(request, metadata=CHECKOUT)
    return response


def _refund_outcome(refund: payment_pb2.Refund, *, succeeded: bool) -> Message:
    if succeeded:
        return events_pb2.RefundSucceeded(
            refund_id=refund.refund_id,
            payment_order_id=refund.payment_order_id,
            payment_id=refund.payment_id,
            seller_id=refund.seller_id,
            amount=refund.amount,
            psp_reference=f"re_{refund.refund_id[:8]}",
        )
    return events_pb2.RefundFailed(
        refund_id=refund.refund_id,
        payment_order_id=refund.payment_order_id,
        payment_id=refund.payment_id,
        seller_id=refund.seller_id,
        amount=refund.amount,
        failure_code="charge_disputed",
        failure_message="The charge is disputed.",
    )


async def _publish_refund_outcome(producer: AIOKafkaProducer, refund: payment_pb2.Refund, *, succeeded: bool) -> None:
    topic = PAYMENT_REFUND_SUCCEEDED if succeeded else PAYMENT_REFUND_FAILED
    await publish(producer, topic, refund.payment_order_id, _refund_outcome(refund, succeeded=succeeded))


async def _charged_order(api: PaymentApi, producer: AIOKafkaProducer, unique: str) -> payment_pb2.PaymentOrder:
    payment = (await api.stub.CreatePayment(create_request(unique, sellers=1), metadata=CHECKOUT)).payment
    [order] = payment.orders
    await publish(producer, PAYMENT_ORDER_SUCCEEDED, order.payment_order_id, _succeeded(order, f"pi_{unique}"))

    async def charged() -> bool:
        return (await _payment(api, payment.payment_id)).orders[0].status == payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED

    await eventually(charged, timeout_s=30.0)
    return order


async def _order_status(api: PaymentApi, order: payment_pb2.PaymentOrder) -> int:
    response = await api.stub.GetPaymentOrder(
        payment_pb2.GetPaymentOrderRequest(payment_order_id=order.payment_order_id), metadata=CHECKOUT
    )
    status: int = response.payment_order.status
    return status


async def test_partial_refunds_up_to_the_charged_amount_then_a_full_refund(
    api: PaymentApi, producer: AIOKafkaProducer, infra: Infrastructure, unique: str
) -> None:
    order = await _charged_order(api, producer, unique)
    charged = order.amount.amount_minor  # 2 * 1250 + 100

    first = await _refund(api, _refund_request(order, f"r1-{unique}", 1_000))
    assert first.refund.status == payment_pb2.REFUND_STATUS_REQUESTED and not first.replayed
    assert (first.refund.amount.amount_minor, first.refund.seller_id) == (1_000, order.seller_id)
    again = await _refund(api, _refund_request(order, f"r1-{unique}", 1_000))
    assert again.replayed and again.refund.refund_id == first.refund.refund_id
    reused = await _failure(api.stub.RefundPaymentOrder(_refund_request(order, f"r1-{unique}", 999), metadata=CHECKOUT))
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(reused) == "IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST"
    too_much = await _failure(
        api.stub.RefundPaymentOrder(_refund_request(order, f"r2-{unique}", charged - 999), metadata=CHECKOUT)
    )
    assert too_much.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(too_much) == "REFUND_EXCEEDS_REFUNDABLE_AMOUNT"
    assert f"has {charged - 1_000} USD" in (too_much.details() or "")
    other_currency = await _failure(
        api.stub.RefundPaymentOrder(_refund_request(order, f"r3-{unique}", 10, "EUR"), metadata=CHECKOUT)
    )
    assert other_currency.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "amount.currency" in field_violations(other_currency)

    requested = await read_until(
        infra, PAYMENT_REFUND_REQUESTED, lambda records: len(records) >= 1, {order.payment_order_id.encode()}
    )
    event = events_pb2.RefundRequested()
    event.ParseFromString(requested[0].value or b"")
    assert (event.refund_id, event.charge_psp_reference) == (first.refund.refund_id, f"pi_{unique}")
    assert len(requested) == 1  # the replay published nothing

    await _publish_refund_outcome(producer, first.refund, succeeded=True)

    async def partially_refunded() -> bool:
        return await _order_status(api, order) == payment_pb2.PAYMENT_ORDER_STATUS_PARTIALLY_REFUNDED

    await eventually(partially_refunded, timeout_s=30.0)

    # The rest, refused by the PSP: its amount becomes refundable again.
    rest = await _refund(api, _refund_request(order, f"r4-{unique}"))
    assert rest.refund.amount.amount_minor == charged - 1_000
    await _publish_refund_outcome(producer, rest.refund, succeeded=False)

    async def rest_failed() -> bool:
        response = await api.stub.GetRefund(
            payment_pb2.GetRefundRequest(refund_id=rest.refund.refund_id), metadata=CHECKOUT
        )
        return bool(response.refund.status == payment_pb2.REFUND_STATUS_FAILED)

    await eventually(rest_failed, timeout_s=30.0)
    assert await _order_status(api, order) == payment_pb2.PAYMENT_ORDER_STATUS_PARTIALLY_REFUNDED

    final = await _refund(api, _refund_request(order, f"r5-{unique}"))
    assert final.refund.amount.amount_minor == charged - 1_000
    await _publish_refund_outcome(producer, final.refund, succeeded=True)

    async def refunded() -> bool:
        return await _order_status(api, order) == payment_pb2.PAYMENT_ORDER_STATUS_REFUNDED

    await eventually(refunded, timeout_s=30.0)
    nothing_left = await _failure(
        api.stub.RefundPaymentOrder(_refund_request(order, f"r6-{unique}"), metadata=CHECKOUT)
    )
    assert error_info_reason(nothing_left) == "PAYMENT_ORDER_NOT_REFUNDABLE"
    assert "is REFUNDED" in (nothing_left.details() or "")


async def test_refunds_of_orders_not_charged_or_unknown_and_bad_requests_are_refused(
    api: PaymentApi, unique: str
) -> None:
    payment = (await api.stub.CreatePayment(create_request(unique, sellers=1), metadata=CHECKOUT)).payment
    not_charged = await _failure(
        api.stub.RefundPaymentOrder(_refund_request(payment.orders[0], f"n1-{unique}"), metadata=CHECKOUT)
    )
    assert not_charged.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(not_charged) == "PAYMENT_ORDER_NOT_REFUNDABLE"
    assert "NOT_STARTED" in (not_charged.details() or "")

    unknown = payment_pb2.PaymentOrder(payment_order_id=str(uuid.uuid4()))
    missing = await _failure(api.stub.RefundPaymentOrder(_refund_request(unknown, f"n2-{unique}"), metadata=CHECKOUT))
    assert error_info_reason(missing) == "PAYMENT_ORDER_NOT_FOUND"

    bad = payment_pb2.RefundPaymentOrderRequest(
        payment_order_id="not-a-uuid", amount=Money(amount_minor=-5, currency="usd"), reason="x" * 501
    )
    invalid = await _failure(api.stub.RefundPaymentOrder(bad, metadata=CHECKOUT))
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(invalid)) >= {
        "payment_order_id",
        "idempotency_key",
        "amount.amount_minor",
        "amount.currency",
        "reason",
    }
    no_refund = await _failure(
        api.stub.GetRefund(payment_pb2.GetRefundRequest(refund_id=str(uuid.uuid4())), metadata=CHECKOUT)
    )
    assert error_info_reason(no_refund) == "REFUND_NOT_FOUND"
