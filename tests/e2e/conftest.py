"""The whole system as separate processes (the same stack `settle up` runs) on the session's infrastructure."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.stack import Stack, start_stack
from services.common.infra import Infrastructure


# Package scope: the stack's consumers must be gone before other tests use the same consumer groups.
@pytest.fixture(scope="package")
def stack(migrated: Infrastructure) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="settle-e2e-") as data_dir:
        running = start_stack(Path(data_dir), infra=migrated, fixed_ports=False)
        try:
            yield running
        finally:
            running.stop()
