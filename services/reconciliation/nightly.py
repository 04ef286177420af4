"""The nightly reconciliation: after the configured hour (UTC), fetch yesterday's settlement file from the
PSP and reconcile the day, once.

The PSP here is the sandbox, whose daily file is at `<psp_api_base>/_sandbox/settlements/<day>`; a real
PSP's report API (Stripe's Reporting API, Adyen's report download) would stand behind the same fetch.
A failed fetch or run is logged and tried again at the next check; a day already reconciled is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, date, datetime, timedelta
from tempfile import SpooledTemporaryFile
from typing import BinaryIO, cast

import aiohttp
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import SettleError
from services.reconciliation.service import ReconciliationService

log = logging.getLogger(__name__)
_SPOOL_BYTES = 8 << 20


class NightlyReconciliation:
    def __init__(
        self,
        engine: AsyncEngine,
        service: ReconciliationService,
        *,
        psp_api_base: str,
        hour_utc: int,
        check_interval_s: float,
    ) -> None:
        self._engine = engine
        self._service = service
        self._source = psp_api_base.rstrip("/")
        self._hour_utc = hour_utc
        self._interval_s = check_interval_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            if now.hour >= self._hour_utc:
                day = (now - timedelta(days=1)).date()
                try:
                    await self.reconcile_day(day)
                except (aiohttp.ClientError, TimeoutError, DBAPIError, OSError, SettleError) as error:
                    log.error("nightly reconciliation of %s failed, trying again later: %s", day, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_s)

    async def reconcile_day(self, day: date) -> bool:
        """Fetches and reconciles `day` unless it was reconciled already; True if it ran now."""
        async with self._engine.connect() as connection:
            done = await connection.scalar(
                text("SELECT count(*) FROM runs WHERE scope = :scope"), {"scope": f"date:{day.isoformat()}"}
            )
        if done:
            return False
        url = f"{self._source}/_sandbox/settlements/{day.isoformat()}"
        with SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session,
                session.get(url) as response,
            ):
                response.raise_for_status()
                async for chunk in response.content.iter_chunked(1 << 16):
                    spool.write(chunk)
            spool.seek(0)
            imported = await self._service.import_stream(cast(BinaryIO, spool), "sandbox", f"settlement_{day}.csv")
        if imported.lines_read == 0:
            log.info("nightly reconciliation: nothing settled on %s", day)
            return False
        run = await self._service.run_day(day)
        log.info("nightly reconciliation of %s: %d mismatches (run %s)", day, run.summary["mismatch_count"], run.run_id)
        return True
