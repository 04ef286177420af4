"""Money: integer minor units plus an ISO 4217 currency. Never a float."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument

# ISO 4217 minor-unit exponents of the currencies Settle accepts. A currency missing here is rejected
# rather than guessed: charging 100x too much (JPY as if it had cents) is the failure this prevents.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2,
    "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0,
    "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2,
    "OMR": 3, "PEN": 2, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2,
    "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UAH": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0,
    "ZAR": 2,
}  # fmt: skip

# Stripe's (and most PSPs') ceiling for one charge: 99,999,999 minor units.
MAX_AMOUNT_MINOR = 99_999_999


class MoneyError(InvalidArgument):
    """A money value is invalid."""


def validate_currency(currency: str, field: str) -> str:
    """Returns `currency` if it is a known upper-case ISO 4217 code, else raises naming `field`."""
    if currency not in CURRENCY_EXPONENTS:
        raise MoneyError(
            f"{field}: {currency!r} is not a supported ISO 4217 currency code (upper case, e.g. 'USD')",
            violations=[FieldViolation(field, "unsupported or malformed ISO 4217 currency code")],
        )
    return currency


def exponent(currency: str) -> int:
    """The number of minor-unit digits of `currency` (USD 2, JPY 0, KWD 3)."""
    return CURRENCY_EXPONENTS[currency]


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of `currency` in integer minor units."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise TypeError(f"amount_minor must be int, not {type(self.amount_minor).__name__}")
        validate_currency(self.currency, "currency")

    def __add__(self, other: Money) -> Money:
        self._require_same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._require_same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def _require_same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def format(self) -> str:
        """A human-readable decimal rendering, e.g. '12.34 USD' (text only; never parsed back)."""
        digits = exponent(self.currency)
        sign = "-" if self.amount_minor < 0 else ""
        whole, fraction = divmod(abs(self.amount_minor), 10**digits)
        return f"{sign}{whole}.{fraction:0{digits}d} {self.currency}" if digits else f"{sign}{whole} {self.currency}"


def allocate(total: Money, weights: list[int]) -> list[Money]:
    """Splits `total` in proportion to `weights`, rounding down and giving the remainder one minor unit
    at a time to the largest fractional parts (ties to the earliest), so the parts always sum to `total`."""
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError("weights must be non-negative with a positive sum")
    weight_sum = sum(weights)
    shares = [divmod(total.amount_minor * w, weight_sum) for w in weights]
    parts = [quotient for quotient, _ in shares]
    remainder = total.amount_minor - sum(parts)
    by_fraction = sorted(range(len(weights)), key=lambda i: (-shares[i][1], i))
    for index in by_fraction[:remainder]:
        parts[index] += 1
    return [Money(part, total.currency) for part in parts]
