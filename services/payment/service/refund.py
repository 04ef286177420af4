"""RefundPaymentOrder and GetRefund: a refund is checked against the order under its row lock, stored
with its request event in one transaction, and idempotent on the caller's key."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable

from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.events import PAYMENT_REFUND_REQUESTED, OutboundEvent
from services.common.logs import payment_order_context
from services.payment.adapters import refunds_db
from services.payment.domain.model import PaymentOrderNotFound
from services.payment.domain.refunds import (
    Refund,
    RefundableOrder,
    RefundCommand,
    RefundDraft,
    RefundKeyReused,
    RefundNotFound,
    refund_amount,
    validate,
)

log = logging.getLogger(__name__)


def _requested_event(refund: Refund, order: RefundableOrder) -> OutboundEvent:
    return OutboundEvent(
        PAYMENT_REFUND_REQUESTED,
        # Keyed like the order's other events, so the executor sees the charge before its refunds.
        key=str(refund.payment_order_id),
        message=events_pb2.RefundRequested(
            refund_id=str(refund.refund_id),
            payment_order_id=str(refund.payment_order_id),
            payment_id=str(refund.payment_id),
            seller_id=refund.seller_id,
            amount=Money(amount_minor=refund.amount_minor, currency=refund.currency),
            charge_psp_reference=order.psp_reference,
            reason=refund.reason,
        ),
    )


class RefundRequester:
    def __init__(self, engine: AsyncEngine, *, wake_relay: Callable[[], None]) -> None:
        self._engine = engine
        self._wake_relay = wake_relay

    async def request(self, command: RefundCommand, request_hash: bytes) -> tuple[Refund, bool]:
        """The refund, and whether it is a replay of an earlier request with the same key."""
        draft = validate(command, request_hash)
        async with self._engine.begin() as connection:
            order = await refunds_db.lock_refundable_order(connection, draft.payment_order_id)
            if order is None:
                raise PaymentOrderNotFound(draft.payment_order_id)
            # Looked up under the order's lock: a concurrent twin of this request has committed by
            # now, and its refund must be replayed, not counted against what is left.
            earlier = await self._earlier(connection, draft)
            if earlier is not None:
                return earlier, True
            amount = refund_amount(draft, order)
            refund = await refunds_db.insert_refund(
                connection,
                refund_id=uuid.uuid4(),
                order=order,
                idempotency_key=draft.idempotency_key,
                request_hash=draft.request_hash,
                amount_minor=amount,
                reason=draft.reason,
            )
            if refund is None:
                # The key was taken meanwhile, by a concurrent request for another order.
                replay = await self._earlier(connection, draft)
                assert replay is not None
                return replay, True
            await outbox.append(connection, [_requested_event(refund, order)])
        self._wake_relay()
        with payment_order_context(str(refund.payment_order_id)):
            log.info("refund requested", extra={"refund_id": str(refund.refund_id), "amount_minor": amount})
        return refund, False

    @staticmethod
    async def _earlier(connection: AsyncConnection, draft: RefundDraft) -> Refund | None:
        found = await refunds_db.refund_by_key(connection, draft.idempotency_key)
        if found is None:
            return None
        refund, stored_hash = found
        if not hmac.compare_digest(stored_hash, draft.request_hash):
            raise RefundKeyReused(draft.idempotency_key)
        return refund

    async def get(self, refund_id: uuid.UUID) -> Refund:
        async with self._engine.connect() as connection:
            refund = await refunds_db.refund_by_id(connection, refund_id)
        if refund is None:
            raise RefundNotFound(refund_id)
        return refund
