"""The outcome events and the admin API's view of an execution carry what downstream services need."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from settle.events.v1 import events_pb2
from settle.executor.v1 import executor_pb2

from services.common.events import PAYMENT_ORDER_FAILED, PAYMENT_ORDER_SUCCEEDED
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus, PayoutOrder, RefundOrder
from services.executor.entrypoints.grpc import execution_to_proto
from services.executor.service.outcome_events import outcome_event

ORDER = ChargeOrder("0b6f3c9e-5d1a-4c7e-9f00-2a4b6c8d0e1f", "pay-1", "seller-1", "buyer-1", 1999, "JPY", "pm_card_visa")
AT = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)


def _execution(status: ExecutionStatus, order: object = ORDER, **fields: str) -> Execution:
    return Execution(
        order,
        status,
        attempts=2,
        psp_reference=fields.get("psp_reference", ""),
        failure_code=fields.get("failure_code", ""),
        failure_message=fields.get("failure_message", ""),
        updated_at=AT,
    )


def test_a_succeeded_execution_announces_the_charge_keyed_by_order() -> None:
    event = outcome_event(_execution(ExecutionStatus.SUCCEEDED, psp_reference="pi_9"))
    assert (event.topic, event.key) == (PAYMENT_ORDER_SUCCEEDED, ORDER.payment_order_id)
    message = event.message
    assert isinstance(message, events_pb2.PaymentOrderSucceeded)
    assert (message.payment_id, message.seller_id, message.psp_reference) == ("pay-1", "seller-1", "pi_9")
    assert (message.amount.amount_minor, message.amount.currency) == (1999, "JPY")
    assert message.charged_at.ToDatetime(tzinfo=UTC) == AT


def test_a_failed_execution_announces_the_decline() -> None:
    event = outcome_event(
        _execution(ExecutionStatus.FAILED, failure_code="generic_decline", failure_message="Declined.")
    )
    assert (event.topic, event.key) == (PAYMENT_ORDER_FAILED, ORDER.payment_order_id)
    message = event.message
    assert isinstance(message, events_pb2.PaymentOrderFailed)
    assert (message.failure_code, message.failure_message) == ("generic_decline", "Declined.")
    assert message.amount.amount_minor == 1999


@pytest.mark.parametrize("status", [ExecutionStatus.NOT_STARTED, ExecutionStatus.UNKNOWN])
def test_an_unfinished_execution_has_nothing_to_announce(status: ExecutionStatus) -> None:
    with pytest.raises(ValueError):
        outcome_event(_execution(status))


def test_the_admin_view_of_an_execution() -> None:
    proto = execution_to_proto(_execution(ExecutionStatus.UNKNOWN, failure_code="psp_outcome_unknown"))
    assert proto.status == executor_pb2.EXECUTION_STATUS_UNKNOWN
    assert (proto.payment_order_id, proto.attempts, proto.failure_code) == (
        ORDER.payment_order_id, 2, "psp_outcome_unknown",
    )  # fmt: skip
    assert (proto.amount.amount_minor, proto.amount.currency) == (1999, "JPY")
    assert proto.update_time.ToDatetime(tzinfo=UTC) == AT
    assert (proto.kind, proto.id) == (executor_pb2.EXECUTION_KIND_CHARGE, ORDER.payment_order_id)


def test_the_admin_view_of_a_refund_names_its_order_and_of_a_payout_none() -> None:
    refund = RefundOrder(
        "5a0e9b1c-2d3f-4a5b-8c6d-7e8f9a0b1c2d", ORDER.payment_order_id, "pay-1", "seller-1", 500, "JPY", "pi_9", ""
    )
    payout = PayoutOrder("7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "seller-1", 900, "EUR", "ba_test_success", "")
    refund_view = execution_to_proto(_execution(ExecutionStatus.UNKNOWN, refund))
    payout_view = execution_to_proto(_execution(ExecutionStatus.UNKNOWN, payout))
    assert (refund_view.kind, refund_view.id) == (executor_pb2.EXECUTION_KIND_REFUND, refund.refund_id)
    assert (refund_view.payment_order_id, refund_view.payment_id) == (ORDER.payment_order_id, "pay-1")
    assert (payout_view.kind, payout_view.id) == (executor_pb2.EXECUTION_KIND_PAYOUT, payout.payout_id)
    assert (payout_view.payment_order_id, payout_view.payment_id, payout_view.seller_id) == ("", "", "seller-1")
    assert (payout_view.amount.amount_minor, payout_view.amount.currency) == (900, "EUR")
