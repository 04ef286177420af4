"""The proof that no crash loses or doubles a charge: every crash point is killed at least 20 times
and 200 more kills land at random, on a whole Settle with real PostgreSQL and Kafka, under a steady
checkout workload and random PSP faults; then the system settles and `settle audit` must find zero
breaches of any kind.

The run's figures (kills per point, checkouts, charges, recovery p50/p99) are printed as one JSON
line; `pytest -s` shows them. `SETTLE_CHAOS_SEED` replays a schedule.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

import pytest

from services.cli.chaos import CHAOS_ENV, ChaosDriver, sweep
from services.cli.stack import start_stack
from services.common.crash_points import CRASH_POINTS

KILLS_PER_POINT = 20
RANDOM_KILLS = 200
SEED = int(os.environ.get("SETTLE_CHAOS_SEED", "20261121"))


@pytest.mark.timeout(1800)
def test_kills_at_every_crash_point_and_at_random_lose_and_double_nothing() -> None:
    # Its own infrastructure: the audit reads whole databases, which must hold this run's data only.
    # Not in tmp_path: another pytest run may prune old tmp_path directories while this one runs.
    with tempfile.TemporaryDirectory(prefix="settle-chaos-") as data_dir:
        stack = start_stack(Path(data_dir), fixed_ports=False, extra_env=CHAOS_ENV)
        try:
            report = asyncio.run(ChaosDriver(stack, SEED).run(sweep(KILLS_PER_POINT), RANDOM_KILLS))
        finally:
            stack.stop()
    print(json.dumps(report.to_json()))
    assert report.unexpected_exits == [] and report.short_campaigns == []
    assert set(report.kills_by_point) == set(CRASH_POINTS)
    assert min(report.kills_by_point.values()) >= KILLS_PER_POINT
    assert sum(report.random_kills_by_service.values()) == RANDOM_KILLS
    assert report.checkouts > 0 and report.psp_faults > 0
    assert report.quiet, "the system did not settle after the kills"
    assert report.unrecovered == 0
    assert report.recovery_ms, "no executor kill had an order in flight: the sweep proved nothing"
    assert report.audit is not None
    assert report.audit.ok, report.audit.to_json()
    assert report.audit.checked["charges"] > 0
