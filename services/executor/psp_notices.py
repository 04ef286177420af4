"""What the PSP tells the executor on its own initiative (webhook events), in the executor's terms. Pure Python.

An adapter (adapters/psp/stripe_webhooks.py) verifies the PSP's signature and translates its event into a
`PspNotice`, or raises `WebhookRejected`; the service (service/webhooks.py) acts on the notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.executor.psp_port import ChargeResult


class NoticeKind(StrEnum):
    """Which executions table a PSP object belongs to, told by the object's type."""

    CHARGE = "charge"  # a PaymentIntent; metadata `payment_order_id`
    REFUND = "refund"  # a Refund; metadata `refund_id`
    PAYOUT = "payout"  # a Payout; metadata `payout_id`


@dataclass(frozen=True, slots=True)
class PspNotice:
    """One verified PSP event about one object."""

    event_id: str  # the PSP's event id, unique per event (and the same on every redelivery)
    event_type: str  # e.g. "payment_intent.succeeded"
    created_at: datetime  # when the PSP created the event
    kind: NoticeKind | None  # None: the object is of a type the executor does not execute
    object_id: str  # the PSP object's id ("pi_...", "re_...", "po_..."); "" when kind is None
    execution_id: str  # the id the executor put in the object's metadata; "" if there is none
    amount_minor: int
    currency: str  # upper case
    charge_psp_reference: str  # refunds: the PaymentIntent refunded; "" otherwise
    result: ChargeResult | None  # the PSP's definite word on the object; None while it is still pending


class RejectionReason(StrEnum):
    """Why a webhook request was not accepted; each is answered 400 and nothing of the body is used."""

    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    TIMESTAMP_TOO_OLD = "TIMESTAMP_TOO_OLD"
    TIMESTAMP_IN_FUTURE = "TIMESTAMP_IN_FUTURE"
    MALFORMED_BODY = "MALFORMED_BODY"  # not UTF-8 or not JSON
    MALFORMED_EVENT = "MALFORMED_EVENT"  # JSON, but not a well-formed event


class WebhookRejected(Exception):
    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
