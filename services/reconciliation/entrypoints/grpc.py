"""The ReconciliationService gRPC servicer: translation between protobuf and the use cases only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from settle.common.v1.money_pb2 import Money
from settle.reconciliation.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.timestamps import timestamp_of
from services.reconciliation import reports
from services.reconciliation.runs import Run
from services.reconciliation.service import ReconciliationService

_FINANCE = frozenset({"finance", "admin"})
SCOPES = {
    name: _FINANCE
    for name in (
        "ImportSettlementFile",
        "RunReconciliation",
        "GetRun",
        "ListMismatches",
        "ResolveMismatch",
        "GetReport",
    )
}


def run_message(run: Run) -> reconciliation_pb2.Run:
    return reconciliation_pb2.Run(
        run_id=str(run.run_id),
        scope=run.scope,
        file_ids=run.file_ids,
        summary_json=reports.summary_json(run.summary),
        mismatch_count=int(run.summary.get("mismatch_count", 0)),
        repeated=run.repeated,
    )


def mismatch_message(row: Any) -> reconciliation_pb2.Mismatch:
    message = reconciliation_pb2.Mismatch(
        mismatch_id=str(row.mismatch_id),
        run_id=str(row.run_id),
        kind=row.kind,
        severity=row.severity,
        suggested_action=row.suggested_action,
        file_id=row.file_id or "",
        line=row.line or 0,
        item_id=str(row.item_id or ""),
        amount=Money(amount_minor=row.amount_minor, currency=row.currency),
        description=row.description,
        resolved=row.resolved_at is not None,
        resolved_by=row.resolved_by or "",
        resolution=row.resolution or "",
    )
    if row.expected_minor is not None:
        message.expected_minor = row.expected_minor
    if row.resolved_at is not None:
        message.resolve_time.CopyFrom(timestamp_of(row.resolved_at))
    return message


class ReconciliationServicer(reconciliation_pb2_grpc.ReconciliationServiceServicer):
    def __init__(self, service: ReconciliationService) -> None:
        self._service = service

    async def ImportSettlementFile(  # noqa: N802 - the name gRPC dispatches to
        self, request_iterator: AsyncIterator[reconciliation_pb2.ImportSettlementFileRequest], context: Any
    ) -> reconciliation_pb2.ImportSettlementFileResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument("file_name: the stream sent nothing", reason="VALIDATION_FAILED")

        async def chunks() -> AsyncIterator[bytes]:
            yield first.chunk
            async for request in request_iterator:
                yield request.chunk

        result = await self._service.import_upload(first.file_name, first.format, chunks())
        return reconciliation_pb2.ImportSettlementFileResponse(
            file_id=result.file_id,
            already_imported=result.already_imported,
            lines_read=result.lines_read,
            lines_imported=result.lines_imported,
            quarantined=[reconciliation_pb2.QuarantinedLine(line=q.line, reason=q.reason) for q in result.quarantined],
            checks=[
                reconciliation_pb2.BalanceCheck(
                    scope=c.scope,
                    currency=c.currency,
                    expected_minor=c.expected_minor,
                    actual_minor=c.actual_minor,
                    balanced=c.balanced,
                )
                for c in result.checks
            ],
        )

    async def RunReconciliation(  # noqa: N802 - the name gRPC dispatches to
        self, request: reconciliation_pb2.RunReconciliationRequest, context: Any
    ) -> reconciliation_pb2.RunReconciliationResponse:
        if bool(request.date) == bool(request.file_id):
            raise InvalidArgument("date: exactly one of date and file_id must be set", reason="VALIDATION_FAILED")
        if request.file_id:
            run = await self._service.run_file(request.file_id)
        else:
            try:
                day = date.fromisoformat(request.date)
            except ValueError as error:
                raise InvalidArgument(
                    f"date: {request.date!r} is not YYYY-MM-DD", reason="VALIDATION_FAILED"
                ) from error
            run = await self._service.run_day(day)
        return reconciliation_pb2.RunReconciliationResponse(run=run_message(run))

    async def GetRun(  # noqa: N802 - the name gRPC dispatches to
        self, request: reconciliation_pb2.GetRunRequest, context: Any
    ) -> reconciliation_pb2.GetRunResponse:
        return reconciliation_pb2.GetRunResponse(run=run_message(await self._service.get_run(request.run_id)))

    async def ListMismatches(  # noqa: N802 - the name gRPC dispatches to
        self, request: reconciliation_pb2.ListMismatchesRequest, context: Any
    ) -> reconciliation_pb2.ListMismatchesResponse:
        rows, token = await self._service.list_mismatches(
            request.run_id,
            kind=request.kind,
            unresolved_only=request.unresolved_only,
            size=request.page_size,
            page_token=request.page_token,
        )
        return reconciliation_pb2.ListMismatchesResponse(
            mismatches=[mismatch_message(row) for row in rows], next_page_token=token
        )

    async def ResolveMismatch(  # noqa: N802 - the name gRPC dispatches to
        self, request: reconciliation_pb2.ResolveMismatchRequest, context: Any
    ) -> reconciliation_pb2.ResolveMismatchResponse:
        row = await self._service.resolve(request.mismatch_id, request.resolution, request.resolved_by)
        return reconciliation_pb2.ResolveMismatchResponse(mismatch=mismatch_message(row))

    async def GetReport(  # noqa: N802 - the name gRPC dispatches to
        self, request: reconciliation_pb2.GetReportRequest, context: Any
    ) -> reconciliation_pb2.GetReportResponse:
        report = await self._service.report(request.run_id)
        return reconciliation_pb2.GetReportResponse(
            summary_json=reports.summary_json(report.summary),
            mismatches_csv=report.mismatches_csv,
            html=report.html,
        )
