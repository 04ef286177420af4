from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.money import CURRENCY_EXPONENTS, Money, allocate, exponent, validate_currency


def test_exponents_follow_iso_4217() -> None:
    assert (exponent("USD"), exponent("JPY"), exponent("KWD")) == (2, 0, 3)


@pytest.mark.parametrize("code", ["usd", "US", "XXX", "", "USDT"])
def test_unknown_or_lower_case_currency_is_rejected_naming_the_field(code: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_currency(code, "payment.currency")
    assert error.value.violations[0].field == "payment.currency"


def test_money_refuses_floats_and_mixed_currencies() -> None:
    with pytest.raises(TypeError):
        Money(10.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot combine"):
        _ = Money(1, "USD") + Money(1, "EUR")
    assert Money(150, "USD") - Money(50, "USD") == Money(100, "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1234, "USD", "12.34 USD"),
        (-5, "EUR", "-0.05 EUR"),
        (500, "JPY", "500 JPY"),
        (1001, "KWD", "1.001 KWD"),
    ],
)
def test_format_uses_the_currency_exponent(amount: int, currency: str, text: str) -> None:
    assert Money(amount, currency).format() == text


@pytest.mark.parametrize(
    ("total", "weights"),
    [(100, [1, 1, 1]), (1, [1, 1]), (99_999_999, [3, 7, 11, 13]), (0, [5, 5]), (7, [0, 1])],
)
def test_allocation_parts_always_sum_to_the_whole(total: int, weights: list[int]) -> None:
    parts = allocate(Money(total, "USD"), weights)
    assert sum(p.amount_minor for p in parts) == total
    assert all(p.amount_minor >= 0 for p in parts)


def test_allocation_remainder_goes_deterministically_to_the_largest_fractions() -> None:
    assert [p.amount_minor for p in allocate(Money(100, "USD"), [1, 1, 1])] == [34, 33, 33]


def test_every_table_entry_is_upper_case_iso_code() -> None:
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)
