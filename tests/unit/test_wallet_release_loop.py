"""The release job's loop: runs at once and every interval, drains a backlog without waiting, stops."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import OperationalError

from services.wallet.entrypoints.release_loop import ReleaseLoop


class FakeWallet:
    def __init__(self, batches: list[int | Exception]) -> None:
        self.batches = batches
        self.calls = 0

    async def release_due(self, *, delay_s: int, limit: int) -> list[object]:
        self.calls += 1
        outcome = self.batches.pop(0) if self.batches else 0
        if isinstance(outcome, Exception):
            raise outcome
        return [object()] * (2 * outcome)  # two entries per released sale


async def test_a_full_batch_is_followed_at_once_and_a_database_error_waits_for_the_next_interval() -> None:
    wallet = FakeWallet([2, 2, OperationalError("SELECT", {}, ConnectionError("down")), 1])
    woken: list[int] = []
    loop = ReleaseLoop(
        wallet,  # type: ignore[arg-type]
        delay_s=0,
        interval_s=0.05,
        batch_size=2,
        on_released=lambda: woken.append(1),
    )
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.01)
    assert wallet.calls == 3  # two full batches back to back, then the error
    await asyncio.sleep(0.08)
    assert wallet.calls >= 4
    loop.stop()
    await asyncio.wait_for(task, 1)
    assert len(woken) == 3  # the relay is woken after each batch that released something
