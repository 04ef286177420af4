"""The admin gRPC API (scope `admin`): translation between protobuf and the admin use cases only."""

from __future__ import annotations

import grpc
from settle.common.v1.money_pb2 import Money
from settle.executor.v1 import executor_pb2, executor_pb2_grpc

from services.common.timestamps import timestamp_of
from services.executor.domain import ChargeOrder, Execution, ExecutionStatus
from services.executor.service.admin import ExecutorAdmin

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


def execution_to_proto(execution: Execution[ChargeOrder]) -> executor_pb2.Execution:
    order = execution.order
    return executor_pb2.Execution(
        payment_order_id=order.payment_order_id,
        payment_id=order.payment_id,
        seller_id=order.seller_id,
        amount=Money(amount_minor=order.amount_minor, currency=order.currency),
        status=_STATUS_TO_PROTO[execution.status],
        attempts=execution.attempts,
        psp_reference=execution.psp_reference,
        failure_code=execution.failure_code,
        failure_message=execution.failure_message,
        update_time=timestamp_of(execution.updated_at),
    )


class ExecutorServicer(executor_pb2_grpc.ExecutorServiceServicer):
    def __init__(self, admin: ExecutorAdmin) -> None:
        self._admin = admin

    async def GetExecution(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.GetExecutionResponse:
        execution = await self._admin.get_execution(request.payment_order_id)
        return executor_pb2.GetExecutionResponse(execution=execution_to_proto(execution))

    async def ListStuck(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.ListStuckRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.ListStuckResponse:
        stuck = await self._admin.list_stuck(request.older_than_s, request.page_size)
        return executor_pb2.ListStuckResponse(executions=[execution_to_proto(e) for e in stuck])

    async def RetryExecution(  # noqa: N802 - the name gRPC dispatches to
        self, request: executor_pb2.RetryExecutionRequest, context: grpc.aio.ServicerContext
    ) -> executor_pb2.RetryExecutionResponse:
        execution = await self._admin.retry_execution(request.payment_order_id)
        return executor_pb2.RetryExecutionResponse(execution=execution_to_proto(execution))
