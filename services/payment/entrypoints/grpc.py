"""The PaymentService gRPC API: translation between protobuf and the use cases only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from settle.payment.v1 import payment_pb2, payment_pb2_grpc

from services.payment.domain.model import parse_id
from services.payment.entrypoints.translate import (
    command_from_proto,
    order_to_proto,
    payment_to_proto,
    refund_command_from_proto,
    refund_to_proto,
    request_hash,
)
from services.payment.service.create import PaymentCreator
from services.payment.service.queries import PaymentQueries
from services.payment.service.refund import RefundRequester
from services.payment.service.watch import watch_payment

SERVICE_NAME = "settle.payment.v1.PaymentService"
_CHECKOUT_OR_ADMIN = frozenset({"payments", "admin"})
SCOPES = {
    name: _CHECKOUT_OR_ADMIN
    for name in (
        "CreatePayment",
        "GetPayment",
        "GetPaymentOrder",
        "ListPayments",
        "WatchPayment",
        "RefundPaymentOrder",
        "GetRefund",
    )
}


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self,
        creator: PaymentCreator,
        queries: PaymentQueries,
        refunds: RefundRequester,
        *,
        watch_max_s: float,
        watch_poll_s: float,
    ) -> None:
        self._creator = creator
        self._refunds = refunds
        self._queries = queries
        self._watch_max_s = watch_max_s
        self._watch_poll_s = watch_poll_s

    async def CreatePayment(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.CreatePaymentRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.CreatePaymentResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED, ALREADY_EXISTS/CHECKOUT_ID_REUSED_WITH_DIFFERENT_REQUEST,
        UNAUTHENTICATED/API_KEY_MISSING|API_KEY_INVALID, PERMISSION_DENIED/SCOPE_MISSING."""
        payment, replayed = await self._creator.create(command_from_proto(request), request_hash(request))
        return payment_pb2.CreatePaymentResponse(payment=payment_to_proto(payment), replayed=replayed)

    async def GetPayment(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.GetPaymentResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED (payment_id not a UUID), NOT_FOUND/PAYMENT_NOT_FOUND,
        UNAUTHENTICATED/API_KEY_MISSING|API_KEY_INVALID, PERMISSION_DENIED/SCOPE_MISSING."""
        payment = await self._queries.get_payment(parse_id("payment_id", request.payment_id))
        return payment_pb2.GetPaymentResponse(payment=payment_to_proto(payment))

    async def GetPaymentOrder(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.GetPaymentOrderRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.GetPaymentOrderResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED (payment_order_id not a UUID),
        NOT_FOUND/PAYMENT_ORDER_NOT_FOUND, UNAUTHENTICATED/API_KEY_MISSING|API_KEY_INVALID,
        PERMISSION_DENIED/SCOPE_MISSING."""
        order = await self._queries.get_payment_order(parse_id("payment_order_id", request.payment_order_id))
        return payment_pb2.GetPaymentOrderResponse(payment_order=order_to_proto(order))

    async def ListPayments(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.ListPaymentsRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.ListPaymentsResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED (page_size), INVALID_ARGUMENT/INVALID_PAGE_TOKEN,
        UNAUTHENTICATED/API_KEY_MISSING|API_KEY_INVALID, PERMISSION_DENIED/SCOPE_MISSING."""
        payments, next_token = await self._queries.list_payments(
            page_size=request.page_size, token=request.page_token, buyer_id=request.buyer_id
        )
        return payment_pb2.ListPaymentsResponse(
            payments=[payment_to_proto(p) for p in payments], next_page_token=next_token
        )

    async def WatchPayment(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.WatchPaymentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[payment_pb2.WatchPaymentResponse]:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED (payment_id not a UUID), NOT_FOUND/PAYMENT_NOT_FOUND,
        UNAUTHENTICATED/API_KEY_MISSING|API_KEY_INVALID, PERMISSION_DENIED/SCOPE_MISSING.
        Ends normally once the payment is done or after min(call deadline, the configured maximum)."""
        payment_id = parse_id("payment_id", request.payment_id)
        remaining_s = context.time_remaining()
        limit_s = self._watch_max_s if remaining_s is None else min(remaining_s, self._watch_max_s)
        async for payment in watch_payment(
            self._queries, payment_id, max_duration_s=limit_s, poll_interval_s=self._watch_poll_s
        ):
            yield payment_pb2.WatchPaymentResponse(payment=payment_to_proto(payment))

    async def RefundPaymentOrder(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.RefundPaymentOrderRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.RefundPaymentOrderResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED, NOT_FOUND/PAYMENT_ORDER_NOT_FOUND,
        FAILED_PRECONDITION/PAYMENT_ORDER_NOT_REFUNDABLE|REFUND_EXCEEDS_REFUNDABLE_AMOUNT,
        ALREADY_EXISTS/IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST, UNAUTHENTICATED, PERMISSION_DENIED."""
        refund, replayed = await self._refunds.request(refund_command_from_proto(request), request_hash(request))
        return payment_pb2.RefundPaymentOrderResponse(refund=refund_to_proto(refund), replayed=replayed)

    async def GetRefund(  # noqa: N802 - the name gRPC dispatches to
        self, request: payment_pb2.GetRefundRequest, context: grpc.aio.ServicerContext
    ) -> payment_pb2.GetRefundResponse:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED (refund_id not a UUID), NOT_FOUND/REFUND_NOT_FOUND."""
        refund = await self._refunds.get(parse_id("refund_id", request.refund_id))
        return payment_pb2.GetRefundResponse(refund=refund_to_proto(refund))
