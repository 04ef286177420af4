"""The sandbox's daily settlement file, with switches that inject the discrepancies reconciliation must find.

Format (docs/SETTLEMENT_FILE.md): CSV, UTF-8 without BOM, CRLF line ends, quoted only when needed. One
header row, one `L` row per settled item, then exactly one `T` trailer row. Columns:

    record_type,settlement_date,psp_reference,merchant_reference,type,currency,gross_minor,fee_minor,
    net_minor,created_utc,source_reference,line_count

- `L` rows: `type` is charge (a succeeded PaymentIntent: pi_ id, metadata payment_order_id), refund (re_ id,
  metadata refund_id, source_reference = the refunded pi_), payout (po_ id of a paid payout, metadata
  payout_id, source_reference = the destination bank account) or fee (a standalone fee_ line, no merchant
  reference). Amounts are signed integers in minor units: gross > 0 into the PSP balance, < 0 out;
  net = gross - fee. Currency is upper-case ISO 4217. `created_utc` is `YYYY-MM-DD HH:MM:SS` UTC; a charge's
  source_reference is its ch_ id. `line_count` is empty.
- The `T` row: settlement_date, psp_reference `TRAILER`, gross/fee/net_minor = plain integer sums over every
  L row (across currencies), line_count = the number of L rows; every other column empty.
- An item belongs to the file of the UTC date of its `created` time on the sandbox clock. Rows are ordered
  by created time, then psp_reference.
- Fees: with the `fees` switch off (the default) every fee is 0, so a clean day reconciles exactly with no
  fee bookings; on, each charge pays 2.9% + 30 minor units, rounded half up in integers:
  `(amount * 29 + 500) // 1000 + 30`. Refunds and payouts never pay a fee.
"""

from __future__ import annotations

import calendar
import csv
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple, TextIO

from psp_sandbox.state import SandboxState

COLUMNS = (
    *("record_type", "settlement_date", "psp_reference", "merchant_reference", "type", "currency"),
    *("gross_minor", "fee_minor", "net_minor", "created_utc", "source_reference", "line_count"),
)
TRAILER_REFERENCE = "TRAILER"
UNKNOWN_CHARGE_AMOUNT_MINOR = 1234
EXTRA_FEE_AMOUNT_MINOR = 500
SYNTHETIC_CURRENCY = "USD"
DAY_S = 86_400
MAX_SYNTHETIC_LINES = 100_000  # per switch: enough for a benchmark, bounded so one request cannot exhaust memory
QUERY_PARAMS = (
    *("drop", "change_amount", "change_currency", "duplicate", "unknown_charges"),
    *("fees", "extra_fee_lines", "settle_late", "truncate"),
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_DELTA = re.compile(r"^[+-]?\d{1,9}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_PAIR_VALUE_NAMES = {"change_amount": "signed integer delta", "change_currency": "3-letter currency"}
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class SettlementOptions:
    """Discrepancy switches. References a switch names that the file does not hold have no effect.

    drop/change_amount/change_currency/duplicate apply to any line by psp_reference, synthetic ones too;
    settle_late applies to the sandbox's own items: named ones leave their day's file for the next day's,
    keeping their created_utc. Synthetic lines (unknown charges, extra fees) are created at 23:59:59 of the day.
    """

    drop: Set[str] = frozenset()
    change_amount: Mapping[str, int] = field(default_factory=dict)  # delta added to gross and net
    change_currency: Mapping[str, str] = field(default_factory=dict)
    duplicate: Set[str] = frozenset()
    unknown_charges: int = 0  # charges for PaymentIntents that never existed
    fees: bool = False
    extra_fee_lines: int = 0
    settle_late: Set[str] = frozenset()
    truncate: bool = False  # stop before the trailer, as a transfer cut short would

    def __post_init__(self) -> None:
        for name in ("unknown_charges", "extra_fee_lines"):
            if not 0 <= getattr(self, name) <= MAX_SYNTHETIC_LINES:
                raise ValueError(f"{name} must be from 0 to {MAX_SYNTHETIC_LINES}")


class _Item(NamedTuple):
    created_s: int
    psp_reference: str
    type: str
    merchant_reference: str
    currency: str
    gross_minor: int
    fee_minor: int
    source_reference: str


def processing_fee_minor(amount_minor: int) -> int:
    """2.9% + 30, half up, in integers: a float would make the fee depend on binary rounding."""
    return (amount_minor * 29 + 500) // 1000 + 30


def settlement_rows(state: SandboxState, day: date, options: SettlementOptions) -> Iterator[list[str]]:
    """The file for `day` row by row: header, L rows, trailer (unless `truncate`)."""
    yield list(COLUMNS)
    settlement_date = day.isoformat()
    count = gross_total = fee_total = net_total = 0
    for item in _day_items(state, day, options):
        if item.psp_reference in options.drop:
            continue
        gross = item.gross_minor + options.change_amount.get(item.psp_reference, 0)
        net = gross - item.fee_minor
        currency = options.change_currency.get(item.psp_reference, item.currency)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.created_s))
        row = ["L", settlement_date, item.psp_reference, item.merchant_reference, item.type, currency]
        row += [str(gross), str(item.fee_minor), str(net), created, item.source_reference, ""]
        for _ in range(2 if item.psp_reference in options.duplicate else 1):
            count += 1
            gross_total, fee_total, net_total = gross_total + gross, fee_total + item.fee_minor, net_total + net
            yield row
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


def _day_items(state: SandboxState, day: date, options: SettlementOptions) -> list[_Item]:
    # Only the day's items are held (the sandbox keeps every record in memory anyway); sorted so the
    # same state always gives the same file.
    start_s = calendar.timegm(day.timetuple())
    late = options.settle_late

    def settles_today(item: _Item) -> bool:
        if start_s <= item.created_s < start_s + DAY_S:
            return item.psp_reference not in late
        return start_s - DAY_S <= item.created_s < start_s and item.psp_reference in late

    items = [item for item in _sandbox_items(state, options.fees) if settles_today(item)]
    items += _synthetic_items(day, start_s + DAY_S - 1, options)
    items.sort(key=lambda item: (item.created_s, item.psp_reference))
    return items


def _sandbox_items(state: SandboxState, fees: bool) -> Iterator[_Item]:
    # (records, type, psp reference field, metadata key of ours, source reference field, sign of gross)
    sources = (
        (state.store.charges(), "charge", "payment_intent_id", "payment_order_id", "charge_id", 1),
        (state.refunds.records(), "refund", "stripe_refund_id", "refund_id", "payment_intent_id", -1),
        (state.payouts.records(), "payout", "stripe_payout_id", "payout_id", "destination", -1),
    )
    for records, kind, id_field, metadata_key, source_field, sign in sources:
        for record in records:
            amount: int = record["amount"]
            fee = processing_fee_minor(amount) if fees and kind == "charge" else 0
            merchant_reference = str(record["metadata"].get(metadata_key, ""))
            currency = record["currency"].upper()
            yield _Item(
                record["created"],
                record[id_field],
                kind,
                merchant_reference,
                currency,
                sign * amount,
                fee,
                record[source_field],
            )


def _synthetic_items(day: date, created_s: int, options: SettlementOptions) -> list[_Item]:
    # Deterministic ids, so a test can name these lines in the other switches.
    tag = day.strftime("%Y%m%d")
    unknown = UNKNOWN_CHARGE_AMOUNT_MINOR
    fee = processing_fee_minor(unknown) if options.fees else 0
    items = [
        _Item(created_s, f"pi_unknown_{tag}_{n}", "charge", "", SYNTHETIC_CURRENCY, unknown, fee, "")
        for n in range(1, options.unknown_charges + 1)
    ]
    items += [
        _Item(created_s, f"fee_{tag}_{n}", "fee", "", SYNTHETIC_CURRENCY, -EXTRA_FEE_AMOUNT_MINOR, 0, "")
        for n in range(1, options.extra_fee_lines + 1)
    ]
    return items


class SettlementQueryError(ValueError):
    """A query parameter (or the date in the path) the settlement route cannot use; names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def settlement_day(text: str) -> date:
    if _DATE.match(text) is None:
        raise SettlementQueryError("date", f"{text!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SettlementQueryError("date", f"{text!r} is not a valid date") from None


def options_from_query(params: Iterable[tuple[str, str]]) -> SettlementOptions:
    """The switches from query parameters: `drop=pi_1,pi_2&change_amount=pi_3:-100&fees=1&...`."""
    values: dict[str, str] = {}
    for name, value in params:
        if name not in QUERY_PARAMS:
            raise SettlementQueryError(name, f"unknown parameter (known: {', '.join(QUERY_PARAMS)})")
        if name in values:
            raise SettlementQueryError(name, "given more than once")
        values[name] = value
    return SettlementOptions(
        drop=frozenset(_references(values, "drop")),
        change_amount={ref: int(delta) for ref, delta in _pairs(values, "change_amount", _DELTA)},
        change_currency={ref: code.upper() for ref, code in _pairs(values, "change_currency", _CURRENCY)},
        duplicate=frozenset(_references(values, "duplicate")),
        unknown_charges=_count(values, "unknown_charges"),
        fees=_flag(values, "fees"),
        extra_fee_lines=_count(values, "extra_fee_lines"),
        settle_late=frozenset(_references(values, "settle_late")),
        truncate=_flag(values, "truncate"),
    )


def _references(values: Mapping[str, str], name: str) -> list[str]:
    references = _split(values, name)
    for reference in references:
        if _REFERENCE.match(reference) is None:
            raise SettlementQueryError(name, f"{reference!r} is not a PSP reference (letters, digits, '_')")
    return references


def _pairs(values: Mapping[str, str], name: str, value_pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for entry in _split(values, name):
        reference, _, value = entry.partition(":")
        if _REFERENCE.match(reference) is None or value_pattern.match(value) is None:
            raise SettlementQueryError(name, f"{entry!r} is not <psp reference>:<{_PAIR_VALUE_NAMES[name]}>")
        pairs.append((reference, value))
    return pairs


def _split(values: Mapping[str, str], name: str) -> list[str]:
    text = values.get(name, "")
    return text.split(",") if text else []


def _count(values: Mapping[str, str], name: str) -> int:
    text = values.get(name, "0")
    if not (text.isascii() and text.isdigit() and len(text) <= 7) or int(text) > MAX_SYNTHETIC_LINES:
        raise SettlementQueryError(name, f"{text!r} is not an integer from 0 to {MAX_SYNTHETIC_LINES}")
    return int(text)


def _flag(values: Mapping[str, str], name: str) -> bool:
    text = values.get(name, "0").lower()
    if text not in _FLAGS:
        raise SettlementQueryError(name, f"{text!r} is not one of {', '.join(_FLAGS)}")
    return _FLAGS[text]
