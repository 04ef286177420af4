"""The `settle` command as a user runs it, and a Settle that keeps its data across restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from settle.payment.v1 import payment_pb2

from services.cli.stack import Stack, start_stack
from services.common import clients
from tests.e2e.cli import settle
from tests.fixtures import eventually

REQUIRED_DEMO_KEYS = {
    "orders_total",
    "orders_succeeded",
    "orders_failed",
    "orders_not_terminal",
    "psp_charges",
    "trial_balance_zero",
    "invariants_ok",
}


def test_demo_prints_one_json_object_and_exits_zero(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--checkouts", "8", "--json", "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report.keys() >= REQUIRED_DEMO_KEYS
    assert report["invariants_ok"] is True and report["trial_balance_zero"] is True
    assert report["orders_not_terminal"] == 0
    assert report["psp_charges"] == report["orders_succeeded"] > 0
    assert report["audit"]["ok"] is True, report["audit"]
    assert set(report["audit"]["breaches"].values()) == {0}
    # The night's reconciliation of the day's settlement file: every line matched, nothing amiss.
    night = report["reconciliation"]
    assert night["lines_imported"] > 0 and night["matched"] == night["lines_imported"]
    assert (night["mismatch_count"], night["mismatches"]) == (0, {}), night


def test_a_bad_configuration_value_stops_a_service_with_the_variable_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.payment"],
        env={
            "PATH": "/usr/bin:/bin",
            "SETTLE_DATABASE_URL": "postgresql://x/y",
            "SETTLE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "SETTLE_GRPC_PORT": "seventy",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SETTLE_GRPC_PORT" in result.stderr


async def _create(stack: Stack, checkout_id: str) -> str:
    request = payment_pb2.CreatePaymentRequest(
        checkout_id=checkout_id,
        buyer_id="buyer-restart",
        payment_method_token="pm_card_visa",
        currency="USD",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id="seller-restart",
                line_items=[payment_pb2.LineItem(sku="s", quantity=1, unit_amount_minor=700)],
            )
        ],
    )
    async with stack.endpoints.channel("payment", "checkout") as channel:
        return (await clients.payment_stub(channel).CreatePayment(request, timeout=30)).payment.payment_id


async def _get(stack: Stack, payment_id: str) -> payment_pb2.Payment:
    async with stack.endpoints.channel("payment", "checkout") as channel:
        stub = clients.payment_stub(channel)
        return (await stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment_id), timeout=10)).payment


async def test_data_and_api_keys_survive_a_restart() -> None:
    with tempfile.TemporaryDirectory(prefix="settle-restart-") as directory:
        data_dir = Path(directory)
        first = start_stack(data_dir, fixed_ports=False)
        try:
            payment_id = await _create(first, "checkout-restart-1")
            keys = first.endpoints.api_keys
        finally:
            first.stop()
        second = start_stack(data_dir, fixed_ports=False)
        try:
            assert second.endpoints.api_keys == keys
            payment = await _get(second, payment_id)
            assert payment.checkout_id == "checkout-restart-1"
            # The same checkout id after the restart is still a replay, not a second charge.
            assert await _create(second, "checkout-restart-1") == payment_id
        finally:
            second.stop()


async def test_settle_refund_requests_a_refund_and_a_retry_with_its_key_is_a_replay(stack: Stack) -> None:
    payment_id = await _create(stack, f"checkout-refund-{uuid.uuid4().hex[:8]}")

    async def charged() -> bool:
        order = (await _get(stack, payment_id)).orders[0]
        return bool(order.status == payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED)

    await eventually(charged)
    order_id = (await _get(stack, payment_id)).orders[0].payment_order_id

    first = settle(stack, "refund", order_id, "--amount", "250", "--idempotency-key", f"k-{order_id}", "--json")
    assert first.returncode == 0, first.stderr
    refund = json.loads(first.stdout)
    assert refund["replayed"] is False
    assert refund["refund"]["amount"] == {"amountMinor": "250", "currency": "USD"}
    assert refund["refund"]["status"] == "REFUND_STATUS_REQUESTED"
    again = settle(stack, "refund", order_id, "--amount", "250", "--idempotency-key", f"k-{order_id}", "--json")
    assert json.loads(again.stdout)["refund"]["refundId"] == refund["refund"]["refundId"]
    too_much = settle(stack, "refund", order_id, "--amount", "700")
    assert too_much.returncode == 1
    assert "FAILED_PRECONDITION" in too_much.stderr and "450" in too_much.stderr
