"""The events that announce an execution's definite outcome (key = payment order id)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2

from services.common.events import PAYMENT_ORDER_FAILED, PAYMENT_ORDER_SUCCEEDED, OutboundEvent
from services.executor.domain import Execution, ExecutionStatus


def outcome_event(execution: Execution) -> OutboundEvent:
    """`payment.order.succeeded` or `payment.order.failed` for a SUCCEEDED or FAILED execution."""
    order = execution.order
    amount = Money(amount_minor=order.amount_minor, currency=order.currency)
    if execution.status is ExecutionStatus.SUCCEEDED:
        charged_at = Timestamp()
        charged_at.FromDatetime(execution.updated_at)
        return OutboundEvent(
            PAYMENT_ORDER_SUCCEEDED,
            key=order.payment_order_id,
            message=events_pb2.PaymentOrderSucceeded(
                payment_order_id=order.payment_order_id,
                payment_id=order.payment_id,
                seller_id=order.seller_id,
                amount=amount,
                psp_reference=execution.psp_reference,
                charged_at=charged_at,
            ),
        )
    if execution.status is ExecutionStatus.FAILED:
        return OutboundEvent(
            PAYMENT_ORDER_FAILED,
            key=order.payment_order_id,
            message=events_pb2.PaymentOrderFailed(
                payment_order_id=order.payment_order_id,
                payment_id=order.payment_id,
                seller_id=order.seller_id,
                amount=amount,
                failure_code=execution.failure_code,
                failure_message=execution.failure_message,
                psp_reference=execution.psp_reference,
            ),
        )
    raise ValueError(f"an execution in {execution.status} has no outcome to announce")
