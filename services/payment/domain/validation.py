"""Validation of CreatePayment: every violation at once, each naming its field path."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.common.errors import Validator
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from services.payment.domain.model import LineItem, PaymentDraft, SellerOrder
from services.payment.domain.payment_method import check_payment_method_token

MAX_ID_LENGTH = 64
MAX_LINE_ITEMS = 100
MAX_SKU_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 256
MAX_QUANTITY = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    max_seller_orders: int = 50
    max_checkout_total_minor: int = 10 * MAX_AMOUNT_MINOR


@dataclass(frozen=True, slots=True)
class SellerOrderInput:
    seller_id: str
    line_items: tuple[LineItem, ...]


@dataclass(frozen=True, slots=True)
class CreatePaymentCommand:
    """A CreatePayment request as received: nothing about it is trusted yet."""

    checkout_id: str
    buyer_id: str
    payment_method_token: str
    currency: str
    seller_orders: tuple[SellerOrderInput, ...]


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def _check_text(check: Validator, field: str, value: str, *, max_length: int, required: bool = True) -> None:
    if not value:
        if required:
            check.add(field, "is required")
    elif len(value) > max_length:
        check.add(field, f"must be at most {max_length} characters (got {len(value)})")
    elif _has_control_characters(value):
        check.add(field, "must not contain control characters")
    elif required and value != value.strip():
        check.add(field, "must not start or end with spaces")


def _order_amount(check: Validator, path: str, items: tuple[LineItem, ...]) -> int | None:
    """Validates the items and returns their sum, or None when an item is invalid or the sum too large."""
    valid = True
    for index, item in enumerate(items):
        at = f"{path}.line_items[{index}]"
        _check_text(check, f"{at}.sku", item.sku, max_length=MAX_SKU_LENGTH)
        _check_text(check, f"{at}.description", item.description, max_length=MAX_DESCRIPTION_LENGTH, required=False)
        if not 1 <= item.quantity <= MAX_QUANTITY:
            check.add(f"{at}.quantity", f"must be between 1 and {MAX_QUANTITY} (got {item.quantity})")
            valid = False
        if item.unit_amount_minor <= 0:
            check.add(f"{at}.unit_amount_minor", f"must be greater than zero (got {item.unit_amount_minor})")
            valid = False
    if not valid:
        return None
    # Python integers do not overflow, but stopping at the limit bounds the work and the value stored.
    amount = 0
    for item in items:
        amount += item.quantity * item.unit_amount_minor
        if amount > MAX_AMOUNT_MINOR:
            check.add(f"{path}.line_items", f"the order amount exceeds the maximum of {MAX_AMOUNT_MINOR} minor units")
            return None
    return amount


def _seller_orders(check: Validator, orders: tuple[SellerOrderInput, ...], limits: Limits) -> list[SellerOrder]:
    if not orders:
        check.add("seller_orders", "at least one seller order is required")
    elif len(orders) > limits.max_seller_orders:
        check.add("seller_orders", f"at most {limits.max_seller_orders} seller orders are allowed (got {len(orders)})")
    first_index: dict[str, int] = {}
    validated: list[SellerOrder] = []
    for index, order in enumerate(orders):
        path = f"seller_orders[{index}]"
        _check_text(check, f"{path}.seller_id", order.seller_id, max_length=MAX_ID_LENGTH)
        if order.seller_id and order.seller_id in first_index:
            check.add(f"{path}.seller_id", f"duplicates seller_orders[{first_index[order.seller_id]}].seller_id")
        first_index.setdefault(order.seller_id, index)
        if not order.line_items:
            check.add(f"{path}.line_items", "at least one line item is required")
        elif len(order.line_items) > MAX_LINE_ITEMS:
            check.add(f"{path}.line_items", f"at most {MAX_LINE_ITEMS} line items are allowed")
        else:
            amount = _order_amount(check, path, order.line_items)
            if amount is not None:
                validated.append(SellerOrder(order.seller_id, order.line_items, amount))
    return validated


def validate(command: CreatePaymentCommand, request_hash: bytes, limits: Limits) -> PaymentDraft:
    """Returns the draft to store, or raises InvalidArgument listing every violation."""
    check = Validator()
    _check_text(check, "checkout_id", command.checkout_id, max_length=MAX_ID_LENGTH)
    _check_text(check, "buyer_id", command.buyer_id, max_length=MAX_ID_LENGTH)
    check_payment_method_token(check, command.payment_method_token)
    if command.currency not in CURRENCY_EXPONENTS:
        check.add("currency", "must be a supported ISO 4217 currency code in upper case, e.g. 'USD'")
    orders = _seller_orders(check, command.seller_orders, limits)
    total = sum(order.amount_minor for order in orders)
    all_orders_valid = len(orders) == len(command.seller_orders)
    if all_orders_valid and total > limits.max_checkout_total_minor:
        check.add(
            "seller_orders", f"the checkout total {total} exceeds the maximum of {limits.max_checkout_total_minor}"
        )
    check.raise_if_any()
    return PaymentDraft(
        checkout_id=command.checkout_id,
        buyer_id=command.buyer_id,
        payment_method_token=command.payment_method_token,
        currency=command.currency,
        seller_orders=tuple(orders),
        total_minor=total,
        request_hash=request_hash,
    )
