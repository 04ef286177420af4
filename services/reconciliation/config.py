"""The reconciliation service's settings (SETTLE_* environment variables), on top of every service's."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.common.config import ServiceSettings


class ReconciliationSettings(ServiceSettings):
    # The tolerant rule matches a line with a booking of the same kind, currency and amount this close.
    match_window_days: Annotated[int, Field(ge=0, le=60)] = 3
    # A booking not settled this long after it happened is MISSING_IN_SETTLEMENT; before, in transit.
    settlement_delay_days: Annotated[int, Field(ge=0, le=60)] = 2
