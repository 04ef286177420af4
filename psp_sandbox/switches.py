"""The discrepancy switches that settled_items.py applies, and how the admin API takes them:
`drop=pi_1,pi_2&change_amount=pi_3:-100&fees=1&...`, as query parameters of a day's settlement file and
as the form body that sets them for report runs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import date

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
    """Discrepancy switches. References a switch names that the lines do not hold have no effect.

    drop/change_amount/change_currency/duplicate apply to any line by psp_reference, synthetic ones too;
    settle_late applies to the sandbox's own items. Synthetic lines (unknown charges, extra fees) are
    created at 23:59:59 of each UTC day of the interval.
    """

    drop: Set[str] = frozenset()
    change_amount: Mapping[str, int] = field(default_factory=dict)  # delta added to gross and net
    change_currency: Mapping[str, str] = field(default_factory=dict)
    duplicate: Set[str] = frozenset()
    unknown_charges: int = 0  # charges for PaymentIntents that never existed
    fees: bool = False
    extra_fee_lines: int = 0
    settle_late: Set[str] = frozenset()
    truncate: bool = False  # the daily file only: stop before the trailer, as a transfer cut short would

    def __post_init__(self) -> None:
        for name in ("unknown_charges", "extra_fee_lines"):
            if not 0 <= getattr(self, name) <= MAX_SYNTHETIC_LINES:
                raise ValueError(f"{name} must be from 0 to {MAX_SYNTHETIC_LINES}")

    def to_json(self) -> dict[str, object]:
        return {
            "drop": sorted(self.drop),
            "change_amount": dict(sorted(self.change_amount.items())),
            "change_currency": dict(sorted(self.change_currency.items())),
            "duplicate": sorted(self.duplicate),
            "unknown_charges": self.unknown_charges,
            "fees": self.fees,
            "extra_fee_lines": self.extra_fee_lines,
            "settle_late": sorted(self.settle_late),
            "truncate": self.truncate,
        }


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


def options_from_query(params: Iterable[tuple[str, str]], known: Iterable[str] = QUERY_PARAMS) -> SettlementOptions:
    """The switches from (name, value) pairs; `known` narrows the names accepted."""
    allowed = tuple(known)
    values: dict[str, str] = {}
    for name, value in params:
        if name not in allowed:
            raise SettlementQueryError(name, f"unknown parameter (known: {', '.join(allowed)})")
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
