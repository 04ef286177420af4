"""Stripe itemized reports (balance_change_from_activity.itemized.*, payout_reconciliation.itemized.*).

See SETTLEMENT_FORMATS.md, "Stripe itemized reports". Columns are found by name; amounts are kept
exactly as written (signed, major units), so a row whose net is not gross - fee reaches reconciliation
as it is, to be reported rather than "fixed" here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.reconciliation.parsing.amounts import AmountError, currency_of, minor_units
from services.reconciliation.parsing.csv_rows import Columns, CsvRows, Row, parse_timestamp
from services.reconciliation.parsing.model import (
    BalanceCheck,
    FileRejected,
    LineKind,
    Quarantined,
    SettlementLine,
)

REQUIRED_COLUMNS = ("balance_transaction_id", "currency", "gross", "fee", "net", "reporting_category")
# Where Settle's own ids come back (it sets these metadata keys on the objects it creates), in priority order.
MERCHANT_REFERENCE_COLUMNS = (
    "payment_metadata[payment_order_id]",
    "refund_metadata[refund_id]",
    "transfer_metadata[payout_id]",
    "payment_metadata[payout_id]",
)
# Stripe fills payment_metadata on a refund's row too (from the refunded charge), so a refund line looks
# at its own refund id first; otherwise every refund of an order would carry the same reference.
REFUND_REFERENCE_COLUMNS = ("refund_metadata[refund_id]", *MERCHANT_REFERENCE_COLUMNS)
METADATA_PREFIXES = ("payment_metadata[", "refund_metadata[", "transfer_metadata[")
# `payout_id` is how the payouts.itemized reports name the payout a row is.
ID_COLUMNS = (
    *("balance_transaction_id", "source_id", "charge_id", "payment_intent_id", "automatic_payout_id"),
    "payout_id",
)

_KINDS: dict[str, LineKind] = {
    "charge": LineKind.CHARGE,
    "refund": LineKind.REFUND,
    "refund_failure": LineKind.REFUND,  # the refund came back: money in, but still about a refund
    "partial_capture_reversal": LineKind.REFUND,
    "payout": LineKind.PAYOUT,
    "payout_reversal": LineKind.PAYOUT,
    "fee": LineKind.FEE,
    "dispute": LineKind.DISPUTE,
    "dispute_reversal": LineKind.DISPUTE,
    "other_adjustment": LineKind.ADJUSTMENT,
    "transfer": LineKind.ADJUSTMENT,
    "transfer_reversal": LineKind.ADJUSTMENT,
    "risk_reserved_funds": LineKind.ADJUSTMENT,
    "topup": LineKind.ADJUSTMENT,
    "tax": LineKind.ADJUSTMENT,
}


def kind_of(reporting_category: str) -> LineKind:
    """The normalised kind of a `reporting_category`; categories Stripe adds later are OTHER, never dropped."""
    kind = _KINDS.get(reporting_category)  # as Stripe writes it: no copy for the common case
    if kind is not None:
        return kind
    category = reporting_category.strip().lower()
    if category.startswith("platform_earning"):
        return LineKind.ADJUSTMENT
    return _KINDS.get(category, LineKind.OTHER)


class _Layout:
    """Where each column this parser reads sits in one file's header."""

    def __init__(self, columns: Columns) -> None:
        missing = columns.missing(*REQUIRED_COLUMNS)
        if missing:
            raise FileRejected(f"missing required column(s): {', '.join(missing)}")
        self.currency = columns.index("currency")
        self.gross = columns.index("gross")
        self.fee = columns.index("fee")
        self.net = columns.index("net")
        self.category = columns.index("reporting_category")
        self.description = columns.index("description")
        self.created_utc = columns.index("created_utc")
        self.effective_at_utc = columns.index("effective_at_utc")  # the payouts reports' time column
        self.created_local = columns.index("created")
        self.ids = {name: columns.index(name) for name in ID_COLUMNS}
        self.merchant_references = [columns.index(name) for name in MERCHANT_REFERENCE_COLUMNS]
        self.refund_references = [columns.index(name) for name in REFUND_REFERENCE_COLUMNS]
        self.metadata = [column for prefix in METADATA_PREFIXES for column in columns.with_prefix(prefix)]


class StripeItemizedParser:
    """Reads a Stripe itemized report as a stream; implements `SettlementParser`.

    `decimal_separator` is the report's decimal option ("." or ","; the file stays comma-separated).
    `timezone` (an IANA name) is the report's timezone setting, for columns without `_utc`; UTC if None.
    """

    def __init__(self, *, decimal_separator: str = ".", timezone: str | None = None) -> None:
        if decimal_separator not in {".", ","}:
            raise ValueError(f"decimal_separator must be '.' or ',', not {decimal_separator!r}")
        self._decimal_separator = decimal_separator
        self._zone: tzinfo | None = None
        if timezone is not None:
            try:
                self._zone = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError(f"unknown IANA time zone {timezone!r}") from error
        self._checks: list[BalanceCheck] = []

    @property
    def checks(self) -> list[BalanceCheck]:
        return list(self._checks)

    def parse(self, stream: BinaryIO) -> Iterator[SettlementLine | Quarantined]:
        self._checks = []
        payouts = _PayoutTotals()
        with CsvRows(stream) as rows:
            layout = _Layout(rows.header(anchors=("balance_transaction_id", "reporting_category")))
            for row in rows:
                item = row if isinstance(row, Quarantined) else self._line(row, layout)
                if isinstance(item, SettlementLine):
                    payouts.add(item)
                yield item
        self._checks = payouts.checks()

    def _line(self, row: Row, layout: _Layout) -> SettlementLine | Quarantined:
        ids = {name: row.cell(index) for name, index in layout.ids.items()}
        if not ids["balance_transaction_id"]:
            return row.quarantine("balance_transaction_id is empty")
        try:
            currency = _currency(row.cell(layout.currency))
            gross = self._amount(row, layout.gross, "gross", currency)
            fee = self._amount(row, layout.fee, "fee", currency)
            net = self._amount(row, layout.net, "net", currency)
        except AmountError as error:
            return row.quarantine(str(error))
        try:
            occurred_at = self._occurred_at(row, layout)
        except ValueError as error:
            return row.quarantine(str(error))
        raw_type = row.cell(layout.category)
        kind = kind_of(raw_type)
        if kind is LineKind.CHARGE:  # Settle knows a charge by its PaymentIntent
            psp_reference = ids["payment_intent_id"] or ids["charge_id"] or ids["source_id"]
        else:
            # Stripe fills payment_intent_id and charge_id on a refund's (or dispute's) row with the
            # refunded payment's: the row's own object is its source (re_, dp_, po_) or the payout.
            psp_reference = ids["source_id"] or ids["payout_id"] or ids["payment_intent_id"] or ids["charge_id"]
        references = layout.refund_references if kind is LineKind.REFUND else layout.merchant_references
        merchant_reference = ""
        for index in references:
            if merchant_reference := row.cell(index):
                break
        details = {name: value for name, value in ids.items() if value}
        for name, index in layout.metadata:
            if value := row.cell(index):
                details[name] = value
        if description := row.cell(layout.description):
            details["description"] = description
        return SettlementLine(
            line=row.line,
            kind=kind,
            raw_type=raw_type,
            psp_reference=psp_reference or ids["balance_transaction_id"],
            merchant_reference=merchant_reference,
            currency=currency,
            gross_minor=gross,
            fee_minor=fee,
            net_minor=net,
            occurred_at=occurred_at,
            batch=ids["automatic_payout_id"],
            details=details,
        )

    def _amount(self, row: Row, index: int | None, column: str, currency: str) -> int:
        text = row.cell(index)
        if self._decimal_separator == "," and "." in text:
            # With a comma decimal separator a "." can only be a thousands separator: reading it as a
            # decimal point would shift the amount by a factor of 1000.
            raise AmountError(f"{column}: {text!r} contains '.' but the decimal separator is ','")
        try:
            return minor_units(text, currency, decimal_separator=self._decimal_separator)
        except AmountError as error:
            raise AmountError(f"{column}: {error}") from None

    def _occurred_at(self, row: Row, layout: _Layout) -> datetime | None:
        if text := row.cell(layout.created_utc):
            return _timestamp("created_utc", text, None)
        if text := row.cell(layout.effective_at_utc):
            return _timestamp("effective_at_utc", text, None)
        if text := row.cell(layout.created_local):
            return _timestamp("created", text, self._zone)
        return None


def _currency(text: str) -> str:
    try:
        return currency_of(text)
    except AmountError as error:
        raise AmountError(f"currency: {error}") from None


def _timestamp(column: str, text: str, zone: tzinfo | None) -> datetime:
    try:
        return parse_timestamp(text, zone, tolerant=True)
    except ValueError as error:
        raise ValueError(f"{column}: {error}") from None


class _PayoutTotals:
    """Running sums for the payout check: Σ net of a payout's rows must equal what the payout paid out.

    Keeps one sum per payout id and currency, never rows, so memory stays flat however long the file.
    """

    def __init__(self) -> None:
        self._rows_net: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._paid_out: dict[str, tuple[str, int]] = {}  # payout id -> (currency, Σ gross of its payout rows)

    def add(self, line: SettlementLine) -> None:
        payout_id = line.details.get("source_id") or line.details.get("payout_id", "")
        if line.kind is LineKind.PAYOUT and payout_id and line.raw_type.lower() == "payout":
            currency, gross = self._paid_out.get(payout_id, (line.currency, 0))
            self._paid_out[payout_id] = (currency, gross + line.gross_minor)
        elif line.batch:
            self._rows_net[line.batch][line.currency] += line.net_minor

    def checks(self) -> list[BalanceCheck]:
        checks: list[BalanceCheck] = []
        for payout_id, (currency, gross) in self._paid_out.items():
            rows_net = self._rows_net.get(payout_id)
            if rows_net is None:
                continue  # the file does not itemize this payout (e.g. balance change from activity)
            checks.append(BalanceCheck(f"payout {payout_id}", currency, -gross, rows_net.get(currency, 0)))
            # A payout pays one currency: rows of another currency under it cannot be part of it.
            checks.extend(
                BalanceCheck(f"payout {payout_id}", other, 0, net)
                for other, net in rows_net.items()
                if other != currency
            )
        return checks
