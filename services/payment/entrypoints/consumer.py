"""The `outcomes` consumer: executor outcomes and wallet/ledger confirmations → order state."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.consumer import EventRejected
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_SUCCEEDED,
    WALLET_BALANCE_UPDATED,
    InboundEvent,
)
from services.payment.domain.outcomes import (
    ExpectedAmount,
    Outcome,
    OutcomeKind,
    OutcomeRefused,
    UnknownPaymentOrders,
)
from services.payment.domain.refunds import RefundStatus
from services.payment.service.outcomes import record_outcomes
from services.payment.service.refund_outcomes import RefundOutcome, RefundOutcomeRefused, record_refund_outcomes

TOPICS = (
    PAYMENT_ORDER_SUCCEEDED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_REFUND_SUCCEEDED,
    PAYMENT_REFUND_FAILED,
    WALLET_BALANCE_UPDATED,
    LEDGER_ENTRY_POSTED,
)


def _order_id(event: InboundEvent, value: str, field: str = "payment_order_id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise EventRejected(event, f"{field} {value[:80]!r} is not a UUID") from None


def refund_outcome_of(event: InboundEvent) -> RefundOutcome | None:
    """The refund outcome an event reports; None for any other event."""
    message = event.message
    if not isinstance(message, events_pb2.RefundSucceeded | events_pb2.RefundFailed):
        return None
    if not message.HasField("amount"):
        raise EventRejected(event, "VALIDATION_FAILED: amount: is required")
    succeeded = isinstance(message, events_pb2.RefundSucceeded)
    return RefundOutcome(
        refund_id=_order_id(event, message.refund_id, "refund_id"),
        payment_order_id=_order_id(event, message.payment_order_id),
        status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
        amount_minor=message.amount.amount_minor,
        currency=message.amount.currency,
        psp_reference=message.psp_reference if isinstance(message, events_pb2.RefundSucceeded) else "",
        failure_code=message.failure_code if isinstance(message, events_pb2.RefundFailed) else "",
        failure_message=message.failure_message if isinstance(message, events_pb2.RefundFailed) else "",
    )


def outcome_of(event: InboundEvent) -> Outcome | None:
    """The outcome an event reports; None for a balance or ledger change not tied to a payment order."""
    message = event.message
    if isinstance(message, events_pb2.PaymentOrderSucceeded):
        amount = None
        if message.HasField("amount"):
            amount = ExpectedAmount(message.amount.amount_minor, message.amount.currency)
        return Outcome(
            OutcomeKind.SUCCEEDED,
            _order_id(event, message.payment_order_id),
            psp_reference=message.psp_reference,
            amount=amount,
        )
    if isinstance(message, events_pb2.PaymentOrderFailed):
        return Outcome(
            OutcomeKind.FAILED,
            _order_id(event, message.payment_order_id),
            psp_reference=message.psp_reference,
            failure_code=message.failure_code,
            failure_message=message.failure_message,
        )
    if isinstance(message, events_pb2.WalletBalanceUpdated | events_pb2.LedgerEntryPosted):
        if not message.payment_order_id:
            return None  # payouts, fees, adjustments: nothing for payment to track
        kind = (
            OutcomeKind.WALLET_UPDATED
            if isinstance(message, events_pb2.WalletBalanceUpdated)
            else OutcomeKind.LEDGER_UPDATED
        )
        return Outcome(kind, _order_id(event, message.payment_order_id))
    raise EventRejected(event, f"the payment service does not consume {type(message).__name__}")


class OutcomeHandler:
    """EventHandler for the consumer group `settle-payment-outcomes`."""

    async def handle(self, connection: AsyncConnection, events: Sequence[InboundEvent]) -> None:
        refunds = [(refund, event) for event in events if (refund := refund_outcome_of(event)) is not None]
        refund_events = {id(event) for _, event in refunds}
        pairs = [
            (outcome, event)
            for event in events
            if id(event) not in refund_events and (outcome := outcome_of(event)) is not None
        ]
        try:
            await record_outcomes(connection, [outcome for outcome, _ in pairs])
        except UnknownPaymentOrders as error:
            # Rolls the batch back; the consumer retries it event by event and dead-letters this one.
            outcome, event = next(p for p in pairs if p[0].payment_order_id in error.payment_order_ids)
            raise EventRejected(
                event, f"payment order {outcome.payment_order_id} does not exist in the payment service"
            ) from error
        except OutcomeRefused as error:
            _, event = next(p for p in pairs if p[0] is error.outcome)
            raise EventRejected(event, str(error)) from error
        # After the charge outcomes of the same batch: a refund can only follow its order's charge.
        try:
            await record_refund_outcomes(connection, [refund for refund, _ in refunds])
        except RefundOutcomeRefused as error:
            _, event = next(p for p in refunds if p[0] is error.outcome)
            raise EventRejected(event, str(error)) from error
