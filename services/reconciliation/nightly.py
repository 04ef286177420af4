"""The nightly reconciliation: after the configured hour (UTC), fetch yesterday's settlement from the PSP
and reconcile the day, once.

Where the settlement comes from is the source's business (settlement_sources.py): the sandbox's daily
file, or Stripe's reports through its Reporting API. A failed fetch or run is logged and tried again at
the next check; a day already reconciled is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, date, datetime, timedelta

import aiohttp
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import SettleError
from services.reconciliation.service import ReconciliationService
from services.reconciliation.settlement_sources import (
    SettlementNotYetAvailable,
    SettlementSource,
    SettlementSourceError,
)

log = logging.getLogger(__name__)
# What a night's attempt may fail with, to be logged and tried again at the next check.
_TRIED_AGAIN_LATER = (aiohttp.ClientError, TimeoutError, DBAPIError, OSError, SettleError, SettlementSourceError)


class NightlyReconciliation:
    def __init__(
        self,
        engine: AsyncEngine,
        service: ReconciliationService,
        source: SettlementSource,
        *,
        hour_utc: int,
        check_interval_s: float,
    ) -> None:
        self._engine = engine
        self._service = service
        self._source = source
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
                except SettlementNotYetAvailable as not_yet:
                    log.info("nightly reconciliation of %s waits for the PSP's data: %s", day, not_yet)
                except _TRIED_AGAIN_LATER as error:
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
        lines_read = 0
        # Each file is imported before the next is fetched: a source's stream lasts until then.
        async with contextlib.aclosing(self._source.files(day)) as files:
            async for file in files:
                imported = await self._service.import_stream(file.stream, file.file_format, file.file_name)
                lines_read += imported.lines_read
        if lines_read == 0:
            log.info("nightly reconciliation: nothing settled on %s", day)
            return False
        run = await self._service.run_day(day)
        log.info("nightly reconciliation of %s: %d mismatches (run %s)", day, run.summary["mismatch_count"], run.run_id)
        return True
