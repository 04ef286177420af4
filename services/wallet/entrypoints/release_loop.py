"""The wallet's periodic jobs: releasing sales whose hold has passed, and the payout schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError

from services.wallet.payout_service import PayoutService
from services.wallet.service import WalletService

log = logging.getLogger(__name__)


class PeriodicLoop:
    """Runs `step` at once and then every interval, or again at once while it says more is due."""

    def __init__(self, name: str, interval_s: float, on_changed: Callable[[], None]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._on_changed = on_changed  # wakes the outbox relay
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def step(self) -> tuple[bool, bool]:
        """Does one round of work; returns (changed anything, more is due at once)."""
        raise NotImplementedError

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                changed, more = await self.step()
            except (DBAPIError, OSError) as error:
                log.error("%s: database error, trying again next interval: %s", self._name, error)
                changed, more = False, False
            if changed:
                self._on_changed()
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_s)


class ReleaseLoop(PeriodicLoop):
    def __init__(
        self,
        wallet: WalletService,
        *,
        delay_s: int,
        interval_s: float,
        batch_size: int,
        on_released: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("release job", interval_s, on_released)
        self._wallet = wallet
        self._delay_s = delay_s
        self._batch_size = batch_size

    async def step(self) -> tuple[bool, bool]:
        released = len(await self._wallet.release_due(delay_s=self._delay_s, limit=self._batch_size)) // 2
        if released:
            log.info("released %d sales from pending to available", released)
        return released > 0, released >= self._batch_size  # more may be due at once after a long pause


class ScheduleLoop(PeriodicLoop):
    """Runs the payout schedule for today (UTC); a day's run pays each balance once however often it runs."""

    def __init__(self, payouts: PayoutService, *, interval_s: float, on_paid: Callable[[], None]) -> None:
        super().__init__("payout schedule", interval_s, on_paid)
        self._payouts = payouts

    async def step(self) -> tuple[bool, bool]:
        run = await self._payouts.run_schedule(datetime.now(UTC).date())
        return bool(run.payouts), False
