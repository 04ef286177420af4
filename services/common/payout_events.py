"""Payouts as the services that act on `payout.requested`, `payout.paid` and `payout.failed` see them.

The executor pays a requested payout, the wallet settles the reservation of a paid or failed one, and the
ledger books every step; all validate the events the same way and send what can never apply to the DLQ
with the reason. Each step of a payout is applied once per payout id, whatever event id it arrives under.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from settle.events.v1 import events_pb2

from services.common.consumer import EventRejected
from services.common.errors import InvalidArgument, Validator
from services.common.events import PAYOUT_FAILED, PAYOUT_PAID, PAYOUT_REQUESTED, InboundEvent
from services.common.money import CURRENCY_EXPONENTS, Money
from services.common.succeeded_orders import SELLER_ID_MAX_LENGTH

DESTINATION_MAX_LENGTH = 255


class PayoutStep(StrEnum):
    REQUESTED = "requested"  # funds reserved, the PSP not asked yet
    PAID = "paid"  # the PSP paid the seller's bank account
    FAILED = "failed"  # the PSP or the bank refused; the funds go back to the seller


STEP_OF_TOPIC = {PAYOUT_REQUESTED: PayoutStep.REQUESTED, PAYOUT_PAID: PayoutStep.PAID, PAYOUT_FAILED: PayoutStep.FAILED}


@dataclass(frozen=True, slots=True)
class PayoutEvent:
    """One step of a payout, with the id of the event that announced it."""

    step: PayoutStep
    payout_id: uuid.UUID
    seller_id: str
    amount: Money  # positive
    destination: str
    event_id: uuid.UUID
    psp_reference: str = ""
    failure_code: str = ""
    failure_message: str = ""


_MESSAGE_TYPES: dict[PayoutStep, type[events_pb2.PayoutRequested | events_pb2.PayoutPaid | events_pb2.PayoutFailed]] = {
    PayoutStep.REQUESTED: events_pb2.PayoutRequested,
    PayoutStep.PAID: events_pb2.PayoutPaid,
    PayoutStep.FAILED: events_pb2.PayoutFailed,
}


def payout_event_of(event: InboundEvent) -> PayoutEvent:
    """The payout step a `payout.*` event describes, or EventRejected (→ its DLQ) saying why."""
    step = STEP_OF_TOPIC.get(event.topic)
    if step is None:
        raise EventRejected(event, f"{event.topic} is not a payout topic")
    message = event.message
    expected = _MESSAGE_TYPES[step]
    if not isinstance(message, events_pb2.PayoutRequested | events_pb2.PayoutPaid | events_pb2.PayoutFailed) or (
        not isinstance(message, expected)
    ):
        raise EventRejected(event, f"expected {expected.DESCRIPTOR.name}, got {message.DESCRIPTOR.full_name}")
    validator = Validator()
    payout_id = validator.require_uuid("payout_id", message.payout_id)
    validator.require_text("seller_id", message.seller_id, max_length=SELLER_ID_MAX_LENGTH)
    validator.require_text("destination", message.destination, max_length=DESTINATION_MAX_LENGTH)
    if message.amount.amount_minor <= 0:
        validator.add("amount.amount_minor", f"must be positive (got {message.amount.amount_minor})")
    if message.amount.currency not in CURRENCY_EXPONENTS:
        validator.add("amount.currency", f"{message.amount.currency!r} is not a supported ISO 4217 code in upper case")
    if isinstance(message, events_pb2.PayoutPaid) and not message.psp_reference:
        validator.add("psp_reference", "is required for a paid payout")
    if isinstance(message, events_pb2.PayoutFailed) and not message.failure_code:
        validator.add("failure_code", "is required for a failed payout")
    try:
        validator.raise_if_any()
    except InvalidArgument as error:
        raise EventRejected(event, f"invalid {event.topic}: {error.message}") from error
    assert payout_id is not None
    return PayoutEvent(
        step=step,
        payout_id=payout_id,
        seller_id=message.seller_id,
        amount=Money(message.amount.amount_minor, message.amount.currency),
        destination=message.destination,
        event_id=event.event_id,
        psp_reference="" if isinstance(message, events_pb2.PayoutRequested) else message.psp_reference,
        failure_code=message.failure_code if isinstance(message, events_pb2.PayoutFailed) else "",
        failure_message=message.failure_message if isinstance(message, events_pb2.PayoutFailed) else "",
    )
