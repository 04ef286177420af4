"""Decimal amounts in major units, as settlement files write them, to integer minor units. Never a float."""

from __future__ import annotations

import re

from services.common.money import CURRENCY_EXPONENTS

# Optional sign, digits with an optional fraction, or a bare fraction (".91"); "," only when the file
# uses a comma decimal separator.
_DECIMAL = re.compile(r"^([+-]?)(\d*)(?:[.](\d*))?$")


class AmountError(ValueError):
    """An amount that cannot be read exactly in its currency's minor units."""


def currency_of(text: str) -> str:
    """The upper-case ISO 4217 code of `text` (files write "usd" or "USD"); raises AmountError if unknown."""
    code = text.strip().upper()
    if code not in CURRENCY_EXPONENTS:
        raise AmountError(f"{text!r} is not a supported ISO 4217 currency")
    return code


def minor_units(text: str, currency: str, *, decimal_separator: str = ".") -> int:
    """`text` in major units of `currency` ("-0.5", "75", ".91", "1234.50") as signed minor units.

    More fraction digits than the currency has are refused unless they are zeros: rounding money while
    reading it would hide exactly the discrepancies reconciliation exists to find.
    """
    raw = text.strip()
    if decimal_separator != ".":
        raw = raw.replace(decimal_separator, ".")
    match = _DECIMAL.match(raw)
    if match is None or not (match.group(2) or match.group(3)):
        raise AmountError(f"{text!r} is not a decimal amount")
    sign: str = match.group(1)
    whole: str = match.group(2) or "0"
    fraction: str = match.group(3) or ""
    digits = CURRENCY_EXPONENTS[currency]
    if len(fraction) > digits and set(fraction[digits:]) - {"0"}:
        raise AmountError(f"{text!r} has more decimals than {currency} has minor units ({digits})")
    fraction = fraction[:digits].ljust(digits, "0")
    scale: int = 10**digits
    value = int(whole) * scale + (int(fraction) if fraction else 0)
    return -value if sign == "-" else value
