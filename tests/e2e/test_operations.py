"""Operations: restarting services one at a time under load loses and doubles nothing, and
`settle status` tells a healthy Settle from one with a service down."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from settle.executor.v1 import executor_pb2
from settle.payment.v1 import payment_pb2

from services.cli.audit import wait_until_quiet
from services.cli.demo import bounded
from services.cli.endpoints import SERVICES
from services.cli.stack import Stack
from services.common import clients
from tests.e2e.checkout_load import CheckoutLoad
from tests.e2e.cli import settle

SUCCEEDED = payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED
FAILED = payment_pb2.PAYMENT_ORDER_STATUS_FAILED
EXECUTION_OUTCOME = {
    SUCCEEDED: executor_pb2.EXECUTION_STATUS_SUCCEEDED,
    FAILED: executor_pb2.EXECUTION_STATUS_FAILED,
}
# The order of the issue: the one that talks to the PSP, a money consumer, the API checkouts call.
RESTART_ORDER = ("executor", "wallet", "payment")
DEFAULT_GRACE_S = 10.0  # SETTLE_SHUTDOWN_GRACE_S's default (services/common/config.py)


def status(stack: Stack) -> tuple[int, dict[str, Any]]:
    result = settle(stack, "status", "--json", timeout_s=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def dead_letter_ids(stack: Stack) -> set[str]:
    result = settle(stack, "dlq", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {dead_letter["id"] for dead_letter in json.loads(result.stdout)["dead_letters"]}


@dataclass
class Shutdown:
    """One SIGTERM: how the process ended and what it left behind, seen before its restart."""

    service: str
    exit_code: int
    duration_s: float
    grace_s: float
    log_lines: list[str]  # what the process wrote from the signal to its exit
    status: dict[str, Any]  # `settle status --json` while it was down

    def problems(self) -> list[str]:
        found = []
        if self.exit_code != 0:
            found.append(f"exit code {self.exit_code}")
        if self.duration_s > self.grace_s:
            found.append(f"took {self.duration_s:.1f} s, over the {self.grace_s:g} s grace period")
        found += [f"logged {line}" for line in self.log_lines if _is_error(line)]
        if not any("every RPC and loop finished, the outbox drained" in line for line in self.log_lines):
            found.append("did not log a complete drain")
        backlog = self.status["outbox"][self.service]["unpublished"]
        if backlog:
            found.append(f"left {backlog} outbox rows unpublished")
        if self.service == "executor":
            # The executor is the only one claiming; stopped, every claim it held must have been recorded.
            claimed = {kind: c["by_status"].get("EXECUTING", 0) for kind, c in self.status["executions"].items()}
            if any(claimed.values()):
                found.append(f"left executions claimed: {claimed}")
        if self.status["services"][self.service]["up"]:
            found.append("`settle status` did not see it down")
        return found


def _is_error(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return "Traceback" in line or "Task was destroyed" in line
    return record.get("level") in ("ERROR", "CRITICAL")


async def restart_gracefully(stack: Stack, service: str) -> Shutdown:
    process, log = stack.processes[service], stack.log_path(service)
    grace_s = float(stack.environments[service].get("SETTLE_SHUTDOWN_GRACE_S", DEFAULT_GRACE_S))
    offset = log.stat().st_size
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(process.wait, 60)
    duration_s = time.monotonic() - started
    lines = log.read_bytes()[offset:].decode(errors="replace").splitlines()
    code, seen = await asyncio.to_thread(status, stack)
    assert code == 1 and any(item.startswith(f"{service} is down") for item in seen["attention"]), seen
    stack.respawn(service)
    await asyncio.to_thread(stack.wait_until_serving, service)
    return Shutdown(service, exit_code, duration_s, grace_s, lines, seen)


async def latest_payments(stack: Stack, payment_ids: Iterable[str]) -> list[payment_pb2.Payment]:
    async with stack.endpoints.channel("payment", "checkout") as channel:
        stub = clients.payment_stub(channel)
        responses = await bounded(
            16, sorted(payment_ids), lambda pid: stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=pid))
        )
    return [response.payment for response in responses]


async def executions(stack: Stack, order_ids: list[str]) -> dict[str, executor_pb2.Execution]:
    async with stack.endpoints.channel("executor", "admin") as channel:
        stub = clients.executor_stub(channel)
        responses = await bounded(
            16, order_ids, lambda oid: stub.GetExecution(executor_pb2.GetExecutionRequest(payment_order_id=oid))
        )
    return {response.execution.payment_order_id: response.execution for response in responses}


async def sandbox_charges(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """The PSP's own record: every successful charge, by the payment order id in its metadata."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.endpoints.psp_sandbox_url}/_sandbox/charges") as response,
    ):
        response.raise_for_status()
        body = await response.json()
    charges: dict[str, list[dict[str, Any]]] = {}
    for charge in body["data"]:
        charges.setdefault(str(charge["payment_order_id"]), []).append(charge)
    return charges


def charge_problems(
    orders: list[payment_pb2.PaymentOrder],
    executed: dict[str, executor_pb2.Execution],
    charges: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """A charged order has exactly one PSP charge, the one the executor recorded; a failed one none."""
    found = []
    for order in orders:
        oid, execution, mine = (
            order.payment_order_id,
            executed[order.payment_order_id],
            charges.get(order.payment_order_id, []),
        )
        if execution.status != EXECUTION_OUTCOME[order.status]:
            found.append(f"{oid}: payment {order.status}, executor {execution.status}")
        if order.status == FAILED and mine:
            found.append(f"{oid}: failed, yet charged {len(mine)} times")
        if order.status == SUCCEEDED and len(mine) != 1:
            found.append(f"{oid}: succeeded with {len(mine)} PSP charges")
        for charge in mine:
            if (charge["payment_intent_id"], charge["idempotency_key"]) != (execution.psp_reference, oid):
                found.append(f"{oid}: PSP charge {charge['payment_intent_id']} is not the executor's")
            if (charge["amount"], charge["currency"].upper()) != (order.amount.amount_minor, order.amount.currency):
                found.append(f"{oid}: charged {charge['amount']} {charge['currency']}")
    return found


async def test_graceful_restarts_under_load_lose_and_double_nothing(stack: Stack) -> None:
    dead_letters_before = await asyncio.to_thread(dead_letter_ids, stack)
    load = CheckoutLoad(stack.endpoints)
    running = asyncio.create_task(load.run())
    shutdowns = []
    try:
        await load.wait_for_more(10)
        for service in RESTART_ORDER:
            shutdowns.append(await restart_gracefully(stack, service))
            await load.wait_for_more(10)  # checkouts flow again before the next restart
    finally:
        load.stop()
        await asyncio.wait_for(running, timeout=120)

    for shutdown in shutdowns:
        assert not shutdown.problems(), (shutdown.service, shutdown.problems(), shutdown.log_lines[-20:])
    assert await wait_until_quiet(stack.endpoints.database_url, timeout_s=240), "in flight after 240 s"
    payments = await latest_payments(stack, load.accepted.values())
    orders = [order for payment in payments for order in payment.orders]
    assert len(payments) == len(load.accepted) > 30
    not_final = [o.payment_order_id for o in orders if o.status not in EXECUTION_OUTCOME]
    assert not not_final and all(p.done for p in payments), not_final[:10]
    executed = await executions(stack, [order.payment_order_id for order in orders])
    problems = charge_problems(orders, executed, await sandbox_charges(stack))
    assert not problems, problems[:10]
    # Wallet and ledger: one credit and one entry per charge, balances equal to their entries.
    audit = settle(stack, "audit", "--json")
    report = json.loads(audit.stdout)
    assert audit.returncode == 0 and report["ok"], report
    assert set(report["breaches"].values()) == {0}, report["breaches"]
    # The stack is shared with other tests: nothing may have been dead-lettered during this one.
    assert await asyncio.to_thread(dead_letter_ids, stack) == dead_letters_before
    print(  # shown with -s: the figures behind the verdict
        f"{len(payments)} checkouts, {len(orders)} orders, retries {load.retries_by_code}; shutdowns: "
        + ", ".join(f"{s.service} {s.duration_s:.1f} s (grace {s.grace_s:g} s)" for s in shutdowns)
    )


def _eventually_ok(stack: Stack, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        code, report = status(stack)
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, report["attention"]
            return report
        time.sleep(1)


def test_status_is_ok_on_a_healthy_settle_and_names_a_killed_service(stack: Stack) -> None:
    report = _eventually_ok(stack)
    assert report["ok"] and report["attention"] == []
    assert {name for name, service in report["services"].items() if service["up"]} == set(SERVICES)
    assert set(report["consumer_lag"]) == {
        "settle-payment-outcomes",
        "settle-executor-requests",
        "settle-wallet-outcomes",
        "settle-ledger-outcomes",
        "settle-reconciliation-booked",
    }
    assert set(report["executions"]) == {"charge", "refund", "payout"}

    stack.kill("ledger")
    try:
        code, report = status(stack)
        assert code == 1 and not report["ok"]
        assert not report["services"]["ledger"]["up"]
        assert [line for line in report["attention"] if line.startswith("ledger is down")], report["attention"]
        assert all(report["services"][name]["up"] for name in SERVICES if name != "ledger")
        screen = settle(stack, "status")
        assert screen.returncode == 1 and "ledger is down" in screen.stdout and "status: ATTENTION" in screen.stdout
        print(screen.stdout)  # shown with -s
    finally:
        stack.respawn("ledger")
        stack.wait_until_serving("ledger")
    assert _eventually_ok(stack)["services"]["ledger"]["up"]
