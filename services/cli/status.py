"""`settle status`: one screen on a running Settle, and whether anything needs an operator.

It asks each service's gRPC health check (and whether the process `settle up` recorded is alive),
Kafka for consumer lag and for dead letters, unhandled and handled (offsets only), and each service
database, read-only, for the outbox backlog, the executor's executions by state and reconciliation's
latest runs (status_report.py says what needs attention). Exit code 0 when healthy, 1 when something
needs attention (each reason is printed, naming the runbook), 2 when there is no running Settle to look at.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC
from pathlib import Path

from services.cli.endpoints import Endpoints, default_data_dir
from services.cli.status_queries import Executions
from services.cli.status_report import StatusReport, Thresholds, collect


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    status = commands.add_parser(
        "status", parents=parents, help="one screen on a running Settle; exit 1 when something needs attention"
    )
    defaults = Thresholds()
    status.add_argument("--json", action="store_true", help="print one JSON object")
    for flag, default, meaning in (
        ("--backlog-after", defaults.backlog_after_s, "an outbox row unpublished for longer than S s needs attention"),
        ("--stuck-after", defaults.stuck_after_s, "an EXECUTING claim older than S s is stuck"),
        ("--timeout", defaults.health_timeout_s, "health check timeout per service"),
    ):
        status.add_argument(flag, type=float, default=default, metavar="S", help=f"{meaning} (default {default:g})")
    status.set_defaults(handler=cmd_status)


def cmd_status(options: argparse.Namespace) -> int:
    data_dir: Path = options.data_dir or default_data_dir()
    endpoints = Endpoints.load(data_dir)
    if endpoints is None:
        print(
            f"settle status: no running Settle found (no {data_dir / 'endpoints.json'}); start one with `settle up`",
            file=sys.stderr,
        )
        return 2
    thresholds = Thresholds(options.backlog_after, options.stuck_after, options.timeout)
    report = asyncio.run(collect(endpoints, thresholds))
    print(json.dumps(report.to_json()) if options.json else render(report, endpoints, data_dir))
    return 0 if report.ok else 1


def render(report: StatusReport, endpoints: Endpoints, data_dir: Path) -> str:
    checked_at = report.checked_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"Settle in {data_dir} ({endpoints.infra_mode} infrastructure) at {checked_at}",
        *_service_lines(report),
        *_execution_lines(report),
        _dead_letters_line(report),
        _reconciliation_line(report),
    ]
    if report.attention:
        lines += ["needs attention:", *(f"  - {item}" for item in report.attention)]
    lines.append(f"status: {'OK' if report.ok else 'ATTENTION'}")
    return "\n".join(lines)


def _service_lines(report: StatusReport) -> list[str]:
    """A row per service: its health and process, its consumer group's lag and its outbox backlog."""
    lag: dict[str, int] = {}
    for group, count in (report.kafka.consumer_lag if report.kafka else {}).items():
        service = group.removeprefix("settle-").split("-", 1)[0]  # groups are settle-<service>-<name>
        lag[service] = lag.get(service, 0) + count
    rows = [("SERVICE", "STATE", "HEALTH", "ADDRESS", "PID", "LAG", "OUTBOX")]
    for state in report.services:
        process = "-" if state.pid is None else f"{state.pid}{'' if state.pid_alive else ' (gone)'}"
        view = report.databases.get(state.name)
        outbox = "?" if view is None else str(view.backlog.unpublished)
        if view is not None and view.backlog.oldest_age_s is not None:
            outbox += f" (oldest {view.backlog.oldest_age_s} s)"
        state_name = "up" if state.up else "DOWN"
        rows.append(
            (state.name, state_name, state.health, state.address, process, str(lag.get(state.name, "?")), outbox)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]


def _dead_letters_line(report: StatusReport) -> str:
    """Unhandled dead letters per topic, then (information only) those replayed or acknowledged."""
    if report.kafka is None:
        return "dead letters: unknown"
    unhandled, handled = (
        "   ".join(f"{topic} {count}" for topic, count in counts.items() if count)
        for counts in (report.kafka.dead_letters, report.kafka.handled_dead_letters)
    )
    return f"dead letters: {unhandled or 'none'}" + (f"; handled: {handled}" if handled else "")


def _states(counts: Executions) -> str:
    return "  ".join(f"{state} {count}" for state, count in counts.by_status.items())


def _execution_lines(report: StatusReport) -> list[str]:
    executor = report.databases.get("executor")
    if executor is None:
        return ["executions: unknown"]
    return [
        "executions in flight:",
        *(
            f"  {kind:<8} {_states(counts)}   stuck {counts.stuck}"
            + (f" (oldest {counts.oldest_stuck_age_s} s)" if counts.stuck else "")
            for kind, counts in executor.executions.items()
        ),
    ]


def _reconciliation_line(report: StatusReport) -> str:
    view = report.databases.get("reconciliation")
    if view is None or view.reconciliation is None:
        return "reconciliation: unknown"
    last, open_mismatches = view.reconciliation.last_run, view.reconciliation.open_mismatches
    ran = "no run yet"
    if last and last.finished_at:
        finished = last.finished_at.astimezone(UTC)
        scope = last.scope if len(last.scope) <= 24 else last.scope[:20] + "..."  # file:<sha256>
        ran = f"last run {scope} at {finished:%Y-%m-%d %H:%M} UTC with {last.mismatch_count} mismatches"
    opened = ", ".join(f"{kind} {count}" for kind, count in open_mismatches.items()) or "none"
    return f"reconciliation: {ran}; open mismatches: {opened}"
