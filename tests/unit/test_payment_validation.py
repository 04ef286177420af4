"""CreatePayment validation and amount computation (pure)."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.money import MAX_AMOUNT_MINOR
from services.payment.domain.model import LineItem
from services.payment.domain.payment_method import is_card_number
from services.payment.domain.validation import (
    CreatePaymentCommand,
    Limits,
    SellerOrderInput,
    validate,
)

HASH = b"\x00" * 32


def _item(quantity: int = 1, unit: int = 100, sku: str = "sku-1", description: str = "") -> LineItem:
    return LineItem(sku, description, quantity, unit)


def _command(**changes: object) -> CreatePaymentCommand:
    values: dict[str, object] = {
        "checkout_id": "co-1",
        "buyer_id": "buyer-1",
        "payment_method_token": "pm_card_visa",
        "currency": "USD",
        "seller_orders": (
            SellerOrderInput("seller-a", (_item(2, 1_250), _item(1, 99, "sku-2"))),
            SellerOrderInput("seller-b", (_item(3, 1_000),)),
        ),
    }
    values.update(changes)
    return CreatePaymentCommand(**values)  # type: ignore[arg-type]


def _violations(command: CreatePaymentCommand, limits: Limits | None = None) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        validate(command, HASH, limits or Limits())
    assert caught.value.reason == "VALIDATION_FAILED"
    return {v.field: v.description for v in caught.value.violations}


def test_order_amounts_are_the_sum_of_quantity_times_unit_amount() -> None:
    draft = validate(_command(), HASH, Limits())
    assert [o.amount_minor for o in draft.seller_orders] == [2 * 1_250 + 99, 3_000]
    assert draft.total_minor == 5_599
    assert draft.request_hash == HASH


def test_every_violation_is_reported_at_once_with_its_field_path() -> None:
    command = _command(
        checkout_id="",
        buyer_id="b" * 65,
        payment_method_token="card_123",
        currency="usd",
        seller_orders=(
            SellerOrderInput("seller-a", (_item(0, 100), _item(1, 0, sku=""))),
            SellerOrderInput("seller-a", ()),
            SellerOrderInput("bad\nseller", (_item(10_001, -5, description="d" * 257),)),
        ),
    )
    violations = _violations(command)
    assert set(violations) == {
        "checkout_id",
        "buyer_id",
        "payment_method_token",
        "currency",
        "seller_orders[0].line_items[0].quantity",
        "seller_orders[0].line_items[1].sku",
        "seller_orders[0].line_items[1].unit_amount_minor",
        "seller_orders[1].seller_id",
        "seller_orders[1].line_items",
        "seller_orders[2].seller_id",
        "seller_orders[2].line_items[0].quantity",
        "seller_orders[2].line_items[0].unit_amount_minor",
        "seller_orders[2].line_items[0].description",
    }
    assert "duplicates seller_orders[0].seller_id" in violations["seller_orders[1].seller_id"]
    assert "control characters" in violations["seller_orders[2].seller_id"]


@pytest.mark.parametrize(
    "number", ["4242424242424242", "4242 4242 4242 4242", "4000-0566-5566-5556", "378282246310005"]
)
def test_card_numbers_are_refused_without_echoing_them(number: str) -> None:
    violations = _violations(_command(payment_method_token=number))
    assert "card numbers are not accepted" in violations["payment_method_token"]
    assert number not in violations["payment_method_token"]


def test_what_counts_as_a_card_number() -> None:
    assert is_card_number("424242424242")
    assert not is_card_number("42424242424")  # 11 digits
    assert not is_card_number("4242 4242 4242 4242 4242 4")  # 21 digits, grouped
    assert is_card_number("pm_4242424242424242")  # hidden inside a token
    assert not is_card_number("pm_card_visa")


@pytest.mark.parametrize("token", ["pm_card_visa", "tok_visa", "pm_1MqLiJLkdIwHu7ixUEgbFdYF"])
def test_psp_tokens_are_accepted(token: str) -> None:
    assert validate(_command(payment_method_token=token), HASH, Limits()).payment_method_token == token


@pytest.mark.parametrize("token", ["", "visa", "pm_", "pm_has space", "tok_" + "x" * 252])
def test_other_tokens_are_refused(token: str) -> None:
    assert "payment_method_token" in _violations(_command(payment_method_token=token))


def test_ids_may_be_64_characters_but_not_65() -> None:
    assert validate(_command(checkout_id="c" * 64), HASH, Limits()).checkout_id == "c" * 64
    assert "checkout_id" in _violations(_command(checkout_id="c" * 65))
    assert "checkout_id" in _violations(_command(checkout_id="co\x7f1"))


def test_seller_order_and_line_item_counts_are_limited() -> None:
    orders = tuple(SellerOrderInput(f"s-{i}", (_item(),)) for i in range(3))
    assert "seller_orders" in _violations(_command(seller_orders=orders), Limits(max_seller_orders=2))
    assert "seller_orders" in _violations(_command(seller_orders=()))
    too_many_items = (SellerOrderInput("s", tuple(_item(sku=f"k{i}") for i in range(101))),)
    assert "seller_orders[0].line_items" in _violations(_command(seller_orders=too_many_items))


def test_an_order_above_the_psp_maximum_is_refused_even_when_the_product_overflows_int64() -> None:
    at_limit = (SellerOrderInput("s", (_item(1, MAX_AMOUNT_MINOR),)),)
    assert validate(_command(seller_orders=at_limit), HASH, Limits()).total_minor == MAX_AMOUNT_MINOR
    above = (SellerOrderInput("s", (_item(1, MAX_AMOUNT_MINOR), _item(1, 1, "k2"))),)
    assert "maximum" in _violations(_command(seller_orders=above))["seller_orders[0].line_items"]
    huge = (SellerOrderInput("s", (_item(10_000, 2**62),)),)
    assert "seller_orders[0].line_items" in _violations(_command(seller_orders=huge))


def test_the_checkout_total_is_limited_by_configuration() -> None:
    limits = Limits(max_checkout_total_minor=5_000)
    assert "exceeds the maximum of 5000" in _violations(_command(), limits)["seller_orders"]
    assert validate(_command(), HASH, Limits(max_checkout_total_minor=5_599)).total_minor == 5_599
