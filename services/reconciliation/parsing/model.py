"""What every settlement parser yields: settlement lines in one shape, quarantined lines, and checks.

A parser reads a file as a stream (constant memory) and yields, in file order, a `SettlementLine` for
every line it understood and a `Quarantined` for every line it could not (with its line number and why);
a file that cannot be read at all (truncated, undecodable, a required column missing) raises
`FileRejected` naming the reason. Balance checks the format allows (a Stripe payout's rows, an Adyen
batch, a camt.053 statement) are reported as `BalanceCheck`s once the stream is consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import BinaryIO, Protocol


class LineKind(StrEnum):
    """What a settlement line moved, normalised across formats; the format's own word is kept in `raw_type`."""

    CHARGE = "charge"  # money in from a buyer (Stripe charge, Adyen Settled)
    REFUND = "refund"  # money back to a buyer
    PAYOUT = "payout"  # money out to a bank account (Stripe payout, Adyen MerchantPayout)
    FEE = "fee"  # a standalone fee
    DISPUTE = "dispute"  # chargebacks and their reversals
    # Corrections, balance transfers, reserves; and every camt.053 bank entry but bank charges (money in
    # or out of the bank account, matched against PSP payouts by amount, date and reference).
    ADJUSTMENT = "adjustment"
    OTHER = "other"  # anything the format calls by a name we do not know: kept, never dropped


@dataclass(frozen=True, slots=True)
class SettlementLine:
    line: int  # 1-based line number in the file (XML: where the entry starts; see camt053._line_of)
    kind: LineKind
    raw_type: str  # the format's own category, as written
    psp_reference: str  # the PSP's id of the object (pi_/ch_/re_/po_, Adyen Psp Reference, bank ref)
    merchant_reference: str  # ours, when the PSP echoes it (payment order / refund / payout id), else ""
    currency: str  # ISO 4217, upper case
    gross_minor: int  # signed, minor units: > 0 into the PSP balance (or the bank account), < 0 out
    fee_minor: int  # > 0 when the PSP charged a fee, < 0 when it returned one
    net_minor: int  # as the file states it; gross - fee for a consistent line
    occurred_at: datetime | None  # aware UTC when the file says when
    batch: str = ""  # what groups lines the file balances together (a payout, a batch number, a statement)
    status: str = ""  # e.g. camt BOOK/PDNG/INFO; "" when the format has none
    details: dict[str, str] = field(default_factory=dict)  # further references (end-to-end ids, metadata)


@dataclass(frozen=True, slots=True)
class Quarantined:
    line: int
    reason: str
    raw: str = ""  # the offending text, truncated; reports must escape it


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """A total the file states or implies, and whether the lines add up to it."""

    scope: str  # e.g. "statement 2026-11-20/1 EUR", "batch 42 EUR", "payout po_123"
    currency: str
    expected_minor: int
    actual_minor: int

    @property
    def balanced(self) -> bool:
        return self.expected_minor == self.actual_minor


class FileRejected(Exception):
    """The file as a whole cannot be read: nothing of it is imported."""


class SettlementParser(Protocol):
    def parse(self, stream: BinaryIO) -> Iterator[SettlementLine | Quarantined]:
        """Yields the file's lines in order; raises FileRejected when the file cannot be read at all."""
        ...

    @property
    def checks(self) -> list[BalanceCheck]:
        """The balance checks, complete once `parse`'s iterator is exhausted."""
        ...
