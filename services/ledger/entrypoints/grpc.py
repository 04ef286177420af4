"""The LedgerService gRPC servicer: translation between protobuf and the ledger's use cases only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.errors import Unimplemented, Validator
from services.ledger import export
from services.ledger.adapters.journal_export_db import JournalExportReader
from services.ledger.admin_service import LedgerAdmin
from services.ledger.entrypoints.translate import entry_message, money_message
from services.ledger.service import LedgerService

_EXPORT_FORMATS = frozenset(
    {ledger_pb2.ExportJournalRequest.FORMAT_UNSPECIFIED, ledger_pb2.ExportJournalRequest.FORMAT_HLEDGER}
)
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_TIMESTAMP_SECONDS, _MAX_TIMESTAMP_SECONDS = -62_135_596_800, 253_402_300_799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bound(timestamp: Timestamp) -> datetime:
    """The bound in PostgreSQL's microseconds, rounded UP: an entry at t µs is at or after `from` iff
    t >= ceil(from), and before `to` iff t < ceil(to), so [from, to) stays exact at any precision."""
    microseconds = -(-timestamp.nanos // 1000)
    try:
        return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=microseconds)
    except OverflowError:  # within the last microsecond of year 9999: no entry is that late
        return datetime.max.replace(tzinfo=UTC)


def _nanos(timestamp: Timestamp) -> int:
    return timestamp.seconds * 1_000_000_000 + timestamp.nanos


def _time_bound(
    validator: Validator, request: ledger_pb2.ExportJournalRequest, field: Literal["from_time", "to_time"]
) -> datetime | None:
    if not request.HasField(field):
        return None
    timestamp: Timestamp = getattr(request, field)
    in_range = _MIN_TIMESTAMP_SECONDS <= timestamp.seconds <= _MAX_TIMESTAMP_SECONDS
    if not in_range or not 0 <= timestamp.nanos <= 999_999_999:
        validator.add(field, "must be a timestamp from 0001-01-01 to 9999-12-31 with nanos from 0 to 999999999")
        return None
    return _bound(timestamp)


def export_period(request: ledger_pb2.ExportJournalRequest) -> export.Period:
    """The validated period of an export request; raises InvalidArgument naming every bad field."""
    validator = Validator()
    if request.format not in _EXPORT_FORMATS:
        validator.add("format", f"must be FORMAT_HLEDGER or FORMAT_UNSPECIFIED (got {request.format})")
    start = _time_bound(validator, request, "from_time")
    end = _time_bound(validator, request, "to_time")
    # Compared as sent, not as rounded to microseconds: to_time must be strictly later than from_time.
    if start is not None and end is not None and _nanos(request.to_time) <= _nanos(request.from_time):
        validator.add("to_time", "must be after from_time (the period is [from_time, to_time))")
    validator.raise_if_any()
    return export.Period(start, end)


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(
        self,
        ledger: LedgerService,
        journal_exports: JournalExportReader | None = None,
        admin: LedgerAdmin | None = None,
    ) -> None:
        self._ledger = ledger
        # Optional so that a process built without them still serves every other method.
        self._journal_exports = journal_exports
        self._admin = admin

    def _admin_or_unimplemented(self) -> LedgerAdmin:
        if self._admin is None:
            raise Unimplemented("corrections are not enabled in this ledger process", reason="CORRECTIONS_NOT_ENABLED")
        return self._admin

    async def GetAccountBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.GetAccountBalanceRequest, context: Any
    ) -> ledger_pb2.GetAccountBalanceResponse:
        balance = await self._ledger.get_account_balance(request.account, request.currency)
        return ledger_pb2.GetAccountBalanceResponse(account=request.account, balance=money_message(balance))

    async def ListEntries(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.ListEntriesRequest, context: Any
    ) -> ledger_pb2.ListEntriesResponse:
        entries, next_token = await self._ledger.list_entries(
            page_size=request.page_size, page_token=request.page_token, payment_order_id=request.payment_order_id
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[entry_message(entry) for entry in entries], next_page_token=next_token
        )

    async def TrialBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.TrialBalanceRequest, context: Any
    ) -> ledger_pb2.TrialBalanceResponse:
        trial = await self._ledger.trial_balance()
        return ledger_pb2.TrialBalanceResponse(
            accounts=[ledger_pb2.AccountBalance(account=a, balance=money_message(b)) for a, b in trial.accounts],
            totals=[money_message(total) for total in trial.totals],
            balanced=trial.balanced,
        )

    async def ExportJournal(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.ExportJournalRequest, context: Any
    ) -> AsyncIterator[ledger_pb2.ExportJournalChunk]:
        period = export_period(request)
        if self._journal_exports is None:
            raise Unimplemented("ExportJournal is not enabled in this ledger process", reason="EXPORT_NOT_ENABLED")
        # One chunk per batch keeps messages far below gRPC's 4 MiB default and ends each chunk at a
        # transaction boundary; gRPC's flow control paces the reads to the client.
        async with self._journal_exports.snapshot() as journal:
            yield ledger_pb2.ExportJournalChunk(text=export.preamble(await journal.currencies(), period))
            async for batch in journal.batches(period):
                yield ledger_pb2.ExportJournalChunk(text=export.transactions(batch), entry_count=len(batch))

    async def PostPspFee(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.PostPspFeeRequest, context: Any
    ) -> ledger_pb2.JournalEntry:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED, ALREADY_EXISTS/IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST."""
        posted = await self._admin_or_unimplemented().post_psp_fee(
            amount_minor=request.amount.amount_minor,
            currency=request.amount.currency,
            psp_reference=request.psp_reference,
            memo=request.memo,
            idempotency_key=request.idempotency_key,
        )
        return entry_message(posted)

    async def ReverseEntry(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.ReverseEntryRequest, context: Any
    ) -> ledger_pb2.JournalEntry:
        """Errors: INVALID_ARGUMENT/VALIDATION_FAILED, NOT_FOUND/LEDGER_ENTRY_NOT_FOUND,
        FAILED_PRECONDITION/LEDGER_ENTRY_IS_REVERSAL."""
        posted = await self._admin_or_unimplemented().reverse_entry(entry_id=request.entry_id, reason=request.reason)
        return entry_message(posted)
