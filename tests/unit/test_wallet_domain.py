"""The wallet's pure rules: which succeeded orders can be credited, and read-request validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.common.succeeded_orders import parse_succeeded_order
from services.wallet.domain import BalanceEntry, Bucket, Sale, validate_query
from services.wallet.service import balance_updated


def _sale(**overrides: object) -> Sale:
    fields: dict[str, object] = {
        "payment_order_id": str(uuid.uuid4()),
        "seller_id": "seller-1",
        "amount_minor": 1250,
        "currency": "EUR",
        "event_id": uuid.uuid4(),
    }
    fields.update(overrides)
    return parse_succeeded_order(**fields)  # type: ignore[arg-type]


def test_a_valid_order_becomes_a_sale_of_its_amount() -> None:
    order_id = str(uuid.uuid4())
    sale = _sale(payment_order_id=order_id)
    assert sale.payment_order_id == uuid.UUID(order_id)
    assert sale.amount == Money(1250, "EUR")
    assert sale.seller_id == "seller-1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"payment_order_id": "not-a-uuid"}, "payment_order_id"),
        ({"payment_order_id": ""}, "payment_order_id"),
        ({"seller_id": ""}, "seller_id"),
        ({"seller_id": "x" * 65}, "seller_id"),
        ({"seller_id": "bad\nid"}, "seller_id"),
        ({"amount_minor": 0}, "amount.amount_minor"),
        ({"amount_minor": -5}, "amount.amount_minor"),
        ({"currency": "usd"}, "amount.currency"),
        ({"currency": "XXX"}, "amount.currency"),
        ({"currency": ""}, "amount.currency"),
    ],
)
def test_an_invalid_order_is_refused_naming_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _sale(**overrides)
    assert [violation.field for violation in caught.value.violations] == [field]


def test_every_invalid_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        _sale(payment_order_id="nope", seller_id="", amount_minor=0, currency="???")
    assert {v.field for v in caught.value.violations} == {
        "payment_order_id",
        "seller_id",
        "amount.amount_minor",
        "amount.currency",
    }


def test_balance_queries_name_the_bad_field() -> None:
    validate_query("seller-1", "JPY")
    validate_query("seller-1")
    with pytest.raises(InvalidArgument) as caught:
        validate_query("", "usd")
    assert {v.field for v in caught.value.violations} == {"seller_id", "currency"}


def test_the_balance_event_carries_the_delta_of_the_changed_bucket_only() -> None:
    order_id, event_id = uuid.uuid4(), uuid.uuid4()
    entry = BalanceEntry(
        seq=7,
        entry_id=uuid.uuid4(),
        seller_id="seller-1",
        bucket=Bucket.PENDING,
        amount=Money(999, "USD"),
        kind="sale",
        payment_order_id=order_id,
        event_id=event_id,
        created_at=datetime.now(UTC),
    )
    event = balance_updated(entry)
    assert event.key == "seller-1"
    message = event.message
    assert (message.pending_delta_minor, message.available_delta_minor, message.reserved_delta_minor) == (999, 0, 0)  # type: ignore[attr-defined]
    assert message.payment_order_id == str(order_id)  # type: ignore[attr-defined]
    assert message.cause_event_id == str(event_id)  # type: ignore[attr-defined]
    assert message.kind == "sale"  # type: ignore[attr-defined]
