"""The whole system as separate processes (the same stack `settle up` runs) on infrastructure of its own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.stack import Stack, start_stack


# Its own databases and broker, not the session's: `settle demo` audits whole databases, which must
# not hold the deliberately broken records of integration tests.
@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="settle-e2e-") as data_dir:
        # The payout schedule's own loop stays off: on a payout day it would pay out the tests' sellers
        # behind their backs. The tests run the schedule themselves, for chosen days.
        # Reported fees are booked in the ledger, as finance would configure it.
        extra_env = {"SETTLE_PAYOUT_SCHEDULE_INTERVAL_S": "0", "SETTLE_BOOK_PSP_FEES": "true"}
        running = start_stack(Path(data_dir), fixed_ports=False, extra_env=extra_env)
        try:
            yield running
        finally:
            running.stop()
