"""The worker loop: keeps up to `concurrency` PSP calls in flight and records outcomes as they land.

It claims only as many executions as it has free slots, so a claim is never held while it waits for
a slot: a claim lives for one PSP call plus one commit, far inside the stale-claim deadline. It wakes
when the consumer accepted new work, when a call finishes, or every poll interval (for retries that
became due and for other replicas' releases).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError

from services.executor.adapters.claims_db import Claim
from services.executor.domain import Execution
from services.executor.service.worker import Attempt

log = logging.getLogger(__name__)

_MAX_ERROR_BACKOFF_S = 5.0


class Worker(Protocol):
    """What the loop drives (ExecutionWorker; a fake in the unit tests)."""

    @property
    def worker_id(self) -> str: ...

    async def claim(self, limit: int) -> list[Claim[Any]]: ...

    async def charge(self, claim: Claim[Any]) -> Attempt[Any]: ...

    async def record(self, attempts: Sequence[Attempt[Any]]) -> list[Execution[Any]]: ...

    async def release_stale_claims(self, *, including_earlier_runs: bool = False) -> list[Execution[Any]]: ...

    async def recover_unknown(self) -> list[Execution[Any]]: ...


class WorkerLoop:
    def __init__(
        self,
        worker: Worker,
        *,
        concurrency: int,
        claim_batch_size: int,
        poll_interval_s: float = 0.2,
        sweep_interval_s: float = 5.0,
    ) -> None:
        self._worker = worker
        self._concurrency = concurrency
        self._claim_batch_size = claim_batch_size
        self._poll_interval_s = poll_interval_s
        self._sweep_interval_s = sweep_interval_s
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Attempt[Any]]] = set()
        self._unrecorded: list[Attempt[Any]] = []

    def wake(self) -> None:
        """New executions were accepted (called after the consumer's commit)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Claims nothing more; run() returns once the calls in flight are recorded."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        try:
            await self._run()
            await self._drain()
        finally:
            # Only reached with calls in flight if this task was cancelled (shutdown overran its grace):
            # their claims go stale and are retried with the same idempotency key.
            for task in self._in_flight:
                task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep_at = loop.time()
        error_backoff_s = 0.1
        first_sweep = True
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                if loop.time() >= next_sweep_at:
                    # The first sweep of a run also frees what an earlier run under this id held.
                    await self._worker.release_stale_claims(including_earlier_runs=first_sweep)
                    await self._worker.recover_unknown()
                    first_sweep = False
                    next_sweep_at = loop.time() + self._sweep_interval_s
                claimed_all_asked = await self._claim()
                await self._record_finished()
                error_backoff_s = 0.1
            except (DBAPIError, OSError) as error:
                # The database is unreachable or timing out: calls in flight continue, and outcomes
                # not recorded are kept and recorded once it is back.
                log.error("worker %s: database error, backing off: %s", self._worker.worker_id, error)
                await asyncio.sleep(error_backoff_s)
                error_backoff_s = min(error_backoff_s * 2, _MAX_ERROR_BACKOFF_S)
                continue
            if not claimed_all_asked:
                await self._wait()

    async def _claim(self) -> bool:
        """Claims up to the free slots; True if it got all it asked for (more may be due)."""
        free = self._concurrency - len(self._in_flight) - len(self._unrecorded)
        if free <= 0:
            return False
        limit = min(free, self._claim_batch_size)
        claims = await self._worker.claim(limit)
        for claim in claims:
            self._in_flight.add(asyncio.create_task(self._worker.charge(claim)))
        return len(claims) == limit

    async def _record_finished(self) -> None:
        finished = {task for task in self._in_flight if task.done()}
        self._in_flight -= finished
        self._unrecorded.extend(task.result() for task in finished)
        if self._unrecorded:
            await self._worker.record(self._unrecorded)
            self._unrecorded = []

    async def _wait(self) -> None:
        wakeup = asyncio.create_task(self._wakeup.wait())
        try:
            await asyncio.wait(
                [wakeup, *self._in_flight], timeout=self._poll_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wakeup.cancel()

    async def _drain(self) -> None:
        """Waits for the calls in flight (each bounded by the charge deadline) and records them."""
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        try:
            await self._record_finished()
        except (DBAPIError, OSError) as error:
            # Their claims go stale and are retried with the same key by another worker.
            log.error(
                "worker %s: could not record %d outcomes at shutdown: %s",
                self._worker.worker_id,
                len(self._unrecorded),
                error,
            )
