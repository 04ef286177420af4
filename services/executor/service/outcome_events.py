"""The events that announce an execution's definite outcome."""

from __future__ import annotations

from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2

from services.common.events import (
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    OutboundEvent,
)
from services.common.timestamps import timestamp_of
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus, PayoutOrder, RefundOrder


def outcome_event(execution: Execution[ChargeOrder]) -> OutboundEvent:
    """`payment.order.succeeded` or `payment.order.failed` for a SUCCEEDED or FAILED execution
    (key = payment order id)."""
    order = execution.order
    amount = Money(amount_minor=order.amount_minor, currency=order.currency)
    if execution.status is ExecutionStatus.SUCCEEDED:
        return OutboundEvent(
            PAYMENT_ORDER_SUCCEEDED,
            key=order.payment_order_id,
            message=events_pb2.PaymentOrderSucceeded(
                payment_order_id=order.payment_order_id,
                payment_id=order.payment_id,
                seller_id=order.seller_id,
                amount=amount,
                psp_reference=execution.psp_reference,
                charged_at=timestamp_of(execution.updated_at),
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


def refund_outcome_event(execution: Execution[RefundOrder]) -> OutboundEvent:
    """`payment.refund.succeeded` or `payment.refund.failed` (key = payment order id, so a refund
    follows its order's charge on one partition)."""
    refund = execution.order
    amount = Money(amount_minor=refund.amount_minor, currency=refund.currency)
    if execution.status is ExecutionStatus.SUCCEEDED:
        return OutboundEvent(
            PAYMENT_REFUND_SUCCEEDED,
            key=refund.payment_order_id,
            message=events_pb2.RefundSucceeded(
                refund_id=refund.refund_id,
                payment_order_id=refund.payment_order_id,
                payment_id=refund.payment_id,
                seller_id=refund.seller_id,
                amount=amount,
                psp_reference=execution.psp_reference,
                refunded_at=timestamp_of(execution.updated_at),
            ),
        )
    if execution.status is ExecutionStatus.FAILED:
        return OutboundEvent(
            PAYMENT_REFUND_FAILED,
            key=refund.payment_order_id,
            message=events_pb2.RefundFailed(
                refund_id=refund.refund_id,
                payment_order_id=refund.payment_order_id,
                payment_id=refund.payment_id,
                seller_id=refund.seller_id,
                amount=amount,
                failure_code=execution.failure_code,
                failure_message=execution.failure_message,
            ),
        )
    raise ValueError(f"an execution in {execution.status} has no outcome to announce")


def payout_outcome_event(execution: Execution[PayoutOrder]) -> OutboundEvent:
    """`payout.paid` or `payout.failed` (key = payout id)."""
    payout = execution.order
    amount = Money(amount_minor=payout.amount_minor, currency=payout.currency)
    if execution.status is ExecutionStatus.SUCCEEDED:
        return OutboundEvent(
            PAYOUT_PAID,
            key=payout.payout_id,
            message=events_pb2.PayoutPaid(
                payout_id=payout.payout_id,
                seller_id=payout.seller_id,
                amount=amount,
                destination=payout.destination,
                psp_reference=execution.psp_reference,
                paid_at=timestamp_of(execution.updated_at),
            ),
        )
    if execution.status is ExecutionStatus.FAILED:
        return OutboundEvent(
            PAYOUT_FAILED,
            key=payout.payout_id,
            message=events_pb2.PayoutFailed(
                payout_id=payout.payout_id,
                seller_id=payout.seller_id,
                amount=amount,
                destination=payout.destination,
                psp_reference=execution.psp_reference,
                failure_code=execution.failure_code,
                failure_message=execution.failure_message,
            ),
        )
    raise ValueError(f"an execution in {execution.status} has no outcome to announce")
