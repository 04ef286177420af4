"""The executor's port to a payment service provider. Pure Python: adapters implement it.

The PSP's idempotency key for a charge is always the payment order id, so a retry of an order can
never charge twice while the PSP remembers the key; after that, `find_charge` (a search by the order
id stored in the PSP object's metadata) tells whether an earlier attempt went through.
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
class ChargeResult:
    """A definite outcome: the PSP charged (`succeeded`) or hard-declined the payment."""

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
