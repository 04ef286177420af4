"""The WalletService gRPC servicer: translation between protobuf and the wallet's use cases only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from settle.common.v1.money_pb2 import Money
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.timestamps import timestamp_of
from services.wallet.batch_files import PayoutFormat
from services.wallet.domain import Balance, BalanceEntry, Bucket
from services.wallet.payout_service import PayoutBatch, PayoutService
from services.wallet.payouts import Payout, PayoutOrigin, PayoutStatus
from services.wallet.service import WalletService

_BUCKETS = {
    Bucket.PENDING: wallet_pb2.BALANCE_BUCKET_PENDING,
    Bucket.AVAILABLE: wallet_pb2.BALANCE_BUCKET_AVAILABLE,
    Bucket.RESERVED: wallet_pb2.BALANCE_BUCKET_RESERVED,
}


_STATUSES = {
    PayoutStatus.REQUESTED: wallet_pb2.PAYOUT_STATUS_REQUESTED,
    PayoutStatus.PAID: wallet_pb2.PAYOUT_STATUS_PAID,
    PayoutStatus.FAILED: wallet_pb2.PAYOUT_STATUS_FAILED,
}
_ORIGINS = {
    PayoutOrigin.MANUAL: wallet_pb2.PAYOUT_ORIGIN_MANUAL,
    PayoutOrigin.SCHEDULED: wallet_pb2.PAYOUT_ORIGIN_SCHEDULED,
    PayoutOrigin.BATCH: wallet_pb2.PAYOUT_ORIGIN_BATCH,
}
_FORMATS = {wallet_pb2.PAYOUT_BATCH_FORMAT_CSV: PayoutFormat.CSV, wallet_pb2.PAYOUT_BATCH_FORMAT_XML: PayoutFormat.XML}


def _balance_message(balance: Balance, as_of: datetime) -> wallet_pb2.Balance:
    message = wallet_pb2.Balance(
        seller_id=balance.seller_id,
        currency=balance.currency,
        pending_minor=balance.pending_minor,
        available_minor=balance.available_minor,
        reserved_minor=balance.reserved_minor,
        payouts_requested_minor=balance.reserved_minor,
        payouts_paid_minor=balance.payouts_paid_minor,
        debt_minor=balance.debt_minor,
        payouts_held=balance.payouts_held,
        as_of=timestamp_of(as_of),
    )
    if balance.updated_at is not None:
        message.update_time.FromDatetime(balance.updated_at)
    return message


def payout_message(payout: Payout) -> wallet_pb2.Payout:
    return wallet_pb2.Payout(
        payout_id=str(payout.payout_id),
        seller_id=payout.seller_id,
        amount=Money(amount_minor=payout.amount.amount_minor, currency=payout.amount.currency),
        destination=payout.destination,
        status=_STATUSES[payout.status],
        origin=_ORIGINS[payout.origin],
        idempotency_key=payout.idempotency_key,
        batch_id=payout.batch_id or "",
        batch_line=payout.batch_line or 0,
        metadata=payout.metadata,
        psp_reference=payout.psp_reference,
        failure_code=payout.failure_code,
        failure_message=payout.failure_message,
        create_time=timestamp_of(payout.created_at),
        update_time=timestamp_of(payout.updated_at),
    )


def _batch_message(batch: PayoutBatch) -> wallet_pb2.PayoutBatch:
    return wallet_pb2.PayoutBatch(
        batch_id=batch.batch_id,
        content_sha256=batch.content_sha256,
        item_count=batch.item_count,
        totals=[
            wallet_pb2.PayoutBatchTotal(
                status=_STATUSES[status],
                count=count,
                amount=Money(amount_minor=amount.amount_minor, currency=amount.currency),
            )
            for status, count, amount in batch.totals
        ],
        create_time=timestamp_of(batch.created_at),
    )


def _as_of(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def _day(text: str) -> date:
    if not text:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise InvalidArgument(f"date: {text!r} is not a YYYY-MM-DD date", reason="VALIDATION_FAILED") from error


def _entry_message(entry: BalanceEntry) -> wallet_pb2.BalanceEntry:
    return wallet_pb2.BalanceEntry(
        entry_id=str(entry.entry_id),
        seller_id=entry.seller_id,
        bucket=_BUCKETS[entry.bucket],
        amount=Money(amount_minor=entry.amount.amount_minor, currency=entry.amount.currency),
        kind=entry.kind,
        payment_order_id=str(entry.payment_order_id or ""),
        event_id=str(entry.event_id),
        create_time=timestamp_of(entry.created_at),
        refund_id=str(entry.refund_id or ""),
        payout_id=str(entry.payout_id or ""),
    )


class WalletServicer(wallet_pb2_grpc.WalletServiceServicer):
    def __init__(
        self,
        wallet: WalletService,
        payouts: PayoutService,
        *,
        release_delay_s: int,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._wallet = wallet
        self._payouts = payouts
        self._release_delay_s = release_delay_s
        self._on_change = on_change  # wakes the outbox relay after a change with events

    async def GetBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.GetBalanceRequest, context: Any
    ) -> wallet_pb2.GetBalanceResponse:
        as_of = _as_of(request, "as_of")
        balance = await self._wallet.get_balance(request.seller_id, request.currency, as_of)
        return wallet_pb2.GetBalanceResponse(balance=_balance_message(balance, as_of or datetime.now(UTC)))

    async def ListBalanceEntries(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.ListBalanceEntriesRequest, context: Any
    ) -> wallet_pb2.ListBalanceEntriesResponse:
        entries, next_token = await self._wallet.list_entries(
            request.seller_id, page_size=request.page_size, page_token=request.page_token
        )
        return wallet_pb2.ListBalanceEntriesResponse(
            entries=[_entry_message(entry) for entry in entries], next_page_token=next_token
        )

    async def SetPayoutDestination(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.SetPayoutDestinationRequest, context: Any
    ) -> wallet_pb2.SetPayoutDestinationResponse:
        await self._payouts.set_destination(request.seller_id, request.destination)
        return wallet_pb2.SetPayoutDestinationResponse()

    async def CreatePayout(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.CreatePayoutRequest, context: Any
    ) -> wallet_pb2.Payout:
        payout = await self._payouts.create_payout(
            seller_id=request.seller_id,
            amount_minor=request.amount.amount_minor,
            currency=request.amount.currency,
            destination=request.destination,
            idempotency_key=request.idempotency_key,
            metadata=dict(request.metadata),
        )
        self._on_change()
        return payout_message(payout)

    async def GetPayout(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.GetPayoutRequest, context: Any
    ) -> wallet_pb2.Payout:
        return payout_message(await self._payouts.get_payout(request.payout_id))

    async def ListPayouts(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.ListPayoutsRequest, context: Any
    ) -> wallet_pb2.ListPayoutsResponse:
        payouts, next_token = await self._payouts.list_payouts(
            seller_id=request.seller_id,
            batch_id=request.batch_id,
            size=request.page_size,
            page_token=request.page_token,
        )
        return wallet_pb2.ListPayoutsResponse(
            payouts=[payout_message(payout) for payout in payouts], next_page_token=next_token
        )

    async def SubmitPayoutBatch(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.SubmitPayoutBatchRequest, context: Any
    ) -> wallet_pb2.SubmitPayoutBatchResponse:
        file_format = _FORMATS.get(request.format)
        if file_format is None:
            raise InvalidArgument(
                "format: must be PAYOUT_BATCH_FORMAT_CSV or PAYOUT_BATCH_FORMAT_XML", reason="VALIDATION_FAILED"
            )
        batch, duplicate = await self._payouts.submit_batch(request.batch_id, file_format, request.content)
        if not duplicate:
            self._on_change()
        return wallet_pb2.SubmitPayoutBatchResponse(batch=_batch_message(batch), duplicate=duplicate)

    async def GetPayoutBatch(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.GetPayoutBatchRequest, context: Any
    ) -> wallet_pb2.PayoutBatch:
        return _batch_message(await self._payouts.get_batch(request.batch_id))

    async def RunPayoutSchedule(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.RunPayoutScheduleRequest, context: Any
    ) -> wallet_pb2.RunPayoutScheduleResponse:
        run = await self._payouts.run_schedule(_day(request.date))
        if run.payouts:
            self._on_change()
        return wallet_pb2.RunPayoutScheduleResponse(
            date=run.day.isoformat(),
            payout_day=run.payout_day,
            payouts=[payout_message(payout) for payout in run.payouts],
            skipped_without_destination=run.skipped_without_destination,
            skipped_below_minimum=run.skipped_below_minimum,
            held_for_debt=run.held_for_debt,
        )

    async def ReleasePending(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.ReleasePendingRequest, context: Any
    ) -> wallet_pb2.ReleasePendingResponse:
        released = 0
        while batch := await self._wallet.release_due(
            delay_s=self._release_delay_s, limit=5_000, as_of=_as_of(request, "as_of")
        ):
            released += len(batch) // 2
        if released:
            self._on_change()
        return wallet_pb2.ReleasePendingResponse(released=released)
