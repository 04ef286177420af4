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
        running = start_stack(Path(data_dir), fixed_ports=False)
        try:
            yield running
        finally:
            running.stop()
