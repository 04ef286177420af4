"""The wallet's settings (SETTLE_* environment variables), on top of every service's shared ones."""

from __future__ import annotations

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
