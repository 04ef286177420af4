"""The `settle` command: run Settle, drive a demo, apply migrations, run one service."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import tempfile
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import grpc
from pydantic_settings import SettingsError

from services.cli import audit, dlq, keys, ledger_export, payouts, reconcile, refund, status
from services.cli.chaos import CHAOS_ENV, ChaosDriver, ChaosReport, sweep
from services.cli.demo import DemoReport, run_demo
from services.cli.endpoints import SERVICES, Endpoints, default_data_dir
from services.cli.nightly_demo import reconcile_today
from services.cli.stack import Stack, StackError, start_stack
from services.common.infra import InfrastructureError, choose_mode
from services.common.migrations import upgrade
from services.common.secret_files import env_or_file


def _banner(stack: Stack) -> str:
    e = stack.endpoints
    lines = [
        "",
        f"Settle is up ({e.infra_mode} infrastructure; data in {stack.data_dir})",
        "",
        *(f"  {name:<15} grpc {address}" for name, address in e.grpc.items()),
        f"  {'psp sandbox':<15} {e.psp_sandbox_url}",
        f"  {'postgresql':<15} {e.database_url}",
        f"  {'kafka':<15} {e.kafka_bootstrap_servers}",
        f"  {'grpc security':<15} {e.tls_mode.upper()}, CA {e.tls.ca_file if e.tls else '-'}",
        "",
        "API keys (metadata `x-api-key`):",
        f"  checkout (payments)      {e.api_keys.checkout}",
        f"  finance  (read-only)     {e.api_keys.finance}",
        f"  admin    (operators)     {e.api_keys.admin}",
        "",
        f"Logs: {stack.data_dir / 'logs'}   Try: settle demo --checkouts 200   Stop: Ctrl-C",
        "",
    ]
    return "\n".join(lines)


def cmd_up(options: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"starting Settle ({choose_mode()} infrastructure)...", flush=True)
    stack = start_stack(options.data_dir, mtls=options.mtls)
    print(_banner(stack), flush=True)
    code = 0
    try:
        while not stop.wait(1.0):
            crashed = stack.exited()
            if crashed:
                for name, exit_code in crashed.items():
                    print(
                        f"{name} exited with code {exit_code}; its log ends with:\n{stack.tail(name)}",
                        file=sys.stderr,
                    )
                code = 1
                break
    finally:
        print("stopping Settle...", flush=True)
        stack.stop()
        print("stopped.", flush=True)
    return code


async def _demo_against(endpoints: Endpoints, options: argparse.Namespace) -> DemoReport:
    report = await run_demo(endpoints, options.checkouts, timeout_s=options.timeout)
    await audit.wait_until_quiet(endpoints.database_url, timeout_s=options.timeout)
    report.audit = (await audit.run_audit(endpoints.database_url, endpoints.psp_sandbox_url)).to_json()
    report.reconciliation = await reconcile_today(endpoints, timeout_s=options.timeout)
    return report


def _running(data_dir: Path) -> Endpoints | None:
    endpoints = Endpoints.load(data_dir)
    if endpoints is None:
        return None
    try:
        with endpoints.health_channel("payment") as channel:
            grpc.channel_ready_future(channel).result(timeout=2)
    except grpc.FutureTimeoutError:
        return None
    return endpoints


def cmd_demo(options: argparse.Namespace) -> int:
    if options.chaos:
        return _chaos_demo(options)
    endpoints = _running(options.data_dir)
    stack: Stack | None = None
    if endpoints is None:
        if not options.json:
            print("no running Settle found; starting one for the demo...", file=sys.stderr, flush=True)
        stack = start_stack(options.data_dir)
        endpoints = stack.endpoints
    try:
        report = asyncio.run(_demo_against(endpoints, options))
    finally:
        if stack:
            stack.stop()
    print(json.dumps(asdict(report), indent=None if options.json else 2) if options.json else _render(report))
    return 0 if report.ok else 1


def _chaos_demo(options: argparse.Namespace) -> int:
    """Always on a Settle of its own: it kills and restarts processes, which it can only do to its children."""
    data_dir = Path(tempfile.mkdtemp(prefix="settle-chaos-"))
    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "big")
    if not options.json:
        print(f"chaos demo (seed {seed}) on a fresh Settle in {data_dir}...", file=sys.stderr, flush=True)
    stack = start_stack(data_dir, fixed_ports=False, extra_env=CHAOS_ENV)
    try:
        driver = ChaosDriver(stack, seed, settle_timeout_s=options.timeout)
        report = asyncio.run(driver.run(sweep(options.kills_per_point), options.random_kills))
    finally:
        stack.stop()
    print(json.dumps(report.to_json()) if options.json else _render_chaos(report))
    return 0 if report.ok else 1


def _render_chaos(report: ChaosReport) -> str:
    figures = report.to_json()
    lines = [
        f"seed {report.seed}: {report.kills} kills in {report.duration_s} s, {report.checkouts} checkouts, "
        f"{report.psp_faults} PSP faults injected",
        *(f"  {point:<32} {count} kills" for point, count in sorted(report.kills_by_point.items())),
        *(
            f"  random kill of {service:<16} {count}"
            for service, count in sorted(report.random_kills_by_service.items())
        ),
        *(f"  not reached in time (tried again): {unreached}" for unreached in report.unreached),
        *(f"  UNEXPECTED EXIT: {exit_}" for exit_ in report.unexpected_exits),
        *(f"  TOO FEW KILLS: {short}" for short in report.short_campaigns),
        f"recovery after executor kills (kill → terminal): {figures['recovery']}",
        f"  when no later kill interrupted it: {figures['recovery_without_another_kill']}",
        f"settled: {'yes' if report.quiet else 'NO'}",
        audit.render(report.audit) if report.audit else "audit: not run",
    ]
    return "\n".join(lines)


def _reconciliation_line(summary: dict[str, object]) -> str:
    return (
        f"reconciliation of today's settlement file: {summary.get('lines_imported', 0)} lines, "
        f"{summary.get('matched', 0)} matched, {summary.get('mismatch_count', 'not run')} mismatches "
        f"{summary.get('mismatches', {})}"
    )


def _render(report: DemoReport) -> str:
    lines = [
        f"payments: {report.payments_total}   orders: {report.orders_total}   in {report.duration_s} s",
        f"  succeeded {report.orders_succeeded}   failed {report.orders_failed}   "
        f"not terminal {report.orders_not_terminal}   PSP charges {report.psp_charges}",
        f"  declines by code: {report.failures_by_code or '-'}",
        "seller balances (minor units):",
        *(
            f"  {b['seller_id']:<28} {b['currency']} pending {b['pending_minor']:>12} "
            f"available {b['available_minor']:>8}"
            for b in report.seller_balances[:20]
        ),
        *([f"  ... and {len(report.seller_balances) - 20} more"] if len(report.seller_balances) > 20 else []),
        f"trial balance per currency: {report.trial_balance} -> {'zero' if report.trial_balance_zero else 'NOT ZERO'}",
        f"invariants: {'OK' if report.invariants_ok else 'BROKEN'}",
        *(f"  - {v}" for v in report.violations[:50]),
        f"audit: {'OK' if report.audit.get('ok') else 'BROKEN'} {report.audit.get('breaches', {})}",
        _reconciliation_line(report.reconciliation),
    ]
    return "\n".join(lines)


def cmd_migrate(options: argparse.Namespace) -> int:
    unknown = set(options.services) - set(SERVICES)
    if unknown:
        print(
            f"settle migrate: unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}",
            file=sys.stderr,
        )
        return 2
    try:
        url = env_or_file("SETTLE_DATABASE_URL")
    except SettingsError as error:
        print(f"settle migrate: {error}", file=sys.stderr)
        return 2
    if not url:
        print(
            "settle migrate needs SETTLE_DATABASE_URL or SETTLE_DATABASE_URL_FILE "
            "(settle up migrates embedded PostgreSQL itself)",
            file=sys.stderr,
        )
        return 2
    for service in options.services or SERVICES:
        upgrade(service, url)
        print(f"{service}: migrated")
    return 0


def cmd_run(options: argparse.Namespace) -> int:
    module = importlib.import_module(f"services.{options.service}.entrypoints.main")
    module.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="settle", description="Settle: payments, wallets and ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path, default=None, help="default: $SETTLE_DATA_DIR or ./.settle")

    up = commands.add_parser("up", parents=[data_dir], help="start infrastructure, PSP sandbox and all services")
    up.add_argument("--mtls", action="store_true", help="services also require client certificates (mTLS)")
    up.set_defaults(handler=cmd_up)
    demo = commands.add_parser("demo", parents=[data_dir], help="drive checkouts and check the invariants")
    demo.add_argument("--checkouts", type=int, default=50)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for terminal states")
    demo.add_argument("--fresh", action="store_true", help="self-start on a temporary data directory")
    demo.add_argument(
        "--chaos", action="store_true", help="kill and restart services at crash points and at random, then audit"
    )
    demo.add_argument("--seed", type=int, default=None, help="--chaos: replay this kill schedule")
    demo.add_argument("--kills-per-point", type=int, default=3, help="--chaos: kills at each crash point")
    demo.add_argument("--random-kills", type=int, default=20, help="--chaos: kills at random moments")
    demo.set_defaults(handler=cmd_demo)
    audit.add_parser(commands, [data_dir])
    dlq.add_parser(commands, [data_dir])
    status.add_parser(commands, [data_dir])
    refund.add_parser(commands, [data_dir])
    payouts.add_parser(commands, [data_dir])
    reconcile.add_parser(commands, [data_dir])
    ledger_export.add_parser(commands, [data_dir])
    keys.add_parser(commands, [data_dir])
    migrate = commands.add_parser("migrate", help="apply migrations to SETTLE_DATABASE_URL")
    migrate.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)} (default: all)")
    migrate.set_defaults(handler=cmd_migrate)
    run = commands.add_parser("run", help="run one service in the foreground (configured by SETTLE_* variables)")
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> None:
    # pgserver asks platformdirs for a runtime directory it does not need; the warning only confuses.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    options = build_parser().parse_args(argv)
    if getattr(options, "data_dir", "unset") is None:
        options.data_dir = default_data_dir()
    if getattr(options, "fresh", False):
        options.data_dir = Path(tempfile.mkdtemp(prefix="settle-demo-"))
    try:
        sys.exit(options.handler(options))
    except (StackError, InfrastructureError) as error:
        print(f"settle: {error}", file=sys.stderr)
        sys.exit(1)
