"""`settle status` judges what it found: which conditions need an operator, and what the screen says."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from services.cli.api_key_store import ApiKeys
from services.cli.endpoints import SERVICES, Endpoints
from services.cli.kafka_topics import Bounds
from services.cli.status import render
from services.cli.status_probes import KafkaView, ServiceState, pid_alive
from services.cli.status_queries import Backlog, Executions, LastRun, Reconciliation
from services.cli.status_report import DatabaseView, StatusReport, Thresholds, needs_attention

IDLE = {"NOT_STARTED": 0, "EXECUTING": 0, "UNKNOWN": 0}
ENDPOINTS = Endpoints(
    grpc={name: f"127.0.0.1:{50051 + index}" for index, name in enumerate(SERVICES)},
    psp_sandbox_url="http://127.0.0.1:12111",
    api_keys=ApiKeys.of(checkout="c" * 20, finance="f" * 20, admin="a" * 20),
    database_url="postgresql://postgres@/postgres",
    kafka_bootstrap_servers="127.0.0.1:9092",
    infra_mode="embedded",
)


def healthy() -> StatusReport:
    views = {name: DatabaseView(Backlog(0, None)) for name in SERVICES}
    views["executor"] = DatabaseView(
        Backlog(2, 0.3),
        executions={kind: Executions(dict(IDLE), 0, 0, None) for kind in ("charge", "refund", "payout")},
    )
    views["reconciliation"] = DatabaseView(
        Backlog(0, None),
        reconciliation=Reconciliation(LastRun("date:2026-11-20", datetime(2026, 11, 21, 2, 5, tzinfo=UTC), 1), {}),
    )
    return StatusReport(
        checked_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        thresholds=Thresholds(),
        services=[
            ServiceState(name, ENDPOINTS.grpc[name], "SERVING", 100 + i, True) for i, name in enumerate(SERVICES)
        ],
        databases=views,
        kafka=KafkaView({"settle-payment-outcomes": 3, "settle-executor-requests": 0}, {}),
        unreadable={},
    )


def test_a_healthy_settle_needs_nothing_and_says_ok() -> None:
    report = healthy()
    assert needs_attention(report) == []
    screen = render(report, ENDPOINTS, Path("/srv/settle"))
    assert screen.splitlines()[-1] == "status: OK"
    assert "executor        up     SERVING  127.0.0.1:50052  101  0    2 (oldest 0.3 s)" in screen
    assert "payment         up     SERVING  127.0.0.1:50051  100  3    0" in screen
    assert "reconciliation: last run date:2026-11-20 at 2026-11-21 02:05 UTC with 1 mismatches" in screen


def test_each_problem_is_named_with_its_runbook() -> None:
    report = healthy()
    report.services[1] = ServiceState("executor", "127.0.0.1:50052", "UNAVAILABLE", 101, False)
    report.databases["wallet"] = DatabaseView(Backlog(40, 75.0))
    report.databases["executor"].executions["charge"] = Executions({**IDLE, "UNKNOWN": 2}, 2, 1, 300.0)
    report.kafka = KafkaView({}, {"payment.order.succeeded.dlq": 3, "wallet.balance.updated.dlq": 0})
    report.unreadable["ledger database"] = "OperationalError: connection refused"
    report.attention = needs_attention(report)
    assert report.attention == [
        "executor is down: health UNAVAILABLE, process 101 is gone",
        "cannot read ledger database: OperationalError: connection refused",
        "wallet outbox: 40 events unpublished, the oldest for 75.0 s (over 60 s; docs/runbooks/outbox-backlog.md)",
        "charge: 2 UNKNOWN and 1 stale EXECUTING executions (docs/runbooks/stuck-executions.md)",
        "payment.order.succeeded.dlq: 3 unhandled dead letters (`settle dlq list`; docs/runbooks/dlq-replay.md)",
    ]
    assert not report.ok
    screen = render(report, ENDPOINTS, Path("/srv/settle"))
    assert "executor        DOWN   UNAVAILABLE" in screen and "101 (gone)" in screen
    assert screen.splitlines()[-1] == "status: ATTENTION"


def test_dead_letters_replayed_or_acknowledged_are_shown_but_not_judged() -> None:
    report = healthy()
    report.kafka = KafkaView({}, {"payment.order.succeeded.dlq": 0, "payout.paid.dlq": 0}, {"payout.paid.dlq": 4})
    assert needs_attention(report) == []
    assert "dead letters: none; handled: payout.paid.dlq 4" in render(report, ENDPOINTS, Path("/srv/settle"))

    report.kafka = KafkaView({}, {"payout.paid.dlq": 1}, {"payout.paid.dlq": 4})
    report.attention = needs_attention(report)
    assert report.attention == [
        "payout.paid.dlq: 1 unhandled dead letters (`settle dlq list`; docs/runbooks/dlq-replay.md)"
    ]
    assert "dead letters: payout.paid.dlq 1; handled: payout.paid.dlq 4" in render(report, ENDPOINTS, Path("/"))
    document = report.to_json()
    assert (document["dead_letters"], document["handled_dead_letters"]) == (
        {"payout.paid.dlq": 1},
        {"payout.paid.dlq": 4},
    )


def test_a_young_backlog_and_consumer_lag_are_shown_but_not_judged() -> None:
    report = healthy()
    report.databases["payment"] = DatabaseView(Backlog(500, 59.0))
    assert needs_attention(report) == []


def test_json_has_every_section() -> None:
    report = healthy()
    document = json.loads(json.dumps(report.to_json()))
    assert document["ok"] is True and document["attention"] == []
    assert {name for name, service in document["services"].items() if service["up"]} == set(SERVICES)
    assert document["executions"]["charge"] == {
        "by_status": IDLE,
        "unknown": 0,
        "stale_executing": 0,
        "oldest_stuck_age_s": None,
        "stuck": 0,
    }
    assert document["reconciliation"]["last_run"]["finished_at"] == "2026-11-21T02:05:00+00:00"
    assert document["consumer_lag"]["settle-payment-outcomes"] == 3


def test_pid_alive_tells_a_running_process_from_none() -> None:
    assert pid_alive(os.getpid()) is True
    assert pid_alive(1 << 23) is False  # above Linux's largest pid


def test_a_group_resumes_at_its_offset_or_else_at_the_earliest_message_kept() -> None:
    bounds = Bounds(start=10, end=25)
    assert [bounds.unread(committed) for committed in (None, 4, 10, 18, 25)] == [15, 15, 15, 7, 0]
    # Past the end: an offset from an earlier topic of that name, which counts for nothing.
    assert bounds.unread(40) == 15 and bounds.size == 15
