"""Protobuf ↔ domain translation for the payment API."""

from __future__ import annotations

import hashlib

from settle.common.v1.money_pb2 import Money
from settle.payment.v1 import payment_pb2

from services.common.timestamps import timestamp_of
from services.payment.domain.model import LineItem, OrderStatus, Payment, PaymentOrder
from services.payment.domain.refunds import Refund, RefundCommand, RefundStatus
from services.payment.domain.validation import CreatePaymentCommand, SellerOrderInput

_STATUS_TO_PROTO = {
    OrderStatus.NOT_STARTED: payment_pb2.PAYMENT_ORDER_STATUS_NOT_STARTED,
    OrderStatus.EXECUTING: payment_pb2.PAYMENT_ORDER_STATUS_EXECUTING,
    OrderStatus.SUCCEEDED: payment_pb2.PAYMENT_ORDER_STATUS_SUCCEEDED,
    OrderStatus.FAILED: payment_pb2.PAYMENT_ORDER_STATUS_FAILED,
    OrderStatus.PARTIALLY_REFUNDED: payment_pb2.PAYMENT_ORDER_STATUS_PARTIALLY_REFUNDED,
    OrderStatus.REFUNDED: payment_pb2.PAYMENT_ORDER_STATUS_REFUNDED,
}


def request_hash(request: payment_pb2.CreatePaymentRequest | payment_pb2.RefundPaymentOrderRequest) -> bytes:
    """SHA-256 of the request's deterministic encoding: the idempotency fingerprint of a request."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).digest()


def command_from_proto(request: payment_pb2.CreatePaymentRequest) -> CreatePaymentCommand:
    return CreatePaymentCommand(
        checkout_id=request.checkout_id,
        buyer_id=request.buyer_id,
        payment_method_token=request.payment_method_token,
        currency=request.currency,
        seller_orders=tuple(
            SellerOrderInput(
                seller_id=order.seller_id,
                line_items=tuple(
                    LineItem(item.sku, item.description, item.quantity, item.unit_amount_minor)
                    for item in order.line_items
                ),
            )
            for order in request.seller_orders
        ),
    )


def order_to_proto(order: PaymentOrder) -> payment_pb2.PaymentOrder:
    return payment_pb2.PaymentOrder(
        payment_order_id=str(order.payment_order_id),
        payment_id=str(order.payment_id),
        seller_id=order.seller_id,
        amount=Money(amount_minor=order.amount_minor, currency=order.currency),
        status=_STATUS_TO_PROTO[order.status],
        wallet_updated=order.wallet_updated,
        ledger_updated=order.ledger_updated,
        psp_reference=order.psp_reference,
        failure_code=order.failure_code,
        failure_message=order.failure_message,
        line_items=[
            payment_pb2.LineItem(
                sku=item.sku,
                description=item.description,
                quantity=item.quantity,
                unit_amount_minor=item.unit_amount_minor,
            )
            for item in order.line_items
        ],
        create_time=timestamp_of(order.created_at),
        update_time=timestamp_of(order.updated_at),
    )


def payment_to_proto(payment: Payment) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=str(payment.payment_id),
        checkout_id=payment.checkout_id,
        buyer_id=payment.buyer_id,
        total=Money(amount_minor=payment.total_minor, currency=payment.currency),
        orders=[order_to_proto(order) for order in payment.orders],
        done=payment.done,
        create_time=timestamp_of(payment.created_at),
    )


_REFUND_STATUSES = {
    RefundStatus.REQUESTED: payment_pb2.REFUND_STATUS_REQUESTED,
    RefundStatus.SUCCEEDED: payment_pb2.REFUND_STATUS_SUCCEEDED,
    RefundStatus.FAILED: payment_pb2.REFUND_STATUS_FAILED,
}


def refund_command_from_proto(request: payment_pb2.RefundPaymentOrderRequest) -> RefundCommand:
    has_amount = request.HasField("amount")
    return RefundCommand(
        payment_order_id=request.payment_order_id,
        idempotency_key=request.idempotency_key,
        amount_minor=request.amount.amount_minor if has_amount else None,
        currency=request.amount.currency if has_amount else "",
        reason=request.reason,
    )


def refund_to_proto(refund: Refund) -> payment_pb2.Refund:
    return payment_pb2.Refund(
        refund_id=str(refund.refund_id),
        payment_order_id=str(refund.payment_order_id),
        payment_id=str(refund.payment_id),
        seller_id=refund.seller_id,
        amount=Money(amount_minor=refund.amount_minor, currency=refund.currency),
        status=_REFUND_STATUSES[refund.status],
        reason=refund.reason,
        psp_reference=refund.psp_reference,
        failure_code=refund.failure_code,
        failure_message=refund.failure_message,
        create_time=timestamp_of(refund.created_at),
        update_time=timestamp_of(refund.updated_at),
    )
