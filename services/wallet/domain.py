"""The wallet's domain: seller balances in three buckets and the immutable entries that explain them.

A seller has one balance per currency with three buckets, all in integer minor units:

- `pending`: sales not yet released (a sale lands here; it becomes available after the hold period);
- `available`: funds that can be paid out (negative when refunds exceed it: a debt the seller owes);
- `reserved`: funds held by payouts in flight.

Every change to a bucket is an immutable `BalanceEntry` (signed amount, one bucket), so each bucket
always equals the sum of its entries. A move between buckets (a release, a payout reservation) is two
entries of the same cause, one per bucket. Pure Python: nothing here does I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.common.errors import Validator
from services.common.money import CURRENCY_EXPONENTS, Money
from services.common.succeeded_orders import SELLER_ID_MAX_LENGTH, SucceededOrder
from services.common.succeeded_refunds import SucceededRefund


class Bucket(StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    RESERVED = "reserved"


class EntryKind(StrEnum):
    # A succeeded payment order credited to the seller's pending bucket (once per order).
    SALE = "sale"
    # A succeeded refund debited from the seller's available bucket (once per refund).
    REFUND = "refund"
    # A sale moved from pending to available after its hold period (two entries, once per order).
    RELEASE = "release"
    # A payout accepted: available -x, reserved +x (once per payout).
    PAYOUT_RESERVED = "payout_reserved"
    # A payout paid: reserved -x.
    PAYOUT_PAID = "payout_paid"
    # A payout failed: reserved -x, available +x.
    PAYOUT_RETURNED = "payout_returned"


# The wallet's name for a succeeded payment order: credited to its seller's pending balance exactly once.
Sale = SucceededOrder
# A succeeded refund: debited from its seller's available balance exactly once.
RefundDebit = SucceededRefund


@dataclass(frozen=True, slots=True)
class Balance:
    seller_id: str
    currency: str
    pending_minor: int
    available_minor: int
    reserved_minor: int
    updated_at: datetime | None
    payouts_paid_minor: int = 0  # paid out to the seller's bank, in total

    @classmethod
    def empty(cls, seller_id: str, currency: str) -> Balance:
        return cls(seller_id, currency, 0, 0, 0, None)

    @property
    def debt_minor(self) -> int:
        """What the seller owes: refunds beyond what the balance held."""
        return max(0, -self.available_minor)

    @property
    def payouts_held(self) -> bool:
        """A debt holds every payout in this currency until later sales cover it."""
        return self.available_minor < 0


@dataclass(frozen=True, slots=True)
class BalanceEntry:
    seq: int
    entry_id: uuid.UUID
    seller_id: str
    bucket: Bucket
    amount: Money
    kind: str
    payment_order_id: uuid.UUID | None
    event_id: uuid.UUID
    created_at: datetime
    refund_id: uuid.UUID | None = None
    payout_id: uuid.UUID | None = None


def validate_query(seller_id: str, currency: str | None = None) -> None:
    """Validates a read request for a seller (and a currency, when the request has one)."""
    validator = Validator()
    validator.require_text("seller_id", seller_id, max_length=SELLER_ID_MAX_LENGTH)
    if currency is not None and currency not in CURRENCY_EXPONENTS:
        validator.add("currency", f"{currency!r} is not a supported ISO 4217 code in upper case")
    validator.raise_if_any()
