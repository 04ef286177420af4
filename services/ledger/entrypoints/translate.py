"""Domain → protobuf translation for the ledger API."""

from __future__ import annotations

import uuid

from settle.common.v1.money_pb2 import Money as MoneyMessage
from settle.ledger.v1 import ledger_pb2

from services.common.money import Money
from services.common.timestamps import timestamp_of
from services.ledger.domain import PostedEntry


def money_message(money: Money) -> MoneyMessage:
    return MoneyMessage(amount_minor=money.amount_minor, currency=money.currency)


def _id_text(value: uuid.UUID | None) -> str:
    return str(value) if value else ""


def entry_message(posted: PostedEntry) -> ledger_pb2.JournalEntry:
    """The entry as the API shows it; an id it does not have is the empty string. (The PSP reference
    of a fee or payout has no field of its own: it is in the journal and in the export.)"""
    entry = posted.entry
    return ledger_pb2.JournalEntry(
        entry_id=str(entry.entry_id),
        kind=entry.kind,
        payment_order_id=_id_text(entry.payment_order_id),
        event_id=str(entry.cause_event_id),
        postings=[ledger_pb2.Posting(account=p.account, amount=money_message(p.amount)) for p in entry.postings],
        create_time=timestamp_of(posted.created_at),
        refund_id=_id_text(entry.refund_id),
        payout_id=_id_text(entry.payout_id),
        reverses_entry_id=_id_text(entry.reverses_entry_id),
        memo=entry.memo,
    )
