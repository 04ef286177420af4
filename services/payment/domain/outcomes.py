"""What other services tell payment about its orders: charged, declined, credited, booked."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from services.payment.domain.model import OrderStatus


class OutcomeKind(enum.Enum):
    SUCCEEDED = "succeeded"  # the PSP charged the order
    FAILED = "failed"  # the PSP declined it
    WALLET_UPDATED = "wallet_updated"  # the wallet credited the seller
    LEDGER_UPDATED = "ledger_updated"  # the ledger booked it


@dataclass(frozen=True, slots=True)
class ExpectedAmount:
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    payment_order_id: uuid.UUID
    psp_reference: str = ""
    failure_code: str = ""
    failure_message: str = ""
    # What the reporter says was charged; checked against the order when present.
    amount: ExpectedAmount | None = None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What an outcome is checked against: the order's payment, amount and status before the batch."""

    payment_id: uuid.UUID
    amount_minor: int
    currency: str
    status: OrderStatus


class UnknownPaymentOrders(Exception):
    """Outcomes named payment orders this service never created."""

    def __init__(self, payment_order_ids: frozenset[uuid.UUID]) -> None:
        super().__init__(f"unknown payment orders: {sorted(map(str, payment_order_ids))}")
        self.payment_order_ids = payment_order_ids


class OutcomeRefused(Exception):
    """An outcome that contradicts the order: another amount, or the opposite of its final status."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(f"payment order {outcome.payment_order_id}: {detail}")
        self.outcome = outcome


_FINAL_STATUS = {OutcomeKind.SUCCEEDED: OrderStatus.SUCCEEDED, OutcomeKind.FAILED: OrderStatus.FAILED}
# Refunds start from a charge, so a refunded order was SUCCEEDED as far as outcomes are concerned.
_AS_OUTCOME = {OrderStatus.PARTIALLY_REFUNDED: OrderStatus.SUCCEEDED, OrderStatus.REFUNDED: OrderStatus.SUCCEEDED}


def check_against_orders(outcomes: list[Outcome], facts: dict[uuid.UUID, OrderFacts]) -> None:
    """Raises for outcomes that can never be applied, before anything is applied.

    A repeated outcome (same final status) is fine: it becomes a no-op. Each order has exactly one
    outcome, so the opposite one is a bug upstream and must reach the DLQ, not vanish.
    """
    unknown = frozenset(o.payment_order_id for o in outcomes if o.payment_order_id not in facts)
    if unknown:
        raise UnknownPaymentOrders(unknown)
    final: dict[uuid.UUID, OrderStatus] = {}
    for outcome in outcomes:
        target = _FINAL_STATUS.get(outcome.kind)
        if target is None:
            continue
        order = facts[outcome.payment_order_id]
        amount = outcome.amount
        if amount is not None and (amount.amount_minor, amount.currency) != (order.amount_minor, order.currency):
            raise OutcomeRefused(
                outcome,
                f"{outcome.kind.value} for {amount.amount_minor} {amount.currency} "
                f"but the order is for {order.amount_minor} {order.currency}",
            )
        current = final.get(outcome.payment_order_id) or _AS_OUTCOME.get(order.status, order.status)
        if current in _FINAL_STATUS.values() and current is not target:
            raise OutcomeRefused(outcome, f"{outcome.kind.value} contradicts its final status {current.value}")
        final[outcome.payment_order_id] = target
