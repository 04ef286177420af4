"""Minor-unit amounts written for people, as Stripe writes them in error messages (`$12.50`), and in
major units as its reports write them (`12.5`)."""

from __future__ import annotations

# Stripe's API counts these currencies in whole units and these in thousandths; the rest in hundredths.
_ZERO_DECIMAL = frozenset({"clp", "jpy", "krw", "vnd"})
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def exponent(currency: str) -> int:
    """How many decimals the minor unit of `currency` (any case) has."""
    code = currency.lower()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


def format_amount(amount_minor: int, currency: str) -> str:
    digits = exponent(currency)
    units, fraction = divmod(amount_minor, 10**digits)
    number = f"{units:,}" + (f".{fraction:0{digits}d}" if digits else "")
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol is not None else f"{number} {currency.upper()}"


def major_units(amount_minor: int, currency: str) -> str:
    """Signed, `.` decimal point, minimal digits, as Stripe's report CSVs write amounts: 2500 USD is `25`,
    -50 USD is `-0.5`. Integer arithmetic only: a float would round some amounts."""
    digits = exponent(currency)
    units, fraction = divmod(abs(amount_minor), 10**digits)
    decimals = f"{fraction:0{digits}d}".rstrip("0") if digits else ""
    sign = "-" if amount_minor < 0 else ""
    return f"{sign}{units}" + (f".{decimals}" if decimals else "")
