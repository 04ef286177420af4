"""The wallet process on real PostgreSQL and Kafka: events in, balances and events out, gRPC reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp
from settle.common.v1.money_pb2 import Money
from settle.events.v1.events_pb2 import (
    PayoutFailed,
    PayoutPaid,
    PayoutRequested,
    RefundSucceeded,
    WalletBalanceUpdated,
)
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_EVENT_ID,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    WALLET_BALANCE_UPDATED,
    dlq_topic,
)
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.infra import Infrastructure
from services.wallet.config import WalletSettings
from services.wallet.entrypoints.main import create_service
from tests.fixtures import (
    ADMIN,
    API_KEYS,
    CHECKOUT_KEY,
    FINANCE,
    PLAINTEXT,
    eventually,
    producer_for,
    publish,
    publish_succeeded,
    read_topic,
    running_service,
    succeeded,
)


@dataclass
class Wallet:
    stub: wallet_pb2_grpc.WalletServiceAsyncStub
    producer: AIOKafkaProducer
    infra: Infrastructure


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wallet(migrated: Infrastructure) -> AsyncIterator[Wallet]:
    settings = WalletSettings(
        database_url=migrated.database_url,
        kafka_bootstrap_servers=migrated.kafka_bootstrap_servers,
        grpc_port=0,
        api_keys=API_KEYS,
        tls_mode=PLAINTEXT,
    )
    async with (
        running_service(create_service(settings)) as channel,
        producer_for(migrated, "wallet-test") as producer,
    ):
        yield Wallet(wallet_pb2_grpc.WalletServiceStub(channel), producer, migrated)  # type: ignore[arg-type]


async def balance(wallet: Wallet, seller_id: str, currency: str = "USD") -> wallet_pb2.Balance:
    response: wallet_pb2.GetBalanceResponse = await wallet.stub.GetBalance(
        wallet_pb2.GetBalanceRequest(seller_id=seller_id, currency=currency), metadata=FINANCE
    )
    return response.balance


async def all_entries(wallet: Wallet, seller_id: str, page_size: int = 0) -> list[wallet_pb2.BalanceEntry]:
    entries: list[wallet_pb2.BalanceEntry] = []
    token = ""
    while True:
        page = await wallet.stub.ListBalanceEntries(
            wallet_pb2.ListBalanceEntriesRequest(seller_id=seller_id, page_size=page_size, page_token=token),
            metadata=FINANCE,
        )
        entries += page.entries
        token = page.next_page_token
        if not token:
            return entries


async def test_a_succeeded_order_lands_in_pending_with_an_entry_and_an_event(wallet: Wallet, unique: str) -> None:
    seller_id, order_id = f"seller-{unique}", str(uuid.uuid4())
    event_id = await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 12_345))

    async def credited() -> bool:
        return (await balance(wallet, seller_id)).pending_minor == 12_345

    await eventually(credited)
    current = await balance(wallet, seller_id)
    assert (current.available_minor, current.reserved_minor) == (0, 0)
    assert current.update_time.seconds > 0
    [entry] = await all_entries(wallet, seller_id)
    assert entry.bucket == wallet_pb2.BALANCE_BUCKET_PENDING
    assert (entry.amount.amount_minor, entry.amount.currency) == (12_345, "USD")
    assert (entry.kind, entry.payment_order_id, entry.event_id) == ("sale", order_id, event_id)

    records = await read_topic(
        wallet.infra, WALLET_BALANCE_UPDATED, keep=lambda r: r.key == seller_id.encode(), enough=bool
    )
    update = WalletBalanceUpdated.FromString(records[0].value or b"")
    assert update.seller_id == seller_id and update.currency == "USD"
    assert (update.pending_delta_minor, update.available_delta_minor, update.reserved_delta_minor) == (12_345, 0, 0)
    assert (update.payment_order_id, update.kind, update.cause_event_id) == (order_id, "sale", event_id)


async def test_replays_and_the_same_order_under_another_event_id_credit_once(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    order_id, sentinel_id = str(uuid.uuid4()), str(uuid.uuid4())
    event_id = await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 700))
    await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 700), event_id)  # redelivery
    await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 700))  # same order, new event id
    await publish_succeeded(wallet.producer, succeeded(sentinel_id, seller_id, 5))

    async def sentinel_seen() -> bool:
        return any(entry.payment_order_id == sentinel_id for entry in await all_entries(wallet, seller_id))

    await eventually(sentinel_seen)
    await asyncio.sleep(1.0)  # let any late duplicate be applied (it must not be)
    assert (await balance(wallet, seller_id)).pending_minor == 705
    entries = await all_entries(wallet, seller_id)
    assert sorted(entry.payment_order_id for entry in entries) == sorted([order_id, sentinel_id])
    assert next(entry.event_id for entry in entries if entry.payment_order_id == order_id) == event_id

    records = await read_topic(
        wallet.infra,
        WALLET_BALANCE_UPDATED,
        keep=lambda r: r.key == seller_id.encode(),
        enough=lambda kept: len(kept) >= 2,
    )
    # The relay may publish a row twice (at least once); the event id shows it is one event per order.
    event_ids: dict[str, set[bytes]] = {}
    for record in records:
        order = WalletBalanceUpdated.FromString(record.value or b"").payment_order_id
        event_ids.setdefault(order, set()).add(dict(record.headers)[HEADER_EVENT_ID])
    assert {order: len(ids) for order, ids in event_ids.items()} == {order_id: 1, sentinel_id: 1}


async def test_an_invalid_event_is_dead_lettered_and_the_rest_still_applied(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    bad_order, good_order = str(uuid.uuid4()), str(uuid.uuid4())
    bad_event = await publish_succeeded(wallet.producer, succeeded(bad_order, seller_id, -10))
    await publish_succeeded(wallet.producer, succeeded(good_order, seller_id, 10))

    async def good_credited() -> bool:
        return (await balance(wallet, seller_id)).pending_minor == 10

    await eventually(good_credited)
    dead = await read_topic(
        wallet.infra,
        dlq_topic(PAYMENT_ORDER_SUCCEEDED),
        keep=lambda r: (
            dict(r.headers).get(HEADER_EVENT_ID) == bad_event.encode()
            and dict(r.headers).get(HEADER_DLQ_CONSUMER) == b"settle-wallet-outcomes"
        ),
        enough=bool,
    )
    assert dead, "the invalid event is not in the DLQ"
    assert b"amount.amount_minor" in dict(dead[0].headers)[HEADER_DLQ_ERROR]
    assert [entry.payment_order_id for entry in await all_entries(wallet, seller_id)] == [good_order]


async def test_an_unknown_seller_has_a_zero_balance_and_no_entries(wallet: Wallet, unique: str) -> None:
    current = await balance(wallet, f"nobody-{unique}", "JPY")
    assert (current.seller_id, current.currency) == (f"nobody-{unique}", "JPY")
    assert (current.pending_minor, current.available_minor, current.reserved_minor) == (0, 0, 0)
    assert await all_entries(wallet, f"nobody-{unique}") == []


async def test_entries_page_oldest_first(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    orders = [str(uuid.uuid4()) for _ in range(5)]
    for amount, order_id in enumerate(orders, start=1):
        await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, amount, "EUR"))

    async def all_credited() -> bool:
        return (await balance(wallet, seller_id, "EUR")).pending_minor == 15

    await eventually(all_credited)
    first = await wallet.stub.ListBalanceEntries(
        wallet_pb2.ListBalanceEntriesRequest(seller_id=seller_id, page_size=2), metadata=FINANCE
    )
    assert len(first.entries) == 2 and first.next_page_token
    paged = await all_entries(wallet, seller_id, page_size=2)
    assert [entry.entry_id for entry in paged[:2]] == [entry.entry_id for entry in first.entries]
    assert sorted(entry.payment_order_id for entry in paged) == sorted(orders)
    assert len({entry.entry_id for entry in paged}) == 5
    times = [(entry.create_time.seconds, entry.create_time.nanos) for entry in paged]
    assert times == sorted(times)


async def test_reads_need_a_finance_or_admin_key(wallet: Wallet) -> None:
    request = wallet_pb2.GetBalanceRequest(seller_id="seller-1", currency="USD")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await wallet.stub.GetBalance(request)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await wallet.stub.GetBalance(request, metadata=(("x-api-key", "not-a-valid-key-000000"),))
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await wallet.stub.ListBalanceEntries(
            wallet_pb2.ListBalanceEntriesRequest(seller_id="seller-1"), metadata=(("x-api-key", CHECKOUT_KEY),)
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("seller_id", "currency", "fields"),
    [("", "USD", {"seller_id"}), ("seller-1", "usd", {"currency"}), ("x" * 65, "", {"seller_id", "currency"})],
)
async def test_get_balance_names_the_invalid_field(
    wallet: Wallet, seller_id: str, currency: str, fields: set[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wallet.stub.GetBalance(
            wallet_pb2.GetBalanceRequest(seller_id=seller_id, currency=currency), metadata=FINANCE
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info_reason(caught.value) == "VALIDATION_FAILED"
    assert set(field_violations(caught.value)) == fields


async def test_a_foreign_or_forged_page_token_is_refused(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    order_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for order_id in order_ids:
        await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 1))

    async def both_credited() -> bool:
        return (await balance(wallet, seller_id)).pending_minor == 2

    await eventually(both_credited)
    page = await wallet.stub.ListBalanceEntries(
        wallet_pb2.ListBalanceEntriesRequest(seller_id=seller_id, page_size=1), metadata=FINANCE
    )
    for other_seller, token in (("someone-else", page.next_page_token), (seller_id, "forged")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wallet.stub.ListBalanceEntries(
                wallet_pb2.ListBalanceEntriesRequest(seller_id=other_seller, page_token=token), metadata=FINANCE
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info_reason(caught.value) == "INVALID_PAGE_TOKEN"


def _refund_succeeded(refund_id: str, order_id: str, seller_id: str, amount_minor: int) -> RefundSucceeded:
    return RefundSucceeded(
        refund_id=refund_id,
        payment_order_id=order_id,
        payment_id=str(uuid.uuid4()),
        seller_id=seller_id,
        amount=Money(amount_minor=amount_minor, currency="USD"),
        psp_reference="re_test",
    )


async def test_a_succeeded_refund_is_debited_from_available_once_and_a_bad_one_dead_lettered(
    wallet: Wallet, unique: str
) -> None:
    seller_id, order_id, refund_id = f"seller-{unique}", str(uuid.uuid4()), str(uuid.uuid4())
    await publish_succeeded(wallet.producer, succeeded(order_id, seller_id, 5_000))
    refund = _refund_succeeded(refund_id, order_id, seller_id, 1_500)
    for _ in range(2):  # the second under another event id: still one debit
        await publish(wallet.producer, PAYMENT_REFUND_SUCCEEDED, order_id, refund)
    bad_event = await publish(
        wallet.producer, PAYMENT_REFUND_SUCCEEDED, order_id, _refund_succeeded("not-a-uuid", order_id, seller_id, 1)
    )

    async def debited() -> bool:
        current = await balance(wallet, seller_id)
        return (current.pending_minor, current.available_minor) == (5_000, -1_500)

    await eventually(debited)
    kinds = [(entry.kind, entry.amount.amount_minor) for entry in await all_entries(wallet, seller_id)]
    assert kinds == [("sale", 5_000), ("refund", -1_500)]
    dead = await read_topic(
        wallet.infra,
        dlq_topic(PAYMENT_REFUND_SUCCEEDED),
        keep=lambda r: dict(r.headers).get(HEADER_EVENT_ID) == bad_event.encode(),
        enough=bool,
    )
    assert b"refund_id" in dict(dead[0].headers)[HEADER_DLQ_ERROR]


# Payouts. The executor's outcomes are published by hand here, as the executor's relay would.


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _in(days: int) -> Timestamp:
    return _timestamp(datetime.now(UTC) + timedelta(days=days))


async def _available(wallet: Wallet, seller_id: str, amount_minor: int, destination: str = "ba_test_success") -> None:
    """`amount_minor` more available to a seller (a sale released after its hold), and a payout destination."""
    before = (await balance(wallet, seller_id)).available_minor
    await publish_succeeded(wallet.producer, succeeded(str(uuid.uuid4()), seller_id, amount_minor))

    async def credited() -> bool:
        return (await balance(wallet, seller_id)).pending_minor == amount_minor

    await eventually(credited)
    await wallet.stub.ReleasePending(wallet_pb2.ReleasePendingRequest(as_of=_in(8)), metadata=ADMIN)
    await wallet.stub.SetPayoutDestination(
        wallet_pb2.SetPayoutDestinationRequest(seller_id=seller_id, destination=destination), metadata=ADMIN
    )
    assert (await balance(wallet, seller_id)).available_minor == before + amount_minor


async def _create_payout(wallet: Wallet, seller_id: str, amount_minor: int, key: str) -> wallet_pb2.Payout:
    payout: wallet_pb2.Payout = await wallet.stub.CreatePayout(
        wallet_pb2.CreatePayoutRequest(
            seller_id=seller_id,
            amount=Money(amount_minor=amount_minor, currency="USD"),
            idempotency_key=key,
            metadata={"source": "manual"},
        ),
        metadata=ADMIN,
    )
    return payout


async def _settle_payout(wallet: Wallet, payout: wallet_pb2.Payout, failure_code: str = "") -> None:
    if failure_code:
        message: Any = PayoutFailed(
            payout_id=payout.payout_id,
            seller_id=payout.seller_id,
            amount=payout.amount,
            destination=payout.destination,
            failure_code=failure_code,
            failure_message="closed",
        )
        topic = PAYOUT_FAILED
    else:
        message = PayoutPaid(
            payout_id=payout.payout_id,
            seller_id=payout.seller_id,
            amount=payout.amount,
            destination=payout.destination,
            psp_reference=f"po_{payout.payout_id[:8]}",
        )
        topic = PAYOUT_PAID
    for _ in range(2):  # the second under another event id: still settled once
        await publish(wallet.producer, topic, payout.payout_id, message)


async def _payout_status(wallet: Wallet, payout_id: str, status: int) -> wallet_pb2.Payout:
    async def reached() -> bool:
        current = await wallet.stub.GetPayout(wallet_pb2.GetPayoutRequest(payout_id=payout_id), metadata=FINANCE)
        return bool(current.status == status)

    await eventually(reached)
    payout: wallet_pb2.Payout = await wallet.stub.GetPayout(
        wallet_pb2.GetPayoutRequest(payout_id=payout_id), metadata=FINANCE
    )
    return payout


async def test_a_paid_payout_moves_available_to_reserved_then_out_and_is_announced(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    await _available(wallet, seller_id, 10_000)
    before = datetime.now(UTC)

    payout = await _create_payout(wallet, seller_id, 6_000, "key-1")
    requested = await balance(wallet, seller_id)
    await _settle_payout(wallet, payout)
    paid = await _payout_status(wallet, payout.payout_id, wallet_pb2.PAYOUT_STATUS_PAID)
    after = await balance(wallet, seller_id)
    then = await wallet.stub.GetBalance(
        wallet_pb2.GetBalanceRequest(seller_id=seller_id, currency="USD", as_of=_timestamp(before)), metadata=FINANCE
    )

    assert payout.status == wallet_pb2.PAYOUT_STATUS_REQUESTED and payout.destination == "ba_test_success"
    assert (requested.available_minor, requested.reserved_minor, requested.payouts_requested_minor) == (
        4_000,
        6_000,
        6_000,
    )
    assert (after.available_minor, after.reserved_minor, after.payouts_paid_minor) == (4_000, 0, 6_000)
    assert paid.psp_reference == f"po_{payout.payout_id[:8]}"
    assert (then.balance.available_minor, then.balance.reserved_minor) == (10_000, 0)  # the point in time
    kinds = [(e.kind, e.bucket, e.amount.amount_minor, e.payout_id) for e in await all_entries(wallet, seller_id)]
    assert kinds[-3:] == [
        ("payout_reserved", wallet_pb2.BALANCE_BUCKET_AVAILABLE, -6_000, payout.payout_id),
        ("payout_reserved", wallet_pb2.BALANCE_BUCKET_RESERVED, 6_000, payout.payout_id),
        ("payout_paid", wallet_pb2.BALANCE_BUCKET_RESERVED, -6_000, payout.payout_id),
    ]
    records = await read_topic(
        wallet.infra, PAYOUT_REQUESTED, keep=lambda r: r.key == payout.payout_id.encode(), enough=bool
    )
    event = PayoutRequested.FromString(records[0].value or b"")
    assert (event.seller_id, event.amount.amount_minor, event.destination) == (seller_id, 6_000, "ba_test_success")


async def test_a_failed_payout_returns_its_funds(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    await _available(wallet, seller_id, 3_000)
    payout = await _create_payout(wallet, seller_id, 3_000, "key-1")
    await _settle_payout(wallet, payout, failure_code="account_closed")

    failed = await _payout_status(wallet, payout.payout_id, wallet_pb2.PAYOUT_STATUS_FAILED)
    current = await balance(wallet, seller_id)

    assert (failed.failure_code, current.available_minor, current.reserved_minor) == ("account_closed", 3_000, 0)
    assert current.payouts_paid_minor == 0


async def test_manual_payouts_are_idempotent_on_their_key_and_refused_precisely(wallet: Wallet, unique: str) -> None:
    seller_id = f"seller-{unique}"
    await _available(wallet, seller_id, 5_000)
    first = await _create_payout(wallet, seller_id, 2_000, "key-1")
    again = await _create_payout(wallet, seller_id, 2_000, "key-1")

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await _create_payout(wallet, seller_id, 2_500, "key-1")
    with pytest.raises(grpc.aio.AioRpcError) as too_much:
        await _create_payout(wallet, seller_id, 3_001, "key-2")
    with pytest.raises(grpc.aio.AioRpcError) as no_destination:
        await _create_payout(wallet, f"other-{unique}", 1, "key-1")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await wallet.stub.CreatePayout(
            wallet_pb2.CreatePayoutRequest(seller_id=seller_id, amount=Money(amount_minor=-1, currency="usd")),
            metadata=ADMIN,
        )
    with pytest.raises(grpc.aio.AioRpcError) as finance:
        await wallet.stub.CreatePayout(wallet_pb2.CreatePayoutRequest(), metadata=FINANCE)

    assert again.payout_id == first.payout_id
    assert (await balance(wallet, seller_id)).reserved_minor == 2_000
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(reused.value) == "IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST"
    assert too_much.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(too_much.value) == "INSUFFICIENT_AVAILABLE_BALANCE"
    assert "3000 USD available" in (too_much.value.details() or "")
    assert error_info_reason(no_destination.value) == "PAYOUT_DESTINATION_MISSING"
    assert set(field_violations(invalid.value)) == {"amount.amount_minor", "amount.currency", "idempotency_key"}
    assert finance.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_debt_holds_payouts_until_later_sales_cover_it(wallet: Wallet, unique: str) -> None:
    seller_id, order_id = f"seller-{unique}", str(uuid.uuid4())
    await _available(wallet, seller_id, 1_000)
    await publish(
        wallet.producer,
        PAYMENT_REFUND_SUCCEEDED,
        order_id,
        _refund_succeeded(str(uuid.uuid4()), order_id, seller_id, 1_600),
    )

    async def in_debt() -> bool:
        return (await balance(wallet, seller_id)).available_minor == -600

    await eventually(in_debt)
    owing = await balance(wallet, seller_id)
    with pytest.raises(grpc.aio.AioRpcError) as held:
        await _create_payout(wallet, seller_id, 1, "key-1")
    await _available(wallet, seller_id, 1_000)  # a later sale, released: 400 available again
    recovered = await balance(wallet, seller_id)
    payout = await _create_payout(wallet, seller_id, 400, "key-2")

    assert (owing.debt_minor, owing.payouts_held) == (600, True)
    assert error_info_reason(held.value) == "INSUFFICIENT_AVAILABLE_BALANCE"
    assert "owes 600 USD" in (held.value.details() or "")
    assert (recovered.available_minor, recovered.debt_minor, recovered.payouts_held) == (400, 0, False)
    assert payout.status == wallet_pb2.PAYOUT_STATUS_REQUESTED


def _batch_csv(rows: list[tuple[str, int, str]]) -> bytes:
    lines = ["seller_id,amount_minor,currency,branch"] + [f"{s},{a},USD,{b}" for s, a, b in rows]
    return ("\n".join(lines) + "\n").encode()


async def _submit(wallet: Wallet, batch_id: str, content: bytes) -> wallet_pb2.SubmitPayoutBatchResponse:
    response: wallet_pb2.SubmitPayoutBatchResponse = await wallet.stub.SubmitPayoutBatch(
        wallet_pb2.SubmitPayoutBatchRequest(
            batch_id=batch_id, format=wallet_pb2.PAYOUT_BATCH_FORMAT_CSV, content=content
        ),
        metadata=ADMIN,
    )
    return response


async def test_a_payout_batch_is_all_or_nothing_idempotent_and_tracked_per_item(wallet: Wallet, unique: str) -> None:
    north, south = f"north-{unique}", f"south-{unique}"
    await _available(wallet, north, 5_000)
    await _available(wallet, south, 5_000)
    good = _batch_csv([(north, 1_000, "n1"), (north, 2_000, "n2"), (south, 500, "s1")])
    bad = _batch_csv([(north, 1_000, "n1"), (north, -5, "n2"), (south, 0, "s1")])
    short = _batch_csv([(north, 4_000, "n1"), (north, 2_000, "n2")])

    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await _submit(wallet, f"bad-{unique}", bad)
    with pytest.raises(grpc.aio.AioRpcError) as unfunded:
        await _submit(wallet, f"short-{unique}", short)
    untouched = await balance(wallet, north)
    accepted = await _submit(wallet, f"batch-{unique}", good)
    repeat = await _submit(wallet, f"batch-{unique}", good)
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await _submit(wallet, f"batch-{unique}", short)
    with pytest.raises(grpc.aio.AioRpcError) as copied:
        await _submit(wallet, f"copy-{unique}", good)

    assert error_info_reason(invalid.value) == "PAYOUT_BATCH_INVALID"
    assert set(field_violations(invalid.value)) == {"line 3: amount_minor", "line 4: amount_minor"}
    assert error_info_reason(unfunded.value) == "INSUFFICIENT_AVAILABLE_BALANCE"
    assert list(field_violations(unfunded.value)) == ["lines 2, 3"]
    assert (untouched.available_minor, untouched.reserved_minor) == (5_000, 0)
    assert (accepted.duplicate, accepted.batch.item_count) == (False, 3)
    assert (repeat.duplicate, repeat.batch.content_sha256) == (True, accepted.batch.content_sha256)
    assert error_info_reason(reused.value) == "PAYOUT_BATCH_ID_REUSED"
    assert error_info_reason(copied.value) == "PAYOUT_BATCH_DUPLICATE_CONTENT"
    assert (await balance(wallet, north)).reserved_minor == 3_000

    items = await wallet.stub.ListPayouts(
        wallet_pb2.ListPayoutsRequest(batch_id=f"batch-{unique}", page_size=2), metadata=FINANCE
    )
    rest = await wallet.stub.ListPayouts(
        wallet_pb2.ListPayoutsRequest(batch_id=f"batch-{unique}", page_token=items.next_page_token), metadata=FINANCE
    )
    payouts = [*items.payouts, *rest.payouts]
    assert [(p.batch_line, p.metadata["branch"]) for p in payouts] == [(2, "n1"), (3, "n2"), (4, "s1")]
    await _settle_payout(wallet, payouts[0])
    await _settle_payout(wallet, payouts[2], failure_code="no_account")
    await _payout_status(wallet, payouts[2].payout_id, wallet_pb2.PAYOUT_STATUS_FAILED)
    await _payout_status(wallet, payouts[0].payout_id, wallet_pb2.PAYOUT_STATUS_PAID)
    batch = await wallet.stub.GetPayoutBatch(
        wallet_pb2.GetPayoutBatchRequest(batch_id=f"batch-{unique}"), metadata=FINANCE
    )
    totals = {(t.status, t.count, t.amount.amount_minor) for t in batch.totals}
    assert totals == {
        (wallet_pb2.PAYOUT_STATUS_PAID, 1, 1_000),
        (wallet_pb2.PAYOUT_STATUS_REQUESTED, 1, 2_000),
        (wallet_pb2.PAYOUT_STATUS_FAILED, 1, 500),
    }


async def test_the_schedule_pays_whole_balances_on_payout_days_once(wallet: Wallet, unique: str) -> None:
    rich, poor = f"rich-{unique}", f"poor-{unique}"
    await _available(wallet, rich, 7_500)
    await _available(wallet, poor, 999)  # below the default minimum of 1000

    async def run(day: str) -> wallet_pb2.RunPayoutScheduleResponse:
        response: wallet_pb2.RunPayoutScheduleResponse = await wallet.stub.RunPayoutSchedule(
            wallet_pb2.RunPayoutScheduleRequest(date=day), metadata=ADMIN
        )
        return response

    saturday = await run("2026-12-05")
    payday = await run("2026-12-04")  # the anchor 2026-01-02 plus 24 fortnights: a payout Friday
    again = await run("2026-12-04")

    assert (saturday.payout_day, list(saturday.payouts)) == (False, [])
    mine = [(p.seller_id, p.amount.amount_minor, p.origin) for p in payday.payouts if p.seller_id in (rich, poor)]
    assert mine == [(rich, 7_500, wallet_pb2.PAYOUT_ORIGIN_SCHEDULED)]
    assert payday.skipped_below_minimum >= 1
    assert not [p for p in again.payouts if p.seller_id in (rich, poor)]
    assert (await balance(wallet, rich)).reserved_minor == 7_500
