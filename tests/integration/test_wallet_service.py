"""The wallet process on real PostgreSQL and Kafka: events in, balances and events out, gRPC reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from settle.common.v1.money_pb2 import Money
from settle.events.v1.events_pb2 import RefundSucceeded, WalletBalanceUpdated
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_EVENT_ID,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_SUCCEEDED,
    WALLET_BALANCE_UPDATED,
    dlq_topic,
)
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.infra import Infrastructure
from services.wallet.config import WalletSettings
from services.wallet.entrypoints.main import create_service
from tests.fixtures import (
    API_KEYS,
    CHECKOUT_KEY,
    FINANCE,
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
