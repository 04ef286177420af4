"""The payment service's settings (SETTLE_* environment variables), on top of the shared ones."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.common.config import ServiceSettings
from services.common.money import MAX_AMOUNT_MINOR

_INT64_MAX = 2**63 - 1


class PaymentSettings(ServiceSettings):
    # At most this many sellers (payment orders) per checkout.
    max_seller_orders: Annotated[int, Field(ge=1, le=1000)] = 50
    # The largest checkout total accepted, in minor units of the checkout's currency.
    max_checkout_total_minor: Annotated[int, Field(ge=1, le=_INT64_MAX)] = 10 * MAX_AMOUNT_MINOR
    # WatchPayment streams end after this long even when the caller set no (or a longer) deadline.
    watch_max_duration_s: Annotated[float, Field(gt=0, le=600)] = 600.0
    watch_poll_interval_ms: Annotated[int, Field(ge=20, le=5000)] = 150
