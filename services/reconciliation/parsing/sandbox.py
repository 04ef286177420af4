"""Settle's own sandbox settlement file (docs/SETTLEMENT_FILE.md), as psp_sandbox/settlement.py writes it.

Columns are found by header name. Each `L` row becomes a `SettlementLine` (amounts are integer minor units,
read with int() after a strict digits check; `batch` is the settlement date; a type we do not know is
kept as OTHER; a row whose net is not gross - fee is yielded as it is, for reconciliation to report). A
row that cannot be read (an amount that is not an integer, an unknown currency, a bad date, a wrong field
count, an unknown record type) is `Quarantined`.

The trailer (`T`) vouches for the whole file, so it is checked when the stream ends: because the parser
streams, it can only tell a truncated or corrupt file *after* yielding its lines, and then raises
`FileRejected` from the end of the iteration — the importer must roll back what it took from the file.
Rejected: no trailer, rows after the trailer, a trailer whose line count or sums disagree with the rows,
or a trailer dated unlike the rows. The count covers every row before the trailer, quarantined or not
(the PSP wrote them all); the sums add every amount that reads as an integer, on quarantined rows too.
So a row quarantined for its currency or date still balances the trailer, while a row whose amount
cannot be read leaves the sums unverifiable and the file is rejected, naming that row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from services.reconciliation.parsing.amounts import AmountError, currency_of
from services.reconciliation.parsing.csv_rows import Columns, CsvRows, Row, parse_timestamp
from services.reconciliation.parsing.model import (
    BalanceCheck,
    FileRejected,
    LineKind,
    Quarantined,
    SettlementLine,
)

AMOUNT_COLUMNS = ("gross_minor", "fee_minor", "net_minor")
REQUIRED_COLUMNS = ("record_type", "settlement_date", "psp_reference", "type", "currency", *AMOUNT_COLUMNS)
TRAILER_REFERENCE = "TRAILER"
_KINDS = {"charge": LineKind.CHARGE, "refund": LineKind.REFUND, "payout": LineKind.PAYOUT, "fee": LineKind.FEE}
# Plain ASCII digits only: int() alone would also take "1_000", " 12" and other scripts' digits. 18 digits
# bounds the work int() does on a hostile field and is far beyond any real amount.
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Layout:
    """Where each column sits in this file's header."""

    def __init__(self, columns: Columns) -> None:
        missing = columns.missing(*REQUIRED_COLUMNS, "line_count")
        if missing:
            raise FileRejected(f"missing required column(s): {', '.join(missing)}")
        self.header_line = columns.line
        self.record_type = columns.index("record_type")
        self.settlement_date = columns.index("settlement_date")
        self.psp_reference = columns.index("psp_reference")
        self.merchant_reference = columns.index("merchant_reference")
        self.type = columns.index("type")
        self.currency = columns.index("currency")
        self.amounts = [columns.index(name) for name in AMOUNT_COLUMNS]
        self.created_utc = columns.index("created_utc")
        self.source_reference = columns.index("source_reference")
        self.line_count = columns.index("line_count")


@dataclass
class _Tally:
    """What the trailer must agree with, kept as running numbers so memory stays flat."""

    rows: int = 0
    sums: list[int] = field(default_factory=lambda: [0, 0, 0])  # gross, fee, net, as AMOUNT_COLUMNS
    unsummed_rows: int = 0  # rows with an amount that could not be read
    first_unsummed_line: int = 0
    first_date: tuple[int, str] | None = None  # (line, settlement_date) of the first line
    other_date: tuple[int, str] | None = None  # the first line dated unlike the first one

    def unsummed(self, line: int) -> None:
        self.unsummed_rows += 1
        self.first_unsummed_line = self.first_unsummed_line or line

    def date(self, line: int, settlement_date: str) -> None:
        if self.first_date is None:
            self.first_date = (line, settlement_date)
        elif self.other_date is None and settlement_date != self.first_date[1]:
            self.other_date = (line, settlement_date)


class SandboxSettlementParser:
    """Reads the sandbox's daily settlement file as a stream; implements `SettlementParser`."""

    @property
    def checks(self) -> list[BalanceCheck]:
        return []  # the trailer is the file's only total, and it is enforced by rejecting the file

    def parse(self, stream: BinaryIO) -> Iterator[SettlementLine | Quarantined]:
        tally = _Tally()
        trailer: Row | None = None
        with CsvRows(stream) as rows:
            layout = _Layout(rows.header())
            last_line = layout.header_line
            for row in rows:
                if trailer is not None:
                    raise FileRejected(f"line {row.line}: a row after the trailer (line {trailer.line})")
                last_line = row.line
                if isinstance(row, Row) and row.cell(layout.record_type).upper() == "T":
                    trailer = row
                    continue
                tally.rows += 1
                if isinstance(row, Quarantined):
                    tally.unsummed(row.line)  # its fields cannot be told apart: nothing of it can be summed
                    yield row
                else:
                    yield _line(row, layout, tally)
        if trailer is None:
            raise FileRejected(f"truncated: no trailer after line {last_line}")
        _check_trailer(trailer, layout, tally)


def _line(row: Row, layout: _Layout, tally: _Tally) -> SettlementLine | Quarantined:
    texts = [row.cell(index) for index in layout.amounts]
    unreadable: int | None = None
    for position, text in enumerate(texts):
        if _INTEGER.match(text) is not None:
            tally.sums[position] += int(text)
        elif unreadable is None:
            unreadable = position
    if unreadable is not None:
        tally.unsummed(row.line)
        column, text = AMOUNT_COLUMNS[unreadable], texts[unreadable]
        return row.quarantine(f"{column}: {text!r} is not an integer amount in minor units")
    record_type = row.cell(layout.record_type)
    if record_type.upper() != "L":
        return row.quarantine(f"record_type: {record_type!r} is neither L nor T")
    settlement_date = row.cell(layout.settlement_date)
    if _DATE.match(settlement_date) is None:
        return row.quarantine(f"settlement_date: {settlement_date!r} is not YYYY-MM-DD")
    tally.date(row.line, settlement_date)
    psp_reference = row.cell(layout.psp_reference)
    if not psp_reference:
        return row.quarantine("psp_reference is empty")
    try:
        currency = currency_of(row.cell(layout.currency))
    except AmountError as error:
        return row.quarantine(f"currency: {error}")
    created = row.cell(layout.created_utc)
    try:
        occurred_at = parse_timestamp(created, None) if created else None
    except ValueError as error:
        return row.quarantine(f"created_utc: {error}")
    raw_type = row.cell(layout.type)
    source_reference = row.cell(layout.source_reference)
    gross, fee, net = (int(text) for text in texts)
    return SettlementLine(
        line=row.line,
        kind=_KINDS.get(raw_type.lower(), LineKind.OTHER),
        raw_type=raw_type,
        psp_reference=psp_reference,
        merchant_reference=row.cell(layout.merchant_reference),
        currency=currency,
        gross_minor=gross,
        fee_minor=fee,
        net_minor=net,
        occurred_at=occurred_at,
        batch=settlement_date,
        details={"source_reference": source_reference} if source_reference else {},
    )


def _check_trailer(trailer: Row, layout: _Layout, tally: _Tally) -> None:
    where = f"line {trailer.line}: trailer"
    if (reference := trailer.cell(layout.psp_reference)) != TRAILER_REFERENCE:
        raise FileRejected(f"{where} psp_reference is {reference!r}, not {TRAILER_REFERENCE!r}")
    stated = [trailer.cell(index) for index in (layout.line_count, *layout.amounts)]
    for column, text in zip(("line_count", *AMOUNT_COLUMNS), stated, strict=True):
        if _INTEGER.match(text) is None:
            raise FileRejected(f"{where} {column} {text!r} is not an integer")
    count, *sums = (int(text) for text in stated)
    if count != tally.rows:
        raise FileRejected(f"{where} counts {count} lines but the file has {tally.rows} (truncated or corrupt)")
    for column, expected, actual in zip(AMOUNT_COLUMNS, sums, tally.sums, strict=True):
        if expected != actual:
            unsummed = (
                f" ({tally.unsummed_rows} row(s) with an unreadable amount not summed, first at line "
                f"{tally.first_unsummed_line})"
                if tally.unsummed_rows
                else ""
            )
            raise FileRejected(f"{where} {column} {expected} != {actual} summed over the lines{unsummed}")
    settlement_date = trailer.cell(layout.settlement_date)
    for dated in (tally.first_date, tally.other_date):
        if dated is not None and dated[1] != settlement_date:
            raise FileRejected(f"{where} is dated {settlement_date!r} but line {dated[0]} is dated {dated[1]!r}")
