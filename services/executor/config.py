"""The executor's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Self

from pydantic import Field, model_validator

from services.common.config import ServiceSettings


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
    worker_id: Annotated[str, Field(min_length=1, max_length=200)] = Field(default_factory=_default_worker_id)

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Self:
        if self.retry_max_ms < self.retry_base_ms:
            raise ValueError("retry_max_ms must be at least retry_base_ms")
        # A claim is held for one PSP call plus the commit of its outcome. If the stale deadline were
        # shorter, a live worker's claim would be taken away mid-call (safe thanks to the idempotency
        # key, but it would double the PSP traffic for every slow call).
        if self.stale_claim_s < 2 * self.psp_timeout_s + 5:
            raise ValueError("stale_claim_s must be at least 2 * psp_timeout_s + 5")
        return self
