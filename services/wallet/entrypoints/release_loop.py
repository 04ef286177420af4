"""The release job: every interval, sales whose hold has passed move from pending to available."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from services.wallet.service import WalletService

log = logging.getLogger(__name__)


class ReleaseLoop:
    def __init__(
        self,
        wallet: WalletService,
        *,
        delay_s: int,
        interval_s: float,
        batch_size: int,
        on_released: Callable[[], None] = lambda: None,
    ) -> None:
        self._wallet = wallet
        self._delay_s = delay_s
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._on_released = on_released  # wakes the outbox relay
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                released = await self._wallet.release_due(delay_s=self._delay_s, limit=self._batch_size)
            except (DBAPIError, OSError) as error:
                log.error("release job: database error, trying again next interval: %s", error)
                released = []
            if released:
                self._on_released()
                log.info("released %d sales from pending to available", len(released) // 2)
            if len(released) // 2 < self._batch_size:  # more may be due at once after a long pause
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_s)
