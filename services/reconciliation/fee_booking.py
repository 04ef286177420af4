"""Booking the fees a PSP reports: an adjusting entry in the ledger per fee, when configured.

Each UNEXPECTED_FEE mismatch of a run becomes a `PostPspFee` call (DR psp_fees, CR psp_receivable)
under the settlement line's own key, so booking it again (a retry, a re-run) posts nothing twice; the
mismatch is then resolved with the entry it became. A fee the PSP gave back (negative) is left for a
person: the ledger books fees, not refunds of them.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from settle.common.v1.money_pb2 import Money
from settle.ledger.v1 import ledger_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import clients
from services.common.tls import ClientTls

log = logging.getLogger(__name__)
BOOKED_BY = "settle-reconciliation"


class FeeBooker:
    def __init__(self, engine: AsyncEngine, ledger_address: str, api_key: str, tls: ClientTls | None = None) -> None:
        self._engine = engine
        self._ledger_address = ledger_address
        self._api_key = api_key
        # The service's own TLS settings: the CA to trust the ledger by, its certificate as identity (mTLS).
        self._tls = tls

    async def book(self, run_id: uuid.UUID) -> int:
        """Books the run's unresolved fees; returns how many. Failures stay unresolved for the next run."""
        async with self._engine.connect() as connection:
            fees = list(
                await connection.execute(
                    text(
                        "SELECT m.mismatch_id, m.file_id, m.line, m.currency, m.amount_minor, m.description, "
                        "coalesce(l.psp_reference, '') AS psp_reference FROM mismatches m "
                        "LEFT JOIN settlement_lines l ON l.file_id = m.file_id AND l.line = m.line "
                        "WHERE m.run_id = :run AND m.kind = 'UNEXPECTED_FEE' AND m.resolved_at IS NULL "
                        "AND m.amount_minor > 0 ORDER BY m.file_id, m.line"
                    ),
                    {"run": run_id},
                )
            )
        if not fees:
            return 0
        booked = 0
        async with clients.channel(self._ledger_address, self._api_key, self._tls) as channel:
            ledger = clients.ledger_stub(channel)
            for fee in fees:
                try:
                    entry: ledger_pb2.JournalEntry = await ledger.PostPspFee(
                        ledger_pb2.PostPspFeeRequest(
                            amount=Money(amount_minor=fee.amount_minor, currency=fee.currency),
                            psp_reference=fee.psp_reference or f"{fee.file_id[:16]}:{fee.line}",
                            memo=fee.description[:500],
                            idempotency_key=f"settlement:{fee.file_id}:{fee.line}",
                        ),
                        timeout=30,
                    )
                except grpc.aio.AioRpcError as error:
                    log.error("booking fee of line %s failed: %s %s", fee.line, error.code().name, error.details())
                    continue
                async with self._engine.begin() as connection:
                    await connection.execute(
                        text(
                            "UPDATE mismatches SET resolved_at = now(), resolved_by = :who, resolution = :why "
                            "WHERE mismatch_id = :id AND resolved_at IS NULL"
                        ),
                        {"id": fee.mismatch_id, "who": BOOKED_BY, "why": f"booked as ledger entry {entry.entry_id}"},
                    )
                booked += 1
        log.info("booked %d PSP fees of run %s", booked, run_id)
        return booked
