"""Which Stripe report types the nightly reconciliation runs, and with which columns.

Stripe's Balance report splits a day in two itemized types: activity (charges, refunds, fees; no payouts)
and payouts, which Settle makes by API (manual payouts; the payout reconciliation report covers automatic
ones only). So both are run. Columns are asked for by name, because the defaults carry neither the object
ids nor Settle's own ids (metadata):

- activity: `payment_intent_id` is a charge's reference (the executor records the PaymentIntent),
  `source_id` a refund's (re_); Settle's payment order and refund ids come back as
  `payment_metadata[payment_order_id]` and `refund_metadata[refund_id]`.
- payouts: the report names the payout `payout_id` and its time `effective_at_utc` (the parser reads both).
"""

from __future__ import annotations

from typing import Final, Literal

ReportType = Literal["balance_change_from_activity.itemized.3", "payouts.itemized.3"]
BALANCE_CHANGE: Final = "balance_change_from_activity.itemized.3"
PAYOUTS: Final = "payouts.itemized.3"
REPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    BALANCE_CHANGE: (
        *("balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "fee", "net"),
        *("reporting_category", "source_id", "payment_intent_id", "description"),
        *("payment_metadata[payment_order_id]", "refund_metadata[refund_id]"),
    ),
    PAYOUTS: (
        *("payout_id", "effective_at_utc", "balance_transaction_id", "currency", "gross", "fee", "net"),
        *("reporting_category", "description"),
    ),
}
