"""The sandbox's daily settlement file, with switches that inject the discrepancies reconciliation must find.

Format (docs/SETTLEMENT_FILE.md): CSV, UTF-8 without BOM, CRLF line ends, quoted only when needed. One
header row, one `L` row per settled item, then exactly one `T` trailer row. Columns:

    record_type,settlement_date,psp_reference,merchant_reference,type,currency,gross_minor,fee_minor,
    net_minor,created_utc,source_reference,line_count

- `L` rows: one per line settled_items.py computes for the day (which items, references, amounts, fees and
  switches are described there): type charge, refund, payout or fee; currency upper-case; amounts signed
  integers in minor units; `created_utc` `YYYY-MM-DD HH:MM:SS` UTC. `line_count` is empty.
- The `T` row: settlement_date, psp_reference `TRAILER`, gross/fee/net_minor = plain integer sums over every
  L row (across currencies), line_count = the number of L rows; every other column empty.
- An item belongs to the file of the UTC date it settles on: its `created` time on the sandbox clock, a day
  later when `settle_late` names it.
"""

from __future__ import annotations

import calendar
import csv
from collections.abc import Iterator
from datetime import date
from typing import TextIO

from psp_sandbox.settled_items import DAY_S, created_utc, processing_fee_minor, settled_lines
from psp_sandbox.state import SandboxState
from psp_sandbox.switches import SettlementOptions, SettlementQueryError, options_from_query, settlement_day

# What callers (tests, benchmarks) import from here, wherever it lives now.
__all__ = [
    "COLUMNS",
    "SettlementOptions",
    "SettlementQueryError",
    "options_from_query",
    "processing_fee_minor",
    "settlement_day",
    "settlement_rows",
    "write_settlement_file",
]

COLUMNS = (
    *("record_type", "settlement_date", "psp_reference", "merchant_reference", "type", "currency"),
    *("gross_minor", "fee_minor", "net_minor", "created_utc", "source_reference", "line_count"),
)
TRAILER_REFERENCE = "TRAILER"


def settlement_rows(state: SandboxState, day: date, options: SettlementOptions) -> Iterator[list[str]]:
    """The file for `day` row by row: header, L rows, trailer (unless `truncate`)."""
    yield list(COLUMNS)
    settlement_date = day.isoformat()
    start_s = calendar.timegm(day.timetuple())
    count = gross_total = fee_total = net_total = 0
    for line in settled_lines(state, start_s, start_s + DAY_S, options):
        count += 1
        gross_total += line.gross_minor
        fee_total += line.fee_minor
        net_total += line.net_minor
        yield [
            *("L", settlement_date, line.psp_reference, line.merchant_reference, line.type, line.currency),
            *(str(line.gross_minor), str(line.fee_minor), str(line.net_minor), created_utc(line.created_s)),
            *(line.source_reference, ""),
        ]
    if not options.truncate:
        totals = (str(gross_total), str(fee_total), str(net_total))
        yield ["T", settlement_date, TRAILER_REFERENCE, "", "", "", *totals, "", "", str(count)]


def write_settlement_file(state: SandboxState, day: date, options: SettlementOptions, out: TextIO) -> int:
    """Writes the file for `day` to `out` (opened with newline=""); returns the number of L rows written."""
    writer = csv.writer(out, lineterminator="\r\n")
    lines = 0
    for row in settlement_rows(state, day, options):
        writer.writerow(row)
        lines += row[0] == "L"
    return lines
