"""Everything the sandbox remembers, and how it is rebuilt from the journal after a restart."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from psp_sandbox.clock import SandboxClock
from psp_sandbox.faults import FaultBook
from psp_sandbox.idempotency import DEFAULT_RETENTION_S, IdempotencyStore
from psp_sandbox.journal import Journal
from psp_sandbox.payout_store import PayoutStore
from psp_sandbox.refund_store import RefundStore
from psp_sandbox.report_store import ReportStore
from psp_sandbox.store import Store
from psp_sandbox.webhook_settings import WebhookSettings
from psp_sandbox.webhooks import WebhookSender

CLOCK_RECORD = "clock"


class SandboxState:
    def __init__(
        self,
        idempotency_retention_s: int = DEFAULT_RETENTION_S,
        data_dir: Path | None = None,
        webhook_settings: WebhookSettings | None = None,
    ) -> None:
        self.journal = Journal(data_dir) if data_dir is not None else None
        self.clock = SandboxClock()
        self.store = Store(self.journal)
        self.refunds = RefundStore(self.journal)
        self.payouts = PayoutStore(self.journal)
        self.reports = ReportStore()
        self.idempotency = IdempotencyStore(self.clock, idempotency_retention_s, self.journal)
        self._started_retention_s = idempotency_retention_s
        self.faults = FaultBook()
        self.webhooks = WebhookSender(self.clock, webhook_settings)
        self._closing = asyncio.Event()
        if self.journal is not None:
            self._replay(self.journal)

    def _replay(self, journal: Journal) -> None:
        # Clock records come first in effect: key expiry on restore is judged on the restored clock.
        records = list(journal.read())
        for record in records:
            if record.get("kind") == CLOCK_RECORD:
                self.clock.offset_s = int(record["offset_s"])
        for record in records:
            if record.get("kind") != CLOCK_RECORD and not (
                self.store.restore(record)
                or self.refunds.restore(record)
                or self.payouts.restore(record)
                or self.idempotency.restore(record)
            ):
                raise ValueError(f"unknown journal record kind: {record.get('kind')!r}")

    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        if self.journal is not None:
            self.journal.append({"kind": CLOCK_RECORD, "offset_s": self.clock.offset_s})

    def reset(self) -> None:
        self.store.reset()
        self.refunds.reset()
        self.payouts.reset()
        self.reports.reset()
        self.idempotency.reset()
        self.idempotency.retention_s = self._started_retention_s
        self.faults.clear()
        self.webhooks.reset()
        self.clock.offset_s = 0
        if self.journal is not None:
            self.journal.truncate()

    async def sleep(self, seconds: float) -> None:
        """An injected delay that ends early when the sandbox shuts down, so shutdown never waits on it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def begin_shutdown(self) -> None:
        self._closing.set()

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
