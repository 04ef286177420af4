"""End to end through gRPC and Kafka only: checkouts become charges, wallet credits and ledger entries."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from settle.ledger.v1 import ledger_pb2
from settle.payment.v1 import payment_pb2
from settle.wallet.v1 import wallet_pb2

from services.cli.demo import DemoReport, drive_checkouts, run_demo, verify
from services.cli.stack import Stack
from services.common import clients
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    WALLET_BALANCE_UPDATED,
)
from services.common.grpc_errors import error_info_reason, field_violations

SUCCEEDED = payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED
FAILED = payment_pb2.PAYMENT_ORDER_STATUS_FAILED


def _checkout(
    checkout_id: str, sellers: dict[str, int], token: str = "pm_card_visa"
) -> payment_pb2.CreatePaymentRequest:
    return payment_pb2.CreatePaymentRequest(
        checkout_id=checkout_id,
        buyer_id="buyer-e2e",
        payment_method_token=token,
        currency="USD",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id=seller,
                line_items=[
                    payment_pb2.LineItem(sku="sku-1", description="thing", quantity=1, unit_amount_minor=amount)
                ],
            )
            for seller, amount in sellers.items()
        ],
    )


async def _watch_until_done(stack: Stack, payment_id: str) -> payment_pb2.Payment:
    async with stack.endpoints.channel("payment", "checkout") as channel:
        last = None
        async for update in clients.payment_stub(channel).WatchPayment(
            payment_pb2.WatchPaymentRequest(payment_id=payment_id), timeout=60
        ):
            last = update.payment
        assert last is not None
        return last


async def test_a_checkout_is_charged_credited_and_booked_per_seller(stack: Stack, unique: str) -> None:
    sellers = {f"seller-a-{unique}": 1250, f"seller-b-{unique}": 399}
    async with stack.endpoints.channel("payment", "checkout") as channel:
        created = await clients.payment_stub(channel).CreatePayment(_checkout(f"co-{unique}", sellers), timeout=10)
    assert len(created.payment.orders) == 2

    payment = await _watch_until_done(stack, created.payment.payment_id)
    assert payment.done
    assert all(o.status == SUCCEEDED and o.wallet_updated and o.ledger_updated for o in payment.orders)

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.endpoints.psp_sandbox_url}/_sandbox/charges") as response,
    ):
        charges = (await response.json())["data"]
    order_ids = {o.payment_order_id for o in payment.orders}
    mine = [c for c in charges if c["payment_order_id"] in order_ids]
    assert sorted(c["amount"] for c in mine) == sorted(sellers.values())

    async with stack.endpoints.channel("wallet", "finance") as channel:
        wallet = clients.wallet_stub(channel)
        for seller, amount in sellers.items():
            balance = (await wallet.GetBalance(wallet_pb2.GetBalanceRequest(seller_id=seller, currency="USD"))).balance
            assert (balance.pending_minor, balance.available_minor) == (amount, 0)
    async with stack.endpoints.channel("ledger", "finance") as channel:
        ledger = clients.ledger_stub(channel)
        for order in payment.orders:
            entries = (
                await ledger.ListEntries(ledger_pb2.ListEntriesRequest(payment_order_id=order.payment_order_id))
            ).entries
            assert len(entries) == 1
            postings = {p.account: p.amount.amount_minor for p in entries[0].postings}
            assert postings == {
                "psp_receivable": order.amount.amount_minor,
                f"seller_payable:{order.seller_id}": -order.amount.amount_minor,
            }


async def test_a_declined_card_fails_every_order_and_moves_no_money(stack: Stack, unique: str) -> None:
    async with stack.endpoints.channel("payment", "checkout") as channel:
        created = await clients.payment_stub(channel).CreatePayment(
            _checkout(f"co-decl-{unique}", {f"seller-d-{unique}": 500}, token="pm_card_chargeDeclinedInsufficientFunds")
        )
    payment = await _watch_until_done(stack, created.payment.payment_id)
    assert [(o.status, o.failure_code) for o in payment.orders] == [(FAILED, "insufficient_funds")]
    async with stack.endpoints.channel("wallet", "finance") as channel:
        balance = await clients.wallet_stub(channel).GetBalance(
            wallet_pb2.GetBalanceRequest(seller_id=f"seller-d-{unique}", currency="USD")
        )
    assert balance.balance.pending_minor == 0


async def test_bad_input_gets_a_precise_error(stack: Stack, unique: str) -> None:
    request = _checkout(f"co-bad-{unique}", {f"s-{unique}": 100})
    request.currency = "usd"
    request.seller_orders[0].line_items[0].quantity = 0
    async with stack.endpoints.channel("payment", "checkout") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await clients.payment_stub(channel).CreatePayment(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"currency", "seller_orders[0].line_items[0].quantity"} <= set(field_violations(error.value))

    async with stack.endpoints.channel("ledger", "checkout") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await clients.ledger_stub(channel).TrialBalance(ledger_pb2.TrialBalanceRequest())
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info_reason(error.value) == "SCOPE_MISSING"


async def test_many_checkouts_keep_every_invariant(stack: Stack) -> None:
    report: DemoReport = await run_demo(stack.endpoints, 40, timeout_s=120)
    assert report.orders_not_terminal == 0, report.violations
    assert report.orders_failed > 0 and report.orders_succeeded > 0
    assert report.psp_charges == report.orders_succeeded
    assert report.invariants_ok, report.violations


async def _all_records(bootstrap: str, topics: list[str]) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=f"replayer-{uuid.uuid4()}", auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    records = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                return records
            records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()


async def test_redelivering_every_event_twice_has_no_second_effect(stack: Stack) -> None:
    """Every event on every pay-in topic is published twice more; charges, credits and entries stay single."""
    run = await drive_checkouts(stack.endpoints, 20, deadline_s=time.monotonic() + 120)
    before = await verify(stack.endpoints, run)
    assert before.invariants_ok and before.orders_not_terminal == 0, before.violations

    topics = [PAYMENT_ORDER_REQUESTED, PAYMENT_ORDER_SUCCEEDED, PAYMENT_ORDER_FAILED, WALLET_BALANCE_UPDATED,
              LEDGER_ENTRY_POSTED]  # fmt: skip
    records = await _all_records(stack.endpoints.kafka_bootstrap_servers, topics)
    order_ids = {o.payment_order_id for o in run.orders}
    assert sum(1 for r in records if r.key.decode() in order_ids) >= 2 * len(order_ids)
    producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka_bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for _ in range(2):
            sends = [await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers)) for r in records]
            await asyncio.gather(*sends)
    finally:
        await producer.stop()
    # A marker checkout created after the replay: once it is done, every consumer has passed the replayed events.
    await run_demo(stack.endpoints, 1, timeout_s=120)

    after = await verify(stack.endpoints, run)
    assert after.invariants_ok, after.violations
    assert (after.psp_charges, after.seller_balances, after.trial_balance_zero) == (
        before.psp_charges,
        before.seller_balances,
        True,
    )
