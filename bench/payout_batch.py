"""A payout batch of 50,000 items through the whole system, against the PSP's own payout rate in the same run.

    python bench/payout_batch.py [--items 50000] [--sellers 200]

Starts a whole Settle (embedded infrastructure, PSP sandbox, five service processes), funds `--sellers`
sellers through real checkouts (charged, credited, released after their hold), then submits one CSV batch
of `--items` payouts spread over them (with branch and source metadata) and waits until every item is
PAID (the wallet settled it after the executor paid it at the sandbox and the ledger booked it). Then,
as the baseline, it creates `--baseline-items` payouts directly at the sandbox with the stripe SDK
(64 in flight), which is the most any pipeline in front of that PSP could do. Prints one JSON object:

- accept_s: SubmitPayoutBatch's answer time (parse, validate, reserve every item, one transaction)
- execute_s: from the submission to the last item PAID in the wallet; items_per_s = items / execute_s
- baseline_psp_payouts_per_s and ratio = items_per_s / baseline_psp_payouts_per_s
- duplicate_submit_s: the same file submitted again (a no-op)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from settle.payment.v1 import payment_pb2
from settle.wallet.v1 import wallet_pb2

from services.cli.stack import Stack, start_stack
from services.common import clients
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.psp_port import PayoutRequest

AMOUNT_MINOR = 100
SELLERS_PER_CHECKOUT = 50


async def fund(stack: Stack, sellers: list[str], per_seller_minor: int) -> None:
    async with (
        stack.endpoints.channel("payment", "checkout") as payment_channel,
        stack.endpoints.channel("wallet", "admin") as wallet_channel,
    ):
        payment, wallet = clients.payment_stub(payment_channel), clients.wallet_stub(wallet_channel)
        for start in range(0, len(sellers), SELLERS_PER_CHECKOUT):
            group = sellers[start : start + SELLERS_PER_CHECKOUT]
            await payment.CreatePayment(
                payment_pb2.CreatePaymentRequest(
                    checkout_id=f"bench-funding-{uuid.uuid4()}",
                    buyer_id="bench-buyer",
                    payment_method_token="pm_card_visa",
                    currency="USD",
                    seller_orders=[
                        payment_pb2.SellerOrder(
                            seller_id=seller,
                            line_items=[payment_pb2.LineItem(sku="s", quantity=1, unit_amount_minor=per_seller_minor)],
                        )
                        for seller in group
                    ],
                ),
                timeout=30,
            )
        for seller in sellers:
            await wallet.SetPayoutDestination(
                wallet_pb2.SetPayoutDestinationRequest(seller_id=seller, destination="ba_test_success"), timeout=10
            )
        for seller in sellers:  # credited in pending (a remote state: polled)
            while (  # noqa: ASYNC110
                await wallet.GetBalance(wallet_pb2.GetBalanceRequest(seller_id=seller, currency="USD"), timeout=10)
            ).balance.pending_minor < per_seller_minor:
                await asyncio.sleep(0.2)
        as_of = Timestamp()
        as_of.FromDatetime(datetime.now(UTC) + timedelta(days=8))
        await wallet.ReleasePending(wallet_pb2.ReleasePendingRequest(as_of=as_of), timeout=120)


def batch_file(sellers: list[str], items: int) -> bytes:
    lines = ["seller_id,amount_minor,currency,branch,source"]
    lines += [
        f"{sellers[i % len(sellers)]},{AMOUNT_MINOR},USD,branch-{i % 7},{'web' if i % 3 else 'store'}"
        for i in range(items)
    ]
    return ("\n".join(lines) + "\n").encode()


async def run_batch(stack: Stack, content: bytes, items: int) -> dict[str, float]:
    async with stack.endpoints.channel("wallet", "admin") as channel:
        wallet = clients.wallet_stub(channel)
        request = wallet_pb2.SubmitPayoutBatchRequest(
            batch_id=f"bench-{uuid.uuid4().hex[:8]}", format=wallet_pb2.PAYOUT_BATCH_FORMAT_CSV, content=content
        )
        started = time.perf_counter()
        accepted = await wallet.SubmitPayoutBatch(request, timeout=600)
        accept_s = time.perf_counter() - started
        assert accepted.batch.item_count == items and not accepted.duplicate
        while True:
            batch = await wallet.GetPayoutBatch(wallet_pb2.GetPayoutBatchRequest(batch_id=request.batch_id), timeout=30)
            paid = sum(t.count for t in batch.totals if t.status == wallet_pb2.PAYOUT_STATUS_PAID)
            failed = sum(t.count for t in batch.totals if t.status == wallet_pb2.PAYOUT_STATUS_FAILED)
            if paid + failed == items:
                break
            await asyncio.sleep(0.25)
        execute_s = time.perf_counter() - started
        again = time.perf_counter()
        repeat = await wallet.SubmitPayoutBatch(request, timeout=600)
        duplicate_s = time.perf_counter() - again
        assert repeat.duplicate and failed == 0
    return {"accept_s": accept_s, "execute_s": execute_s, "duplicate_submit_s": duplicate_s}


async def baseline(stack: Stack, items: int, concurrency: int = 64) -> float:
    gateway = StripeGateway("sk_test_settle_sandbox", stack.endpoints.psp_sandbox_url)
    queue = iter(range(items))

    async def worker() -> None:
        for _ in queue:
            payout_id = str(uuid.uuid4())
            await gateway.payout(
                PayoutRequest(payout_id, "bench-baseline", AMOUNT_MINOR, "USD", "ba_test_success", "baseline")
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await gateway.close()
    return items / elapsed


async def main(options: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="settle-bench-payouts-") as data_dir:
        stack = start_stack(Path(data_dir), fixed_ports=False, extra_env={"SETTLE_PAYOUT_SCHEDULE_INTERVAL_S": "0"})
        try:
            sellers = [f"bench-seller-{i:04d}" for i in range(options.sellers)]
            per_seller = -(-options.items // options.sellers) * AMOUNT_MINOR
            await fund(stack, sellers, per_seller)
            figures = await run_batch(stack, batch_file(sellers, options.items), options.items)
            psp_rate = await baseline(stack, options.baseline_items)
        finally:
            stack.stop()
    items_per_s = options.items / figures["execute_s"]
    return {
        "items": options.items,
        "sellers": options.sellers,
        "accept_s": round(figures["accept_s"], 2),
        "execute_s": round(figures["execute_s"], 2),
        "items_per_s": round(items_per_s, 1),
        "duplicate_submit_s": round(figures["duplicate_submit_s"], 3),
        "baseline_psp_payouts_per_s": round(psp_rate, 1),
        "ratio": round(items_per_s / psp_rate, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--baseline-items", type=int, default=5_000)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
    sys.exit(0)
