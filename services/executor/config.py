"""The executor's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

import math
import os
import socket
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from services.common.config import ServiceSettings

_CALL_DEADLINE_MARGIN_S = 2.0
_COMMIT_MARGIN_S = 5.0


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ExecutorSettings(ServiceSettings):
    psp_api_base: Annotated[str, Field(min_length=1)] = "http://127.0.0.1:12111"
    psp_api_key: Annotated[str, Field(min_length=1)] = "sk_test_settle_sandbox"
    # Bounds one PSP call; a call that times out is an unknown outcome, retried with the same key.
    psp_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # At most this many PSP calls in flight per executor process (also the most claims it holds).
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = 64
    # At most this many executions claimed per database round trip.
    claim_batch_size: Annotated[int, Field(ge=1, le=5000)] = 200
    # PSP calls per execution before an unknown outcome is parked as UNKNOWN for an operator.
    retry_budget: Annotated[int, Field(ge=1, le=100)] = 8
    retry_base_ms: Annotated[int, Field(ge=1, le=600_000)] = 200
    retry_max_ms: Annotated[int, Field(ge=1, le=3_600_000)] = 30_000
    # A claim older than this belongs to a worker that died between claim and outcome.
    stale_claim_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    # How often the worker looks for due executions when nothing woke it.
    worker_poll_interval_ms: Annotated[int, Field(ge=10, le=60_000)] = 200
    # Names this worker's claims. A stable id (a replica's name) lets a restarted worker release its
    # crashed predecessor's claims at once instead of after `stale_claim_s`; it must be unique.
    worker_id: Annotated[str, Field(min_length=1, max_length=200)] = Field(default_factory=_default_worker_id)
    # An UNKNOWN execution is queued again (to ask the PSP what happened) after this long, at most
    # `max_recoveries` times; then it waits for an operator's RetryExecution. Longer than the PSP's
    # search indexing lag (about a minute at Stripe) so the search sees an earlier attempt's charge.
    recovery_after_s: Annotated[int, Field(ge=1, le=86_400)] = 60
    max_recoveries: Annotated[int, Field(ge=0, le=1000)] = 5
    # The PSP webhook endpoint (POST /webhooks/psp), off when the port is 0. Events are verified with the
    # signing secret (Stripe's `whsec_...`) and refused when signed more than `webhook_tolerance_s` away
    # from now, either way; event ids are remembered for `webhook_event_retention_days` to make
    # redeliveries no-ops (Stripe redelivers for up to three days).
    webhook_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    webhook_port: Annotated[int, Field(ge=0, le=65535)] = 0
    webhook_secret: SecretStr = SecretStr("")
    webhook_tolerance_s: Annotated[int, Field(ge=1, le=3600)] = 300
    webhook_event_retention_days: Annotated[int, Field(ge=4, le=3650)] = 30

    @property
    def call_deadline_s(self) -> float:
        """A ceiling on one PSP call: the HTTP timeout plus connection setup and parsing."""
        return self.psp_timeout_s + _CALL_DEADLINE_MARGIN_S

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Self:
        if self.retry_max_ms < self.retry_base_ms:
            raise ValueError("retry_max_ms must be at least retry_base_ms")
        # A claim is held for up to two PSP calls (search, create) plus the commit of the outcome. If
        # the stale deadline were shorter, a live worker's claim would be taken away mid-call (safe
        # thanks to the idempotency key, but it would double the PSP traffic for every slow call).
        minimum = math.ceil(2 * self.call_deadline_s + _COMMIT_MARGIN_S)
        if self.stale_claim_s < minimum:
            raise ValueError(f"stale_claim_s must be at least 2 * (psp_timeout_s + 2) + 5 = {minimum}")
        if self.webhook_port and not self.webhook_secret.get_secret_value().strip():
            raise ValueError("webhook_port is set, so webhook_secret (the PSP's signing secret) is required")
        return self
