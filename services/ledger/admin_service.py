"""The operators' use cases (scope `admin`): booking a PSP fee and reversing an entry.

Each runs in one transaction with its `ledger.entry.posted` event. A repeat is found through the
journal's unique indexes (the fee's cause event id, the reversed entry), not by a read before the
insert, so two racing repeats still post once: the loser's insert waits for the winner's commit,
inserts nothing, and then reads the winner's entry.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger.adapters import entries_db
from services.ledger.corrections import (
    LedgerEntryNotFound,
    PspFeeKeyReused,
    is_same_fee,
    psp_fee_entry,
    reversal_entry,
    validate_psp_fee,
    validate_reversal,
)
from services.ledger.domain import PostedEntry
from services.ledger.service import post_and_announce

log = logging.getLogger(__name__)


class LedgerAdmin:
    def __init__(self, engine: AsyncEngine, *, wake_relay: Callable[[], None]) -> None:
        self._engine = engine
        self._wake_relay = wake_relay

    async def post_psp_fee(
        self, *, amount_minor: int, currency: str, psp_reference: str, memo: str, idempotency_key: str
    ) -> PostedEntry:
        """Books DR psp_fees / CR psp_receivable once per idempotency key; a repeat with the same
        request returns the first entry, one with another request raises PspFeeKeyReused."""
        fee = validate_psp_fee(
            amount_minor=amount_minor,
            currency=currency,
            psp_reference=psp_reference,
            memo=memo,
            idempotency_key=idempotency_key,
        )
        async with self._engine.begin() as connection:
            posted = await post_and_announce(connection, [psp_fee_entry(fee, uuid.uuid4())], "PSP fees")
            if not posted:
                earlier = await entries_db.entry_by_cause(connection, fee.cause_event_id)
                assert earlier is not None, "a fee that posted nothing must have been posted before"
                if not is_same_fee(earlier.entry, fee):
                    raise PspFeeKeyReused(idempotency_key)
                return earlier
        self._wake_relay()
        log.info("ledger: PSP fee booked", extra={"entry_id": str(posted[0].entry.entry_id)})
        return posted[0]

    async def reverse_entry(self, *, entry_id: str, reason: str) -> PostedEntry:
        """Posts the reversal of an entry (every posting negated), at most once per entry: a repeat
        returns the reversal. Raises LedgerEntryNotFound, or LedgerEntryIsReversal for a reversal."""
        original_id = validate_reversal(entry_id=entry_id, reason=reason)
        async with self._engine.begin() as connection:
            original = await entries_db.entry_by_id(connection, original_id)
            if original is None:
                raise LedgerEntryNotFound(original_id)
            reversal = reversal_entry(original.entry, uuid.uuid4(), reason)
            posted = await post_and_announce(connection, [reversal], "reversals")
            if not posted:
                earlier = await entries_db.reversal_of(connection, original_id)
                assert earlier is not None, "a reversal that posted nothing must have been posted before"
                return earlier
        self._wake_relay()
        log.info("ledger: entry reversed", extra={"entry_id": str(original_id)})
        return posted[0]
