"""The outcome events and the admin API's view of an execution carry what downstream services need."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from settle.events.v1 import events_pb2
from settle.executor.v1 import executor_pb2

from services.common.events import PAYMENT_ORDER_FAILED, PAYMENT_ORDER_SUCCEEDED
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus
from services.executor.entrypoints.grpc import execution_to_proto
from services.executor.service.outcome_events import outcome_event

ORDER = ChargeOrder("0b6f3c9e-5d1a-4c7e-9f00-2a4b6c8d0e1f", "pay-1", "seller-1", "buyer-1", 1999, "JPY", "pm_card_visa")
AT = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)


def _execution(status: ExecutionStatus, **fields: str) -> Execution:
    return Execution(
        ORDER,
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
