"""WatchPayment: the current payment, then each new version of it, until it is done or time is up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from services.payment.domain.model import Payment, PaymentNotFound

DEFAULT_POLL_INTERVAL_S = 0.15
MAX_WATCH_S = 600.0


class PaymentReader(Protocol):
    async def payment(self, payment_id: uuid.UUID) -> Payment | None: ...

    async def version(self, payment_id: uuid.UUID) -> int | None: ...


async def watch_payment(
    reader: PaymentReader,
    payment_id: uuid.UUID,
    *,
    max_duration_s: float,
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Payment]:
    """Yields the payment now and after every change; ends once it is done or after `max_duration_s`.

    Raises PaymentNotFound. Polling only reads the payment's version, so an idle watch costs one
    primary-key lookup per interval; the whole payment is loaded only when the version moved.
    """
    deadline = clock() + min(max_duration_s, MAX_WATCH_S)
    payment = await reader.payment(payment_id)
    if payment is None:
        raise PaymentNotFound(payment_id)
    yield payment
    while not payment.done:
        remaining_s = deadline - clock()
        if remaining_s <= 0:
            return
        await asyncio.sleep(min(poll_interval_s, remaining_s))
        if await reader.version(payment_id) == payment.version:
            continue
        latest = await reader.payment(payment_id)
        if latest is None:
            return
        payment = latest
        yield payment
