"""Settle's ISO 4217 minor units against Stripe's API amounts: equal but for ISK (two decimals at Stripe)."""

from __future__ import annotations

import pytest

from services.executor.adapters.psp.stripe_amounts import StripeAmountError, from_stripe, to_stripe


@pytest.mark.parametrize(
    ("currency", "settle", "stripe"),
    [("USD", 1250, 1250), ("JPY", 500, 500), ("KWD", 5120, 5120), ("ISK", 500, 50_000), ("isk", 1, 100)],
)
def test_amounts_convert_both_ways(currency: str, settle: int, stripe: int) -> None:
    assert to_stripe(settle, currency) == stripe
    assert from_stripe(stripe, currency) == settle


def test_a_fraction_of_a_krona_from_stripe_is_refused_not_rounded() -> None:
    with pytest.raises(StripeAmountError, match="not a whole number"):
        from_stripe(50_050, "ISK")
