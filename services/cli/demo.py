"""`settle demo`: drives realistic checkouts through a running Settle and checks the invariants.

Every succeeded order must have exactly one PSP charge, one wallet credit and one ledger entry; every
failed order none; every demo seller's pending balance must equal its succeeded orders; the trial
balance must be zero. Only this run's orders and sellers are checked, so it works on a busy system.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from settle.ledger.v1 import ledger_pb2
from settle.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from settle.payment.v1 import payment_pb2
from settle.payment.v1.payment_pb2_grpc import PaymentServiceStub
from settle.wallet.v1 import wallet_pb2
from settle.wallet.v1.wallet_pb2_grpc import WalletServiceStub

from services.cli.endpoints import Endpoints
from services.cli.workload import CheckoutFactory
from services.common import clients

SUCCEEDED = payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED
FAILED = payment_pb2.PAYMENT_ORDER_STATUS_FAILED
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class DemoReport:
    payments_total: int = 0
    orders_total: int = 0
    orders_succeeded: int = 0
    orders_failed: int = 0
    orders_not_terminal: int = 0
    psp_charges: int = 0
    trial_balance_zero: bool = False
    invariants_ok: bool = False
    duration_s: float = 0.0
    failures_by_code: dict[str, int] = field(default_factory=dict)
    seller_balances: list[dict[str, object]] = field(default_factory=list)
    trial_balance: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    audit: dict[str, object] = field(default_factory=dict)  # `settle audit --json` of the whole system
    reconciliation: dict[str, object] = field(default_factory=dict)  # `settle reconcile --json` of the day

    @property
    def ok(self) -> bool:
        reconciled = self.reconciliation.get("mismatch_count") == 0
        return self.invariants_ok and self.orders_not_terminal == 0 and self.audit.get("ok") is True and reconciled


async def bounded(limit: int, items: Sequence[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """`call(item)` for every item, at most `limit` at a time, results in item order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with semaphore:
            return await call(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


@dataclass
class DemoRun:
    """What a demo drove: the payments (in their latest state) and the sellers it used."""

    payments: list[payment_pb2.Payment]
    sellers: list[str]

    @property
    def orders(self) -> list[payment_pb2.PaymentOrder]:
        return [order for payment in self.payments for order in payment.orders]


async def run_demo(endpoints: Endpoints, checkouts: int, *, timeout_s: float = 300.0) -> DemoReport:
    started = time.monotonic()
    run = await drive_checkouts(endpoints, checkouts, deadline_s=started + timeout_s)
    report = await verify(endpoints, run)
    report.duration_s = round(time.monotonic() - started, 2)
    return report


async def drive_checkouts(endpoints: Endpoints, checkouts: int, *, deadline_s: float) -> DemoRun:
    """Creates `checkouts` payments (16 in flight) and waits until each is done or the deadline passes."""
    factory = CheckoutFactory(uuid.uuid4().hex[:8], sellers=max(3, min(40, checkouts // 5)))
    async with endpoints.channel("payment", "checkout") as channel:
        payments = clients.payment_stub(channel)
        requests = [factory.next() for _ in range(checkouts)]
        created = await bounded(16, requests, lambda r: payments.CreatePayment(r, timeout=30))
        done = await _wait_until_done(payments, [c.payment.payment_id for c in created], deadline_s)
    return DemoRun(done, factory.sellers)


async def verify(endpoints: Endpoints, run: DemoRun) -> DemoReport:
    """Checks every invariant for the run's orders and sellers through the public APIs only."""
    report = DemoReport(payments_total=len(run.payments))
    async with (
        endpoints.channel("wallet", "finance") as wallet_channel,
        endpoints.channel("ledger", "finance") as ledger_channel,
    ):
        stubs = (clients.wallet_stub(wallet_channel), clients.ledger_stub(ledger_channel))
        await _check(report, run.orders, run.sellers, endpoints.psp_sandbox_url, stubs)
    return report


async def _wait_until_done(
    payments: PaymentServiceStub, payment_ids: list[str], deadline_s: float
) -> list[payment_pb2.Payment]:
    latest: dict[str, payment_pb2.Payment] = {}
    pending = list(payment_ids)
    while pending:
        responses = await bounded(
            32, pending, lambda pid: payments.GetPayment(payment_pb2.GetPaymentRequest(payment_id=pid))
        )
        latest.update({r.payment.payment_id: r.payment for r in responses})
        pending = [pid for pid in pending if not latest[pid].done]
        if pending and time.monotonic() > deadline_s:
            break
        if pending:
            await asyncio.sleep(0.5)
    return [latest[pid] for pid in payment_ids]


async def _psp_charges(sandbox_url: str) -> Counter[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{sandbox_url}/_sandbox/charges") as response:
        response.raise_for_status()
        body = await response.json()
    return Counter(str(charge["payment_order_id"]) for charge in body["data"])


async def _wallet_entries(wallet: WalletServiceStub, seller: str) -> list[wallet_pb2.BalanceEntry]:
    entries: list[wallet_pb2.BalanceEntry] = []
    token = ""
    while True:
        page = await wallet.ListBalanceEntries(
            wallet_pb2.ListBalanceEntriesRequest(seller_id=seller, page_size=1000, page_token=token)
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


async def _check(
    report: DemoReport,
    orders: list[payment_pb2.PaymentOrder],
    sellers: list[str],
    psp_sandbox_url: str,
    stubs: tuple[WalletServiceStub, LedgerServiceStub],
) -> None:
    wallet, ledger = stubs
    charges = await _psp_charges(psp_sandbox_url)
    seller_entries = await bounded(8, sellers, lambda seller: _wallet_entries(wallet, seller))
    credits = Counter(e.payment_order_id for entries in seller_entries for e in entries if e.kind == "sale")
    ledger_pages = await bounded(
        32, orders, lambda o: ledger.ListEntries(ledger_pb2.ListEntriesRequest(payment_order_id=o.payment_order_id))
    )
    postings = {o.payment_order_id: len(page.entries) for o, page in zip(orders, ledger_pages, strict=True)}
    expected_pending: dict[tuple[str, str], int] = defaultdict(int)
    report.orders_total = len(orders)
    for order in orders:
        oid = order.payment_order_id
        if order.status == SUCCEEDED:
            report.orders_succeeded += 1
            expected_pending[(order.seller_id, order.amount.currency)] += order.amount.amount_minor
            want = 1
        elif order.status == FAILED:
            report.orders_failed += 1
            report.failures_by_code[order.failure_code] = report.failures_by_code.get(order.failure_code, 0) + 1
            want = 0
        else:
            report.orders_not_terminal += 1
            report.violations.append(
                f"order {oid} is not terminal ({payment_pb2.PaymentOrderStatus.Name(order.status)})"
            )
            continue
        report.psp_charges += charges[oid]
        for what, seen in (
            ("PSP charges", charges[oid]),
            ("wallet credits", credits[oid]),
            ("ledger entries", postings[oid]),
        ):
            if seen != want:
                report.violations.append(f"order {oid}: {seen} {what}, expected {want}")
    await _check_balances(report, wallet, expected_pending, sellers)
    trial = await ledger.TrialBalance(ledger_pb2.TrialBalanceRequest())
    report.trial_balance = {total.currency: total.amount_minor for total in trial.totals}
    report.trial_balance_zero = trial.balanced and all(v == 0 for v in report.trial_balance.values())
    if not report.trial_balance_zero:
        report.violations.append(f"trial balance is not zero: {report.trial_balance}")
    report.invariants_ok = not report.violations


async def _check_balances(
    report: DemoReport,
    wallet: WalletServiceStub,
    expected_pending: dict[tuple[str, str], int],
    sellers: list[str],
) -> None:
    pairs = sorted({(s, c) for s in sellers for c in ("USD", "EUR", "JPY")})
    balances = await bounded(
        16, pairs, lambda pair: wallet.GetBalance(wallet_pb2.GetBalanceRequest(seller_id=pair[0], currency=pair[1]))
    )
    for (seller, currency), response in zip(pairs, balances, strict=True):
        balance = response.balance
        want = expected_pending.get((seller, currency), 0)
        if balance.pending_minor or want:
            report.seller_balances.append(
                {"seller_id": seller, "currency": currency, "pending_minor": balance.pending_minor,
                 "available_minor": balance.available_minor, "reserved_minor": balance.reserved_minor}
            )  # fmt: skip
        if balance.pending_minor != want:
            report.violations.append(f"seller {seller} {currency}: pending {balance.pending_minor}, expected {want}")
