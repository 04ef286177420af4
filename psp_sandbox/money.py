"""Minor-unit amounts written for people, as Stripe writes them in error messages: `$12.50`."""

from __future__ import annotations

# Stripe's API counts these currencies in whole units and these in thousandths; the rest in hundredths.
_ZERO_DECIMAL = frozenset({"clp", "jpy", "krw", "vnd"})
_THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def format_amount(amount_minor: int, currency: str) -> str:
    exponent = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    units, fraction = divmod(amount_minor, 10**exponent)
    number = f"{units:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol is not None else f"{number} {currency.upper()}"
