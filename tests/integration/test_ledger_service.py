"""The ledger process on real PostgreSQL and Kafka: orders in, balanced entries and events out, gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from settle.events.v1.events_pb2 import LedgerEntryPosted
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_EVENT_ID,
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_SUCCEEDED,
    dlq_topic,
)
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.infra import Infrastructure
from services.ledger.config import LedgerSettings
from services.ledger.entrypoints.main import create_service
from tests.fixtures import (
    API_KEYS,
    CHECKOUT_KEY,
    FINANCE,
    eventually,
    producer_for,
    publish_succeeded,
    read_topic,
    running_service,
    succeeded,
)


@dataclass
class Ledger:
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub
    producer: AIOKafkaProducer
    infra: Infrastructure


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(migrated: Infrastructure) -> AsyncIterator[Ledger]:
    settings = LedgerSettings(
        database_url=migrated.database_url,
        kafka_bootstrap_servers=migrated.kafka_bootstrap_servers,
        grpc_port=0,
        api_keys=API_KEYS,
    )
    async with (
        running_service(create_service(settings)) as channel,
        producer_for(migrated, "ledger-test") as producer,
    ):
        yield Ledger(ledger_pb2_grpc.LedgerServiceStub(channel), producer, migrated)  # type: ignore[arg-type]


async def entries_of(ledger: Ledger, order_id: str) -> list[ledger_pb2.JournalEntry]:
    response = await ledger.stub.ListEntries(ledger_pb2.ListEntriesRequest(payment_order_id=order_id), metadata=FINANCE)
    assert not response.next_page_token
    return list(response.entries)


async def account_balance(ledger: Ledger, account: str, currency: str = "USD") -> int:
    response = await ledger.stub.GetAccountBalance(
        ledger_pb2.GetAccountBalanceRequest(account=account, currency=currency), metadata=FINANCE
    )
    assert response.account == account and response.balance.currency == currency
    return int(response.balance.amount_minor)


async def test_a_succeeded_order_is_booked_once_and_announced(ledger: Ledger, unique: str) -> None:
    seller_id, order_id = f"seller-{unique}", str(uuid.uuid4())
    receivable_before = await account_balance(ledger, "psp_receivable", "CHF")
    event_id = await publish_succeeded(ledger.producer, succeeded(order_id, seller_id, 4_200, "CHF"))
    await publish_succeeded(ledger.producer, succeeded(order_id, seller_id, 4_200, "CHF"), event_id)  # redelivery
    await publish_succeeded(ledger.producer, succeeded(order_id, seller_id, 4_200, "CHF"))  # same order, new event id

    async def booked() -> bool:
        return bool(await entries_of(ledger, order_id))

    await eventually(booked)
    await asyncio.sleep(1.0)  # let any late duplicate be applied (it must not be)
    [entry] = await entries_of(ledger, order_id)
    assert (entry.kind, entry.payment_order_id, entry.event_id) == ("payment_order_succeeded", order_id, event_id)
    assert [(p.account, p.amount.amount_minor, p.amount.currency) for p in entry.postings] == [
        ("psp_receivable", 4_200, "CHF"),
        (f"seller_payable:{seller_id}", -4_200, "CHF"),
    ]
    assert await account_balance(ledger, f"seller_payable:{seller_id}", "CHF") == -4_200
    assert await account_balance(ledger, "psp_receivable", "CHF") - receivable_before >= 4_200

    records = await read_topic(
        ledger.infra, LEDGER_ENTRY_POSTED, keep=lambda r: r.key == order_id.encode(), enough=bool
    )
    posted = LedgerEntryPosted.FromString(records[0].value or b"")
    assert (posted.entry_id, posted.kind, posted.cause_event_id) == (entry.entry_id, entry.kind, event_id)
    assert [(p.account, p.amount.amount_minor) for p in posted.postings] == [
        ("psp_receivable", 4_200),
        (f"seller_payable:{seller_id}", -4_200),
    ]
    assert len({dict(record.headers)[HEADER_EVENT_ID] for record in records}) == 1


async def test_an_invalid_event_is_dead_lettered(ledger: Ledger, unique: str) -> None:
    bad_order, good_order = str(uuid.uuid4()), str(uuid.uuid4())
    bad_event = await publish_succeeded(ledger.producer, succeeded(bad_order, f"seller-{unique}", 100, "XYZ"))
    await publish_succeeded(ledger.producer, succeeded(good_order, f"seller-{unique}", 100))

    async def good_booked() -> bool:
        return bool(await entries_of(ledger, good_order))

    await eventually(good_booked)
    dead = await read_topic(
        ledger.infra,
        dlq_topic(PAYMENT_ORDER_SUCCEEDED),
        keep=lambda r: (
            dict(r.headers).get(HEADER_EVENT_ID) == bad_event.encode()
            and dict(r.headers).get(HEADER_DLQ_CONSUMER) == b"settle-ledger-outcomes"
        ),
        enough=bool,
    )
    assert dead, "the invalid event is not in the DLQ"
    assert b"amount.currency" in dict(dead[0].headers)[HEADER_DLQ_ERROR]
    assert await entries_of(ledger, bad_order) == []


async def test_the_trial_balance_is_balanced_and_sums_to_zero(ledger: Ledger, unique: str) -> None:
    order_id = str(uuid.uuid4())
    await publish_succeeded(ledger.producer, succeeded(order_id, f"seller-{unique}", 999, "SEK"))

    async def booked() -> bool:
        return bool(await entries_of(ledger, order_id))

    await eventually(booked)
    trial = await ledger.stub.TrialBalance(ledger_pb2.TrialBalanceRequest(), metadata=FINANCE)
    assert trial.balanced
    assert trial.totals and all(total.amount_minor == 0 for total in trial.totals)
    accounts = {(a.account, a.balance.currency): a.balance.amount_minor for a in trial.accounts}
    assert accounts[(f"seller_payable:seller-{unique}", "SEK")] == -999
    assert accounts[("psp_receivable", "SEK")] >= 999


async def test_reads_need_a_finance_or_admin_key(ledger: Ledger) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await ledger.stub.TrialBalance(ledger_pb2.TrialBalanceRequest())
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await ledger.stub.ListEntries(ledger_pb2.ListEntriesRequest(), metadata=(("x-api-key", CHECKOUT_KEY),))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as denied_balance:
        await ledger.stub.GetAccountBalance(
            ledger_pb2.GetAccountBalanceRequest(account="psp_receivable", currency="USD"),
            metadata=(("x-api-key", CHECKOUT_KEY),),
        )
    assert denied_balance.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("account", "currency", "fields"),
    [
        ("assets", "USD", {"account"}),
        ("seller_payable:", "USD", {"account"}),
        ("psp_receivable", "US", {"currency"}),
        ("", "", {"account", "currency"}),
    ],
)
async def test_get_account_balance_names_the_invalid_field(
    ledger: Ledger, account: str, currency: str, fields: set[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.GetAccountBalance(
            ledger_pb2.GetAccountBalanceRequest(account=account, currency=currency), metadata=FINANCE
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info_reason(caught.value) == "VALIDATION_FAILED"
    assert set(field_violations(caught.value)) == fields


async def test_an_account_without_postings_has_a_zero_balance(ledger: Ledger, unique: str) -> None:
    assert await account_balance(ledger, f"seller_payable:nobody-{unique}", "EUR") == 0


async def test_list_entries_refuses_bad_tokens_and_filters(ledger: Ledger, unique: str) -> None:
    order_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    for order_id in order_ids:
        await publish_succeeded(ledger.producer, succeeded(order_id, f"seller-{unique}", 1))

    async def booked() -> bool:
        return all([await entries_of(ledger, order_id) for order_id in order_ids])

    await eventually(booked)
    for request, reason in (
        (ledger_pb2.ListEntriesRequest(page_token="forged"), "INVALID_PAGE_TOKEN"),
        (ledger_pb2.ListEntriesRequest(payment_order_id="not-a-uuid"), "VALIDATION_FAILED"),
        (ledger_pb2.ListEntriesRequest(page_size=-1), "VALIDATION_FAILED"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ledger.stub.ListEntries(request, metadata=FINANCE)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info_reason(caught.value) == reason
    first = await ledger.stub.ListEntries(ledger_pb2.ListEntriesRequest(page_size=1), metadata=FINANCE)
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.ListEntries(
            ledger_pb2.ListEntriesRequest(page_token=first.next_page_token, payment_order_id=str(uuid.uuid4())),
            metadata=FINANCE,
        )
    assert error_info_reason(caught.value) == "INVALID_PAGE_TOKEN"
