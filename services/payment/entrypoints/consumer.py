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
from services.payment.service.outcomes import record_outcomes

TOPICS = (PAYMENT_ORDER_SUCCEEDED, PAYMENT_ORDER_FAILED, WALLET_BALANCE_UPDATED, LEDGER_ENTRY_POSTED)


def _order_id(event: InboundEvent, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise EventRejected(event, f"payment_order_id {value[:80]!r} is not a UUID") from None


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
        pairs = [(outcome, event) for event in events if (outcome := outcome_of(event)) is not None]
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
