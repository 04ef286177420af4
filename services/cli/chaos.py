"""Chaos runs: a checkout workload while services are killed with SIGKILL and restarted.

Two kinds of kill:
- at a named crash point (services/common/crash_points.py): the service is restarted with the
  point armed at its n-th hit and kills itself exactly there; every campaign kills one point
  `kills` times in a row;
- at random: a service is killed from outside after a random time up and serving.
Meanwhile the PSP sandbox is given random faults (500s, 429s, dropped responses, answers after the
client's timeout, 409s), so crashes land in the middle of retries too. At the end every service is
restarted, the system is left to settle, and `settle audit` judges the result.

The seed fixes the schedule: which services, points, hit counts, delays and PSP faults, each service
drawing from its own generator so that concurrency does not reorder the draws. The workload's timing
is the machine's, so two runs with one seed kill at the same points but not on the same orders.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.audit import AuditReport, run_audit, wait_until_quiet
from services.cli.stack import Stack
from services.cli.workload import CheckoutFactory
from services.common import clients
from services.common.crash_points import (
    CONSUMER_AFTER_DB_COMMIT,
    CONSUMER_BEFORE_DB_COMMIT,
    EXECUTOR_AFTER_OUTCOME_COMMIT,
    EXECUTOR_AFTER_PSP_RESPONSE,
    EXECUTOR_BEFORE_PSP_CALL,
    RELAY_AFTER_PUBLISH,
    RELAY_BEFORE_PUBLISH,
)
from services.common.db import create_engine, service_database_url
from services.common.migrations import database_name

# Where each crash point is exercised: the executor's worker, the busiest relay (payment's, which
# publishes every charge request) and the consumers whose effects are money (wallet, ledger).
CRASH_POINT_HOSTS: tuple[tuple[str, str], ...] = (
    ("executor", EXECUTOR_BEFORE_PSP_CALL),
    ("executor", EXECUTOR_AFTER_PSP_RESPONSE),
    ("executor", EXECUTOR_AFTER_OUTCOME_COMMIT),
    ("payment", RELAY_BEFORE_PUBLISH),
    ("payment", RELAY_AFTER_PUBLISH),
    ("wallet", CONSUMER_AFTER_DB_COMMIT),
    ("ledger", CONSUMER_BEFORE_DB_COMMIT),
)
KILLABLE_SERVICES = ("payment", "executor", "wallet", "ledger")
EXECUTOR_WORKER_ID = "executor-0"  # the stable id the stack gives the executor

# Settings that make a killed service come back fast; the defaults suit production, not a crash a second.
CHAOS_ENV = {
    "SETTLE_KAFKA_SESSION_TIMEOUT_MS": "3000",  # a killed member's partitions return within 3 s
    "SETTLE_PSP_TIMEOUT_S": "2",
    "SETTLE_STALE_CLAIM_S": "15",
    "SETTLE_RETRY_MAX_MS": "2000",
    "SETTLE_RECOVERY_AFTER_S": "3",
    "SETTLE_MAX_RECOVERIES": "1000",  # one order may be in flight at many kills in a row
    "SETTLE_SHUTDOWN_GRACE_S": "2",
}
_PSP_FAULTS = (
    {"fault": "http_500"},
    {"fault": "http_429", "retry_after_s": 1},
    {"fault": "drop_response"},
    {"fault": "timeout_after_charge", "latency_ms": 3000},
    {"fault": "latency", "latency_ms": 500},
    {"fault": "http_409_in_flight"},
)
_ATTEMPTS_PER_KILL = 2  # armed restarts allowed per kill asked for, before a campaign counts as short
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN})


@dataclass(frozen=True)
class Campaign:
    service: str
    point: str
    kills: int


def sweep(kills_per_point: int) -> list[Campaign]:
    return [Campaign(service, point, kills_per_point) for service, point in CRASH_POINT_HOSTS]


@dataclass
class ChaosReport:
    seed: int
    kills_by_point: dict[str, int] = field(default_factory=dict)
    random_kills_by_service: dict[str, int] = field(default_factory=dict)
    unreached: list[str] = field(default_factory=list)  # armed points not reached in time (retried)
    unexpected_exits: list[str] = field(default_factory=list)  # a crash other than the armed kill
    short_campaigns: list[str] = field(default_factory=list)  # campaigns that got fewer kills than asked
    checkouts: int = 0
    psp_faults: int = 0
    recovery_ms: list[float] = field(default_factory=list)  # executor kill → terminal, per order in flight
    # The same, for orders whose recovery no later kill interrupted: the time recovery itself takes.
    isolated_recovery_ms: list[float] = field(default_factory=list)
    unrecovered: int = 0
    quiet: bool = False
    duration_s: float = 0.0
    audit: AuditReport | None = None

    @property
    def kills(self) -> int:
        return sum(self.kills_by_point.values()) + sum(self.random_kills_by_service.values())

    @property
    def ok(self) -> bool:
        return (
            self.audit is not None
            and self.audit.ok
            and self.quiet
            and not self.unexpected_exits
            and not self.short_campaigns
        )

    @staticmethod
    def _summary(samples: list[float]) -> dict[str, float | int | None]:
        def percentile(p: int) -> float | None:
            if len(samples) < 2:
                return samples[0] if samples else None
            return round(statistics.quantiles(samples, n=100, method="inclusive")[p - 1], 1)

        return {
            "orders": len(samples),
            "p50_ms": percentile(50),
            "p99_ms": percentile(99),
            "max_ms": round(max(samples), 1) if samples else None,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "kills": self.kills,
            "kills_by_point": self.kills_by_point,
            "random_kills_by_service": self.random_kills_by_service,
            "unreached": self.unreached,
            "unexpected_exits": self.unexpected_exits,
            "short_campaigns": self.short_campaigns,
            "checkouts": self.checkouts,
            "psp_faults": self.psp_faults,
            "recovery": {**self._summary(self.recovery_ms), "unrecovered": self.unrecovered},
            "recovery_without_another_kill": self._summary(self.isolated_recovery_ms),
            "quiet": self.quiet,
            "duration_s": self.duration_s,
            "audit": self.audit.to_json() if self.audit else None,
        }


class ChaosDriver:
    def __init__(self, stack: Stack, seed: int, *, hit_timeout_s: float = 120.0, settle_timeout_s: float = 300.0):
        self._stack = stack
        self._seed = seed
        self._hit_timeout_s = hit_timeout_s
        self._settle_timeout_s = settle_timeout_s
        self._report = ChaosReport(seed)
        self._stop = asyncio.Event()
        self._trackers: list[asyncio.Task[None]] = []
        self._executor_kills: list[float] = []
        self._executor_db: AsyncEngine = create_engine(
            service_database_url(stack.endpoints.database_url, database_name("executor")), pool_size=2
        )

    def _rng(self, stream: str) -> random.Random:
        return random.Random(f"{self._seed}:{stream}")

    async def run(self, campaigns: Sequence[Campaign], random_kills: int) -> ChaosReport:
        started = time.monotonic()
        background = [asyncio.create_task(self._workload()), asyncio.create_task(self._psp_faults())]
        try:
            by_service: dict[str, list[Campaign]] = defaultdict(list)
            for campaign in campaigns:
                by_service[campaign.service].append(campaign)
            random_delays = self._plan_random_kills(random_kills)
            # Services are killed independently of each other, so each has its own sequence: its
            # campaigns, then its share of the random kills.
            await asyncio.gather(
                *(
                    self._kill_service(service, by_service.get(service, []), random_delays.get(service, []))
                    for service in KILLABLE_SERVICES
                )
            )
        finally:
            self._stop.set()
            outcomes = await asyncio.gather(*background, return_exceptions=True)
            await self._clear_psp_faults()
            await asyncio.to_thread(self._revive_all)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise RuntimeError("the chaos workload failed") from outcome
        urls = self._stack.endpoints
        self._report.quiet = await wait_until_quiet(urls.database_url, timeout_s=self._settle_timeout_s)
        await asyncio.gather(*self._trackers)
        await self._executor_db.dispose()
        self._report.audit = await run_audit(urls.database_url, urls.psp_sandbox_url)
        self._report.duration_s = round(time.monotonic() - started, 1)
        return self._report

    # -- kills ---------------------------------------------------------------------------------

    async def _run_campaigns(self, service: str, campaigns: Sequence[Campaign]) -> None:
        if not campaigns:
            return
        rng = self._rng(f"campaign:{service}")
        await self._stop_gracefully(service)
        for campaign in campaigns:
            killed = 0
            for _ in range(campaign.kills * _ATTEMPTS_PER_KILL):
                if killed == campaign.kills:
                    break
                hit = rng.randint(1, 3)
                process = self._stack.respawn(service, {"SETTLE_CRASH_POINTS": f"{campaign.point}@{hit}"})
                code = await self._wait_for_exit(process, self._hit_timeout_s)
                if code is None:
                    # Not a kill: the point was not reached in time (a starved machine, a slow rejoin).
                    # The attempt is noted and made again; a process that never recovers shows in the audit.
                    self._report.unreached.append(f"{service}:{campaign.point}@{hit}")
                    await self._stop_gracefully(service)
                    continue
                self._on_killed(service)
                if code == -9 and f"crash point {campaign.point} reached" in self._stack.tail(service, 5):
                    killed += 1
                    self._report.kills_by_point[campaign.point] = self._report.kills_by_point.get(campaign.point, 0) + 1
                else:
                    self._report.unexpected_exits.append(f"{service}:{campaign.point}@{hit} exited with {code}")
            if killed < campaign.kills:
                self._report.short_campaigns.append(f"{service}:{campaign.point}: {killed} of {campaign.kills} kills")
        self._stack.respawn(service)

    def _plan_random_kills(self, count: int) -> dict[str, list[float]]:
        """For each kill, a service and how long it runs before the kill."""
        rng = self._rng("random")
        plan: dict[str, list[float]] = defaultdict(list)
        for _ in range(count):
            plan[rng.choice(KILLABLE_SERVICES)].append(rng.uniform(0.1, 2.5))
        return plan

    async def _kill_service(self, service: str, campaigns: Sequence[Campaign], random_delays: Sequence[float]) -> None:
        await self._run_campaigns(service, campaigns)
        await self._kill_after(service, random_delays)

    async def _kill_after(self, service: str, delays: Sequence[float]) -> None:
        for delay in delays:
            await asyncio.to_thread(self._stack.wait_until_serving, service)
            await asyncio.sleep(delay)
            await asyncio.to_thread(self._stack.kill, service)
            self._on_killed(service)
            killed = self._report.random_kills_by_service
            killed[service] = killed.get(service, 0) + 1
            self._stack.respawn(service)

    def _on_killed(self, service: str) -> None:
        if service == "executor":
            killed_at = time.monotonic()
            self._executor_kills.append(killed_at)
            self._trackers.append(asyncio.create_task(self._track_recovery(killed_at)))

    @staticmethod
    async def _wait_for_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while (code := process.poll()) is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return code

    async def _stop_gracefully(self, service: str) -> None:
        process = self._stack.processes[service]
        if process.poll() is None:
            process.terminate()
            await asyncio.to_thread(process.wait)

    def _revive_all(self) -> None:
        for service in KILLABLE_SERVICES:
            if self._stack.processes[service].poll() is not None:
                self._stack.respawn(service)
        for service in KILLABLE_SERVICES:
            self._stack.wait_until_serving(service)

    async def _track_recovery(self, killed_at: float) -> None:
        """Times each execution the killed executor held, from the kill to its terminal state."""
        async with self._executor_db.connect() as connection:
            held = list(
                await connection.scalars(
                    text("SELECT payment_order_id FROM executions WHERE status = 'EXECUTING' AND claimed_by = :id"),
                    {"id": EXECUTOR_WORKER_ID},
                )
            )
        deadline = killed_at + self._settle_timeout_s
        while held and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            async with self._executor_db.connect() as connection:
                final = set(
                    await connection.scalars(
                        text(
                            "SELECT payment_order_id FROM executions WHERE payment_order_id = ANY(:ids) "
                            "AND status IN ('SUCCEEDED', 'FAILED')"
                        ),
                        {"ids": held},
                    )
                )
            now = time.monotonic()
            self._report.recovery_ms.extend((now - killed_at) * 1000 for _ in final)
            if not any(killed_at < other <= now for other in self._executor_kills):
                self._report.isolated_recovery_ms.extend((now - killed_at) * 1000 for _ in final)
            held = [order_id for order_id in held if order_id not in final]
        self._report.unrecovered += len(held)

    # -- the outside world ---------------------------------------------------------------------

    async def _workload(self, lanes: int = 2) -> None:
        factory = CheckoutFactory(uuid.uuid4().hex[:8], sellers=20, seed=self._seed)
        endpoints = self._stack.endpoints
        async with endpoints.channel("payment", "checkout") as channel:
            stub = clients.payment_stub(channel)

            async def lane() -> None:
                while not self._stop.is_set():
                    request = factory.next()
                    # The same request again until it lands: CreatePayment is idempotent on checkout_id.
                    while not self._stop.is_set():
                        try:
                            await stub.CreatePayment(request, timeout=5)
                        except grpc.aio.AioRpcError as error:
                            if error.code() not in _RETRYABLE:
                                raise
                            await asyncio.sleep(0.2)
                        else:
                            self._report.checkouts += 1
                            break
                    await asyncio.sleep(0.1)

            await asyncio.gather(*(lane() for _ in range(lanes)))

    async def _psp_faults(self) -> None:
        rng = self._rng("psp")
        url = f"{self._stack.endpoints.psp_sandbox_url}/_sandbox/faults"
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                spec = {**rng.choice(_PSP_FAULTS), "count": rng.randint(1, 3)}
                spec["match"] = {"path_prefix": "/v1/payment_intents"}
                async with session.post(url, data=json.dumps(spec)) as response:
                    response.raise_for_status()
                self._report.psp_faults += 1
                await asyncio.sleep(rng.uniform(0.5, 2.0))

    async def _clear_psp_faults(self) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{self._stack.endpoints.psp_sandbox_url}/_sandbox/faults") as response,
        ):
            response.raise_for_status()
