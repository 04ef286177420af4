"""`settle audit` on real PostgreSQL and the PSP sandbox: a settled system passes, and each kind of
corruption is counted as exactly the breaches it causes.

The audit scans whole databases, so every test gets private copies of the five service databases
(cloned from templates migrated once per module) and its own sandbox. The settled state is built
through the services' own code: payment creates the checkout, the executor's worker charges it through
the Stripe gateway, and payment, wallet and ledger apply the outcomes as their consumers would.
Corruption is then written with triggers off (`session_replication_role = replica`), as it would be
by a bug or a hand-edited row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import pytest_asyncio
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from psp_sandbox.app import RunningSandbox, start_sandbox
from services.cli import audit_checks
from services.cli.audit import AuditReport, add_parser, cmd_audit, run_audit, wait_until_quiet
from services.cli.audit_checks import AUDITED_SERVICES
from services.common.db import create_engine, ensure_database, libpq_url, service_database_url
from services.common.infra import Infrastructure
from services.common.money import Money
from services.common.succeeded_orders import SucceededOrder
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.adapters.tables import CHARGES
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus
from services.executor.retry_policy import RetryPolicy
from services.executor.service.accepting import accept
from services.executor.service.psp_calls import ChargeCalls
from services.executor.service.worker import ExecutionWorker, WorkerConfig
from services.ledger.service import LedgerService
from services.payment.domain.model import Payment
from services.payment.domain.outcomes import ExpectedAmount, Outcome, OutcomeKind
from services.payment.domain.validation import Limits
from services.payment.entrypoints.translate import command_from_proto, request_hash
from services.payment.service.create import PaymentCreator
from services.payment.service.outcomes import record_outcomes
from services.wallet.service import WalletService
from tests.fixtures import create_request

PSP_KEY = "sk_test_audit"


def _admin(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(service_database_url(server_url, "postgres")), autocommit=True)


def _drop(server_url: str, databases: Iterable[str]) -> None:
    with _admin(server_url) as connection:
        for database in databases:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


@pytest.fixture(scope="module")
def templates(infra: Infrastructure) -> Iterator[dict[str, str]]:
    """One migrated database per service, copied by every test (a copy is much faster than migrating)."""
    names = {service: f"audit_template_{service}_{uuid.uuid4().hex[:8]}" for service in AUDITED_SERVICES}
    for service, database in names.items():
        ensure_database(infra.database_url, database)
        config = Config()
        config.set_main_option("script_location", f"services.{service}:migrations")
        config.attributes["url"] = service_database_url(infra.database_url, database)
        command.upgrade(config, "head")
    yield names
    _drop(infra.database_url, names.values())


@pytest.fixture
def databases(
    infra: Infrastructure, templates: dict[str, str], unique: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """This test's own copy of every service database, which the audit then reads instead of settle_*."""
    names = {service: f"audit_{service}_{unique}" for service in AUDITED_SERVICES}
    with _admin(infra.database_url) as connection:
        for service, database in names.items():
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(database), sql.Identifier(templates[service])
                )
            )
    monkeypatch.setattr(audit_checks, "database_name", names.__getitem__)
    yield names
    _drop(infra.database_url, names.values())


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(port=0)
    yield running
    await running.close()


@dataclass
class Shop:
    """A settled system: one checkout charged for two sellers, one declined; nothing in flight."""

    server_url: str
    sandbox_url: str
    engines: dict[str, AsyncEngine]
    succeeded: list[Execution]
    declined: Execution

    async def audit(self) -> AuditReport:
        return await run_audit(self.server_url, self.sandbox_url)


@pytest_asyncio.fixture
async def shop(infra: Infrastructure, databases: dict[str, str], sandbox: RunningSandbox) -> AsyncIterator[Shop]:
    engines = {
        service: create_engine(service_database_url(infra.database_url, database))
        for service, database in databases.items()
    }
    succeeded = await _pay(engines, sandbox, "pm_card_visa", sellers=2)
    declined = await _pay(engines, sandbox, "pm_card_chargeDeclined", sellers=1)
    await _relay(engines)
    assert [e.status for e in succeeded + declined] == [ExecutionStatus.SUCCEEDED] * 2 + [ExecutionStatus.FAILED]
    yield Shop(infra.database_url, sandbox.url, engines, succeeded, declined[0])
    for engine in engines.values():
        await engine.dispose()


async def _checkout(engines: dict[str, AsyncEngine], token: str, sellers: int) -> Payment:
    """CreatePayment, as the payment service's gRPC handler runs it."""
    request = create_request(uuid.uuid4().hex[:10], sellers)
    request.payment_method_token = token
    creator = PaymentCreator(engines["payment"], limits=Limits(), wake_relay=lambda: None)
    payment, _ = await creator.create(command_from_proto(request), request_hash(request))
    return payment


async def _accept(engines: dict[str, AsyncEngine], payment: Payment, token: str) -> None:
    """What the executor's consumer does with the payment's `payment.order.requested` events."""
    orders = [
        ChargeOrder(
            str(order.payment_order_id),
            str(payment.payment_id),
            order.seller_id,
            payment.buyer_id,
            order.amount_minor,
            order.currency,
            token,
        )
        for order in payment.orders
    ]
    async with engines["executor"].begin() as connection:
        assert await accept(connection, CHARGES, orders) == []


async def _charge_due(engines: dict[str, AsyncEngine], sandbox: RunningSandbox) -> list[Execution]:
    """One pass of the executor's worker, charging through the Stripe gateway."""
    gateway = StripeGateway(PSP_KEY, sandbox.url, timeout_s=5.0)
    config = WorkerConfig(
        "audit-worker", RetryPolicy(budget=3, base_ms=1, max_ms=5), stale_claim_s=60, call_deadline_s=10
    )
    try:
        return await ExecutionWorker(engines["executor"], ChargeCalls(gateway), config).run_once(limit=10)
    finally:
        await gateway.close()


def _outcome(execution: Execution) -> Outcome:
    """`payment.order.succeeded` / `failed` as the payment service's consumer reads it."""
    order = execution.order
    if execution.status is ExecutionStatus.SUCCEEDED:
        amount = ExpectedAmount(order.amount_minor, order.currency)
        return Outcome(OutcomeKind.SUCCEEDED, uuid.UUID(order.payment_order_id), execution.psp_reference, amount=amount)
    return Outcome(
        OutcomeKind.FAILED,
        uuid.UUID(order.payment_order_id),
        execution.psp_reference,
        failure_code=execution.failure_code,
        failure_message=execution.failure_message,
    )


def _sale(execution: Execution) -> SucceededOrder:
    order = execution.order
    return SucceededOrder(
        uuid.UUID(order.payment_order_id), order.seller_id, Money(order.amount_minor, order.currency), uuid.uuid4()
    )


async def _record(engines: dict[str, AsyncEngine], outcomes: list[Outcome]) -> None:
    async with engines["payment"].begin() as connection:
        await record_outcomes(connection, outcomes)


async def _pay(engines: dict[str, AsyncEngine], sandbox: RunningSandbox, token: str, sellers: int) -> list[Execution]:
    """A checkout through every service: charged (or declined), credited, booked and confirmed."""
    payment = await _checkout(engines, token, sellers)
    await _accept(engines, payment, token)
    executions = await _charge_due(engines, sandbox)
    await _record(engines, [_outcome(execution) for execution in executions])
    sales = [_sale(execution) for execution in executions if execution.status is ExecutionStatus.SUCCEEDED]
    async with engines["wallet"].begin() as connection:
        await WalletService(engines["wallet"]).record_sales(connection, sales)
    async with engines["ledger"].begin() as connection:
        await LedgerService(engines["ledger"]).record_succeeded_orders(connection, sales)
    await _record(
        engines,
        [
            Outcome(kind, sale.payment_order_id)
            for sale in sales
            for kind in (OutcomeKind.WALLET_UPDATED, OutcomeKind.LEDGER_UPDATED)
        ],
    )
    return sorted(executions, key=lambda execution: execution.order.seller_id)


async def _relay(engines: dict[str, AsyncEngine]) -> None:
    """What every outbox relay does once Kafka has the events."""
    for engine in engines.values():
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE outbox SET published_at = now() WHERE published_at IS NULL"))


async def _corrupt(engine: AsyncEngine, *statements: str, **params: object) -> None:
    """Writes rows with every trigger off (guards, immutability, double entry), as corruption would."""
    async with engine.begin() as connection:
        await connection.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await connection.execute(text(statement), params)


async def _psp_charge(sandbox_url: str, order_id: str | None, amount_minor: int) -> None:
    """A successful charge made straight at the PSP (a second one for an order, or one for no order)."""
    form = {"amount": str(amount_minor), "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}
    if order_id:
        form["metadata[payment_order_id]"] = order_id
    headers = {"Authorization": "Bearer sk_test_x", "Idempotency-Key": str(uuid.uuid4())}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sandbox_url}/v1/payment_intents", data=form, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


def _breached(report: AuditReport) -> dict[str, int]:
    return {kind: count for kind, count in report.breaches.items() if count}


async def test_a_settled_system_passes(shop: Shop) -> None:
    assert await wait_until_quiet(shop.server_url, timeout_s=5)
    report = await shop.audit()
    assert report.ok, report.examples
    assert set(report.breaches) == set(audit_checks.KINDS) and _breached(report) == {}
    assert all(examples == [] for examples in report.examples.values())
    assert report.checked == {
        "charges": 2,
        "executions": 3,
        "journal_entries": 2,
        "ledger_balances": 3,  # psp_receivable and one seller_payable per seller
        "orders": 3,
        "payments": 2,
        "postings": 4,
        "wallet_balances": 2,
        "wallet_entries": 2,
    }


async def test_each_database_is_read_in_one_read_only_snapshot(
    infra: Infrastructure, databases: dict[str, str]
) -> None:
    async with audit_checks.read_only(audit_checks.service_urls(infra.database_url)["ledger"]) as connection:
        assert await connection.scalar(text("SELECT current_database()")) == databases["ledger"]
        assert await connection.scalar(text("SHOW transaction_isolation")) == "repeatable read"
        assert await connection.scalar(text("SHOW transaction_read_only")) == "on"


async def test_a_second_charge_for_an_order_is_a_duplicate(shop: Shop) -> None:
    order = shop.succeeded[0].order
    await _psp_charge(shop.sandbox_url, order.payment_order_id, order.amount_minor)
    report = await shop.audit()
    assert _breached(report) == {"duplicate_charge": 1}
    assert report.examples["duplicate_charge"][0].startswith(f"{order.payment_order_id}: 2 charges")


async def test_a_succeeded_order_without_a_charge_is_a_lost_charge(shop: Shop) -> None:
    order_id = shop.declined.order.payment_order_id
    await _corrupt(
        shop.engines["payment"], "UPDATE payment_orders SET status = 'SUCCEEDED' WHERE id = :id", id=order_id
    )
    await _corrupt(
        shop.engines["executor"],
        "UPDATE executions SET status = 'SUCCEEDED', psp_reference = 'pi_ghost' WHERE payment_order_id = :id",
        id=order_id,
    )
    report = await shop.audit()
    assert _breached(report) == {"lost_charge": 1}
    assert report.examples["lost_charge"] == [f"{order_id}: SUCCEEDED without a PSP charge"]


async def test_a_charge_of_another_amount_than_the_order_is_an_orphan(shop: Shop) -> None:
    order_id = shop.succeeded[1].order.payment_order_id
    await _corrupt(
        shop.engines["payment"], "UPDATE payment_orders SET amount_minor = amount_minor + 1 WHERE id = :id", id=order_id
    )
    assert _breached(await shop.audit()) == {"orphan_charge": 1}


async def test_a_charge_without_an_order_is_an_orphan(shop: Shop) -> None:
    await _psp_charge(shop.sandbox_url, None, 500)
    assert _breached(await shop.audit()) == {"orphan_charge": 1}


async def test_a_charge_for_a_failed_order_is_an_orphan_that_nobody_credited(shop: Shop) -> None:
    order = shop.declined.order
    await _psp_charge(shop.sandbox_url, order.payment_order_id, order.amount_minor)
    report = await shop.audit()
    assert _breached(report) == {"orphan_charge": 1, "wallet_mismatch": 1, "ledger_mismatch": 1}
    assert report.examples["orphan_charge"] == [f"{order.payment_order_id}: charged, but the order is FAILED"]


async def test_executor_and_payment_disagreeing_is_a_status_mismatch(shop: Shop) -> None:
    order_id = shop.declined.order.payment_order_id
    await _corrupt(
        shop.engines["executor"],
        "UPDATE executions SET status = 'SUCCEEDED', psp_reference = 'pi_ghost' WHERE payment_order_id = :id",
        id=order_id,
    )
    report = await shop.audit()
    # The executor's SUCCEEDED has no charge behind it either.
    assert _breached(report) == {"status_mismatch": 1, "lost_charge": 1}
    assert report.examples["status_mismatch"] == [f"{order_id}: payment FAILED, executor SUCCEEDED"]


async def test_a_missing_wallet_credit_is_a_wallet_mismatch(shop: Shop) -> None:
    order = shop.succeeded[0].order
    await _corrupt(
        shop.engines["wallet"],
        "DELETE FROM balance_entries WHERE payment_order_id = :id",
        "UPDATE balances SET pending_minor = pending_minor - :amount WHERE seller_id = :seller",
        id=order.payment_order_id,
        amount=order.amount_minor,
        seller=order.seller_id,
    )
    report = await shop.audit()
    assert _breached(report) == {"wallet_mismatch": 1, "seller_books_mismatch": 1}
    assert report.examples["wallet_mismatch"] == [f"{order.payment_order_id}: charged, but no wallet sale credit"]


async def test_a_credit_to_another_seller_is_a_wallet_mismatch(shop: Shop) -> None:
    first, second = (execution.order for execution in shop.succeeded)
    await _corrupt(
        shop.engines["wallet"],
        "UPDATE balance_entries SET seller_id = :other WHERE payment_order_id = :id",
        "UPDATE balances SET pending_minor = pending_minor - :amount WHERE seller_id = :seller",
        "UPDATE balances SET pending_minor = pending_minor + :amount WHERE seller_id = :other",
        id=first.payment_order_id,
        amount=first.amount_minor,
        seller=first.seller_id,
        other=second.seller_id,
    )
    assert _breached(await shop.audit()) == {"wallet_mismatch": 1, "seller_books_mismatch": 2}


async def test_a_missing_ledger_entry_is_a_ledger_mismatch(shop: Shop) -> None:
    order = shop.succeeded[0].order
    await _corrupt(
        shop.engines["ledger"],
        "DELETE FROM postings WHERE entry_id IN (SELECT entry_id FROM journal_entries WHERE payment_order_id = :id)",
        "DELETE FROM journal_entries WHERE payment_order_id = :id",
        "UPDATE account_balances SET balance_minor = balance_minor - :amount WHERE account = 'psp_receivable'",
        "DELETE FROM account_balances WHERE account = :payable",
        id=order.payment_order_id,
        amount=order.amount_minor,
        payable=f"seller_payable:{order.seller_id}",
    )
    report = await shop.audit()
    assert _breached(report) == {"ledger_mismatch": 1, "seller_books_mismatch": 1}
    assert report.examples["ledger_mismatch"] == [f"{order.payment_order_id}: charged, but no ledger sale entry"]


async def test_an_unbalanced_entry_is_counted_with_its_currency_total(shop: Shop) -> None:
    entry_id = uuid.uuid4()
    await _corrupt(
        shop.engines["ledger"],
        "INSERT INTO journal_entries (entry_id, kind, cause_event_id) VALUES (:id, 'manual_fee', :cause)",
        "INSERT INTO postings VALUES (:id, 0, 'psp_fees', 'USD', 5)",
        "INSERT INTO account_balances (account, currency, balance_minor) VALUES ('psp_fees', 'USD', 5)",
        id=entry_id,
        cause=uuid.uuid4(),
    )
    report = await shop.audit()
    assert _breached(report) == {"ledger_unbalanced": 2}
    assert report.examples["ledger_unbalanced"] == [
        f"entry {entry_id} (manual_fee): 1 posting(s), sums USD 5",
        "all postings in USD sum to 5",
    ]


async def test_balances_that_differ_from_their_entries_drift(shop: Shop) -> None:
    seller_id = shop.succeeded[0].order.seller_id
    await _corrupt(
        shop.engines["wallet"], "UPDATE balances SET available_minor = 1 WHERE seller_id = :seller", seller=seller_id
    )
    await _corrupt(
        shop.engines["ledger"],
        "UPDATE account_balances SET balance_minor = balance_minor + 1 WHERE account = 'psp_receivable'",
    )
    report = await shop.audit()
    assert _breached(report) == {"balance_drift": 2, "seller_books_mismatch": 1}
    assert sorted(example.split(":")[0] for example in report.examples["balance_drift"]) == [
        "ledger psp_receivable USD",
        f"wallet {seller_id} USD",
    ]


async def test_a_wallet_move_the_ledger_never_booked_is_a_seller_books_mismatch(shop: Shop) -> None:
    order = shop.succeeded[0].order
    payout_id = uuid.uuid4()
    await _corrupt(
        shop.engines["wallet"],
        "INSERT INTO balance_entries (entry_id, seller_id, currency, bucket, amount_minor, kind, payout_id, event_id) "
        "VALUES (gen_random_uuid(), :seller, 'USD', 'available', -100, 'payout_reserved', :payout, :payout), "
        "(gen_random_uuid(), :seller, 'USD', 'reserved', 100, 'payout_reserved', :payout, :payout)",
        "UPDATE balances SET available_minor = available_minor - 100, reserved_minor = reserved_minor + 100 "
        "WHERE seller_id = :seller",
        seller=order.seller_id,
        payout=payout_id,
    )
    report = await shop.audit()
    assert _breached(report) == {"seller_books_mismatch": 1}
    owed = order.amount_minor
    assert report.examples["seller_books_mismatch"] == [
        f"{order.seller_id} USD: wallet owed/in transit {owed - 100}/100, ledger {owed}/0"
    ]


async def test_work_in_flight_is_non_terminal_and_not_quiet(shop: Shop) -> None:
    payment = await _checkout(shop.engines, "pm_card_visa", sellers=1)
    await _accept(shop.engines, payment, "pm_card_visa")
    await _relay(shop.engines)
    assert not await wait_until_quiet(shop.server_url, timeout_s=0.2, poll_s=0.05)
    report = await shop.audit()
    order_id = payment.orders[0].payment_order_id
    assert _breached(report) == {"non_terminal": 3}
    assert sorted(report.examples["non_terminal"]) == [
        f"execution {order_id} is NOT_STARTED",
        f"order {order_id} is NOT_STARTED",
        f"payment {payment.payment_id} is not done",
    ]


async def test_unsent_events_are_an_outbox_backlog(shop: Shop) -> None:
    await _corrupt(
        shop.engines["wallet"], "UPDATE outbox SET published_at = NULL WHERE seq = (SELECT min(seq) FROM outbox)"
    )
    assert not await wait_until_quiet(shop.server_url, timeout_s=0.2, poll_s=0.05)
    report = await shop.audit()
    assert _breached(report) == {"outbox_backlog": 1}
    assert report.examples["outbox_backlog"][0].startswith("wallet: 1 unsent outbox rows")


def _options(tmp_path: Path, *arguments: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="settle")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path, default=None)
    add_parser(parser.add_subparsers(dest="command", required=True), [data_dir])
    return parser.parse_args(["audit", "--data-dir", str(tmp_path), *arguments])


async def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    # cmd_audit runs its own event loop, so it runs in a thread while this loop keeps serving the sandbox.
    options = _options(tmp_path, *arguments)
    assert options.handler is cmd_audit
    code = await asyncio.to_thread(cmd_audit, options)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_cli_prints_one_json_object_and_exits_by_the_outcome(
    shop: Shop, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETTLE_DATABASE_URL", shop.server_url)
    monkeypatch.setenv("SETTLE_PSP_API_BASE", shop.sandbox_url)
    code, out, _ = await _cli(tmp_path, capsys, "--json", "--wait", "5")
    report = json.loads(out)
    assert code == 0
    assert list(report) == ["ok", "breaches", "checked", "examples"]
    assert report["ok"] is True and set(report["breaches"]) == set(audit_checks.KINDS)
    assert report["checked"]["orders"] == 3

    order = shop.succeeded[0].order
    await _psp_charge(shop.sandbox_url, order.payment_order_id, order.amount_minor)
    code, out, _ = await _cli(tmp_path, capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["breaches"]["duplicate_charge"] == 1

    code, out, _ = await _cli(tmp_path, capsys)
    assert code == 1
    assert "  duplicate_charge   1" in out and out.rstrip().endswith("audit: BROKEN")


async def test_cli_without_a_running_settle_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SETTLE_DATABASE_URL", raising=False)
    monkeypatch.delenv("SETTLE_PSP_API_BASE", raising=False)
    code, out, err = await _cli(tmp_path, capsys, "--json")
    assert (code, out) == (2, "") and "no running Settle found" in err

    monkeypatch.setenv("SETTLE_DATABASE_URL", "postgresql://settle@127.0.0.1:9/postgres")
    monkeypatch.setenv("SETTLE_PSP_API_BASE", "http://127.0.0.1:9")
    code, out, err = await _cli(tmp_path, capsys, "--json")
    assert (code, out) == (2, "") and "cannot read the running Settle" in err
