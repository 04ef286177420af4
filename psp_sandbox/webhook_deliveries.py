"""One webhook delivery, its retry policy, and the sender's counts (webhooks.py does the sending)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 40  # about nine minutes with the backoff below
    first_retry_s: float = 0.25
    max_retry_s: float = 15.0
    timeout_s: float = 10.0  # per attempt, as Stripe gives up on a slow endpoint

    def backoff_s(self, failed_attempts: int) -> float:
        return float(min(self.max_retry_s, self.first_retry_s * 2 ** (failed_attempts - 1)))


@dataclass
class Delivery:
    event_id: str
    event_type: str
    url: str
    payload: bytes
    attempts: int = 0
    state: str = "pending"  # pending → delivered | given_up | cancelled
    last_status: int | None = None

    def to_json(self) -> JsonObject:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "attempts": self.attempts,
            "state": self.state,
            "last_status": self.last_status,
        }


@dataclass
class DeliveryStats:
    published: int = 0  # events created
    attempts: int = 0  # POSTs made
    delivered: int = 0  # deliveries answered 2xx (a duplicated event counts twice)
    failed_attempts: int = 0
    given_up: int = 0
    dropped: int = 0  # never attempted: too many pending

    def to_json(self) -> JsonObject:
        return dict(vars(self))
