"""Running the `settle` command against an end-to-end stack, as a user would."""

from __future__ import annotations

import subprocess
import sys

from services.cli.stack import Stack


def settle(stack: Stack, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """`settle ARGS --data-dir <the stack's>`, its output captured; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--data-dir", str(stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
