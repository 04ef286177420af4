"""The reconciliation service's settings (SETTLE_* environment variables), on top of every service's."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from services.common.config import ServiceSettings
from services.reconciliation.stripe_report_files import BALANCE_CHANGE, PAYOUTS, ReportType


class ReconciliationSettings(ServiceSettings):
    # The tolerant rule matches a line with a booking of the same kind, currency and amount this close.
    match_window_days: Annotated[int, Field(ge=0, le=60)] = 3
    # A booking not settled this long after it happened is MISSING_IN_SETTLEMENT; before, in transit.
    settlement_delay_days: Annotated[int, Field(ge=0, le=60)] = 2
    # The PSP's API (Stripe's, or the sandbox that speaks it), where the nightly run gets its settlement.
    psp_api_base: str = "http://127.0.0.1:12111"
    # Where that settlement comes from: `sandbox`, the sandbox's own daily file (<base>/_sandbox/settlements/
    # <day>, only the sandbox serves it); `stripe_report`, Stripe's itemized reports through its Reporting
    # API (`report_types`, each run for the UTC day), which works against Stripe and the sandbox alike.
    settlement_source: Literal["sandbox", "stripe_report"] = "sandbox"
    # The PSP secret key the report runs are made with: the executor's (SETTLE_PSP_API_KEY_FILE in
    # deployments; the default is the sandbox's test key, which Stripe refuses).
    psp_api_key: SecretStr = SecretStr("sk_test_settle_sandbox")
    # Stripe's Balance report itemizes a day in two types, activity (no payouts) and payouts; both by
    # default (a JSON list). See services/reconciliation/stripe_report_files.py.
    report_types: Annotated[list[ReportType], Field(min_length=1)] = [BALANCE_CHANGE, PAYOUTS]
    # How long the night's report runs may take to finish (Stripe's take minutes); then the attempt fails
    # and the next check tries again.
    report_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 900.0
    # The nightly run reconciles yesterday after this hour (UTC); 0 checks turn it off.
    nightly_hour_utc: Annotated[int, Field(ge=0, le=23)] = 2
    nightly_check_interval_s: Annotated[float, Field(ge=0, le=86_400)] = 900.0
    # Book the fees a settlement file reports as ledger entries (PostPspFee) instead of only reporting them.
    book_psp_fees: bool = False
    # The ledger's gRPC address and an API key with the `admin` scope, needed to book fees.
    ledger_grpc_address: str = ""
    ledger_api_key: str = ""
