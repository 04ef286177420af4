"""Settle's minor units (ISO 4217 exponents) to the integer amounts of Stripe's API, and back.

They agree for every currency but the ones Stripe keeps at another exponent for backwards
compatibility. ISK: ISO 4217 has no minor unit, but Stripe's API still counts ISK in two decimals (an
amount of 100 is 1 króna) and requires multiples of 100. Sending Settle's ISK 500 as-is would charge
ISK 5: a hundredth of the order.
"""

from __future__ import annotations

_API_SCALE = {"ISK": 100}


class StripeAmountError(ValueError):
    """Stripe reported an amount that is not a whole number of Settle's minor units."""


def to_stripe(amount_minor: int, currency: str) -> int:
    return amount_minor * _API_SCALE.get(currency.upper(), 1)


def from_stripe(amount: int, currency: str) -> int:
    scale = _API_SCALE.get(currency.upper(), 1)
    whole, rest = divmod(amount, scale)
    if rest:
        raise StripeAmountError(f"{amount} {currency.upper()} from Stripe is not a whole number of minor units")
    return whole
