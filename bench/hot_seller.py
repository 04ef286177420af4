"""Many concurrent credits, refunds, releases and payouts on one hot seller, on the wallet's real database.

    python bench/hot_seller.py [--workers 16] [--operations 300]

Every worker runs the wallet's own use cases (the consumer's sale credits, refund debits and payout
outcomes, the release job, CreatePayout) against the same seller (and, in some batches, a few others in
one transaction, to exercise the lock order) with no pause. Prints one JSON object: operations, seconds,
operations/s, deadlocks (must be 0), payouts refused for lack of funds (expected), and whether every
balance still equals the sum of its entries and the money adds up. The baseline, measured in the same
run, is the same number of single-row `UPDATE balances SET available = available + 1` transactions on
the hot row: the most any design that serialises a seller on its balance row could do.
`tests/integration/test_wallet_hot_seller.py` runs the same driver and asserts the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, service_database_url
from services.common.errors import FailedPrecondition
from services.common.infra import choose_mode, start_infrastructure
from services.common.migrations import database_name, upgrade
from services.common.money import Money
from services.common.payout_events import PayoutEvent, PayoutStep
from services.wallet.domain import RefundDebit, Sale
from services.wallet.payout_service import PayoutService
from services.wallet.payouts import PayoutSchedule
from services.wallet.service import WalletService

CURRENCY = "USD"


@dataclass
class Tally:
    operations: int = 0
    sales_minor: int = 0
    refunds_minor: int = 0
    paid_minor: int = 0
    refused_payouts: int = 0
    deadlocks: int = 0
    requested: list[tuple[uuid.UUID, str, int]] = field(default_factory=list)  # payouts not settled yet


class HotSeller:
    def __init__(self, engine: AsyncEngine, seller_id: str, others: list[str]) -> None:
        self.engine = engine
        self.seller_id = seller_id
        self.others = others
        self.wallet = WalletService(engine)
        self.payouts = PayoutService(engine, PayoutSchedule(date(2026, 1, 2), 14, 1))
        self.tally = Tally()

    async def setup(self) -> None:
        for seller in [self.seller_id, *self.others]:
            await self.payouts.set_destination(seller, "ba_test_success")

    async def _sales(self, rng: random.Random) -> None:
        sellers = [self.seller_id] + (rng.sample(self.others, 2) if rng.random() < 0.3 else [])
        sales = [
            Sale(uuid.uuid4(), seller, Money(rng.randint(100, 5_000), CURRENCY), uuid.uuid4()) for seller in sellers
        ]
        async with self.engine.begin() as connection:
            await self.wallet.record_sales(connection, sales)
        self.tally.sales_minor += sum(sale.amount.amount_minor for sale in sales if sale.seller_id == self.seller_id)

    async def _refund(self, rng: random.Random) -> None:
        amount = rng.randint(1, 800)
        refund = RefundDebit(uuid.uuid4(), uuid.uuid4(), self.seller_id, Money(amount, CURRENCY), uuid.uuid4())
        async with self.engine.begin() as connection:
            await self.wallet.record_refunds(connection, [refund])
        self.tally.refunds_minor += amount

    async def _payout(self, rng: random.Random) -> None:
        amount = rng.randint(1, 2_000)
        try:
            payout = await self.payouts.create_payout(
                seller_id=self.seller_id,
                amount_minor=amount,
                currency=CURRENCY,
                destination="",
                idempotency_key=str(uuid.uuid4()),
                metadata={},
            )
        except FailedPrecondition:
            self.tally.refused_payouts += 1
            return
        self.tally.requested.append((payout.payout_id, payout.seller_id, amount))

    async def _settle(self, rng: random.Random) -> None:
        if not self.tally.requested:
            return
        payout_id, seller_id, amount = self.tally.requested.pop(rng.randrange(len(self.tally.requested)))
        paid = rng.random() < 0.8
        event = PayoutEvent(
            step=PayoutStep.PAID if paid else PayoutStep.FAILED,
            payout_id=payout_id,
            seller_id=seller_id,
            amount=Money(amount, CURRENCY),
            destination="ba_test_success",
            event_id=uuid.uuid4(),
            psp_reference="po_hot" if paid else "",
            failure_code="" if paid else "account_closed",
        )
        async with self.engine.begin() as connection:
            await self.payouts.record_outcomes(connection, [event])
        self.tally.paid_minor += amount if paid else 0

    async def _release(self, rng: random.Random) -> None:
        await self.wallet.release_due(delay_s=0, limit=200)

    async def worker(self, seed: int, operations: int) -> None:
        rng = random.Random(seed)
        steps = [self._sales] * 4 + [
            self._refund,
            self._payout,
            self._payout,
            self._settle,
            self._settle,
            self._release,
        ]
        for _ in range(operations):
            try:
                await rng.choice(steps)(rng)
            except DBAPIError as error:
                if "deadlock" not in str(error).lower():
                    raise
                self.tally.deadlocks += 1
            self.tally.operations += 1

    async def run(self, workers: int, operations: int) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(self.worker(seed, operations) for seed in range(workers)))
        return time.perf_counter() - started

    async def money_adds_up(self) -> bool:
        """Every balance equals its entries, and the hot seller holds what came in minus what went out."""
        async with self.engine.connect() as connection:
            balance = (
                await connection.execute(
                    text(
                        "SELECT pending_minor + available_minor + reserved_minor AS held, reserved_minor "
                        "FROM balances WHERE seller_id = :seller AND currency = :currency"
                    ),
                    {"seller": self.seller_id, "currency": CURRENCY},
                )
            ).one()
        drift = await self.wallet.find_drift([self.seller_id, *self.others])
        unsettled = sum(amount for _, _, amount in self.tally.requested)
        expected = self.tally.sales_minor - self.tally.refunds_minor - self.tally.paid_minor
        return not drift and balance.held == expected and balance.reserved_minor == unsettled


async def baseline(engine: AsyncEngine, seller_id: str, workers: int, operations: int) -> float:
    async def worker() -> None:
        for _ in range(operations):
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE balances SET available_minor = available_minor + 1 WHERE seller_id = :s"),
                    {"s": seller_id},
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return workers * operations / (time.perf_counter() - started)


async def main(options: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="settle-bench-hot-") as data_dir:
        infra = start_infrastructure(choose_mode(), Path(data_dir))
        try:
            upgrade("wallet", infra.database_url)
            engine = create_engine(
                service_database_url(infra.database_url, database_name("wallet")), pool_size=options.workers
            )
            hot = HotSeller(engine, "hot-seller", [f"other-{i}" for i in range(5)])
            await hot.setup()
            elapsed = await hot.run(options.workers, options.operations)
            adds_up = await hot.money_adds_up()
            baseline_rate = await baseline(engine, "other-0", options.workers, options.operations)
            await engine.dispose()
        finally:
            infra.close()
    rate = hot.tally.operations / elapsed
    return {
        "workers": options.workers,
        "operations": hot.tally.operations,
        "seconds": round(elapsed, 2),
        "operations_per_s": round(rate, 1),
        "deadlocks": hot.tally.deadlocks,
        "refused_payouts": hot.tally.refused_payouts,
        "money_adds_up": adds_up,
        "baseline_row_updates_per_s": round(baseline_rate, 1),
        "ratio": round(rate / baseline_rate, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--operations", type=int, default=300, help="per worker")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
