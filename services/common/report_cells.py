"""Cells of the CSV and HTML reports finance opens: exact amounts, and text that is never a formula."""

from __future__ import annotations

from services.common.money import CURRENCY_EXPONENTS

# Characters that make a spreadsheet read a cell as a formula (or hide one behind whitespace).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def major_units(amount_minor: int, currency: str) -> str:
    """The amount in major units as a decimal string, in integer arithmetic: 1234 USD → '12.34',
    500 JPY → '500', 1234 KWD → '1.234'."""
    digits = CURRENCY_EXPONENTS.get(currency)
    if digits is None:
        raise ValueError(f"{currency!r} is not a supported currency; its minor-unit exponent is unknown")
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"


def text_cell(value: str) -> str:
    """`value` safe to open in a spreadsheet; for text columns only (numbers stay numbers)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
