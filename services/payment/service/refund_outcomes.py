"""Recording refund outcomes (from the executor) in the consumer's transaction: the refund becomes
SUCCEEDED or FAILED, and the order PARTIALLY_REFUNDED or REFUNDED by what has been refunded so far."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.payment.adapters import outcomes_db
from services.payment.domain.refunds import RefundStatus


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund_id: uuid.UUID
    payment_order_id: uuid.UUID
    status: RefundStatus  # SUCCEEDED or FAILED
    amount_minor: int
    currency: str
    psp_reference: str = ""
    failure_code: str = ""
    failure_message: str = ""


class RefundOutcomeRefused(Exception):
    def __init__(self, outcome: RefundOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome


_REFUNDS = text("SELECT id, payment_order_id, amount_minor, currency FROM refunds WHERE id = ANY(:ids)")
# Only a REQUESTED refund takes an outcome; a redelivered or contradicting one changes nothing.
_MARK = text(
    "UPDATE refunds r SET status = u.status, psp_reference = u.psp_reference, failure_code = u.failure_code,"
    " failure_message = u.failure_message, updated_at = now()"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:references AS text[]),"
    "  CAST(:codes AS text[]), CAST(:messages AS text[]))"
    "  AS u(id, status, psp_reference, failure_code, failure_message)"
    " WHERE r.id = u.id AND r.status = 'REQUESTED'"
)
_ORDER_STATUS = text(
    "UPDATE payment_orders o SET status = CASE WHEN s.refunded = o.amount_minor THEN 'REFUNDED'"
    "  ELSE 'PARTIALLY_REFUNDED' END, updated_at = now()"
    " FROM (SELECT payment_order_id, sum(amount_minor) AS refunded FROM refunds"
    "  WHERE payment_order_id = ANY(:ids) AND status = 'SUCCEEDED' GROUP BY payment_order_id) AS s"
    " WHERE o.id = s.payment_order_id AND o.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED')"
    " AND o.status <> CASE WHEN s.refunded = o.amount_minor THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END"
    " RETURNING o.payment_id"
)


async def record_refund_outcomes(connection: AsyncConnection, outcomes: Sequence[RefundOutcome]) -> None:
    """Raises RefundOutcomeRefused (an unknown refund, or one that does not match) before changing anything."""
    if not outcomes:
        return
    # The orders first, in id order, as RefundPaymentOrder locks them: no deadlock between the two.
    await outcomes_db.lock_orders(connection, {o.payment_order_id for o in outcomes})
    stored = {row.id: row for row in await connection.execute(_REFUNDS, {"ids": [o.refund_id for o in outcomes]})}
    for outcome in outcomes:
        row = stored.get(outcome.refund_id)
        if row is None:
            raise RefundOutcomeRefused(outcome, f"refund {outcome.refund_id} does not exist in the payment service")
        if (row.payment_order_id, row.amount_minor, row.currency) != (
            outcome.payment_order_id,
            outcome.amount_minor,
            outcome.currency,
        ):
            raise RefundOutcomeRefused(
                outcome,
                f"refund {outcome.refund_id} is {row.amount_minor} {row.currency} of order {row.payment_order_id}; "
                f"the event says {outcome.amount_minor} {outcome.currency} of order {outcome.payment_order_id}",
            )
    await connection.execute(
        _MARK,
        {
            "ids": [o.refund_id for o in outcomes],
            "statuses": [o.status.value for o in outcomes],
            "references": [o.psp_reference for o in outcomes],
            "codes": [o.failure_code for o in outcomes],
            "messages": [o.failure_message for o in outcomes],
        },
    )
    changed = await connection.execute(_ORDER_STATUS, {"ids": list({o.payment_order_id for o in outcomes})})
    await outcomes_db.refresh_payments(connection, {row.payment_id for row in changed})
