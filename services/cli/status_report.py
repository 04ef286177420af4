"""What `settle status` (status.py) found, collected from every source at once, and what needs attention.

Needs attention: a service not SERVING; a source that cannot be read; an outbox row unpublished for
longer than the backlog threshold; an UNKNOWN execution or an EXECUTING one claimed longer ago than the
stuck threshold; any dead letter nobody has replayed or acknowledged yet (`settle dlq`). Consumer lag,
handled dead letters and open reconciliation mismatches are shown, not judged: lag comes and goes with
load, handled dead letters stay until retention removes them, and mismatches are finance's queue
(docs/runbooks/reconciliation-breaks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka.errors import KafkaError
from sqlalchemy import URL, text
from sqlalchemy.exc import SQLAlchemyError

from services.cli import status_queries as queries
from services.cli.audit_checks import read_only, service_urls
from services.cli.dlq_letters import DLQ_TOPICS
from services.cli.endpoints import SERVICES, Endpoints
from services.cli.status_probes import KafkaView, ServiceState, kafka_view, service_state

T = TypeVar("T")
# A status must answer even when a part hangs: every source gets this long, then counts as unreadable.
_READ_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    backlog_after_s: float = 60.0  # an outbox row older than this means the relay is not keeping up
    stuck_after_s: float = 60.0  # an EXECUTING claim older than this (the executor's stale_claim_s default)
    health_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class DatabaseView:
    backlog: queries.Backlog
    executions: dict[str, queries.Executions] = field(default_factory=dict)  # executor only
    reconciliation: queries.Reconciliation | None = None  # reconciliation only


@dataclass
class StatusReport:
    checked_at: datetime
    thresholds: Thresholds
    services: list[ServiceState]
    databases: dict[str, DatabaseView]
    kafka: KafkaView | None
    unreadable: dict[str, str]  # source → why it could not be read
    attention: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.attention

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "attention": self.attention,
            "checked_at": self.checked_at.isoformat(),
            "services": {s.name: {"up": s.up, **asdict(s)} for s in self.services},
            "consumer_lag": self.kafka.consumer_lag if self.kafka else None,
            "outbox": {name: asdict(view.backlog) for name, view in self.databases.items()},
            "executions": {
                kind: {**asdict(counts), "stuck": counts.stuck}
                for view in self.databases.values()
                for kind, counts in view.executions.items()
            },
            "dead_letters": self.kafka.dead_letters if self.kafka else None,
            "handled_dead_letters": self.kafka.handled_dead_letters if self.kafka else None,
            "reconciliation": _reconciliation_json(self.databases.get("reconciliation")),
            "unreadable": self.unreadable,
            "thresholds": asdict(self.thresholds),
        }


def _reconciliation_json(view: DatabaseView | None) -> dict[str, object] | None:
    if view is None or view.reconciliation is None:
        return None
    last = view.reconciliation.last_run
    last_run = None
    if last is not None:
        finished_at = last.finished_at.isoformat() if last.finished_at else None
        last_run = {"scope": last.scope, "finished_at": finished_at, "mismatch_count": last.mismatch_count}
    return {"last_run": last_run, "open_mismatches": view.reconciliation.open_mismatches}


async def _read_database(service: str, url: URL, thresholds: Thresholds) -> DatabaseView:
    async with read_only(url) as connection:
        # read_only allows an audit's long scans; a status must be quick or say it could not look.
        await connection.execute(text("SET LOCAL statement_timeout = '10s'"))
        backlog = await queries.outbox_backlog(connection)
        if service == "executor":
            executions = {
                kind: await queries.executions(connection, table, thresholds.stuck_after_s)
                for kind, table in queries.EXECUTION_TABLES.items()
            }
            return DatabaseView(backlog, executions=executions)
        if service == "reconciliation":
            return DatabaseView(backlog, reconciliation=await queries.reconciliation(connection))
        return DatabaseView(backlog)


async def _guarded(source: str, read: Awaitable[T], unreadable: dict[str, str]) -> T | None:
    """`read`'s result, or None with the reason recorded when the source is down or too slow."""
    try:
        return await asyncio.wait_for(read, _READ_TIMEOUT_S)
    except TimeoutError:
        unreadable[source] = f"no answer within {_READ_TIMEOUT_S:g} s"
    except (OSError, SQLAlchemyError, KafkaError) as error:
        unreadable[source] = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return None


async def collect(endpoints: Endpoints, thresholds: Thresholds) -> StatusReport:
    unreadable: dict[str, str] = {}
    urls = service_urls(endpoints.database_url)
    services, views, kafka = await asyncio.gather(
        asyncio.gather(*(service_state(endpoints, name, thresholds.health_timeout_s) for name in SERVICES)),
        asyncio.gather(
            *(
                _guarded(f"{name} database", _read_database(name, url, thresholds), unreadable)
                for name, url in urls.items()
            )
        ),
        _guarded("kafka", kafka_view(endpoints.kafka_bootstrap_servers, DLQ_TOPICS), unreadable),
    )
    databases = {name: view for name, view in zip(urls, views, strict=True) if view is not None}
    report = StatusReport(
        datetime.now(UTC), thresholds, list(services), databases, kafka, dict(sorted(unreadable.items()))
    )
    report.attention = needs_attention(report)
    return report


def needs_attention(report: StatusReport) -> list[str]:
    """What an operator must look at, one line each, naming the runbook."""
    found = [
        f"{s.name} is down: health {s.health}" + (f", process {s.pid} is gone" if s.pid_alive is False else "")
        for s in report.services
        if not s.up
    ]
    found += [f"cannot read {source}: {why}" for source, why in report.unreadable.items()]
    limit_s = report.thresholds.backlog_after_s
    found += [
        f"{name} outbox: {view.backlog.unpublished} events unpublished, the oldest for {view.backlog.oldest_age_s} s "
        f"(over {limit_s:g} s; docs/runbooks/outbox-backlog.md)"
        for name, view in report.databases.items()
        if (view.backlog.oldest_age_s or 0) > limit_s
    ]
    found += [
        f"{kind}: {counts.unknown} UNKNOWN and {counts.stale_executing} stale EXECUTING executions "
        "(docs/runbooks/stuck-executions.md)"
        for view in report.databases.values()
        for kind, counts in view.executions.items()
        if counts.stuck
    ]
    if report.kafka:
        found += [
            f"{topic}: {count} unhandled dead letters (`settle dlq list`; docs/runbooks/dlq-replay.md)"
            for topic, count in report.kafka.dead_letters.items()
            if count
        ]
    return found
