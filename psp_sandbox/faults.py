"""Injected faults: each applies to the next `count` requests that match it, first registered first.

`POST /_sandbox/faults {"fault": KIND, "count": 1, "match": {"idempotency_key": ..., "path_prefix": ...},
"latency_ms": ..., "retry_after_s": ...}`, where KIND is one of:

- latency: waits `latency_ms` before executing, holding the idempotency key meanwhile.
- http_500: answers 500 api_error and executes nothing; the key stays unused.
- http_429: answers 429 rate_limit_error with `Retry-After: retry_after_s` and executes nothing.
- http_409_in_flight: answers 409 idempotency_key_in_use and executes nothing, as if another request with
  the key were still running. Only requests that carry an Idempotency-Key match it.
- timeout_after_charge: executes and stores the answer for replay, then answers `latency_ms` late.
- drop_response: executes and stores the answer for replay like a normal request, then aborts the TCP
  connection instead of answering, so the client sees a connection error (the SDK's APIConnectionError),
  never an HTTP status. Clients may resend idempotent methods on their own: aiohttp resends a dropped GET
  once, so a GET needs `count` 2 to fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psp_sandbox.ids import new_id

MAX_FAULTS = 1000
MAX_COUNT = 1_000_000
MAX_DELAY_MS = 600_000
MAX_RETRY_AFTER_S = 3600
DEFAULT_LATENCY_MS = 1000
DEFAULT_TIMEOUT_AFTER_CHARGE_MS = 30_000
DEFAULT_RETRY_AFTER_S = 1


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    TIMEOUT_AFTER_CHARGE = "timeout_after_charge"
    DROP_RESPONSE = "drop_response"
    HTTP_409_IN_FLIGHT = "http_409_in_flight"


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    fault_id: str
    kind: FaultKind
    remaining: int
    idempotency_key: str | None
    path_prefix: str | None
    latency_ms: int
    retry_after_s: int

    def matches(self, path: str, idempotency_key: str | None) -> bool:
        if self.kind is FaultKind.HTTP_409_IN_FLIGHT and idempotency_key is None:
            # Only a request with a key can collide with one in flight.
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        return self.idempotency_key is None or self.idempotency_key == idempotency_key

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            "fault": self.kind.value,
            "remaining": self.remaining,
            "match": {"idempotency_key": self.idempotency_key, "path_prefix": self.path_prefix},
            "latency_ms": self.latency_ms,
            "retry_after_s": self.retry_after_s,
        }


def parse_fault(spec: object) -> Fault:
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object")
    unknown = set(spec) - {"fault", "count", "match", "latency_ms", "retry_after_s"}
    if unknown:
        raise FaultSpecError(f"unknown fields: {sorted(unknown)}")
    try:
        kind = FaultKind(str(spec.get("fault")))
    except ValueError:
        raise FaultSpecError(f"'fault' must be one of {[kind.value for kind in FaultKind]}") from None
    match = spec.get("match") or {}
    if not isinstance(match, dict) or set(match) - {"idempotency_key", "path_prefix"}:
        raise FaultSpecError("'match' may only hold 'idempotency_key' and 'path_prefix'")
    default_latency_ms = (
        DEFAULT_TIMEOUT_AFTER_CHARGE_MS if kind is FaultKind.TIMEOUT_AFTER_CHARGE else DEFAULT_LATENCY_MS
    )
    return Fault(
        fault_id=new_id("fault"),
        kind=kind,
        remaining=_int_field(spec, "count", 1, 1, MAX_COUNT),
        idempotency_key=_optional_str(match, "idempotency_key"),
        path_prefix=_optional_str(match, "path_prefix"),
        latency_ms=_int_field(spec, "latency_ms", default_latency_ms, 0, MAX_DELAY_MS),
        retry_after_s=_int_field(spec, "retry_after_s", DEFAULT_RETRY_AFTER_S, 0, MAX_RETRY_AFTER_S),
    )


def _int_field(spec: dict[str, Any], name: str, default: int, minimum: int, maximum: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise FaultSpecError(f"'{name}' must be an integer from {minimum} to {maximum}")
    return value


def _optional_str(match: dict[str, Any], name: str) -> str | None:
    value = match.get(name)
    if value is not None and not isinstance(value, str):
        raise FaultSpecError(f"'match.{name}' must be a string")
    return value


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if len(self._faults) >= MAX_FAULTS:
            raise FaultSpecError(f"at most {MAX_FAULTS} faults may be pending")
        self._faults.append(fault)

    def take(self, path: str, idempotency_key: str | None) -> Fault | None:
        """Consumes one use of the first fault matching this request."""
        for fault in self._faults:
            if fault.matches(path, idempotency_key):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> int:
        cleared = len(self._faults)
        self._faults.clear()
        return cleared

    def pending(self) -> list[Fault]:
        return list(self._faults)
