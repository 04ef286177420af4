"""Which `payment.order.requested` events the executor accepts, and why it rejects the others."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2

from services.common.consumer import EventRejected
from services.common.events import PAYMENT_ORDER_REQUESTED, InboundEvent
from services.executor.entrypoints.consumer import charge_order_of

ORDER_ID = "0b6f3c9e-5d1a-4c7e-9f00-2a4b6c8d0e1f"


def _event(key: str = ORDER_ID, **overrides: object) -> InboundEvent:
    fields: dict[str, object] = {
        "payment_order_id": ORDER_ID,
        "payment_id": "pay-1",
        "checkout_id": "co-1",
        "buyer_id": "buyer-1",
        "seller_id": "seller-1",
        "amount": Money(amount_minor=1250, currency="EUR"),
        "payment_method_token": "pm_card_visa",
    }
    fields.update(overrides)
    return InboundEvent(
        event_id=uuid.uuid4(),
        topic=PAYMENT_ORDER_REQUESTED,
        key=key,
        message=events_pb2.PaymentOrderRequested(**fields),  # type: ignore[arg-type]
        event_time=datetime.now(UTC),
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        partition=0,
        offset=0,
    )


def test_a_valid_request_becomes_a_charge_order_carrying_its_trace() -> None:
    order = charge_order_of(_event())
    assert (order.payment_order_id, order.amount_minor, order.currency) == (ORDER_ID, 1250, "EUR")
    assert (order.payment_id, order.seller_id, order.buyer_id) == ("pay-1", "seller-1", "buyer-1")
    assert order.payment_method_token == "pm_card_visa"
    assert order.traceparent.startswith("00-aaaa")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"payment_order_id": "not-a-uuid"}, "payment_order_id"),
        ({"payment_order_id": ORDER_ID.upper()}, "payment_order_id"),  # another spelling = another PSP key
        ({"amount": Money(amount_minor=0, currency="EUR")}, "amount.amount_minor"),
        ({"amount": Money(amount_minor=-5, currency="EUR")}, "amount.amount_minor"),
        ({"amount": Money(amount_minor=100_000_000, currency="EUR")}, "amount.amount_minor"),
        ({"amount": Money(amount_minor=100, currency="XXX")}, "amount.currency"),
        ({"amount": Money(amount_minor=100, currency="eur")}, "amount.currency"),
        ({"payment_method_token": ""}, "payment_method_token"),
        ({"seller_id": ""}, "seller_id"),
        ({"payment_id": ""}, "payment_id"),
    ],
)
def test_an_invalid_request_is_rejected_naming_the_field(overrides: dict[str, object], field: str) -> None:
    key = str(overrides.get("payment_order_id", ORDER_ID))
    with pytest.raises(EventRejected) as rejected:
        charge_order_of(_event(key=key, **overrides))
    assert rejected.value.reason.startswith("VALIDATION_FAILED")
    assert field in rejected.value.reason


def test_a_request_without_an_amount_is_rejected() -> None:
    event = _event()
    assert isinstance(event.message, events_pb2.PaymentOrderRequested)
    event.message.ClearField("amount")
    with pytest.raises(EventRejected, match="amount: is required"):
        charge_order_of(event)


def test_a_request_keyed_by_something_else_is_rejected() -> None:
    with pytest.raises(EventRejected, match="is not the payment_order_id"):
        charge_order_of(_event(key="seller-1"))


def test_all_violations_are_reported_at_once() -> None:
    with pytest.raises(EventRejected) as rejected:
        charge_order_of(_event(amount=Money(amount_minor=0, currency="ZZZ"), payment_method_token=""))
    reason = rejected.value.reason
    assert "amount.amount_minor" in reason and "amount.currency" in reason and "payment_method_token" in reason
