"""The Stripe report types the sandbox runs, and the columns each offers.

As on Stripe, the Balance report's two itemized parts split the balance transactions: activity (charges,
refunds, fees: everything but payouts) and payouts. Both are version 3, the one with a `timezone`
parameter. Stripe's payout reconciliation report (`payout_reconciliation.itemized.5`) is not offered: it
itemizes automatic payouts only, and the sandbox's payouts are all manual (created through the API), so
it would always be empty.

Columns: a run without `columns` gets the type's defaults; with them, exactly those in that order. Besides
the named ones, `payment_metadata[<key>]` (the PaymentIntent's metadata, on charge and refund rows) and
`refund_metadata[<key>]` (the refund's) can be asked for by metadata key, as on Stripe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COLUMNS = 100
_METADATA_COLUMN = re.compile(r"^(payment_metadata|refund_metadata)\[([^\[\]]{1,40})\]$")


@dataclass(frozen=True)
class ReportType:
    report_type: str
    line_types: frozenset[str]  # which settled lines (settled_items.py) the report itemizes
    default_columns: tuple[str, ...]
    other_columns: tuple[str, ...]
    metadata: bool  # whether payment_metadata[...] / refund_metadata[...] columns are offered

    def offers(self, column: str) -> bool:
        if column in self.default_columns or column in self.other_columns:
            return True
        return self.metadata and _METADATA_COLUMN.match(column) is not None


BALANCE_CHANGE = ReportType(
    report_type="balance_change_from_activity.itemized.3",
    line_types=frozenset({"charge", "refund", "fee"}),
    default_columns=(
        *("balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on", "currency"),
        *("gross", "fee", "net", "reporting_category", "description"),
    ),
    other_columns=(
        *("source_id", "customer_facing_amount", "customer_facing_currency", "automatic_payout_id"),
        *("charge_id", "payment_intent_id", "payment_method_type"),
    ),
    metadata=True,
)
PAYOUTS = ReportType(
    report_type="payouts.itemized.3",
    line_types=frozenset({"payout"}),
    default_columns=(
        *("payout_id", "effective_at_utc", "effective_at", "currency", "balance_transaction_id", "gross"),
        *("fee", "net", "reporting_category", "description", "payout_expected_arrival_date", "payout_status"),
    ),
    other_columns=("payout_type", "payout_description", "payout_destination_id"),
    metadata=False,
)
REPORT_TYPES = {report.report_type: report for report in (BALANCE_CHANGE, PAYOUTS)}


class ColumnError(ValueError):
    pass


def chosen_columns(report: ReportType, requested: list[str]) -> tuple[str, ...]:
    """The report's columns: the defaults when none are requested, else the requested ones in order."""
    if not requested:
        return report.default_columns
    if len(requested) > MAX_COLUMNS:
        raise ColumnError(f"At most {MAX_COLUMNS} columns can be requested.")
    for column in requested:
        if not report.offers(column):
            raise ColumnError(f"Invalid column for report type {report.report_type}: {column}")
    if len(set(requested)) != len(requested):
        raise ColumnError("Each column can be requested only once.")
    return tuple(requested)


def metadata_column(column: str) -> tuple[str, str] | None:
    """("payment_metadata", key) for `payment_metadata[key]`; None for a named column."""
    match = _METADATA_COLUMN.match(column)
    return (match.group(1), match.group(2)) if match else None
