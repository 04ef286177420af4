"""The ledger process on real PostgreSQL and Kafka: orders and payouts in, balanced entries and events out,
reads, PSP fees and reversals over gRPC."""

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
from settle.events.v1.events_pb2 import LedgerEntryPosted, PayoutPaid, PayoutRequested
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.events import (
    HEADER_DLQ_CONSUMER,
    HEADER_DLQ_ERROR,
    HEADER_EVENT_ID,
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
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
    PLAINTEXT,
    eventually,
    key_records,
    producer_for,
    publish,
    publish_succeeded,
    read_topic,
    running_service,
    succeeded,
)

ADMIN_KEY = "test-ledger-admin-key-01"
ADMIN = (("x-api-key", ADMIN_KEY),)


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
        api_keys=[*API_KEYS, *key_records({ADMIN_KEY: ["admin"]})],
        tls_mode=PLAINTEXT,
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


async def test_payout_steps_are_consumed_booked_and_announced_under_the_payout_id(ledger: Ledger, unique: str) -> None:
    seller_id, payout_id = f"seller-{unique}", str(uuid.uuid4())
    amount = Money(amount_minor=1_500, currency="NOK")
    fields = {"payout_id": payout_id, "seller_id": seller_id, "amount": amount, "destination": "ba_1"}
    await publish(ledger.producer, PAYOUT_REQUESTED, payout_id, PayoutRequested(**fields))

    async def in_transit() -> bool:
        return await account_balance(ledger, f"payouts_in_transit:{seller_id}", "NOK") == -1_500

    await eventually(in_transit)
    await publish(ledger.producer, PAYOUT_PAID, payout_id, PayoutPaid(**fields, psp_reference="po_1"))
    await publish(ledger.producer, PAYOUT_PAID, payout_id, PayoutPaid(**fields, psp_reference="po_1"))  # new id

    async def paid() -> bool:
        return await account_balance(ledger, f"payouts_in_transit:{seller_id}", "NOK") == 0

    await eventually(paid)
    await asyncio.sleep(1.0)  # let the replay be applied (it must post nothing)
    assert await account_balance(ledger, f"seller_payable:{seller_id}", "NOK") == 1_500
    records = await read_topic(
        ledger.infra, LEDGER_ENTRY_POSTED, keep=lambda r: r.key == payout_id.encode(), enough=lambda r: len(r) >= 2
    )
    kinds = [LedgerEntryPosted.FromString(record.value or b"").kind for record in records]
    assert kinds == ["payout_requested", "payout_paid"]


def fee_request(unique: str, amount_minor: int = 120, memo: str = "settlement fee") -> ledger_pb2.PostPspFeeRequest:
    return ledger_pb2.PostPspFeeRequest(
        amount=Money(amount_minor=amount_minor, currency="DKK"),
        psp_reference=f"batch_{unique}",
        memo=memo,
        idempotency_key=f"fee-{unique}",
    )


async def test_post_psp_fee_books_the_fee_once_per_key(ledger: Ledger, unique: str) -> None:
    fees_before = await account_balance(ledger, "psp_fees", "DKK")
    first = await ledger.stub.PostPspFee(fee_request(unique), metadata=ADMIN)
    assert (first.kind, first.memo, first.payment_order_id, first.reverses_entry_id) == (
        "psp_fee",
        "settlement fee",
        "",
        "",
    )
    assert [(p.account, p.amount.amount_minor, p.amount.currency) for p in first.postings] == [
        ("psp_fees", 120, "DKK"),
        ("psp_receivable", -120, "DKK"),
    ]
    assert await ledger.stub.PostPspFee(fee_request(unique), metadata=ADMIN) == first
    assert await account_balance(ledger, "psp_fees", "DKK") - fees_before == 120

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await ledger.stub.PostPspFee(fee_request(unique, amount_minor=121), metadata=ADMIN)
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(reused.value) == "IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST"
    assert await account_balance(ledger, "psp_fees", "DKK") - fees_before == 120
    assert (await ledger.stub.TrialBalance(ledger_pb2.TrialBalanceRequest(), metadata=ADMIN)).balanced


async def test_post_psp_fee_names_every_invalid_field(ledger: Ledger) -> None:
    request = ledger_pb2.PostPspFeeRequest(
        amount=Money(amount_minor=0, currency="dkk"), psp_reference="", memo="m" * 501, idempotency_key="k" * 256
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.PostPspFee(request, metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info_reason(caught.value) == "VALIDATION_FAILED"
    assert set(field_violations(caught.value)) == {
        "amount.amount_minor",
        "amount.currency",
        "psp_reference",
        "memo",
        "idempotency_key",
    }


async def test_reverse_entry_posts_one_reversal_listed_with_its_order(ledger: Ledger, unique: str) -> None:
    seller_id, order_id = f"seller-{unique}", str(uuid.uuid4())
    await publish_succeeded(ledger.producer, succeeded(order_id, seller_id, 2_500, "PLN"))

    async def booked() -> bool:
        return bool(await entries_of(ledger, order_id))

    await eventually(booked)
    [sale] = await entries_of(ledger, order_id)
    request = ledger_pb2.ReverseEntryRequest(entry_id=sale.entry_id, reason="charged the wrong seller")
    reversal = await ledger.stub.ReverseEntry(request, metadata=ADMIN)
    assert (reversal.kind, reversal.reverses_entry_id, reversal.memo) == (
        "reversal",
        sale.entry_id,
        "charged the wrong seller",
    )
    assert [(p.account, p.amount.amount_minor) for p in reversal.postings] == [
        ("psp_receivable", -2_500),
        (f"seller_payable:{seller_id}", 2_500),
    ]
    again = ledger_pb2.ReverseEntryRequest(entry_id=sale.entry_id, reason="clicked twice")
    assert await ledger.stub.ReverseEntry(again, metadata=ADMIN) == reversal
    assert await entries_of(ledger, order_id) == [sale, reversal]  # immutable: the sale is listed as it was
    assert await account_balance(ledger, f"seller_payable:{seller_id}", "PLN") == 0

    with pytest.raises(grpc.aio.AioRpcError) as of_reversal:
        await ledger.stub.ReverseEntry(
            ledger_pb2.ReverseEntryRequest(entry_id=reversal.entry_id, reason="undo"), metadata=ADMIN
        )
    assert of_reversal.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(of_reversal.value) == "LEDGER_ENTRY_IS_REVERSAL"


@pytest.mark.parametrize(
    ("entry_id", "reason", "code", "error"),
    [
        ("not-a-uuid", "", grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED"),
        (str(uuid.UUID(int=1)), "typo", grpc.StatusCode.NOT_FOUND, "LEDGER_ENTRY_NOT_FOUND"),
    ],
)
async def test_reverse_entry_refuses_bad_requests_and_unknown_entries(
    ledger: Ledger, entry_id: str, reason: str, code: grpc.StatusCode, error: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.ReverseEntry(ledger_pb2.ReverseEntryRequest(entry_id=entry_id, reason=reason), metadata=ADMIN)
    assert caught.value.code() == code
    assert error_info_reason(caught.value) == error


async def test_corrections_need_an_admin_key(ledger: Ledger, unique: str) -> None:
    for call in (
        ledger.stub.PostPspFee(fee_request(unique), metadata=FINANCE),
        ledger.stub.ReverseEntry(
            ledger_pb2.ReverseEntryRequest(entry_id=str(uuid.uuid4()), reason="x"), metadata=FINANCE
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
