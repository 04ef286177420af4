"""The ledger's domain: balanced, immutable double-entry journal entries (accounts: accounts.py).

Every entry has at least two non-zero postings that sum to zero per currency; the database enforces
the same at commit (0001_initial.py). Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import Validator
from services.common.money import CURRENCY_EXPONENTS, Money
from services.common.succeeded_orders import SucceededOrder
from services.common.succeeded_refunds import SucceededRefund
from services.ledger.accounts import PSP_RECEIVABLE, is_account, seller_payable

KIND_PAYMENT_ORDER_SUCCEEDED = "payment_order_succeeded"
KIND_REFUND_SUCCEEDED = "refund_succeeded"
KIND_PAYOUT_REQUESTED = "payout_requested"
KIND_PAYOUT_PAID = "payout_paid"
KIND_PAYOUT_FAILED = "payout_failed"
KIND_PSP_FEE = "psp_fee"
KIND_REVERSAL = "reversal"


class UnbalancedEntry(ValueError):
    """A journal entry that breaks double entry: a bug in the code that built it, never posted."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One side of an entry: positive is a debit, negative a credit."""

    account: str
    amount: Money


def check_balanced(postings: Sequence[Posting]) -> None:
    """Raises UnbalancedEntry unless there are >= 2 non-zero postings summing to zero per currency."""
    if len(postings) < 2:
        raise UnbalancedEntry(f"an entry needs at least 2 postings, got {len(postings)}")
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        if posting.amount.amount_minor == 0:
            raise UnbalancedEntry(f"posting to {posting.account} is zero")
        if not is_account(posting.account):
            raise UnbalancedEntry(f"{posting.account!r} is not in the chart of accounts")
        totals[posting.amount.currency] += posting.amount.amount_minor
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedEntry(f"postings do not sum to zero per currency: {unbalanced}")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A balanced entry to post; `cause_event_id` makes posting it idempotent."""

    entry_id: uuid.UUID
    kind: str
    payment_order_id: uuid.UUID | None
    cause_event_id: uuid.UUID
    postings: tuple[Posting, ...]
    refund_id: uuid.UUID | None = None  # for refund entries: posted once per refund
    payout_id: uuid.UUID | None = None  # for payout entries: each step posted once per payout
    reverses_entry_id: uuid.UUID | None = None  # for a reversal: the entry it reverses, at most once
    memo: str = ""  # for a fee, what it is for; for a reversal, why
    psp_reference: str = ""  # for a fee or a paid or failed payout: the PSP's reference

    def __post_init__(self) -> None:
        check_balanced(self.postings)


@dataclass(frozen=True, slots=True)
class PostedEntry:
    """An entry as stored: its place in the journal and when it was posted."""

    seq: int
    entry: JournalEntry
    created_at: datetime


def payment_order_succeeded_entry(order: SucceededOrder, entry_id: uuid.UUID) -> JournalEntry:
    """DR psp_receivable, CR seller_payable:<seller>: the PSP holds the money we now owe the seller."""
    return JournalEntry(
        entry_id=entry_id,
        kind=KIND_PAYMENT_ORDER_SUCCEEDED,
        payment_order_id=order.payment_order_id,
        cause_event_id=order.event_id,
        postings=(Posting(PSP_RECEIVABLE, order.amount), Posting(seller_payable(order.seller_id), -order.amount)),
    )


def refund_succeeded_entry(refund: SucceededRefund, entry_id: uuid.UUID) -> JournalEntry:
    """DR seller_payable:<seller>, CR psp_receivable: the reversal of the sale's entry, for the amount
    given back: we owe the seller that much less, and the PSP holds that much less for us."""
    return JournalEntry(
        entry_id=entry_id,
        kind=KIND_REFUND_SUCCEEDED,
        payment_order_id=refund.payment_order_id,
        cause_event_id=refund.event_id,
        postings=(Posting(seller_payable(refund.seller_id), refund.amount), Posting(PSP_RECEIVABLE, -refund.amount)),
        refund_id=refund.refund_id,
    )


def validate_account_query(account: str, currency: str) -> None:
    validator = Validator()
    if not is_account(account):
        validator.add("account", f"{account!r} is not in the chart of accounts")
    if currency not in CURRENCY_EXPONENTS:
        validator.add("currency", f"{currency!r} is not a supported ISO 4217 code in upper case")
    validator.raise_if_any()


@dataclass(frozen=True, slots=True)
class TrialBalance:
    """Every account balance, the total per currency, and whether balances match their postings."""

    accounts: tuple[tuple[str, Money], ...]
    totals: tuple[Money, ...]
    balances_match_postings: bool

    @property
    def balanced(self) -> bool:
        return self.balances_match_postings and all(total.amount_minor == 0 for total in self.totals)
