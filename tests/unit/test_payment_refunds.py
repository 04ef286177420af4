"""The refund rules: how much a refund takes, and what makes an order unrefundable."""

from __future__ import annotations

import uuid

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.payment.domain.model import OrderStatus
from services.payment.domain.refunds import RefundableOrder, RefundCommand, RefundDraft, refund_amount, validate

ORDER_ID = str(uuid.uuid4())


def _order(status: OrderStatus = OrderStatus.SUCCEEDED, committed: int = 0) -> RefundableOrder:
    return RefundableOrder(uuid.UUID(ORDER_ID), uuid.uuid4(), "seller-1", status, 1_000, "USD", "pi_1", committed)


def _draft(amount_minor: int | None, currency: str = "USD") -> RefundDraft:
    return validate(RefundCommand(ORDER_ID, "key-1", amount_minor, currency, ""), b"\0" * 32)


@pytest.mark.parametrize(("amount", "committed", "expected"), [(None, 0, 1_000), (None, 400, 600), (600, 400, 600)])
def test_a_refund_takes_what_is_asked_or_everything_left(amount: int | None, committed: int, expected: int) -> None:
    assert refund_amount(_draft(amount), _order(committed=committed)) == expected


@pytest.mark.parametrize(("amount", "committed"), [(601, 400), (None, 1_000), (1, 1_000)])
def test_more_than_is_left_is_refused(amount: int | None, committed: int) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        refund_amount(_draft(amount), _order(committed=committed))
    assert refused.value.reason == "REFUND_EXCEEDS_REFUNDABLE_AMOUNT"


@pytest.mark.parametrize(
    "status", [OrderStatus.NOT_STARTED, OrderStatus.EXECUTING, OrderStatus.FAILED, OrderStatus.REFUNDED]
)
def test_only_a_charged_order_can_be_refunded(status: OrderStatus) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        refund_amount(_draft(None), _order(status))
    assert refused.value.reason == "PAYMENT_ORDER_NOT_REFUNDABLE"


def test_another_currency_than_the_orders_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as refused:
        refund_amount(_draft(10, "EUR"), _order())
    assert [violation.field for violation in refused.value.violations] == ["amount.currency"]
