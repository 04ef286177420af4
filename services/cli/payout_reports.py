"""Payout reports as CSV: one row per payout, or totals per group and currency. Pure: payouts in, text out.

The files are opened by people in spreadsheets, so a text cell that a spreadsheet would run as a formula
is defused with a leading apostrophe (OWASP "CSV injection"). Rows end in CRLF as RFC 4180 says; open
the stream with newline="".
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from settle.wallet.v1 import wallet_pb2

from services.common.report_cells import major_units, text_cell

ITEM_COLUMNS = (
    "line", "payout_id", "seller_id", "amount_minor", "currency", "amount", "destination", "status",
    "psp_reference", "failure_code", "failure_message",
)  # fmt: skip
TOTAL_COLUMNS = (
    "currency", "items", "amount_minor", "amount", "requested_items", "requested_minor", "paid_items",
    "paid_minor", "failed_items", "failed_minor",
)  # fmt: skip
REPORTED_STATUSES = (
    wallet_pb2.PAYOUT_STATUS_REQUESTED,
    wallet_pb2.PAYOUT_STATUS_PAID,
    wallet_pb2.PAYOUT_STATUS_FAILED,
)


def status_name(status: wallet_pb2.PayoutStatus.ValueType) -> str:
    """'requested', 'paid', 'failed'; the number for a status newer than this code."""
    try:
        return wallet_pb2.PayoutStatus.Name(status).removeprefix("PAYOUT_STATUS_").lower()
    except ValueError:
        return str(int(status))


def metadata_keys_of(payouts: Sequence[wallet_pb2.Payout]) -> list[str]:
    """Every metadata key of `payouts`, sorted: the metadata columns of an items report."""
    return sorted({key for payout in payouts for key in payout.metadata})


def write_items_csv(payouts: Iterable[wallet_pb2.Payout], out: TextIO, metadata_keys: Sequence[str]) -> int:
    """One row per payout, with a column per metadata key (empty where a payout lacks it); returns the
    number of rows written after the header."""
    writer = csv.writer(out)
    writer.writerow([*ITEM_COLUMNS, *(text_cell(key) for key in metadata_keys)])
    rows = 0
    for payout in payouts:
        amount_minor, currency = payout.amount.amount_minor, payout.amount.currency
        writer.writerow(
            [
                payout.batch_line or "",  # 0: not from a batch
                text_cell(payout.payout_id),
                text_cell(payout.seller_id),
                amount_minor,
                text_cell(currency),
                major_units(amount_minor, currency),
                text_cell(payout.destination),
                status_name(payout.status),
                text_cell(payout.psp_reference),
                text_cell(payout.failure_code),
                text_cell(payout.failure_message),
                *(text_cell(payout.metadata.get(key, "")) for key in metadata_keys),
            ]
        )
        rows += 1
    return rows


_BUILT_IN_GROUPS: dict[str, Callable[[wallet_pb2.Payout], str]] = {
    "seller_id": lambda payout: payout.seller_id,
    "status": lambda payout: status_name(payout.status),
    "destination": lambda payout: payout.destination,
    "currency": lambda payout: payout.amount.currency,
}


@dataclass(slots=True)
class _Totals:
    items: int = 0
    amount_minor: int = 0
    items_by_status: dict[int, int] = field(default_factory=dict)
    minor_by_status: dict[int, int] = field(default_factory=dict)

    def add(self, payout: wallet_pb2.Payout) -> None:
        self.items += 1
        self.amount_minor += payout.amount.amount_minor
        status = int(payout.status)
        self.items_by_status[status] = self.items_by_status.get(status, 0) + 1
        self.minor_by_status[status] = self.minor_by_status.get(status, 0) + payout.amount.amount_minor


def write_grouped_csv(payouts: Iterable[wallet_pb2.Payout], out: TextIO, group_by: str) -> int:
    """One row per (group value, currency), sorted by both, with counts and sums in total and per status.
    `group_by` is seller_id, status, destination, currency or else a metadata key; payouts without that
    key form the group "". Reads `payouts` once; returns the number of rows written after the header."""
    if not group_by:
        raise ValueError("group_by must name a field or a metadata key")
    value_of = _BUILT_IN_GROUPS.get(group_by) or (lambda payout: payout.metadata.get(group_by, ""))
    totals: dict[tuple[str, str], _Totals] = {}
    for payout in payouts:
        key = (value_of(payout), payout.amount.currency)
        totals.setdefault(key, _Totals()).add(payout)
    writer = csv.writer(out)
    writer.writerow([text_cell(group_by), *TOTAL_COLUMNS])
    for (group, currency), total in sorted(totals.items()):
        per_status: list[int] = []
        for status in REPORTED_STATUSES:
            per_status += [total.items_by_status.get(status, 0), total.minor_by_status.get(status, 0)]
        writer.writerow(
            [
                text_cell(group),
                text_cell(currency),
                total.items,
                total.amount_minor,
                major_units(total.amount_minor, currency),
                *per_status,
            ]
        )
    return len(totals)
