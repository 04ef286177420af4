"""The admin gRPC API (scope `admin`): translation between protobuf and the admin use cases only."""

from __future__ import annotations

import grpc
from settle.common.v1.money_pb2 import Money
from settle.executor.v1 import executor_pb2, executor_pb2_grpc

from services.common.errors import Validator
from services.common.timestamps import timestamp_of
from services.executor.domain import ExecutionKind, ExecutionStatus, PayoutOrder
from services.executor.service.admin import AnyExecution, ExecutionRef, ExecutorAdmin

SERVICE_NAME = "settle.executor.v1.ExecutorService"
ADMIN_ONLY = frozenset({"admin"})
SCOPES = {"GetExecution": ADMIN_ONLY, "ListStuck": ADMIN_ONLY, "RetryExecution": ADMIN_ONLY}

_STATUS_TO_PROTO = {
    ExecutionStatus.NOT_STARTED: executor_pb2.EXECUTION_STATUS_NOT_STARTED,
    ExecutionStatus.EXECUTING: executor_pb2.EXECUTION_STATUS_EXECUTING,
    ExecutionStatus.SUCCEEDED: executor_pb2.EXECUTION_STATUS_SUCCEEDED,
    ExecutionStatus.FAILED: executor_pb2.EXECUTION_STATUS_FAILED,
    ExecutionStatus.UNKNOWN: executor_pb2.EXECUTION_STATUS_UNKNOWN,
}
_KIND_TO_PROTO = {
    ExecutionKind.CHARGE: executor_pb2.EXECUTION_KIND_CHARGE,
    ExecutionKind.REFUND: executor_pb2.EXECUTION_KIND_REFUND,
    ExecutionKind.PAYOUT: executor_pb2.EXECUTION_KIND_PAYOUT,
}
_KIND_FROM_PROTO = {number: kind for kind, number in _KIND_TO_PROTO.items()}


def kind_of(number: executor_pb2.ExecutionKind.ValueType) -> ExecutionKind | None:
    """None for EXECUTION_KIND_UNSPECIFIED; a number this server does not know is INVALID_ARGUMENT."""
    kind = _KIND_FROM_PROTO.get(number)
    if kind is None and number != executor_pb2.EXECUTION_KIND_UNSPECIFIED:
        validator = Validator()
        validator.add("kind", f"{number} is not an ExecutionKind (CHARGE 1, REFUND 2, PAYOUT 3)")
        validator.raise_if_any()
    return kind


def execution_to_proto(execution: AnyExecution) -> executor_pb2.Execution:
    order = execution.order
    # Charges and refunds belong to a payment order of a payment; a payout to neither.
    payment_order_id, payment_id = (
        ("", "") if isinstance(order, PayoutOrder) else (order.payment_order_id, order.payment_id)
    )
    return executor_pb2.Execution(
        payment_order_id=payment_order_id,
        payment_id=payment_id,
        seller_id=order.seller_id,
        amount=Money(amount_minor=order.amount_minor, currency=order.currency),
        status=_STATUS_TO_PROTO[execution.status],
        attempts=execution.attempts,
        psp_reference=execution.psp_reference,
        failure_code=execution.failure_code,
        failure_message=execution.failure_message,
        update_time=timestamp_of(execution.updated_at),
        kind=_KIND_TO_PROTO[order.kind],
        id=order.execution_id,
    )


def _ref(request: executor_pb2.GetExecutionRequest | executor_pb2.RetryExecutionRequest) -> ExecutionRef:
    return ExecutionRef.named(kind_of(request.kind), request.id, request.payment_order_id)


class ExecutorServicer(executor_pb2_grpc.ExecutorServiceServicer):
    def __init__(self, admin: ExecutorAdmin) -> None:
        self._admin = admin

    async def GetExecution(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.GetExecutionResponse:
        execution = await self._admin.get_execution(_ref(request))
        return executor_pb2.GetExecutionResponse(execution=execution_to_proto(execution))

    async def ListStuck(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.ListStuckRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.ListStuckResponse:
        stuck = await self._admin.list_stuck(request.older_than_s, request.page_size, kind_of(request.kind))
        return executor_pb2.ListStuckResponse(executions=[execution_to_proto(e) for e in stuck])

    async def RetryExecution(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.RetryExecutionRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.RetryExecutionResponse:
        execution = await self._admin.retry_execution(_ref(request))
        return executor_pb2.RetryExecutionResponse(execution=execution_to_proto(execution))
