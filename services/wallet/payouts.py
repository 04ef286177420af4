"""Payouts in the wallet's domain: what a payout is, what a request must look like, and the schedule.

A payout reserves funds from the seller's available balance (available -x, reserved +x) when it is
accepted, and is then paid (reserved -x) or fails (reserved -x, available +x). A negative available
balance is a debt: it holds every payout in its currency until later sales cover it. Pure Python.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from services.common.errors import FieldViolation, Validator
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, Money
from services.common.succeeded_orders import SELLER_ID_MAX_LENGTH

DESTINATION_PATTERN = re.compile(r"^ba_[A-Za-z0-9_]{1,200}$")
IDEMPOTENCY_KEY_MAX_LENGTH = 255
BATCH_ID_MAX_LENGTH = 64
MAX_METADATA_KEYS = 20
METADATA_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
METADATA_VALUE_MAX_LENGTH = 500


class PayoutStatus(StrEnum):
    REQUESTED = "REQUESTED"
    PAID = "PAID"
    FAILED = "FAILED"


class PayoutOrigin(StrEnum):
    MANUAL = "MANUAL"
    SCHEDULED = "SCHEDULED"
    BATCH = "BATCH"


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    """A payout to accept: its funds are reserved in the same transaction that records it."""

    payout_id: uuid.UUID
    seller_id: str
    amount: Money
    destination: str
    origin: PayoutOrigin
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)
    batch_id: str | None = None
    batch_line: int | None = None

    @property
    def request_hash(self) -> str:
        """What makes two requests under one key the same request (the payout id is ours, not theirs)."""
        canonical = json.dumps(
            [self.seller_id, self.amount.amount_minor, self.amount.currency, self.destination, self.metadata],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Payout:
    payout_id: uuid.UUID
    seller_id: str
    amount: Money
    destination: str
    status: PayoutStatus
    origin: PayoutOrigin
    idempotency_key: str
    request_hash: str
    batch_id: str | None
    batch_line: int | None
    metadata: dict[str, str]
    psp_reference: str
    failure_code: str
    failure_message: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A seller and currency whose available balance cannot cover the payouts asked for."""

    seller_id: str
    currency: str
    available_minor: int
    requested_minor: int

    def describe(self) -> str:
        if self.available_minor < 0:
            return (
                f"seller {self.seller_id} owes {-self.available_minor} {self.currency} (minor units); "
                "payouts are held until later sales cover the debt"
            )
        return (
            f"seller {self.seller_id} has {self.available_minor} {self.currency} available (minor units), "
            f"{self.requested_minor} requested"
        )


def is_destination(value: str) -> bool:
    return bool(DESTINATION_PATTERN.match(value))


def metadata_violations(metadata: dict[str, str], field_name: str = "metadata") -> list[FieldViolation]:
    validator = Validator()
    if len(metadata) > MAX_METADATA_KEYS:
        validator.add(field_name, f"at most {MAX_METADATA_KEYS} keys (got {len(metadata)})")
    for key, value in sorted(metadata.items()):
        if not METADATA_KEY_PATTERN.match(key):
            validator.add(f"{field_name}[{key!r}]", "key must be 1 to 40 characters of A-Z a-z 0-9 _ . -")
        if len(value) > METADATA_VALUE_MAX_LENGTH or any(ord(char) < 32 for char in value):
            validator.add(
                f"{field_name}[{key!r}]", f"value must be at most {METADATA_VALUE_MAX_LENGTH} printable characters"
            )
    return validator.violations


def validate_create(
    *,
    seller_id: str,
    amount_minor: int,
    currency: str,
    destination: str,
    idempotency_key: str,
    metadata: dict[str, str],
) -> None:
    """Raises InvalidArgument naming every bad field of a CreatePayout request."""
    validator = Validator()
    validator.require_text("seller_id", seller_id, max_length=SELLER_ID_MAX_LENGTH)
    if amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {amount_minor})")
    elif amount_minor > MAX_AMOUNT_MINOR:
        validator.add("amount.amount_minor", f"must be at most {MAX_AMOUNT_MINOR} (got {amount_minor})")
    if currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{currency!r} is not a supported ISO 4217 code in upper case")
    if destination and not is_destination(destination):
        validator.add("destination", "must be a bank account id like ba_... (letters, digits, _)")
    validator.require_text("idempotency_key", idempotency_key, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    for violation in metadata_violations(metadata):
        validator.add(violation.field, violation.description)
    validator.raise_if_any()


@dataclass(frozen=True, slots=True)
class PayoutSchedule:
    """Payout days: every `interval_days` from `anchor` (default: every second Friday)."""

    anchor: date
    interval_days: int
    minimum_minor: int  # a balance below this (in its currency's minor units) waits for the next day

    def is_payout_day(self, day: date) -> bool:
        return (day - self.anchor).days % self.interval_days == 0

    def idempotency_key(self, day: date, currency: str) -> str:
        """One scheduled payout per seller, currency and day, however often the day is run."""
        return f"schedule:{day.isoformat()}:{currency}"
