"""Amounts in the sandbox's error messages are written as Stripe writes them."""

import pytest

from psp_sandbox.money import format_amount


@pytest.mark.parametrize(
    ("amount_minor", "currency", "written"),
    [
        (2500, "usd", "$25.00"),
        (5, "usd", "$0.05"),
        (123456789, "eur", "€1,234,567.89"),
        (2500, "jpy", "¥2,500"),
        (12345, "kwd", "12.345 KWD"),
        (1250, "sek", "12.50 SEK"),
    ],
)
def test_minor_units_are_written_with_the_currencys_decimals(amount_minor: int, currency: str, written: str) -> None:
    assert format_amount(amount_minor, currency) == written
