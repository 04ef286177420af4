"""Adyen Settlement details report (settlement_detail_report_batch_<N>.csv).

See SETTLEMENT_FORMATS.md, "Adyen Settlement details report". Amounts are unsigned with debit and credit
in separate columns; a line is read in its net currency only. The gross-currency columns and the
exchange rate (up to 15 decimals) go to `details` as written: converting them here would need rounding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as utc_offset
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

NET_DEBIT = "Net Debit (NC)"
NET_CREDIT = "Net Credit (NC)"
FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
# Kept in `details` under these names (the standard spelling, whatever case the file uses), when non-empty.
DETAIL_COLUMNS = (
    "Modification Reference",
    "Merchant Reference",
    "Modification Merchant Reference",
    "Company Account",
    "Merchant Account",
    "Payment Method",
    "Payment Method Variant",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Metadata",
)

_KINDS: dict[str, LineKind] = {
    "settled": LineKind.CHARGE,
    "refunded": LineKind.REFUND,
    "refundedreversed": LineKind.REFUND,
    "chargeback": LineKind.DISPUTE,
    "secondchargeback": LineKind.DISPUTE,
    "chargebackreversed": LineKind.DISPUTE,
    "fee": LineKind.FEE,
    "misccosts": LineKind.FEE,
    "invoicededuction": LineKind.FEE,
    "paymentcost": LineKind.FEE,
    "merchantpayout": LineKind.PAYOUT,
    "paidout": LineKind.PAYOUT,
    "paidoutreversed": LineKind.PAYOUT,
    "balancetransfer": LineKind.ADJUSTMENT,
    "depositcorrection": LineKind.ADJUSTMENT,
    "manualcorrected": LineKind.ADJUSTMENT,
}

# The abbreviations Adyen writes in TimeZone, as the fixed offsets they denote. "CET" is always +1 here,
# unlike the IANA zone of that name, which switches to summer time.
_ABBREVIATIONS: dict[str, tzinfo] = {
    name: utc_offset(timedelta(hours=hours))
    for name, hours in {
        "CET": 1, "CEST": 2, "GMT": 0, "UTC": 0, "BST": 1, "EST": -5, "EDT": -4, "PST": -8, "PDT": -7,
        "AEST": 10, "AEDT": 11, "SGT": 8, "JST": 9,
    }.items()
}  # fmt: skip
_ZONE_CACHE_LIMIT = 64  # distinct TimeZone values remembered; a hostile file cannot grow the cache further


def kind_of(settlement_type: str) -> LineKind:
    """The normalised kind of a `Type`, matched case-insensitively; unknown types are OTHER, never dropped."""
    return _KINDS.get(settlement_type.strip().lower(), LineKind.OTHER)


class _Layout:
    """Where each column this parser reads sits in one file's header."""

    def __init__(self, columns: Columns) -> None:
        # Some report versions (and the aggregate report) call the type column "Journal Type".
        journal_type_only = columns.index("Type") is None and columns.index("Journal Type") is not None
        type_column = "Journal Type" if journal_type_only else "Type"
        missing = columns.missing("Psp Reference", type_column, "Net Currency")
        if columns.index(NET_DEBIT) is None and columns.index(NET_CREDIT) is None:
            missing.append(f"{NET_DEBIT} or {NET_CREDIT}")
        if missing:
            raise FileRejected(f"missing required column(s): {', '.join(missing)}")
        self.psp_reference = columns.index("Psp Reference")
        self.type = columns.index(type_column)
        self.currency = columns.index("Net Currency")
        self.net_debit = columns.index(NET_DEBIT)
        self.net_credit = columns.index(NET_CREDIT)
        self.fees = [(name, columns.index(name)) for name in FEE_COLUMNS]
        self.merchant_reference = columns.index("Merchant Reference")
        self.modification_merchant_reference = columns.index("Modification Merchant Reference")
        self.batch = columns.index("Batch Number")
        self.created = columns.index("Creation Date")
        self.zone = columns.index("TimeZone")
        self.details = [(name, columns.index(name)) for name in DETAIL_COLUMNS]


class AdyenSettlementParser:
    """Reads an Adyen Settlement details report as a stream; implements `SettlementParser`.

    `timezone` (an IANA name, e.g. the merchant account's "Europe/Amsterdam") is used for every Creation
    Date when given; otherwise each row's TimeZone column decides (IANA names or common abbreviations).
    """

    def __init__(self, *, timezone: str | None = None) -> None:
        self._zone: tzinfo | None = None
        if timezone is not None:
            self._zone = _iana_zone(timezone)
            if self._zone is None:
                raise ValueError(f"unknown IANA time zone {timezone!r}")
        self._zones: dict[str, tzinfo | None] = {}
        self._checks: list[BalanceCheck] = []

    @property
    def checks(self) -> list[BalanceCheck]:
        return list(self._checks)

    def parse(self, stream: BinaryIO) -> Iterator[SettlementLine | Quarantined]:
        self._checks = []
        # Σ (Net Credit - Net Debit) per (Batch Number, Net Currency): one sum per pair, never rows.
        batch_net: defaultdict[tuple[str, str], int] = defaultdict(int)
        with CsvRows(stream) as rows:
            # Customer Area exports may open with report parameters (merchant, dates) before the header.
            layout = _Layout(rows.header(anchors=("Net Currency",)))
            for row in rows:
                item = row if isinstance(row, Quarantined) else self._line(row, layout)
                if isinstance(item, SettlementLine):
                    batch_net[item.batch, item.currency] += item.net_minor
                yield item
        self._checks = [
            # Without a Batch Number column the file is still one batch, and must still balance.
            BalanceCheck(f"batch {batch} {currency}" if batch else f"file {currency}", currency, 0, net)
            for (batch, currency), net in batch_net.items()
        ]

    def _line(self, row: Row, layout: _Layout) -> SettlementLine | Quarantined:
        try:
            currency = _currency(row.cell(layout.currency))
            net = _amount(row, layout.net_credit, NET_CREDIT, currency)
            net -= _amount(row, layout.net_debit, NET_DEBIT, currency)
            fee = sum(_amount(row, index, name, currency) for name, index in layout.fees)
        except AmountError as error:
            return row.quarantine(str(error))
        try:
            occurred_at = self._occurred_at(row, layout)
        except ValueError as error:
            return row.quarantine(str(error))
        raw_type = row.cell(layout.type)
        details = {name: value for name, index in layout.details if (value := row.cell(index))}
        return SettlementLine(
            line=row.line,
            kind=kind_of(raw_type),
            raw_type=raw_type,
            psp_reference=row.cell(layout.psp_reference),
            merchant_reference=row.cell(layout.modification_merchant_reference) or row.cell(layout.merchant_reference),
            currency=currency,
            gross_minor=net + fee,  # in the net currency: what the buyer's payment was worth before fees
            fee_minor=fee,
            net_minor=net,
            occurred_at=occurred_at,
            batch=row.cell(layout.batch),
            details=details,
        )

    def _occurred_at(self, row: Row, layout: _Layout) -> datetime | None:
        created = row.cell(layout.created)
        if not created:
            return None
        zone = self._zone
        if zone is None:
            name = row.cell(layout.zone)
            if not name:
                raise ValueError(f"Creation Date {created!r} has no TimeZone (configure timezone=)")
            zone = self._zone_named(name)
            if zone is None:
                raise ValueError(f"unknown TimeZone {name!r} (configure timezone= with an IANA name)")
        try:
            return parse_timestamp(created, zone, tolerant=True)
        except ValueError as error:
            raise ValueError(f"Creation Date: {error}") from None

    def _zone_named(self, name: str) -> tzinfo | None:
        if name in self._zones:
            return self._zones[name]
        zone = _ABBREVIATIONS.get(name.upper())
        if zone is None and "/" in name:  # only Area/Location names: legacy IANA names like "EST" mislead
            zone = _iana_zone(name)
        if len(self._zones) < _ZONE_CACHE_LIMIT:
            self._zones[name] = zone
        return zone


def _currency(text: str) -> str:
    try:
        return currency_of(text)
    except AmountError as error:
        raise AmountError(f"Net Currency: {error}") from None


def _amount(row: Row, index: int | None, column: str, currency: str) -> int:
    text = row.cell(index)
    if not text:
        return 0  # a debit or credit left empty (blank or "") because the other one carries the amount
    try:
        return minor_units(text, currency)
    except AmountError as error:
        raise AmountError(f"{column}: {error}") from None


def _iana_zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
