"""Crash points: parsed strictly, armed by configuration, and a real SIGKILL at exactly the n-th hit."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from services.cli.chaos import CRASH_POINT_HOSTS
from services.common import crash_points
from services.common.crash_points import CRASH_POINTS, RELAY_AFTER_PUBLISH


def test_specs_name_points_and_hit_counts() -> None:
    assert crash_points.parse("") == {}
    assert crash_points.parse("relay.after_publish@3, executor.before_psp_call") == {
        "relay.after_publish": 3,
        "executor.before_psp_call": 1,
    }


@pytest.mark.parametrize("spec", ["relay.after_publsh", "relay.after_publish@0", "relay.after_publish@x"])
def test_a_bad_spec_is_refused_with_the_reason(spec: str) -> None:
    with pytest.raises(ValueError, match="crash point"):
        crash_points.parse(spec)


def test_a_disarmed_point_does_nothing() -> None:
    crash_points.arm("")
    crash_points.crash_point(RELAY_AFTER_PUBLISH)  # still alive


def test_the_process_is_killed_with_sigkill_at_exactly_the_nth_hit() -> None:
    script = (
        "from services.common import crash_points as c\n"
        "c.arm('relay.after_publish@3')\n"
        "for hit in range(1, 6):\n"
        "    print(hit, flush=True)\n"
        "    c.crash_point('relay.after_publish')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["1", "2", "3"]  # nothing ran after the third hit
    assert "crash point relay.after_publish reached" in result.stderr


def test_the_chaos_sweep_exercises_every_crash_point() -> None:
    assert {point for _, point in CRASH_POINT_HOSTS} == set(CRASH_POINTS)
