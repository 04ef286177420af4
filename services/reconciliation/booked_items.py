"""What Settle booked, as reconciliation indexes it: one item per charge, refund or payout.

Three event streams fill an item, in any order, so matching is three-way: the order (the payment
service's payment order or refund, the wallet's payout: what was asked for), the executor's outcome
(our id, the PSP's reference, the amount, succeeded or failed) and the ledger's entry (our id, the amount
the books hold, the entry).
Amounts are signed like settlement lines, as the PSP balance sees them: a charge +, a refund or a payout -.
Events that can never apply are rejected (→ their DLQ) with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from settle.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_REQUESTED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    InboundEvent,
)
from services.common.money import CURRENCY_EXPONENTS

TOPICS = (
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_REFUND_REQUESTED,
    PAYOUT_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYOUT_PAID,
    PAYOUT_FAILED,
    LEDGER_ENTRY_POSTED,
)
# The ledger entry kinds that book money moving through the PSP balance, and what they book.
_LEDGER_KINDS = {
    "payment_order_succeeded": ("charge", "payment_order_id"),
    "refund_succeeded": ("refund", "refund_id"),
    "payout_paid": ("payout", "payout_id"),
}
PSP_BALANCE_ACCOUNT = "psp_receivable"


@dataclass(frozen=True, slots=True)
class BookedItem:
    item_id: uuid.UUID
    kind: str  # charge | refund | payout
    status: str  # ordered | outcome_only | booked | failed
    psp_reference: str
    currency: str
    amount_minor: int
    occurred_at: datetime
    ledger_entry_id: uuid.UUID | None = None
    ordered_minor: int | None = None  # set by the order's event only


def _uuid(event: InboundEvent, name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise EventRejected(event, f"invalid {event.topic}: {name}: {value!r} is not a UUID") from error


def _currency(event: InboundEvent, currency: str) -> str:
    if currency not in CURRENCY_EXPONENTS:
        raise EventRejected(event, f"invalid {event.topic}: amount.currency: {currency!r} is not supported")
    return currency


def _time(stamp: Any, fallback: datetime) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else fallback


def item_of(event: InboundEvent) -> BookedItem | None:
    """The item an event tells about, or None for an event that books nothing the PSP settles."""
    message = event.message
    if isinstance(message, events_pb2.LedgerEntryPosted):
        return _from_ledger(event, message)
    if isinstance(message, events_pb2.PaymentOrderRequested | events_pb2.RefundRequested | events_pb2.PayoutRequested):
        return _from_order(event, message)
    if isinstance(message, events_pb2.PaymentOrderSucceeded | events_pb2.PaymentOrderFailed):
        kind, item, sign = "charge", message.payment_order_id, 1
    elif isinstance(message, events_pb2.RefundSucceeded | events_pb2.RefundFailed):
        kind, item, sign = "refund", message.refund_id, -1
    elif isinstance(message, events_pb2.PayoutPaid | events_pb2.PayoutFailed):
        kind, item, sign = "payout", message.payout_id, -1
    else:
        raise EventRejected(event, f"unexpected {message.DESCRIPTOR.full_name} on {event.topic}")
    failed = isinstance(message, events_pb2.PaymentOrderFailed | events_pb2.RefundFailed | events_pb2.PayoutFailed)
    when = event.event_time
    if isinstance(message, events_pb2.PaymentOrderSucceeded):
        when = _time(message.charged_at, when)
    elif isinstance(message, events_pb2.RefundSucceeded):
        when = _time(message.refunded_at, when)
    elif isinstance(message, events_pb2.PayoutPaid):
        when = _time(message.paid_at, when)
    reference = "" if isinstance(message, events_pb2.RefundFailed) else message.psp_reference
    return BookedItem(
        item_id=_uuid(event, f"{kind} id", item),
        kind=kind,
        status="failed" if failed else "outcome_only",
        psp_reference=reference,
        currency=_currency(event, message.amount.currency),
        amount_minor=sign * message.amount.amount_minor,
        occurred_at=when,
    )


def _from_order(
    event: InboundEvent,
    message: events_pb2.PaymentOrderRequested | events_pb2.RefundRequested | events_pb2.PayoutRequested,
) -> BookedItem:
    if isinstance(message, events_pb2.PaymentOrderRequested):
        kind, item, sign = "charge", message.payment_order_id, 1
    elif isinstance(message, events_pb2.RefundRequested):
        kind, item, sign = "refund", message.refund_id, -1
    else:
        kind, item, sign = "payout", message.payout_id, -1
    amount = sign * message.amount.amount_minor
    return BookedItem(
        item_id=_uuid(event, f"{kind} id", item),
        kind=kind,
        status="ordered",
        psp_reference="",
        currency=_currency(event, message.amount.currency),
        amount_minor=amount,
        occurred_at=event.event_time,
        ordered_minor=amount,
    )


def _from_ledger(event: InboundEvent, message: events_pb2.LedgerEntryPosted) -> BookedItem | None:
    booked = _LEDGER_KINDS.get(message.kind)
    if booked is None:
        return None  # payout requests, failures, fees, reversals: nothing the PSP settles as an item
    kind, id_field = booked
    postings = [p for p in message.postings if p.account == PSP_BALANCE_ACCOUNT]
    if len(postings) != 1:
        raise EventRejected(event, f"invalid {event.topic}: a {message.kind} entry without one {PSP_BALANCE_ACCOUNT}")
    return BookedItem(
        item_id=_uuid(event, id_field, getattr(message, id_field)),
        kind=kind,
        status="booked",
        psp_reference="",
        currency=_currency(event, postings[0].amount.currency),
        amount_minor=postings[0].amount.amount_minor,
        occurred_at=_time(message.posted_at, event.event_time),
        ledger_entry_id=_uuid(event, "entry_id", message.entry_id),
    )


# Order, outcome and ledger entry merge into one row whichever comes first. The ledger's amount and entry
# win over the outcome's, the outcome's over the order's; the outcome brings the PSP reference; a failure
# never overrides a booking, and an order never overrides anything but its own amount asked for.
_UPSERT = text("""
INSERT INTO booked_items AS b (item_id, kind, psp_reference, currency, amount_minor, status, ledger_entry_id,
                               occurred_at, ordered_currency, ordered_minor)
SELECT i, k, r, c, a, s, e, t, CASE WHEN o IS NULL THEN NULL ELSE c END, o
FROM unnest(CAST(:ids AS uuid[]), CAST(:kinds AS text[]), CAST(:refs AS text[]), CAST(:currencies AS text[]),
            CAST(:amounts AS bigint[]), CAST(:statuses AS text[]), CAST(:entries AS uuid[]),
            CAST(:times AS timestamptz[]), CAST(:ordered AS bigint[])) AS u(i, k, r, c, a, s, e, t, o)
ORDER BY 1
ON CONFLICT (item_id) DO UPDATE SET
    psp_reference = CASE WHEN excluded.psp_reference <> '' THEN excluded.psp_reference ELSE b.psp_reference END,
    amount_minor = CASE WHEN excluded.status = 'booked' OR (excluded.status <> 'ordered' AND b.status = 'ordered')
                        THEN excluded.amount_minor ELSE b.amount_minor END,
    currency = CASE WHEN excluded.status = 'booked' OR (excluded.status <> 'ordered' AND b.status = 'ordered')
                    THEN excluded.currency ELSE b.currency END,
    ledger_entry_id = coalesce(excluded.ledger_entry_id, b.ledger_entry_id),
    status = CASE WHEN b.status = 'booked' OR excluded.status = 'booked' THEN 'booked'
                  WHEN excluded.status = 'ordered' THEN b.status ELSE excluded.status END,
    occurred_at = CASE WHEN b.status = 'ordered' AND excluded.status <> 'ordered' THEN excluded.occurred_at
                       WHEN excluded.status IN ('booked', 'ordered') THEN b.occurred_at
                       ELSE excluded.occurred_at END,
    ordered_currency = coalesce(excluded.ordered_currency, b.ordered_currency),
    ordered_minor = coalesce(excluded.ordered_minor, b.ordered_minor),
    updated_at = now()
""")


async def record(connection: AsyncConnection, rows: Sequence[BookedItem]) -> None:
    """Upserts items with distinct ids (ON CONFLICT cannot touch a row twice in one command)."""
    if not rows:
        return
    await connection.execute(
        _UPSERT,
        {
            "ids": [item.item_id for item in rows],
            "kinds": [item.kind for item in rows],
            "refs": [item.psp_reference for item in rows],
            "currencies": [item.currency for item in rows],
            "amounts": [item.amount_minor for item in rows],
            "statuses": [item.status for item in rows],
            "entries": [item.ledger_entry_id for item in rows],
            "times": [item.occurred_at for item in rows],
            "ordered": [item.ordered_minor for item in rows],
        },
    )


class BookedItemsHandler:
    """Consumer `booked`: indexes outcomes and ledger entries by our id, in the event's transaction."""

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        items = [item for item in map(item_of, events) if item is not None]
        # Two events of one item in one batch: apply in order, each its own statement.
        seen: set[uuid.UUID] = set()
        batch: list[BookedItem] = []
        for item in items:
            if item.item_id in seen:
                await record(connection, batch)
                batch, seen = [], set()
            batch.append(item)
            seen.add(item.item_id)
        await record(connection, batch)
