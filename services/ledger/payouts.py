"""Payout entries: each step of a payout moves its amount between the seller's accounts and the PSP.

A requested payout moves what the platform owes the seller from `seller_payable` to
`payouts_in_transit` (still owed, but no longer available); a paid one settles it out of
`psp_receivable`; a failed one puts it back in `seller_payable`. Nothing here does I/O.
"""

from __future__ import annotations

import uuid

from services.common.payout_events import PayoutEvent, PayoutStep
from services.ledger.accounts import PSP_RECEIVABLE, payouts_in_transit, seller_payable
from services.ledger.domain import (
    KIND_PAYOUT_FAILED,
    KIND_PAYOUT_PAID,
    KIND_PAYOUT_REQUESTED,
    JournalEntry,
    Posting,
)

KIND_OF_STEP = {
    PayoutStep.REQUESTED: KIND_PAYOUT_REQUESTED,
    PayoutStep.PAID: KIND_PAYOUT_PAID,
    PayoutStep.FAILED: KIND_PAYOUT_FAILED,
}


def _accounts(payout: PayoutEvent) -> tuple[str, str]:
    """The (debited, credited) accounts of the payout's step."""
    payable, in_transit = seller_payable(payout.seller_id), payouts_in_transit(payout.seller_id)
    if payout.step is PayoutStep.REQUESTED:
        return payable, in_transit
    if payout.step is PayoutStep.PAID:
        return in_transit, PSP_RECEIVABLE
    return in_transit, payable


def payout_entry(payout: PayoutEvent, entry_id: uuid.UUID) -> JournalEntry:
    """The entry of one payout step, posted once per (payout, kind) whatever event carries it:
    - requested: DR seller_payable:<seller>, CR payouts_in_transit:<seller>;
    - paid: DR payouts_in_transit:<seller>, CR psp_receivable;
    - failed: DR payouts_in_transit:<seller>, CR seller_payable:<seller>."""
    debited, credited = _accounts(payout)
    return JournalEntry(
        entry_id=entry_id,
        kind=KIND_OF_STEP[payout.step],
        payment_order_id=None,
        cause_event_id=payout.event_id,
        postings=(Posting(debited, payout.amount), Posting(credited, -payout.amount)),
        payout_id=payout.payout_id,
        psp_reference=payout.psp_reference,
    )
