"""The demo's last step: the night's reconciliation of the sandbox's settlement file for the demo's day."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from settle.reconciliation.v1 import reconciliation_pb2_grpc
from sqlalchemy import text

from services.cli.endpoints import Endpoints
from services.cli.reconcile import reconcile, summary_of
from services.common.db import create_engine, service_database_url
from services.common.migrations import database_name

_SETTLED_FOR_S = 1.5


async def _wait_for_index(database_url: str, timeout_s: float) -> None:
    """Until reconciliation's index of bookings stops growing: its consumer has caught up with the events
    every other service already published (the audit waited for their outboxes)."""
    engine = create_engine(service_database_url(database_url, database_name("reconciliation")), pool_size=1)
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                count = int(await connection.scalar(text("SELECT count(*) FROM booked_items WHERE status = 'booked'")))
            if count != last:
                last, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= _SETTLED_FOR_S:
                return
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()


async def reconcile_today(endpoints: Endpoints, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """Fetches today's settlement file (on the sandbox's clock) and reconciles it; returns the summary."""
    await _wait_for_index(endpoints.database_url, timeout_s)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{endpoints.psp_sandbox_url}/_sandbox/clock") as response:
            day = datetime.fromtimestamp((await response.json())["now"], UTC).date()
        with tempfile.TemporaryDirectory(prefix="settle-night-") as folder:
            path = Path(folder) / f"settlement_{day.isoformat()}.csv"
            async with session.get(f"{endpoints.psp_sandbox_url}/_sandbox/settlements/{day.isoformat()}") as response:
                response.raise_for_status()
                path.write_bytes(await response.read())
            async with endpoints.channel("reconciliation", "finance") as channel:
                stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
                imported, run, _ = await reconcile(stub, path, "sandbox", "")
    return summary_of(imported, run)
