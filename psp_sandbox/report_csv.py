"""The CSV of a report run: one row per balance transaction the report type itemizes, in Stripe's format.

Rows come from settled_items.py (the same lines and switches as the daily settlement file), so a report
and the day's file always agree. Format, as Stripe writes its report files: comma-separated, one header
row, every field quoted (as the Dashboard's exports are), `\\n` line ends; amounts signed in major units
with a `.` and minimal digits (`25`, `-0.5`); currency lower-case; timestamps `YYYY-MM-DD HH:MM:SS`,
`*_utc` in UTC, the others in the run's `timezone`.

Where the sandbox has no such data, it writes what Stripe's test mode would for its case:
- `available_on`: a charge's funds become available two days after the UTC day it was made; refunds, fees
  and payouts at once.
- `balance_transaction_id`: the refund's or payout's `balance_transaction`; a charge's is `txn_` and the
  charge id's suffix (the sandbox's charges have no balance transaction object); synthetic lines get
  `txn_<their psp reference>`.
- `automatic_payout_id` is empty: the sandbox's payouts are manual.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Any

from psp_sandbox.money import major_units
from psp_sandbox.report_types import ReportType, metadata_column
from psp_sandbox.settled_items import DAY_S, SettledLine, created_utc
from psp_sandbox.state import SandboxState

AVAILABLE_AFTER_DAYS = 2
_TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def report_csv(
    state: SandboxState, report: ReportType, columns: tuple[str, ...], zone: tzinfo, lines: Iterable[SettledLine]
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(_rows(state, report, columns, zone, lines))
    return buffer.getvalue().encode()


def _rows(
    state: SandboxState, report: ReportType, columns: tuple[str, ...], zone: tzinfo, lines: Iterable[SettledLine]
) -> Iterator[list[str]]:
    yield list(columns)
    for line in lines:
        if line.type not in report.line_types:
            continue
        row = _Row(state, line, zone)
        yield [row.value(column) for column in columns]


class _Row:
    """One line's columns, from the line and the sandbox's objects behind it (intent, refund, payout)."""

    def __init__(self, state: SandboxState, line: SettledLine, zone: tzinfo) -> None:
        self.line = line
        self.zone = zone
        self.refund = state.refunds.refund(line.psp_reference) if line.type == "refund" else None
        self.payout = state.payouts.index.get(line.psp_reference) if line.type == "payout" else None
        intent_id = {"charge": line.psp_reference, "refund": line.source_reference}.get(line.type)
        self.intent = state.store.intent(intent_id) if intent_id else None

    def value(self, column: str) -> str:
        metadata = metadata_column(column)
        if metadata is not None:
            source, key = metadata
            owner = self.intent if source == "payment_metadata" else self.refund
            return str((owner or {}).get("metadata", {}).get(key, ""))
        return _COLUMNS[column](self)

    def amount(self, amount_minor: int) -> str:
        return major_units(amount_minor, self.line.currency)

    def local(self, at_s: int) -> str:
        return datetime.fromtimestamp(at_s, self.zone).strftime(_TIMESTAMP)

    def available_on_s(self) -> int:
        created_s = self.line.created_s
        if self.line.type != "charge":
            return created_s
        return created_s - created_s % DAY_S + AVAILABLE_AFTER_DAYS * DAY_S

    def balance_transaction_id(self) -> str:
        owner = self.refund or self.payout
        if owner is not None:
            return str(owner["balance_transaction"])
        charge_id = self.charge_id()
        return f"txn_{charge_id.removeprefix('ch_')}" if charge_id else f"txn_{self.line.psp_reference}"

    def charge_id(self) -> str:
        if self.line.type == "charge":
            return self.line.source_reference
        return str(self.refund["charge"]) if self.refund else ""

    def payment_intent_id(self) -> str:
        if self.line.type == "charge":
            return self.line.psp_reference
        return self.line.source_reference if self.line.type == "refund" else ""

    def source_id(self) -> str:
        return self.line.source_reference if self.line.type == "charge" else self.line.psp_reference

    def description(self) -> str:
        intent_description = str((self.intent or {}).get("description") or "")
        if self.line.type == "charge":
            return intent_description
        if self.line.type == "refund":
            return f"REFUND FOR CHARGE ({intent_description})" if intent_description else "REFUND FOR CHARGE"
        if self.payout is not None:
            return str(self.payout.get("description") or "STRIPE PAYOUT")
        return "Sandbox fee" if self.line.type == "fee" else ""

    def customer_facing(self, value: str) -> str:
        return value if self.line.type in ("charge", "refund") else ""

    def payout_field(self, name: str) -> Any:
        return (self.payout or {}).get(name)


def _arrival_date(row: _Row) -> str:
    arrival_s = row.payout_field("arrival_date")
    return datetime.fromtimestamp(arrival_s, row.zone).strftime("%Y-%m-%d") if arrival_s is not None else ""


_COLUMNS: dict[str, Callable[[_Row], str]] = {
    "balance_transaction_id": _Row.balance_transaction_id,
    "created_utc": lambda row: created_utc(row.line.created_s),
    "created": lambda row: row.local(row.line.created_s),
    "available_on_utc": lambda row: created_utc(row.available_on_s()),
    "available_on": lambda row: row.local(row.available_on_s()),
    "currency": lambda row: row.line.currency.lower(),
    "gross": lambda row: row.amount(row.line.gross_minor),
    "fee": lambda row: row.amount(row.line.fee_minor),
    "net": lambda row: row.amount(row.line.net_minor),
    "reporting_category": lambda row: row.line.type,
    "description": _Row.description,
    "source_id": _Row.source_id,
    "customer_facing_amount": lambda row: row.customer_facing(row.amount(row.line.gross_minor)),
    "customer_facing_currency": lambda row: row.customer_facing(row.line.currency.lower()),
    "automatic_payout_id": lambda row: "",
    "charge_id": _Row.charge_id,
    "payment_intent_id": _Row.payment_intent_id,
    "payment_method_type": lambda row: row.customer_facing("card" if row.intent is not None else ""),
    "payout_id": lambda row: row.line.psp_reference,
    "effective_at_utc": lambda row: created_utc(row.line.created_s),
    "effective_at": lambda row: row.local(row.line.created_s),
    "payout_expected_arrival_date": _arrival_date,
    "payout_status": lambda row: str(row.payout_field("status") or ""),
    "payout_type": lambda row: str(row.payout_field("type") or ""),
    "payout_description": lambda row: str(row.payout_field("description") or ""),
    "payout_destination_id": lambda row: str(row.payout_field("destination") or ""),
}
