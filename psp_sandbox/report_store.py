"""Report runs and their result files, and how the next runs behave: switches, duration, failure.

Kept in memory only, never journaled: a run's file is a snapshot that can be made again, and Stripe too
lets report files expire. The newest MAX_RUNS runs are kept; older ones (and their files) are forgotten,
so a long-running sandbox's memory stays bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from psp_sandbox.switches import SettlementOptions

MAX_RUNS = 200
DEFAULT_RUN_DELAY_MS = 500
MAX_RUN_DELAY_MS = 600_000

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ReportFile:
    file_id: str
    created_s: int
    filename: str
    title: str
    content: bytes


@dataclass
class ReportRun:
    run_id: str
    report_type: str
    parameters: JsonObject  # as the request gave them
    created_s: int
    ready_at: float  # time.monotonic() from which the run has finished
    file: ReportFile | None  # None when the run fails
    error: str | None = None
    finished_at_s: int | None = None  # sandbox clock, set when first seen finished

    def status(self) -> str:
        if self.finished_at_s is None:
            return "pending"
        return "failed" if self.file is None else "succeeded"


class ReportStore:
    def __init__(self) -> None:
        self._runs: OrderedDict[str, ReportRun] = OrderedDict()
        self._files: dict[str, ReportFile] = {}
        self.switches = SettlementOptions()  # applied to every run created from now on
        self.run_delay_ms = DEFAULT_RUN_DELAY_MS
        self.fail_runs_with: str | None = None  # every run created from now on fails with this error

    def add(self, run: ReportRun) -> None:
        self._runs[run.run_id] = run
        if run.file is not None:
            self._files[run.file.file_id] = run.file
        while len(self._runs) > MAX_RUNS:
            _, oldest = self._runs.popitem(last=False)
            if oldest.file is not None:
                self._files.pop(oldest.file.file_id, None)

    def run(self, run_id: str, now_s: int) -> ReportRun | None:
        """The run, finished if its time has come: the first look after `ready_at` stamps its end."""
        run = self._runs.get(run_id)
        if run is not None and run.finished_at_s is None and time.monotonic() >= run.ready_at:
            run.finished_at_s = now_s
        return run

    def file(self, file_id: str) -> ReportFile | None:
        return self._files.get(file_id)

    def reset(self) -> None:
        self._runs.clear()
        self._files.clear()
        self.switches = SettlementOptions()
        self.run_delay_ms = DEFAULT_RUN_DELAY_MS
        self.fail_runs_with = None
