"""The LedgerService gRPC servicer: translation between protobuf and the ledger's use cases only."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from settle.common.v1.money_pb2 import Money as MoneyMessage
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.money import Money
from services.ledger.domain import PostedEntry
from services.ledger.service import LedgerService


def _money(money: Money) -> MoneyMessage:
    return MoneyMessage(amount_minor=money.amount_minor, currency=money.currency)


def _entry_message(posted: PostedEntry) -> ledger_pb2.JournalEntry:
    entry = posted.entry
    created = Timestamp()
    created.FromDatetime(posted.created_at)
    return ledger_pb2.JournalEntry(
        entry_id=str(entry.entry_id),
        kind=entry.kind,
        payment_order_id=str(entry.payment_order_id or ""),
        event_id=str(entry.cause_event_id),
        postings=[ledger_pb2.Posting(account=p.account, amount=_money(p.amount)) for p in entry.postings],
        create_time=created,
    )


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    async def GetAccountBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.GetAccountBalanceRequest, context: Any
    ) -> ledger_pb2.GetAccountBalanceResponse:
        balance = await self._ledger.get_account_balance(request.account, request.currency)
        return ledger_pb2.GetAccountBalanceResponse(account=request.account, balance=_money(balance))

    async def ListEntries(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.ListEntriesRequest, context: Any
    ) -> ledger_pb2.ListEntriesResponse:
        entries, next_token = await self._ledger.list_entries(
            page_size=request.page_size, page_token=request.page_token, payment_order_id=request.payment_order_id
        )
        return ledger_pb2.ListEntriesResponse(
            entries=[_entry_message(entry) for entry in entries], next_page_token=next_token
        )

    async def TrialBalance(  # noqa: N802 - the name gRPC dispatches to
        self, request: ledger_pb2.TrialBalanceRequest, context: Any
    ) -> ledger_pb2.TrialBalanceResponse:
        trial = await self._ledger.trial_balance()
        return ledger_pb2.TrialBalanceResponse(
            accounts=[ledger_pb2.AccountBalance(account=a, balance=_money(b)) for a, b in trial.accounts],
            totals=[_money(total) for total in trial.totals],
            balanced=trial.balanced,
        )
