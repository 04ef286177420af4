"""Reading payments: by id, by order id, pages of the newest, and watching one change."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from services.payment.adapters import db
from services.payment.domain import page_token
from services.payment.domain.model import Payment, PaymentNotFound, PaymentOrder, PaymentOrderNotFound


class PaymentQueries:
    """The read side; also the `PaymentReader` that WatchPayment polls."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def payment(self, payment_id: uuid.UUID) -> Payment | None:
        async with self._engine.connect() as connection:
            return await db.payment_by_id(connection, payment_id)

    async def version(self, payment_id: uuid.UUID) -> int | None:
        async with self._engine.connect() as connection:
            return await db.payment_version(connection, payment_id)

    async def get_payment(self, payment_id: uuid.UUID) -> Payment:
        """Raises PaymentNotFound."""
        payment = await self.payment(payment_id)
        if payment is None:
            raise PaymentNotFound(payment_id)
        return payment

    async def get_payment_order(self, payment_order_id: uuid.UUID) -> PaymentOrder:
        """Raises PaymentOrderNotFound."""
        async with self._engine.connect() as connection:
            order = await db.payment_order_by_id(connection, payment_order_id)
        if order is None:
            raise PaymentOrderNotFound(payment_order_id)
        return order

    async def list_payments(self, *, page_size: int, token: str, buyer_id: str) -> tuple[list[Payment], str]:
        """One page newest first and the token of the next page ("" on the last page).

        Raises InvalidArgument (VALIDATION_FAILED for the page size, INVALID_PAGE_TOKEN).
        """
        size = page_token.page_size(page_size)
        after = page_token.decode(token, buyer_id) if token else None
        async with self._engine.connect() as connection:
            # One extra row tells whether another page exists without a count query.
            payments = await db.list_payments(connection, limit=size + 1, after=after, buyer_id=buyer_id)
        if len(payments) <= size:
            return payments, ""
        page = payments[:size]
        last = page[-1]
        return page, page_token.encode(page_token.Cursor(last.created_at, last.payment_id), buyer_id)
