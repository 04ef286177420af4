"""The executor's port to a payment service provider. Pure Python: adapters implement it.

The PSP's idempotency key for a charge is always the payment order id (for a refund the refund id, for
a payout the payout id), so a retry can never move money twice while the PSP remembers the key; after
that, `find_charge` / `find_refund` / `find_payout` (a search by the id stored in the PSP object's
metadata) tells whether an earlier attempt went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ChargeRequest:
    payment_order_id: str
    amount_minor: int
    currency: str  # ISO 4217, upper case
    payment_method_token: str  # a PSP token such as "pm_card_visa", never card data
    payment_id: str
    seller_id: str
    buyer_id: str

    def __post_init__(self) -> None:
        if not self.payment_order_id:
            raise ValueError("payment_order_id is the idempotency key and must not be empty")
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError("amount_minor must be an int (minor units)")
        if self.amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError("currency must be an upper-case ISO 4217 code")

    def __repr__(self) -> str:
        # The token stays out of reprs, and so out of logs and tracebacks.
        return (
            f"ChargeRequest(payment_order_id={self.payment_order_id!r}, amount_minor={self.amount_minor}, "
            f"currency={self.currency!r}, payment_id={self.payment_id!r}, seller_id={self.seller_id!r})"
        )


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str  # the idempotency key
    payment_order_id: str
    charge_psp_reference: str  # the PaymentIntent refunded
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        _check_money(self.refund_id, self.amount_minor, self.currency)


@dataclass(frozen=True)
class PayoutRequest:
    payout_id: str  # the idempotency key
    seller_id: str
    amount_minor: int
    currency: str
    destination: str  # the seller's bank account at the PSP
    batch_id: str

    def __post_init__(self) -> None:
        _check_money(self.payout_id, self.amount_minor, self.currency)


def _check_money(key: str, amount_minor: int, currency: str) -> None:
    if not key:
        raise ValueError("the idempotency key must not be empty")
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an int (minor units)")
    if amount_minor <= 0:
        raise ValueError("amount_minor must be positive")
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise ValueError("currency must be an upper-case ISO 4217 code")


@dataclass(frozen=True)
class ChargeResult:
    """A definite outcome: the PSP moved the money (`succeeded`: charged, refunded, paid out) or
    refused to (a hard decline, a refund the charge cannot take, a bank that refused the payout)."""

    succeeded: bool
    psp_reference: str  # the PSP's object id (PaymentIntent id); "" if the PSP created none
    failure_code: str  # e.g. "insufficient_funds"; "" on success
    failure_message: str

    def __post_init__(self) -> None:
        if self.succeeded and (self.failure_code or not self.psp_reference):
            raise ValueError("a successful charge has a PSP reference and no failure code")
        if not self.succeeded and not self.failure_code:
            raise ValueError("a declined charge has a failure code")


class PspError(Exception):
    """Base of every error a PaymentGateway raises."""


class PspOutcomeUnknown(PspError):
    """The charge may or may not have happened (network error, timeout, 5xx, 429, key in use).

    Retry with the same idempotency key, after `retry_after_s` if the PSP gave one.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PspRequestRejected(PspError):
    """The PSP refused the request itself (our bug or configuration): no charge, not a decline, and
    retrying the same request will not help."""


class PaymentGateway(Protocol):
    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charges once per payment order id. Raises PspOutcomeUnknown or PspRequestRejected."""
        ...

    async def find_charge(self, payment_order_id: str) -> ChargeResult | None:
        """What the PSP did for this order; None if it has no record of it. Raises PspOutcomeUnknown."""
        ...

    async def close(self) -> None: ...


class MoneyOutGateway(Protocol):
    """Refunds and payouts; every method raises PspOutcomeUnknown or PspRequestRejected."""

    async def refund(self, request: RefundRequest) -> ChargeResult:
        """Refunds once per refund id."""
        ...

    async def find_refund(self, refund_id: str, charge_psp_reference: str) -> ChargeResult | None: ...

    async def payout(self, request: PayoutRequest) -> ChargeResult:
        """Pays out once per payout id."""
        ...

    async def find_payout(self, payout_id: str) -> ChargeResult | None: ...
