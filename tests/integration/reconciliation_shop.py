"""What the reconciliation tests share: a database of a test module's own, and a Shop that moves money at
the PSP sandbox with the real gateway and books it the way Settle's events would."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest_asyncio
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from psp_sandbox.app import RunningSandbox
from services.common.db import create_engine, service_database_url
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_PAID,
    InboundEvent,
)
from services.common.infra import Infrastructure
from services.common.migrations import upgrade
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.psp_port import ChargeRequest, PayoutRequest, RefundRequest
from services.reconciliation import reports
from services.reconciliation.booked_items import BookedItemsHandler
from services.reconciliation.importing import import_file
from services.reconciliation.matching import MatchingRules
from services.reconciliation.nightly import NightlyReconciliation
from services.reconciliation.runs import run
from services.reconciliation.service import ReconciliationService
from services.reconciliation.settlement_sources import SettlementSource

API_KEY = "sk_test_reconcile"
DAY_S = 86_400
MIDNIGHT_MARGIN_S = 300


def shop_fixtures(database: str) -> tuple[Any, Any]:
    """A test module's `engine` (module-scoped, on a reconciliation database of its own: a run reports every
    booking of its files' days that no file settled, so the bookings other modules make would show up as
    missing) and `shop` (on the test's sandbox, its clock away from midnight so that everything a test
    does happens on one sandbox day). Assign both to module names: `engine, shop = shop_fixtures(...)`."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
        upgrade("reconciliation", infra.database_url, database=database)
        created = create_engine(service_database_url(infra.database_url, database))
        yield created
        await created.dispose()

    @pytest_asyncio.fixture
    async def shop(engine: AsyncEngine, sandbox: RunningSandbox) -> AsyncIterator[Shop]:
        if int((await sandbox_now(sandbox)).timestamp()) % DAY_S > DAY_S - MIDNIGHT_MARGIN_S:
            await sandbox_post(sandbox, "/_sandbox/clock", json={"advance_s": 2 * MIDNIGHT_MARGIN_S})
        opened = Shop(engine, sandbox)
        yield opened
        await opened.gateway.close()

    return engine, shop


async def sandbox_post(sandbox: RunningSandbox, path: str, **kwargs: Any) -> Any:
    """POSTs to the sandbox's admin API; the JSON answer, which must be a 200."""
    async with aiohttp.ClientSession() as http, http.post(f"{sandbox.url}{path}", **kwargs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def sandbox_now(sandbox: RunningSandbox) -> datetime:
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.url}/_sandbox/clock") as response:
        return datetime.fromtimestamp((await response.json())["now"], UTC)


async def sandbox_today(sandbox: RunningSandbox) -> date:
    return (await sandbox_now(sandbox)).date()


class Shop:
    """Moves money at the sandbox with the real gateway and books it the way Settle's events would."""

    def __init__(self, engine: AsyncEngine, sandbox: RunningSandbox) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.gateway = StripeGateway(API_KEY, sandbox.url)
        self.references: dict[str, str] = {}  # our id -> PSP reference
        self.last_report: reports.Report | None = None

    async def book(self, *events: InboundEvent) -> None:
        async with self.engine.begin() as connection:
            await BookedItemsHandler().handle(connection, events)

    async def charge(
        self, amount: int, currency: str = "USD", *, outcome: str = "booked", ordered: int | None = None
    ) -> str:
        """Orders `ordered` (default: `amount`), charges `amount` and books as far as `outcome` says."""
        order_id = str(uuid.uuid4())
        await self.book(
            event(
                PAYMENT_ORDER_REQUESTED,
                events_pb2.PaymentOrderRequested(
                    payment_order_id=order_id, amount=Money(amount_minor=ordered or amount, currency=currency)
                ),
            )
        )
        result = await self.gateway.charge(
            ChargeRequest(order_id, amount, currency, "pm_card_visa", "pay-1", "seller-1", "buyer-1")
        )
        self.references[order_id] = result.psp_reference
        money = Money(amount_minor=amount, currency=currency)
        if outcome == "ordered":  # the executor's outcome was lost: only the order and the PSP know
            return order_id
        if outcome == "failed":  # Settle believes the charge failed (a bug), though the PSP charged
            await self.book(
                event(
                    PAYMENT_ORDER_FAILED,
                    events_pb2.PaymentOrderFailed(
                        payment_order_id=order_id, amount=money, failure_code="card_declined"
                    ),
                )
            )
            return order_id
        await self.book(
            event(
                PAYMENT_ORDER_SUCCEEDED,
                events_pb2.PaymentOrderSucceeded(
                    payment_order_id=order_id, amount=money, psp_reference=result.psp_reference
                ),
            )
        )
        if outcome == "booked":
            await self.book(ledger_event("payment_order_succeeded", amount, currency, payment_order_id=order_id))
        return order_id

    async def refund(self, order_id: str, amount: int) -> str:
        refund_id = str(uuid.uuid4())
        result = await self.gateway.refund(RefundRequest(refund_id, order_id, self.references[order_id], amount, "USD"))
        self.references[refund_id] = result.psp_reference
        await self.book(
            event(
                PAYMENT_REFUND_SUCCEEDED,
                events_pb2.RefundSucceeded(
                    refund_id=refund_id,
                    payment_order_id=order_id,
                    amount=Money(amount_minor=amount, currency="USD"),
                    psp_reference=result.psp_reference,
                ),
            ),
            ledger_event("refund_succeeded", -amount, "USD", refund_id=refund_id),
        )
        return refund_id

    async def payout(self, amount: int, currency: str = "USD") -> str:
        payout_id = str(uuid.uuid4())
        result = await self.gateway.payout(
            PayoutRequest(payout_id, "seller-1", amount, currency, "ba_test_success", "")
        )
        self.references[payout_id] = result.psp_reference
        await self.book(
            event(
                PAYOUT_PAID,
                events_pb2.PayoutPaid(
                    payout_id=payout_id,
                    amount=Money(amount_minor=amount, currency=currency),
                    psp_reference=result.psp_reference,
                ),
            ),
            ledger_event("payout_paid", -amount, currency, payout_id=payout_id),
        )
        return payout_id

    async def settlement_file(self, days_later: int = 0, **switches: str) -> bytes:
        day = await sandbox_today(self.sandbox) + timedelta(days=days_later)
        async with aiohttp.ClientSession() as http:
            url = f"{self.sandbox.url}/_sandbox/settlements/{day.isoformat()}"
            async with http.get(url, params=switches) as response:
                assert response.status == 200, await response.text()
                return await response.read()

    def nightly(self, source: SettlementSource) -> NightlyReconciliation:
        """The nightly job on this shop's database, reading `source`, due at any hour."""
        service = ReconciliationService(self.engine, MatchingRules())
        return NightlyReconciliation(self.engine, service, source, hour_utc=0, check_interval_s=60)

    async def day_summary(self, day: date) -> dict[str, Any]:
        """The summary of the day's run (the nightly job's)."""
        async with self.engine.connect() as connection:
            summary = await connection.scalar(
                text("SELECT summary FROM runs WHERE scope = :scope"), {"scope": f"date:{day.isoformat()}"}
            )
        return dict(summary)

    async def reconcile(
        self, *contents: bytes, as_of: datetime, file_format: str = "sandbox"
    ) -> tuple[dict[str, Any], list[Any]]:
        """Imports the files and reconciles them together in one run; its summary and mismatches."""
        file_ids = []
        for content in contents:
            imported = await import_file(self.engine, io.BytesIO(content), file_format, f"settlement.{file_format}")
            file_ids.append(imported.file_id)
        result = await run(self.engine, f"file:{','.join(file_ids)}", file_ids, as_of, MatchingRules())
        async with self.engine.connect() as connection:
            self.last_report = await reports.build(connection, result.run_id)
            found = list(
                await connection.execute(
                    text(
                        "SELECT kind, item_id, line, amount_minor, expected_minor, currency, description FROM mismatches "
                        "WHERE run_id = :run ORDER BY kind, line, item_id"
                    ),
                    {"run": result.run_id},
                )
            )
        return result.summary, found


def event(topic: str, message: Message) -> InboundEvent:
    return InboundEvent(uuid.uuid4(), topic, "key", message, datetime.now(UTC), "", 0, 0)


def ledger_event(kind: str, amount: int, currency: str, **ids: str) -> InboundEvent:
    money = Money(amount_minor=amount, currency=currency)
    negated = Money(amount_minor=-amount, currency=currency)
    return event(
        LEDGER_ENTRY_POSTED,
        events_pb2.LedgerEntryPosted(
            entry_id=str(uuid.uuid4()),
            kind=kind,
            postings=[
                events_pb2.LedgerPosting(account="psp_receivable", amount=money),
                events_pb2.LedgerPosting(account="seller_payable:seller-1", amount=negated),
            ],
            **ids,
        ),
    )
