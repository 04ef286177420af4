"""`settle reconcile` on a whole running Settle: the sandbox's settlement file for the day the other
end-to-end tests moved money on reconciles without a single false mismatch, and injected discrepancies
are found."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from settle.ledger.v1 import ledger_pb2
from settle.payment.v1 import payment_pb2
from settle.reconciliation.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from services.cli.stack import Stack
from services.common import clients
from services.common.grpc_errors import error_info_reason
from tests.e2e.cli import settle
from tests.fixtures import eventually


def _settlement_file(stack: Stack, folder: Path, name: str, days_later: int = 0, **switches: str) -> Path:
    base = stack.endpoints.psp_sandbox_url
    with urllib.request.urlopen(f"{base}/_sandbox/clock", timeout=10) as response:
        day = (datetime.fromtimestamp(json.load(response)["now"], UTC) + timedelta(days=days_later)).date()
    query = f"?{urllib.parse.urlencode(switches)}" if switches else ""
    path = folder / name
    with urllib.request.urlopen(f"{base}/_sandbox/settlements/{day.isoformat()}{query}", timeout=60) as response:
        path.write_bytes(response.read())
    return path


def _reconcile(stack: Stack, path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return settle(stack, "reconcile", "--file", str(path), "--format", "sandbox", "--out", str(out), "--json")


async def _a_charged_checkout(stack: Stack) -> None:
    """At least one charge today, whatever else ran before (the other modules' money counts too)."""
    request = payment_pb2.CreatePaymentRequest(
        checkout_id=f"co-reconcile-{uuid.uuid4()}",
        buyer_id="buyer-reconcile",
        payment_method_token="pm_card_visa",
        currency="EUR",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id="seller-reconcile",
                line_items=[payment_pb2.LineItem(sku="s", quantity=1, unit_amount_minor=990)],
            )
        ],
    )
    async with stack.endpoints.channel("payment", "checkout") as channel:
        payments = clients.payment_stub(channel)
        payment_id = (await payments.CreatePayment(request, timeout=10)).payment.payment_id

        async def done() -> bool:
            payment = (await payments.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment_id))).payment
            return bool(payment.done and payment.orders[0].ledger_updated)

        await eventually(done)


def test_the_days_settlement_reconciles_cleanly_and_discrepancies_are_found(stack: Stack, tmp_path: Path) -> None:
    asyncio.run(_a_charged_checkout(stack))
    quiet = settle(stack, "audit", "--wait", "60")  # every event published...
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    time.sleep(2)  # ...and consumed by reconciliation's index
    clean = _settlement_file(stack, tmp_path, "clean.csv")

    first = _reconcile(stack, clean, tmp_path / "clean")
    again = _reconcile(stack, clean, tmp_path / "again")

    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["lines_imported"] == summary["lines_read"] > 0
    assert (summary["mismatch_count"], summary["mismatches"]) == (0, {}), summary
    assert summary["matched"] == summary["lines_imported"]
    repeated = json.loads(again.stdout)
    assert repeated["already_imported"] and repeated["run_id"] == summary["run_id"]
    for name in ("summary.json", "mismatches.csv", "report.html"):  # byte-identical reports
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert "<svg" in (tmp_path / "clean" / "report.html").read_text()

    # Tomorrow's file (today's lines are settled: imported again they would be duplicates) with a charge
    # the PSP settled that Settle never saw, and a fee: both found and classified.
    odd = _settlement_file(stack, tmp_path, "odd.csv", days_later=1, unknown_charges="1", extra_fee_lines="1")
    found = json.loads(_reconcile(stack, odd, tmp_path / "odd").stdout)
    assert found["mismatches"] == {
        "MISSING_IN_LEDGER": {"USD": {"count": 1, "amount_minor": 1234}},
        "UNEXPECTED_FEE": {"USD": {"count": 1, "amount_minor": 500}},
    }

    truncated = _reconcile(stack, _settlement_file(stack, tmp_path, "cut.csv", truncate="1"), tmp_path / "cut")
    assert truncated.returncode == 1 and "truncated" in truncated.stderr

    asyncio.run(_list_and_resolve(stack, found["run_id"]))


async def _list_and_resolve(stack: Stack, run_id: str) -> None:
    """Finance pages through a run's mismatches, most severe first, and resolves one, once."""
    async with stack.endpoints.channel("ledger", "finance") as channel:
        fees = await clients.ledger_stub(channel).GetAccountBalance(
            ledger_pb2.GetAccountBalanceRequest(account="psp_fees", currency="USD")
        )
        assert fees.balance.amount_minor == 500
    async with stack.endpoints.channel("reconciliation", "finance") as channel:
        api = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        first = await api.ListMismatches(reconciliation_pb2.ListMismatchesRequest(run_id=run_id, page_size=1))
        second = await api.ListMismatches(
            reconciliation_pb2.ListMismatchesRequest(run_id=run_id, page_size=1, page_token=first.next_page_token)
        )
        assert [m.kind for m in [*first.mismatches, *second.mismatches]] == ["MISSING_IN_LEDGER", "UNEXPECTED_FEE"]
        assert second.next_page_token == ""
        with pytest.raises(grpc.aio.AioRpcError) as other_filter:  # a token is bound to its run and filters
            await api.ListMismatches(
                reconciliation_pb2.ListMismatchesRequest(
                    run_id=run_id, kind="UNEXPECTED_FEE", page_size=1, page_token=first.next_page_token
                )
            )
        assert other_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "another run or other filters" in (other_filter.value.details() or "")
        critical = first.mismatches[0]
        assert (critical.severity, critical.amount.amount_minor, critical.amount.currency) == ("critical", 1234, "USD")

        resolved = await api.ResolveMismatch(
            reconciliation_pb2.ResolveMismatchRequest(
                mismatch_id=critical.mismatch_id, resolution="PSP test charge, no action", resolved_by="finance@shop"
            )
        )
        assert resolved.mismatch.resolved and resolved.mismatch.resolved_by == "finance@shop"
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await api.ResolveMismatch(
                reconciliation_pb2.ResolveMismatchRequest(
                    mismatch_id=critical.mismatch_id, resolution="again", resolved_by="someone else"
                )
            )
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info_reason(again.value) == "MISMATCH_ALREADY_RESOLVED"
        # The fee was booked in the ledger (SETTLE_BOOK_PSP_FEES) and its mismatch resolved with the entry.
        fee = second.mismatches[0]
        assert (fee.resolved, fee.resolved_by) == (True, "settle-reconciliation")
        assert fee.resolution.startswith("booked as ledger entry ")
        open_only = await api.ListMismatches(
            reconciliation_pb2.ListMismatchesRequest(run_id=run_id, unresolved_only=True)
        )
        assert list(open_only.mismatches) == []
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await api.GetRun(reconciliation_pb2.GetRunRequest(run_id="not-a-run"))
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
