"""Named crash points: places where a fault-injection run can `kill -9` a process exactly.

A point is armed by configuration (`SETTLE_CRASH_POINTS`), as `name@n` entries separated by commas:
the process sends itself SIGKILL the n-th time it reaches `name` (n defaults to 1). SIGKILL, not an
exception or `sys.exit`, so that nothing runs afterwards: no `finally`, no rollback message, no
offset commit, no flush. That is what a power cut or an OOM kill does, and what the system must
survive. Disarmed (the default), a crash point costs one dictionary lookup.

Every point sits between two effects whose order matters; the names say which.
"""

from __future__ import annotations

import os
import signal
import sys

# The executor's worker: claim committed → PSP call → outcome and its event committed.
EXECUTOR_BEFORE_PSP_CALL = "executor.before_psp_call"
EXECUTOR_AFTER_PSP_RESPONSE = "executor.after_psp_response"  # the PSP charged; nothing recorded yet
EXECUTOR_AFTER_OUTCOME_COMMIT = "executor.after_outcome_commit"  # recorded; the event not yet published
# The outbox relay: rows read → published and acknowledged by Kafka → marked sent.
RELAY_BEFORE_PUBLISH = "relay.before_publish"
RELAY_AFTER_PUBLISH = "relay.after_publish"  # on Kafka, still unsent in the outbox
# Every consumer: effect written → database commit → Kafka offset commit.
CONSUMER_BEFORE_DB_COMMIT = "consumer.before_db_commit"
CONSUMER_AFTER_DB_COMMIT = "consumer.after_db_commit"  # applied, offsets not committed

CRASH_POINTS = (
    EXECUTOR_BEFORE_PSP_CALL,
    EXECUTOR_AFTER_PSP_RESPONSE,
    EXECUTOR_AFTER_OUTCOME_COMMIT,
    RELAY_BEFORE_PUBLISH,
    RELAY_AFTER_PUBLISH,
    CONSUMER_BEFORE_DB_COMMIT,
    CONSUMER_AFTER_DB_COMMIT,
)

_armed: dict[str, int] = {}  # point → hits left before the kill


def parse(spec: str) -> dict[str, int]:
    """`"a@3,b"` → `{"a": 3, "b": 1}`; raises ValueError naming what is wrong."""
    armed: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = entry.partition("@")
        if name not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {name!r}; known: {', '.join(CRASH_POINTS)}")
        if count and not (count.isdecimal() and int(count) >= 1):
            raise ValueError(f"crash point {name!r}: the hit count must be a positive integer (got {count!r})")
        armed[name] = int(count) if count else 1
    return armed


def arm(spec: str) -> None:
    """Replaces the armed points with those of `spec` (empty disarms them all)."""
    _armed.clear()
    _armed.update(parse(spec))


def crash_point(name: str) -> None:
    left = _armed.get(name)
    if left is None:
        return
    if left > 1:
        _armed[name] = left - 1
        return
    # Written straight to the stream (no logging handler, no buffering) so the driver can tell
    # from the log which point killed the process.
    sys.stderr.write(f"crash point {name} reached: SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
