"""Recording a batch of order outcomes inside the consumer's transaction, in a fixed number of statements."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.logs import payment_order_context
from services.payment.adapters import outcomes_db
from services.payment.domain.outcomes import Outcome, OutcomeKind, check_against_orders

log = logging.getLogger(__name__)


async def record_outcomes(connection: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """Applies the outcomes and refreshes the affected payments' `done` flag.

    Raises UnknownPaymentOrders or OutcomeRefused before changing anything.
    """
    if not outcomes:
        return
    facts = await outcomes_db.lock_orders(connection, {o.payment_order_id for o in outcomes})
    check_against_orders(list(outcomes), facts)
    by_kind: dict[OutcomeKind, list[Outcome]] = {kind: [] for kind in OutcomeKind}
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    changed: set[uuid.UUID] = set()
    changed |= await outcomes_db.mark_succeeded(connection, by_kind[OutcomeKind.SUCCEEDED])
    changed |= await outcomes_db.mark_failed(connection, by_kind[OutcomeKind.FAILED])
    changed |= await outcomes_db.mark_wallet_updated(
        connection, {o.payment_order_id for o in by_kind[OutcomeKind.WALLET_UPDATED]}
    )
    changed |= await outcomes_db.mark_ledger_updated(
        connection, {o.payment_order_id for o in by_kind[OutcomeKind.LEDGER_UPDATED]}
    )
    await outcomes_db.refresh_payments(connection, changed)
    if log.isEnabledFor(logging.DEBUG):
        for outcome in outcomes:
            with payment_order_context(str(outcome.payment_order_id)):
                log.debug("outcome recorded: %s", outcome.kind.value)
