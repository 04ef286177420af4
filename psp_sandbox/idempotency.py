"""Stripe's idempotency semantics.

A key is owned by the first request that uses it. While that request runs, others with the key get
409; once it has an answer (success or card error), requests with the same parameters get that exact
answer back and requests with other parameters get an idempotency_error. Answers are kept for a
retention period on the sandbox clock, which can be changed at runtime. Validation failures and 500s
are not kept (Stripe keeps only results of requests whose endpoint started executing), so the caller
releases the key instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from psp_sandbox.clock import SandboxClock
from psp_sandbox.errors import idempotency_key_in_use, idempotency_mismatch
from psp_sandbox.journal import Journal

DEFAULT_RETENTION_S = 24 * 60 * 60
IDEMPOTENCY_RECORD = "idempotency"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    request_id: str


@dataclass
class _Entry:
    fingerprint: str
    created_s: int
    response: StoredResponse | None  # None while the owning request is in flight


class IdempotencyStore:
    def __init__(
        self, clock: SandboxClock, retention_s: int = DEFAULT_RETENTION_S, journal: Journal | None = None
    ) -> None:
        _check_retention(retention_s)
        self._clock = clock
        self._retention_s = retention_s
        self._journal = journal
        # Insertion order is creation order, so expired entries are always at the front.
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    @property
    def retention_s(self) -> int:
        return self._retention_s

    @retention_s.setter
    def retention_s(self, retention_s: int) -> None:
        _check_retention(retention_s)
        # Keys already past the old retention stay forgotten even if the new one is longer.
        self._purge_expired(self._clock.now_s())
        self._retention_s = retention_s

    def begin(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claims the key, or returns the answer to replay. Raises 409 / idempotency_error."""
        now_s = self._clock.now_s()
        self._purge_expired(now_s)
        entry = self._entries.get((scope, key))
        if entry is not None and self._is_expired(entry, now_s):
            del self._entries[(scope, key)]
            entry = None
        if entry is None:
            self._entries[(scope, key)] = _Entry(fingerprint, now_s, None)
            return None
        if entry.response is None:
            raise idempotency_key_in_use(key)
        if entry.fingerprint != fingerprint:
            raise idempotency_mismatch(key)
        return entry.response

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        entry = self._entries[(scope, key)]
        assert entry.response is None, "an idempotent request completed twice"
        entry.response = response
        if self._journal is not None:
            self._journal.append(
                {
                    "kind": IDEMPOTENCY_RECORD,
                    "scope": scope,
                    "key": key,
                    "fingerprint": entry.fingerprint,
                    "created_s": entry.created_s,
                    "status": response.status,
                    "body": response.body.decode(),
                    "request_id": response.request_id,
                }
            )

    def release(self, scope: str, key: str) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is None:
            del self._entries[(scope, key)]

    def restore(self, record: dict[str, Any]) -> bool:
        if record.get("kind") != IDEMPOTENCY_RECORD:
            return False
        response = StoredResponse(record["status"], record["body"].encode(), record["request_id"])
        entry = _Entry(record["fingerprint"], record["created_s"], response)
        if not self._is_expired(entry, self._clock.now_s()):
            self._entries[(record["scope"], record["key"])] = entry
        return True

    def reset(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _is_expired(self, entry: _Entry, now_s: int) -> bool:
        return entry.response is not None and now_s - entry.created_s >= self._retention_s

    def _purge_expired(self, now_s: int) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._is_expired(oldest, now_s):
                return
            self._entries.popitem(last=False)


def _check_retention(retention_s: int) -> None:
    if retention_s <= 0:
        raise ValueError("idempotency retention must be positive")
