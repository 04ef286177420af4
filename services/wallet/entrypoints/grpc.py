"""The WalletService gRPC servicer: translation between protobuf and the wallet's use cases only."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from settle.common.v1.money_pb2 import Money
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.wallet.domain import Balance, BalanceEntry, Bucket
from services.wallet.service import WalletService

_BUCKETS = {
    Bucket.PENDING: wallet_pb2.BALANCE_BUCKET_PENDING,
    Bucket.AVAILABLE: wallet_pb2.BALANCE_BUCKET_AVAILABLE,
    Bucket.RESERVED: wallet_pb2.BALANCE_BUCKET_RESERVED,
}


def _balance_message(balance: Balance) -> wallet_pb2.Balance:
    message = wallet_pb2.Balance(
        seller_id=balance.seller_id,
        currency=balance.currency,
        pending_minor=balance.pending_minor,
        available_minor=balance.available_minor,
        reserved_minor=balance.reserved_minor,
    )
    if balance.updated_at is not None:
        message.update_time.FromDatetime(balance.updated_at)
    return message


def _entry_message(entry: BalanceEntry) -> wallet_pb2.BalanceEntry:
    created = Timestamp()
    created.FromDatetime(entry.created_at)
    return wallet_pb2.BalanceEntry(
        entry_id=str(entry.entry_id),
        seller_id=entry.seller_id,
        bucket=_BUCKETS[entry.bucket],
        amount=Money(amount_minor=entry.amount.amount_minor, currency=entry.amount.currency),
        kind=entry.kind,
        payment_order_id=str(entry.payment_order_id or ""),
        event_id=str(entry.event_id),
        create_time=created,
    )


class WalletServicer(wallet_pb2_grpc.WalletServiceServicer):
    def __init__(self, wallet: WalletService) -> None:
        self._wallet = wallet

    async def GetBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.GetBalanceRequest, context: Any
    ) -> wallet_pb2.GetBalanceResponse:
        balance = await self._wallet.get_balance(request.seller_id, request.currency)
        return wallet_pb2.GetBalanceResponse(balance=_balance_message(balance))

    async def ListBalanceEntries(  # noqa: N802 - the name gRPC dispatches to
        self, request: wallet_pb2.ListBalanceEntriesRequest, context: Any
    ) -> wallet_pb2.ListBalanceEntriesResponse:
        entries, next_token = await self._wallet.list_entries(
            request.seller_id, page_size=request.page_size, page_token=request.page_token
        )
        return wallet_pb2.ListBalanceEntriesResponse(
            entries=[_entry_message(entry) for entry in entries], next_page_token=next_token
        )
