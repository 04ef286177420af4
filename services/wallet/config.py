"""The wallet's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field

from services.common.config import ServiceSettings


class WalletSettings(ServiceSettings):
    # How long a sale stays pending before it becomes available for payouts (refunds and disputes
    # come early): 7 days by default.
    release_delay_s: Annotated[int, Field(ge=0, le=366 * 86_400)] = 7 * 86_400
    # How often the wallet looks for sales whose hold has passed.
    release_interval_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # At most this many sales released per statement.
    release_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    # Payout days: every `payout_interval_days` from `payout_anchor_date` (a Friday: every second Friday).
    payout_anchor_date: date = date(2026, 1, 2)
    payout_interval_days: Annotated[int, Field(ge=1, le=366)] = 14
    # A scheduled payout needs at least this much available, in the currency's minor units.
    payout_minimum_minor: Annotated[int, Field(ge=1)] = 1_000
    # How often the schedule checks whether today is a payout day with balances to pay; 0 turns it off.
    payout_schedule_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 600.0
