"""What the worker does at the PSP for each kind of execution: find an earlier attempt's result, create,
and announce the outcome. One object per kind; the worker's state machine is the same for all three."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from services.common.events import OutboundEvent
from services.common.logs import payment_order_context
from services.executor.adapters.tables import CHARGES, PAYOUTS, REFUNDS, ExecutionTable
from services.executor.domain import ChargeOrder, Execution, OrderT, PayoutOrder, RefundOrder
from services.executor.psp_port import (
    ChargeRequest,
    ChargeResult,
    MoneyOutGateway,
    PaymentGateway,
    PayoutRequest,
    RefundRequest,
)
from services.executor.service.outcome_events import outcome_event, payout_outcome_event, refund_outcome_event


class PspCalls(Protocol[OrderT]):
    @property
    def table(self) -> ExecutionTable[OrderT]: ...

    async def find(self, order: OrderT) -> ChargeResult | None:
        """The PSP's record of an earlier attempt, or None if it has none."""
        ...

    async def create(self, order: OrderT) -> ChargeResult:
        """Moves the money, under the order's id as idempotency key."""
        ...

    def outcome_event(self, execution: Execution[OrderT]) -> OutboundEvent: ...

    def log_context(self, order: OrderT) -> contextlib.AbstractContextManager[None]: ...


class ChargeCalls:
    table = CHARGES

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    async def find(self, order: ChargeOrder) -> ChargeResult | None:
        return await self._gateway.find_charge(order.payment_order_id)

    async def create(self, order: ChargeOrder) -> ChargeResult:
        return await self._gateway.charge(
            ChargeRequest(
                payment_order_id=order.payment_order_id,
                amount_minor=order.amount_minor,
                currency=order.currency,
                payment_method_token=order.payment_method_token,
                payment_id=order.payment_id,
                seller_id=order.seller_id,
                buyer_id=order.buyer_id,
            )
        )

    def outcome_event(self, execution: Execution[ChargeOrder]) -> OutboundEvent:
        return outcome_event(execution)

    def log_context(self, order: ChargeOrder) -> contextlib.AbstractContextManager[None]:
        return payment_order_context(order.payment_order_id)


class RefundCalls:
    table = REFUNDS

    def __init__(self, gateway: MoneyOutGateway) -> None:
        self._gateway = gateway

    async def find(self, order: RefundOrder) -> ChargeResult | None:
        return await self._gateway.find_refund(order.refund_id, order.charge_psp_reference)

    async def create(self, order: RefundOrder) -> ChargeResult:
        return await self._gateway.refund(
            RefundRequest(
                refund_id=order.refund_id,
                payment_order_id=order.payment_order_id,
                charge_psp_reference=order.charge_psp_reference,
                amount_minor=order.amount_minor,
                currency=order.currency,
            )
        )

    def outcome_event(self, execution: Execution[RefundOrder]) -> OutboundEvent:
        return refund_outcome_event(execution)

    def log_context(self, order: RefundOrder) -> contextlib.AbstractContextManager[None]:
        return payment_order_context(order.payment_order_id)


class PayoutCalls:
    table = PAYOUTS

    def __init__(self, gateway: MoneyOutGateway) -> None:
        self._gateway = gateway

    async def find(self, order: PayoutOrder) -> ChargeResult | None:
        return await self._gateway.find_payout(order.payout_id)

    async def create(self, order: PayoutOrder) -> ChargeResult:
        return await self._gateway.payout(
            PayoutRequest(
                payout_id=order.payout_id,
                seller_id=order.seller_id,
                amount_minor=order.amount_minor,
                currency=order.currency,
                destination=order.destination,
                batch_id=order.batch_id,
            )
        )

    def outcome_event(self, execution: Execution[PayoutOrder]) -> OutboundEvent:
        return payout_outcome_event(execution)

    def log_context(self, order: PayoutOrder) -> contextlib.AbstractContextManager[None]:
        return _no_context()


@contextlib.contextmanager
def _no_context() -> Iterator[None]:
    # Payout log lines carry the payout id in their `extra` instead of a payment order id.
    yield
