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
    # Where the PSP's daily settlement files are (the sandbox's /_sandbox/settlements/<day>).
    psp_api_base: str = "http://127.0.0.1:12111"
    # The nightly run reconciles yesterday after this hour (UTC); 0 checks turn it off.
    nightly_hour_utc: Annotated[int, Field(ge=0, le=23)] = 2
    nightly_check_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    # Book the fees a settlement file reports as ledger entries (PostPspFee) instead of only reporting them.
    book_psp_fees: bool = False
    # The ledger's gRPC address and an API key with the `admin` scope, needed to book fees.
    ledger_grpc_address: str = ""
    ledger_api_key: str = ""
