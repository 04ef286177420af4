"""Entries an operator posts: PSP fees and reversals, with their validation and errors. No I/O.

Neither has an event behind it, so each gets a cause event id derived from what makes it unique
(the caller's idempotency key; the reversed entry): the journal's unique cause rule then makes a
repeat post nothing, even when two repeats race.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.common.errors import AlreadyExists, FailedPrecondition, NotFound, Validator
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, Money
from services.ledger.accounts import PSP_FEES, PSP_RECEIVABLE
from services.ledger.domain import KIND_PSP_FEE, KIND_REVERSAL, JournalEntry, Posting

PSP_REFERENCE_MAX_LENGTH = 255
IDEMPOTENCY_KEY_MAX_LENGTH = 255
MEMO_MAX_LENGTH = 500
# Fixed forever: changing either would let a repeated fee or reversal post again.
PSP_FEE_NAMESPACE = uuid.UUID("6f0b8e8e-3d8a-4c52-9a57-1f2d5c0e7b41")
REVERSAL_NAMESPACE = uuid.UUID("b3a4c1d2-7e6f-4a58-8b90-2c3d4e5f6a71")


class LedgerEntryNotFound(NotFound):
    def __init__(self, entry_id: uuid.UUID) -> None:
        super().__init__(f"journal entry {entry_id} does not exist", reason="LEDGER_ENTRY_NOT_FOUND")


class LedgerEntryIsReversal(FailedPrecondition):
    def __init__(self, entry_id: uuid.UUID) -> None:
        super().__init__(
            f"journal entry {entry_id} is a reversal; it is not reversed again (post the correct entry anew)",
            reason="LEDGER_ENTRY_IS_REVERSAL",
        )


class PspFeeKeyReused(AlreadyExists):
    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} was used for a different PSP fee",
            reason="IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST",
        )


@dataclass(frozen=True, slots=True)
class PspFee:
    """A validated fee to book: what the PSP kept, its reference of what for, and a memo."""

    amount: Money
    psp_reference: str
    memo: str
    idempotency_key: str

    @property
    def cause_event_id(self) -> uuid.UUID:
        return uuid.uuid5(PSP_FEE_NAMESPACE, self.idempotency_key)


def _optional_text(validator: Validator, field: str, value: str, max_length: int) -> None:
    if len(value) > max_length:
        validator.add(field, f"must be at most {max_length} characters (got {len(value)})")
    elif any(ord(char) < 0x20 for char in value):
        validator.add(field, "must not contain control characters")


def validate_psp_fee(
    *, amount_minor: int, currency: str, psp_reference: str, memo: str, idempotency_key: str
) -> PspFee:
    """Raises InvalidArgument (VALIDATION_FAILED) naming every bad field."""
    validator = Validator()
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        validator.add("amount.amount_minor", f"must be from 1 to {MAX_AMOUNT_MINOR} (got {amount_minor})")
    if currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{currency!r} is not a supported ISO 4217 code in upper case")
    validator.require_text("psp_reference", psp_reference, max_length=PSP_REFERENCE_MAX_LENGTH)
    _optional_text(validator, "memo", memo, MEMO_MAX_LENGTH)
    validator.require_text("idempotency_key", idempotency_key, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    validator.raise_if_any()
    return PspFee(Money(amount_minor, currency), psp_reference, memo, idempotency_key)


def psp_fee_entry(fee: PspFee, entry_id: uuid.UUID) -> JournalEntry:
    """DR psp_fees, CR psp_receivable: the PSP kept the fee out of the money it holds for us."""
    return JournalEntry(
        entry_id=entry_id,
        kind=KIND_PSP_FEE,
        payment_order_id=None,
        cause_event_id=fee.cause_event_id,
        postings=(Posting(PSP_FEES, fee.amount), Posting(PSP_RECEIVABLE, -fee.amount)),
        memo=fee.memo,
        psp_reference=fee.psp_reference,
    )


def is_same_fee(entry: JournalEntry, fee: PspFee) -> bool:
    """Whether the posted `entry` is the one `fee` would post: a replay rather than a reused key."""
    return (
        entry.kind == KIND_PSP_FEE
        and entry.postings == psp_fee_entry(fee, entry.entry_id).postings
        and (entry.memo, entry.psp_reference) == (fee.memo, fee.psp_reference)
    )


def validate_reversal(*, entry_id: str, reason: str) -> uuid.UUID:
    """The id of the entry to reverse; raises InvalidArgument (VALIDATION_FAILED) naming every bad field."""
    validator = Validator()
    parsed = validator.require_uuid("entry_id", entry_id)
    validator.require_text("reason", reason, max_length=MEMO_MAX_LENGTH)
    validator.raise_if_any()
    assert parsed is not None
    return parsed


def reversal_entry(original: JournalEntry, entry_id: uuid.UUID, reason: str) -> JournalEntry:
    """Every posting of `original` negated, so that together they net to nothing. It keeps the
    original's order, refund and payout ids, so that it is listed with what it corrects."""
    if original.kind == KIND_REVERSAL:
        raise LedgerEntryIsReversal(original.entry_id)
    return JournalEntry(
        entry_id=entry_id,
        kind=KIND_REVERSAL,
        payment_order_id=original.payment_order_id,
        cause_event_id=uuid.uuid5(REVERSAL_NAMESPACE, str(original.entry_id)),
        postings=tuple(Posting(posting.account, -posting.amount) for posting in original.postings),
        refund_id=original.refund_id,
        payout_id=original.payout_id,
        reverses_entry_id=original.entry_id,
        memo=reason,
    )
