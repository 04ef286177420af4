"""CreatePayment: validate, store payment + orders + their requests in one transaction, idempotently."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable

from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.events import PAYMENT_ORDER_REQUESTED, OutboundEvent
from services.payment.adapters import db
from services.payment.domain.model import CheckoutIdReused, Payment, PaymentDraft, new_payment
from services.payment.domain.validation import CreatePaymentCommand, Limits, validate

log = logging.getLogger(__name__)


def _order_requests(draft: PaymentDraft, payment: Payment) -> list[OutboundEvent]:
    return [
        OutboundEvent(
            PAYMENT_ORDER_REQUESTED,
            key=str(order.payment_order_id),
            message=events_pb2.PaymentOrderRequested(
                payment_order_id=str(order.payment_order_id),
                payment_id=str(payment.payment_id),
                checkout_id=payment.checkout_id,
                buyer_id=payment.buyer_id,
                seller_id=order.seller_id,
                amount=Money(amount_minor=order.amount_minor, currency=order.currency),
                payment_method_token=draft.payment_method_token,
            ),
        )
        for order in payment.orders
    ]


class PaymentCreator:
    def __init__(self, engine: AsyncEngine, *, limits: Limits, wake_relay: Callable[[], None]) -> None:
        self._engine = engine
        self._limits = limits
        self._wake_relay = wake_relay

    async def create(self, command: CreatePaymentCommand, request_hash: bytes) -> tuple[Payment, bool]:
        """Returns the payment and whether it already existed (a replay of the same request).

        Raises InvalidArgument (VALIDATION_FAILED) and CheckoutIdReused.
        """
        draft = validate(command, request_hash, self._limits)
        payment_id = uuid.uuid4()
        order_ids = [uuid.uuid4() for _ in draft.seller_orders]
        async with self._engine.begin() as connection:
            created_at = await db.insert_payment(connection, payment_id, order_ids, draft)
            if created_at is None:
                return await self._replay(connection, draft), True
            payment = new_payment(draft, payment_id, order_ids, created_at)
            await outbox.append(connection, _order_requests(draft, payment))
        self._wake_relay()
        log.info(
            "payment created",
            extra={"payment_id": str(payment_id), "checkout_id": draft.checkout_id, "orders": len(order_ids)},
        )
        return payment, False

    async def _replay(self, connection: AsyncConnection, draft: PaymentDraft) -> Payment:
        # The insert found the checkout taken; after waiting on the unique index for a concurrent
        # creator to commit, READ COMMITTED lets this statement see its row.
        found = await db.payment_by_checkout(connection, draft.checkout_id)
        if found is None:
            raise RuntimeError(f"checkout {draft.checkout_id!r} conflicted but its payment is not visible")
        payment, stored_hash = found
        if not hmac.compare_digest(stored_hash, draft.request_hash):
            raise CheckoutIdReused(draft.checkout_id)
        return payment
