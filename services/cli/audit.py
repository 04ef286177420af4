"""`settle audit`: proves that no money was lost or doubled, across every service and the PSP.

The audit reads each service's database directly, read-only, in one REPEATABLE READ READ ONLY
transaction per database, and the PSP sandbox's list of successful charges. An auditor must see the
raw records (orders, executions, balance entries, journal entries and postings) rather than each
service's API view of them, so that a service whose API is wrong cannot hide it; `settle demo`'s
checks go through the public APIs and only cover its own orders, this one covers everything.

Breach kinds (checks in audit_checks.py):
- duplicate_charge:  an order with more than one successful PSP charge;
- lost_charge:       an order SUCCEEDED in the payment service or the executor without a PSP charge;
- orphan_charge:     a charge for an order not charged in the payment service, or not SUCCEEDED in the
                     executor, or of another amount or currency than the order's;
- status_mismatch:   an order whose final status differs between the payment service and the executor;
- wallet_mismatch:   a charged order without exactly one sale credit of its amount to its seller, or a
                     sale credit without a charge;
- ledger_mismatch:   the same for the ledger's `payment_order_succeeded` entries;
- ledger_unbalanced: an entry with fewer than two postings or not summing to zero per currency, or
                     all postings not summing to zero in a currency;
- balance_drift:     a wallet balance or ledger account balance that differs from its entries' sum;
- non_terminal:      an order, execution or payment still in flight;
- outbox_backlog:    events not yet handed to Kafka.

The databases are read at (nearly) the same moment but not in one snapshot, so on a busy system an
order moving between services can show as a breach: the audit is exact on a quiet system, which is
what `--wait` (wait_until_quiet) waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli import audit_checks
from services.cli.audit_checks import AUDITED_SERVICES, Findings
from services.cli.endpoints import Endpoints, default_data_dir
from services.common.db import create_engine


@dataclass
class AuditReport:
    ok: bool
    breaches: dict[str, int]
    examples: dict[str, list[str]]
    checked: dict[str, int]
    duration_s: float

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "breaches": self.breaches, "checked": self.checked, "examples": self.examples}


async def run_audit(database_url: str, sandbox_url: str) -> AuditReport:
    """Audits the Settle whose databases live on the server `database_url` points at."""
    started = time.monotonic()
    findings = Findings()
    records = await audit_checks.collect(audit_checks.service_urls(database_url), sandbox_url, findings)
    audit_checks.cross_check(records, findings)
    return AuditReport(
        ok=not any(findings.breaches.values()),
        breaches=findings.breaches,
        examples=findings.examples,
        checked=dict(sorted(findings.checked.items())),
        duration_s=round(time.monotonic() - started, 3),
    )


async def wait_until_quiet(database_url: str, *, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Waits until no order, execution or payment is in flight and every outbox is sent (True), or
    until `timeout_s` has passed (False)."""
    urls = audit_checks.service_urls(database_url)
    engines = {service: create_engine(url, pool_size=1) for service, url in urls.items()}
    deadline = time.monotonic() + timeout_s
    try:
        while await _busy(engines):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _busy(engines: dict[str, AsyncEngine]) -> bool:
    for service, engine in engines.items():
        async with engine.connect() as connection:
            if await audit_checks.is_busy(connection, service):
                return True
    return False


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    audit = commands.add_parser(
        "audit", parents=parents, help="check that no money was lost or doubled (reads every database)"
    )
    audit.add_argument("--json", action="store_true", help="print one JSON object")
    audit.add_argument("--wait", type=float, default=0.0, metavar="S", help="seconds to wait for quiet first")
    audit.set_defaults(handler=cmd_audit)


def _locate(data_dir: Path | None) -> tuple[str, str] | None:
    """The database server and PSP sandbox URLs of the running Settle: `settle up`'s endpoints, else
    the variables the services themselves are configured with."""
    endpoints = Endpoints.load(data_dir or default_data_dir())
    if endpoints is not None:
        return endpoints.database_url, endpoints.psp_sandbox_url
    database_url, sandbox_url = os.environ.get("SETTLE_DATABASE_URL"), os.environ.get("SETTLE_PSP_API_BASE")
    if database_url and sandbox_url:
        return database_url, sandbox_url
    return None


async def _audit(database_url: str, sandbox_url: str, wait_s: float) -> AuditReport:
    if wait_s > 0 and not await wait_until_quiet(database_url, timeout_s=wait_s):
        print(f"settle audit: still busy after {wait_s:g} s; auditing anyway", file=sys.stderr)
    return await run_audit(database_url, sandbox_url)


def cmd_audit(options: argparse.Namespace) -> int:
    located = _locate(options.data_dir)
    if located is None:
        print(
            "settle audit: no running Settle found (no endpoints.json in the data directory, and "
            "SETTLE_DATABASE_URL / SETTLE_PSP_API_BASE are not both set); start one with `settle up`",
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(_audit(*located, options.wait))
    except (OSError, SQLAlchemyError, aiohttp.ClientError) as error:
        print(f"settle audit: cannot read the running Settle: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json()) if options.json else render(report))
    return 0 if report.ok else 1


def render(report: AuditReport) -> str:
    lines = [f"audit of {', '.join(AUDITED_SERVICES)} and the PSP in {report.duration_s} s", "breaches:"]
    for kind, count in report.breaches.items():
        lines.append(f"  {kind:<18} {count}")
        lines += [f"      {example}" for example in report.examples[kind]]
    lines.append("checked: " + "   ".join(f"{name} {count}" for name, count in report.checked.items()))
    lines.append(f"audit: {'OK' if report.ok else 'BROKEN'}")
    return "\n".join(lines)
