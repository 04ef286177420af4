"""End to end, money out: refunds, balances, payouts and payout batches through every service, the real
executor paying the PSP sandbox, the books checked by hledger and the whole system by `settle audit`."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from settle.payment.v1 import payment_pb2, payment_pb2_grpc
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.cli.stack import Stack
from services.common import clients
from services.common.grpc_errors import error_info_reason
from services.ledger.export import hledger_account
from tests.e2e.cli import settle
from tests.fixtures import eventually
from tests.integration.test_ledger_export import hledger_balances

PAID = wallet_pb2.PAYOUT_STATUS_PAID
FAILED = wallet_pb2.PAYOUT_STATUS_FAILED
HLEDGER = shutil.which("hledger")


@dataclass
class Apis:
    payment: payment_pb2_grpc.PaymentServiceStub
    wallet: wallet_pb2_grpc.WalletServiceStub  # admin key: payouts, schedule, releases
    ledger: ledger_pb2_grpc.LedgerServiceStub


@asynccontextmanager
async def apis(stack: Stack) -> AsyncIterator[Apis]:
    async with (
        stack.endpoints.channel("payment", "checkout") as payment,
        stack.endpoints.channel("wallet", "admin") as wallet,
        stack.endpoints.channel("ledger", "finance") as ledger,
    ):
        yield Apis(clients.payment_stub(payment), clients.wallet_stub(wallet), clients.ledger_stub(ledger))


async def _sale(api: Apis, seller_id: str, amount_minor: int) -> payment_pb2.PaymentOrder:
    """A checkout of one order for `seller_id`, charged and credited to the seller's pending balance."""
    request = payment_pb2.CreatePaymentRequest(
        checkout_id=f"co-{uuid.uuid4()}",
        buyer_id="buyer-money-out",
        payment_method_token="pm_card_visa",
        currency="USD",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id=seller_id,
                line_items=[payment_pb2.LineItem(sku="s", quantity=1, unit_amount_minor=amount_minor)],
            )
        ],
    )
    payment_id = (await api.payment.CreatePayment(request, timeout=10)).payment.payment_id

    async def credited() -> bool:
        orders = (await api.payment.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment_id))).payment.orders
        return bool(orders[0].wallet_updated and orders[0].ledger_updated)

    await eventually(credited)
    payment = (await api.payment.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment_id))).payment
    return payment.orders[0]


async def _release(api: Apis) -> None:
    """Every sale's hold (7 days) has passed: the release job run as of 8 days from now."""
    as_of = Timestamp()
    as_of.FromDatetime(datetime.now(UTC) + timedelta(days=8))
    await api.wallet.ReleasePending(wallet_pb2.ReleasePendingRequest(as_of=as_of), timeout=30)


async def _balance(api: Apis, seller_id: str) -> wallet_pb2.Balance:
    return (await api.wallet.GetBalance(wallet_pb2.GetBalanceRequest(seller_id=seller_id, currency="USD"))).balance


async def _refund(api: Apis, order: payment_pb2.PaymentOrder, amount_minor: int) -> payment_pb2.Refund:
    request = payment_pb2.RefundPaymentOrderRequest(
        payment_order_id=order.payment_order_id, idempotency_key=str(uuid.uuid4()), reason="requested_by_customer"
    )
    request.amount.amount_minor, request.amount.currency = amount_minor, "USD"
    refund_id = (await api.payment.RefundPaymentOrder(request, timeout=10)).refund.refund_id

    async def done() -> bool:
        refund = (await api.payment.GetRefund(payment_pb2.GetRefundRequest(refund_id=refund_id))).refund
        return bool(refund.status == payment_pb2.REFUND_STATUS_SUCCEEDED)

    async def applied() -> bool:
        """The wallet debited it and the ledger booked it (both consume the outcome on their own)."""
        entries = await api.wallet.ListBalanceEntries(
            wallet_pb2.ListBalanceEntriesRequest(seller_id=order.seller_id, page_size=1000)
        )
        booked = await api.ledger.ListEntries(
            ledger_pb2.ListEntriesRequest(payment_order_id=order.payment_order_id, page_size=1000)
        )
        return any(e.refund_id == refund_id for e in entries.entries) and any(
            e.refund_id == refund_id for e in booked.entries
        )

    await eventually(done)
    await eventually(applied)
    return (await api.payment.GetRefund(payment_pb2.GetRefundRequest(refund_id=refund_id))).refund


async def _payout_settled(api: Apis, payout_id: str) -> wallet_pb2.Payout:
    async def settled() -> bool:
        payout = await api.wallet.GetPayout(wallet_pb2.GetPayoutRequest(payout_id=payout_id))
        return bool(payout.status in (PAID, FAILED))

    await eventually(settled)
    payout: wallet_pb2.Payout = await api.wallet.GetPayout(wallet_pb2.GetPayoutRequest(payout_id=payout_id))
    return payout


async def _manual_payout(api: Apis, seller_id: str, amount_minor: int, destination: str = "") -> wallet_pb2.Payout:
    request = wallet_pb2.CreatePayoutRequest(
        seller_id=seller_id, destination=destination, idempotency_key=str(uuid.uuid4())
    )
    request.amount.amount_minor, request.amount.currency = amount_minor, "USD"
    payout: wallet_pb2.Payout = await api.wallet.CreatePayout(request, timeout=10)
    return payout


async def _set_destination(api: Apis, seller_id: str, destination: str = "ba_test_success") -> None:
    await api.wallet.SetPayoutDestination(
        wallet_pb2.SetPayoutDestinationRequest(seller_id=seller_id, destination=destination)
    )


async def test_a_partial_then_a_full_refund(stack: Stack, unique: str) -> None:
    seller_id = f"refunds-{unique}"
    async with apis(stack) as api:
        order = await _sale(api, seller_id, 10_000)
        partial = await _refund(api, order, 3_000)
        after_partial = await api.payment.GetPaymentOrder(
            payment_pb2.GetPaymentOrderRequest(payment_order_id=order.payment_order_id)
        )
        rest = await _refund(api, order, 7_000)
        refunded = await api.payment.GetPaymentOrder(
            payment_pb2.GetPaymentOrderRequest(payment_order_id=order.payment_order_id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as nothing_left:
            await _refund(api, order, 1)
        await _release(api)
        balance = await _balance(api, seller_id)
        payable = await api.ledger.GetAccountBalance(
            ledger_pb2.GetAccountBalanceRequest(account=f"seller_payable:{seller_id}", currency="USD")
        )

    assert partial.psp_reference.startswith("re_") and rest.psp_reference.startswith("re_")
    assert after_partial.payment_order.status == payment_pb2.PAYMENT_ORDER_STATUS_PARTIALLY_REFUNDED
    assert refunded.payment_order.status == payment_pb2.PAYMENT_ORDER_STATUS_REFUNDED
    assert error_info_reason(nothing_left.value) == "PAYMENT_ORDER_NOT_REFUNDABLE"
    assert (balance.pending_minor, balance.available_minor) == (0, 0)
    assert payable.balance.amount_minor == 0


async def test_a_refund_beyond_the_balance_is_a_debt_that_holds_payouts_until_later_sales(
    stack: Stack, unique: str
) -> None:
    seller_id = f"debtor-{unique}"
    async with apis(stack) as api:
        await _set_destination(api, seller_id)
        order = await _sale(api, seller_id, 5_000)
        await _release(api)
        paid = await _payout_settled(api, (await _manual_payout(api, seller_id, 5_000)).payout_id)
        await _refund(api, order, 2_000)
        owing = await _balance(api, seller_id)
        with pytest.raises(grpc.aio.AioRpcError) as held:
            await _manual_payout(api, seller_id, 1)
        await _sale(api, seller_id, 3_000)
        await _release(api)
        recovered = await _balance(api, seller_id)
        second = await _payout_settled(api, (await _manual_payout(api, seller_id, 1_000)).payout_id)
        final = await _balance(api, seller_id)

    assert paid.status == PAID and paid.psp_reference.startswith("po_")
    assert (owing.available_minor, owing.debt_minor, owing.payouts_held) == (-2_000, 2_000, True)
    assert error_info_reason(held.value) == "INSUFFICIENT_AVAILABLE_BALANCE"
    assert (recovered.available_minor, recovered.debt_minor, recovered.payouts_held) == (1_000, 0, False)
    assert second.status == PAID
    assert (final.available_minor, final.reserved_minor, final.payouts_paid_minor) == (0, 0, 6_000)


async def test_a_failed_payout_returns_its_funds(stack: Stack, unique: str) -> None:
    seller_id = f"closed-{unique}"
    async with apis(stack) as api:
        await _sale(api, seller_id, 2_500)
        await _release(api)
        payout = await _manual_payout(api, seller_id, 2_500, destination="ba_test_account_closed")
        failed = await _payout_settled(api, payout.payout_id)
        balance = await _balance(api, seller_id)

    assert (failed.status, failed.failure_code) == (FAILED, "account_closed")
    assert (balance.available_minor, balance.reserved_minor, balance.payouts_paid_minor) == (2_500, 0, 0)


async def test_the_schedule_pays_out_on_the_configured_day(stack: Stack, unique: str) -> None:
    seller_id = f"scheduled-{unique}"
    async with apis(stack) as api:
        await _set_destination(api, seller_id)
        await _sale(api, seller_id, 4_200)
        await _release(api)
        off_day = settle(stack, "payouts", "run-schedule", "--as-of", "2026-12-03", "--json")
        payday = settle(stack, "payouts", "run-schedule", "--as-of", "2026-12-04", "--json")
        [mine] = [p for p in json.loads(payday.stdout)["payouts"] if p["sellerId"] == seller_id]
        paid = await _payout_settled(api, mine["payoutId"])
        balance = await _balance(api, seller_id)

    assert off_day.returncode == 0 and json.loads(off_day.stdout)["payoutDay"] is False
    assert (mine["amount"]["amountMinor"], mine["origin"]) == ("4200", "PAYOUT_ORIGIN_SCHEDULED")
    assert paid.status == PAID
    assert (balance.available_minor, balance.payouts_paid_minor) == (0, 4_200)


async def test_payout_batches_all_or_nothing_executed_per_item_reported_and_idempotent(
    stack: Stack, unique: str
) -> None:
    north, south = f"north-{unique}", f"south-{unique}"
    rows = [
        (north, 1_000, "ba_test_success", "branch-n", "web"),
        (north, 1_500, "ba_test_success", "branch-n", "store"),
        (south, 700, "ba_test_no_account", "branch-s", "web"),
        (south, 300, "", "branch-s", "web"),
    ]
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        good, bad = folder / f"batch-{unique}.csv", folder / f"bad-{unique}.csv"
        header = "seller_id,amount_minor,currency,destination,branch,source\n"
        good.write_text(header + "".join(f"{s},{a},USD,{d},{b},{src}\n" for s, a, d, b, src in rows))
        bad.write_text(header + f"{north},10,USD,,b,web\n{north},1.5,USD,,b,web\n{south},10,XXX,,b,web\n")
        async with apis(stack) as api:
            await _set_destination(api, south)
            for seller in (north, south):
                await _sale(api, seller, 3_000)
            await _release(api)

            rejected = settle(stack, "payouts", "submit-batch", str(bad), "--json")
            untouched = await _balance(api, north)
            accepted = settle(stack, "payouts", "submit-batch", str(good), "--json")
            repeated = settle(stack, "payouts", "submit-batch", str(good), "--json")
            batch_id = json.loads(accepted.stdout)["batch"]["batchId"]
            items = (
                await api.wallet.ListPayouts(wallet_pb2.ListPayoutsRequest(batch_id=batch_id, page_size=1000))
            ).payouts
            settled = [await _payout_settled(api, item.payout_id) for item in items]
            items_report = settle(stack, "payouts", "report", batch_id, "--out", str(folder / "items.csv"))
            grouped = settle(
                stack, "payouts", "report", batch_id, "--group-by", "branch", "--out", str(folder / "branch.csv")
            )
            item_rows = list(csv.DictReader((folder / "items.csv").open(newline="")))
            branch_rows = list(csv.DictReader((folder / "branch.csv").open(newline="")))
            north_after, south_after = await _balance(api, north), await _balance(api, south)

    assert rejected.returncode == 1
    assert "line 3: amount_minor" in rejected.stderr and "line 4: currency" in rejected.stderr
    assert (untouched.available_minor, untouched.reserved_minor) == (3_000, 0)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(repeated.stdout)["duplicate"] is True
    assert [s.status for s in settled] == [PAID, PAID, FAILED, PAID]
    assert settled[2].failure_code == "no_account"
    assert items_report.returncode == 0 and grouped.returncode == 0
    assert [(r["line"], r["status"], r["branch"], r["source"]) for r in item_rows] == [
        ("2", "paid", "branch-n", "web"),
        ("3", "paid", "branch-n", "store"),
        ("4", "failed", "branch-s", "web"),
        ("5", "paid", "branch-s", "web"),
    ]
    by_branch = {r["branch"]: (r["items"], r["paid_minor"], r["failed_minor"]) for r in branch_rows}
    assert by_branch == {"branch-n": ("2", "2500", "0"), "branch-s": ("2", "300", "700")}
    assert (north_after.available_minor, north_after.payouts_paid_minor) == (500, 2_500)
    assert (south_after.available_minor, south_after.reserved_minor) == (2_700, 0)


@pytest.mark.skipif(HLEDGER is None, reason="hledger is installed by ./settle test (Debian package)")
async def test_the_exported_books_balance_in_hledger_and_sellers_equal_wallet_balances(stack: Stack) -> None:
    async def disagreements() -> dict[str, tuple[int, int, int, int]]:
        """Sellers whose books and wallet differ: (-payable, pending + available, -in transit, reserved)."""
        with tempfile.TemporaryDirectory() as directory:
            journal = Path(directory) / "books.journal"
            exported = settle(stack, "ledger", "export", "--format", "hledger", "--out", str(journal))
            assert exported.returncode == 0, exported.stderr
            balances = hledger_balances(journal)  # also checks that the books sum to zero
        prefix = "liabilities:seller_payable:"
        sellers = sorted({account.removeprefix(prefix) for account, _ in balances if account.startswith(prefix)})
        assert sellers
        found = {}
        async with apis(stack) as api:
            for seller_id in sellers:
                wallet = await _balance(api, seller_id)
                payable = balances.get((hledger_account(f"seller_payable:{seller_id}"), "USD"), 0)
                in_transit = balances.get((hledger_account(f"payouts_in_transit:{seller_id}"), "USD"), 0)
                books = (-payable, wallet.pending_minor + wallet.available_minor, -in_transit, wallet.reserved_minor)
                if books[0] != books[1] or books[2] != books[3]:
                    found[seller_id] = books
        return found

    # The ledger consumes the last outcomes on its own: allow it a moment to catch up with the wallet.
    for _ in range(30):
        if not (found := await disagreements()):
            break
        await asyncio.sleep(1)
    assert found == {}


def test_settle_audit_finds_no_breach_after_money_went_out(stack: Stack) -> None:
    audit = settle(stack, "audit", "--json", "--wait", "60")
    report = json.loads(audit.stdout)
    assert audit.returncode == 0 and report["ok"], {k: v for k, v in report["breaches"].items() if v}
