"""Request fingerprints and event → outcome translation (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from settle.payment.v1 import payment_pb2

from services.common.consumer import EventRejected
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_SUCCEEDED,
    WALLET_BALANCE_UPDATED,
    InboundEvent,
)
from services.payment.domain.model import OrderStatus
from services.payment.domain.outcomes import (
    ExpectedAmount,
    OrderFacts,
    Outcome,
    OutcomeKind,
    OutcomeRefused,
    UnknownPaymentOrders,
    check_against_orders,
)
from services.payment.entrypoints.consumer import outcome_of
from services.payment.entrypoints.translate import command_from_proto, request_hash


def _request(quantity: int = 2) -> payment_pb2.CreatePaymentRequest:
    return payment_pb2.CreatePaymentRequest(
        checkout_id="co-1",
        buyer_id="buyer-1",
        payment_method_token="pm_card_visa",
        currency="USD",
        seller_orders=[
            payment_pb2.SellerOrder(
                seller_id="s-1",
                line_items=[payment_pb2.LineItem(sku="k", description="d", quantity=quantity, unit_amount_minor=5)],
            )
        ],
    )


def test_the_fingerprint_is_stable_and_sensitive_to_every_field() -> None:
    assert request_hash(_request()) == request_hash(_request())
    assert len(request_hash(_request())) == 32
    assert request_hash(_request(quantity=3)) != request_hash(_request())
    changed = _request()
    changed.payment_method_token = "pm_card_mastercard"
    assert request_hash(changed) != request_hash(_request())


def test_the_command_carries_the_request_verbatim() -> None:
    command = command_from_proto(_request())
    assert command.checkout_id == "co-1"
    assert command.seller_orders[0].line_items[0].quantity == 2


def _event(topic: str, message: Message) -> InboundEvent:
    return InboundEvent(uuid.uuid4(), topic, "key", message, datetime.now(UTC), "", 0, 0)


def test_events_become_outcomes() -> None:
    order_id = uuid.uuid4()
    succeeded = events_pb2.PaymentOrderSucceeded(
        payment_order_id=str(order_id), psp_reference="pi_1", amount=Money(amount_minor=10, currency="USD")
    )
    assert outcome_of(_event(PAYMENT_ORDER_SUCCEEDED, succeeded)) == Outcome(
        OutcomeKind.SUCCEEDED, order_id, psp_reference="pi_1", amount=ExpectedAmount(10, "USD")
    )
    failed = events_pb2.PaymentOrderFailed(payment_order_id=str(order_id), failure_code="card_declined")
    assert outcome_of(_event(PAYMENT_ORDER_FAILED, failed)) == Outcome(
        OutcomeKind.FAILED, order_id, failure_code="card_declined"
    )
    wallet = events_pb2.WalletBalanceUpdated(payment_order_id=str(order_id), seller_id="s")
    assert outcome_of(_event(WALLET_BALANCE_UPDATED, wallet)) == Outcome(OutcomeKind.WALLET_UPDATED, order_id)
    ledger = events_pb2.LedgerEntryPosted(payment_order_id=str(order_id), entry_id="e")
    assert outcome_of(_event(LEDGER_ENTRY_POSTED, ledger)) == Outcome(OutcomeKind.LEDGER_UPDATED, order_id)


def test_balance_changes_without_an_order_are_not_for_payment() -> None:
    assert outcome_of(_event(WALLET_BALANCE_UPDATED, events_pb2.WalletBalanceUpdated(seller_id="s"))) is None
    assert outcome_of(_event(LEDGER_ENTRY_POSTED, events_pb2.LedgerEntryPosted(entry_id="e"))) is None


def test_a_malformed_order_id_is_rejected() -> None:
    with pytest.raises(EventRejected) as caught:
        outcome_of(_event(PAYMENT_ORDER_SUCCEEDED, events_pb2.PaymentOrderSucceeded(payment_order_id="nope")))
    assert "not a UUID" in caught.value.reason


def _facts(status: OrderStatus = OrderStatus.NOT_STARTED) -> tuple[uuid.UUID, dict[uuid.UUID, OrderFacts]]:
    order_id = uuid.uuid4()
    return order_id, {order_id: OrderFacts(uuid.uuid4(), 10, "USD", status)}


def test_outcomes_for_unknown_orders_or_other_amounts_can_never_apply() -> None:
    known, facts = _facts()
    check_against_orders([Outcome(OutcomeKind.SUCCEEDED, known, amount=ExpectedAmount(10, "USD"))], facts)
    stranger = uuid.uuid4()
    with pytest.raises(UnknownPaymentOrders) as unknown:
        check_against_orders([Outcome(OutcomeKind.LEDGER_UPDATED, stranger)], facts)
    assert unknown.value.payment_order_ids == {stranger}
    other_currency = Outcome(OutcomeKind.SUCCEEDED, known, amount=ExpectedAmount(10, "EUR"))
    with pytest.raises(OutcomeRefused) as refused:
        check_against_orders([other_currency], facts)
    assert refused.value.outcome is other_currency
    assert "succeeded for 10 EUR but the order is for 10 USD" in str(refused.value)


def test_a_repeated_final_outcome_is_fine_but_the_opposite_one_is_refused() -> None:
    order_id, facts = _facts(OrderStatus.SUCCEEDED)
    check_against_orders(
        [Outcome(OutcomeKind.SUCCEEDED, order_id), Outcome(OutcomeKind.LEDGER_UPDATED, order_id)], facts
    )
    with pytest.raises(OutcomeRefused, match="failed contradicts its final status SUCCEEDED"):
        check_against_orders([Outcome(OutcomeKind.FAILED, order_id)], facts)
    refunded_id, refunded = _facts(OrderStatus.REFUNDED)
    with pytest.raises(OutcomeRefused):
        check_against_orders([Outcome(OutcomeKind.FAILED, refunded_id)], refunded)
    # Both outcomes in one batch: the later one is refused.
    fresh_id, fresh = _facts()
    late = Outcome(OutcomeKind.SUCCEEDED, fresh_id)
    with pytest.raises(OutcomeRefused) as caught:
        check_against_orders([Outcome(OutcomeKind.FAILED, fresh_id), late], fresh)
    assert caught.value.outcome is late
