"""The wallet's payout use cases: manual payouts, batches, the schedule, and the PSP's outcomes.

Every way in goes through `_reserve`: lock the balances concerned in (seller, currency) order, check
that each covers what is asked of it (a debt covers nothing), record the payouts with their reservation
entries, and put `payout.requested` plus `wallet.balance.updated` in the outbox, in one transaction.
The executor pays each payout under its id as the PSP's idempotency key.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from settle.common.v1.money_pb2 import Money as MoneyMessage
from settle.events.v1 import events_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Validator,
)
from services.common.events import PAYOUT_REQUESTED, OutboundEvent
from services.common.money import Money
from services.common.payout_events import PayoutEvent
from services.common.snapshot_paging import page_size
from services.common.timestamps import timestamp_of
from services.wallet.adapters import payouts_db
from services.wallet.batch_files import BatchInvalid, BatchLine, PayoutFormat, content_sha256, parse_batch
from services.wallet.domain import BalanceEntry, validate_query
from services.wallet.payouts import (
    BATCH_ID_MAX_LENGTH,
    Payout,
    PayoutOrigin,
    PayoutRequest,
    PayoutSchedule,
    PayoutStatus,
    Shortfall,
    is_destination,
    validate_create,
)
from services.wallet.service import balance_updated

log = logging.getLogger(__name__)

# Batch payout ids derive from the batch id and line, so a batch's payouts are the same on every attempt.
_BATCH_NAMESPACE = uuid.UUID("6f1c2a4e-3b9d-4c55-9a0e-5d7f0b8c1e22")


@dataclass(frozen=True, slots=True)
class PayoutBatch:
    batch_id: str
    content_sha256: str
    item_count: int
    created_at: datetime
    totals: list[tuple[PayoutStatus, int, Money]]


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    day: date
    payout_day: bool
    payouts: list[Payout]
    skipped_without_destination: int = 0
    skipped_below_minimum: int = 0
    held_for_debt: int = 0


def payout_requested(payout: PayoutRequest, requested_at: datetime) -> OutboundEvent:
    return OutboundEvent(
        PAYOUT_REQUESTED,
        key=str(payout.payout_id),
        message=events_pb2.PayoutRequested(
            payout_id=str(payout.payout_id),
            seller_id=payout.seller_id,
            amount=MoneyMessage(amount_minor=payout.amount.amount_minor, currency=payout.amount.currency),
            destination=payout.destination,
            batch_id=payout.batch_id or "",
            requested_at=timestamp_of(requested_at),
        ),
    )


def _shortfalls(requests: Sequence[PayoutRequest], available: dict[tuple[str, str], int]) -> list[Shortfall]:
    asked: dict[tuple[str, str], int] = defaultdict(int)
    for request in requests:
        asked[(request.seller_id, request.amount.currency)] += request.amount.amount_minor
    return [
        Shortfall(seller_id, currency, available.get((seller_id, currency), 0), total)
        for (seller_id, currency), total in sorted(asked.items())
        if available.get((seller_id, currency), 0) < total
    ]


class PayoutService:
    def __init__(self, engine: AsyncEngine, schedule: PayoutSchedule) -> None:
        self._engine = engine
        self._schedule = schedule

    async def _reserve(self, connection: AsyncConnection, requests: Sequence[PayoutRequest]) -> list[Shortfall]:
        """Reserves every request or none; returns the shortfalls (nothing written) if any balance is short."""
        available = await payouts_db.lock_available(
            connection, [(request.seller_id, request.amount.currency) for request in requests]
        )
        shortfalls = _shortfalls(requests, available)
        if shortfalls:
            return shortfalls
        entries = await payouts_db.reserve(connection, requests)
        now = datetime.now(UTC)
        await outbox.append(
            connection,
            [payout_requested(request, now) for request in requests] + [balance_updated(e) for e in entries],
        )
        return []

    async def set_destination(self, seller_id: str, destination: str) -> None:
        validator = Validator()
        validator.require_text("seller_id", seller_id)
        if not is_destination(destination):
            validator.add("destination", "must be a bank account id like ba_... (letters, digits, _)")
        validator.raise_if_any()
        async with self._engine.begin() as connection:
            await payouts_db.set_destination(connection, seller_id, destination)

    async def create_payout(
        self,
        *,
        seller_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Payout:
        """A manual payout; a repeat of the same request under the same key returns the first payout."""
        validate_create(
            seller_id=seller_id,
            amount_minor=amount_minor,
            currency=currency,
            destination=destination,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )
        amount = Money(amount_minor, currency)
        async with self._engine.begin() as connection:
            # The balance lock serialises this seller's payouts, so the key lookup below cannot race.
            await payouts_db.lock_available(connection, [(seller_id, amount.currency)])
            if not destination:
                destination = (await payouts_db.destinations_of(connection, [seller_id])).get(seller_id, "")
            if not destination:
                raise FailedPrecondition(
                    f"seller {seller_id} has no payout destination; set one or pass destination",
                    reason="PAYOUT_DESTINATION_MISSING",
                )
            request = PayoutRequest(
                payout_id=uuid.uuid4(),
                seller_id=seller_id,
                amount=amount,
                destination=destination,
                origin=PayoutOrigin.MANUAL,
                idempotency_key=idempotency_key,
                metadata=metadata,
            )
            existing = await payouts_db.find_by_key(connection, seller_id, idempotency_key)
            if existing is not None:
                if existing.request_hash != request.request_hash:
                    raise AlreadyExists(
                        f"idempotency key {idempotency_key!r} was used for another payout request of this seller",
                        reason="IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST",
                    )
                return existing
            shortfalls = await self._reserve(connection, [request])
            if shortfalls:
                raise FailedPrecondition(shortfalls[0].describe(), reason="INSUFFICIENT_AVAILABLE_BALANCE")
            payout = await payouts_db.get(connection, request.payout_id)
        assert payout is not None
        log.info("payout %s requested", payout.payout_id, extra={"payout_id": str(payout.payout_id)})
        return payout

    async def submit_batch(self, batch_id: str, file_format: PayoutFormat, content: bytes) -> tuple[PayoutBatch, bool]:
        """Accepts a whole batch file or none of it; returns the batch and whether it was a repeat."""
        validator = Validator()
        validator.require_text("batch_id", batch_id, max_length=BATCH_ID_MAX_LENGTH)
        validator.raise_if_any()
        sha = content_sha256(content)
        repeat = await self._existing_batch(batch_id, sha)
        if repeat is not None:
            return repeat, True
        try:
            lines = parse_batch(content, file_format)
        except BatchInvalid as error:
            raise _batch_invalid(error.violations) from error
        try:
            async with self._engine.begin() as connection:
                requests = await self._batch_requests(connection, batch_id, lines)
                await payouts_db.insert_batch(connection, batch_id, sha, len(requests))
                shortfalls = await self._reserve(connection, requests)
                if shortfalls:
                    raise _batch_short(shortfalls, lines)
        except IntegrityError:
            # The same batch was accepted concurrently: answer as for a repeat.
            repeat = await self._existing_batch(batch_id, sha)
            if repeat is None:
                raise
            return repeat, True
        log.info("payout batch %s accepted: %d payouts", batch_id, len(lines))
        return await self.get_batch(batch_id), False

    async def _existing_batch(self, batch_id: str, sha: str) -> PayoutBatch | None:
        async with self._engine.connect() as connection:
            row = await payouts_db.find_batch(connection, batch_id, sha)
        if row is None:
            return None
        if row.batch_id != batch_id:
            raise AlreadyExists(
                f"this file was already accepted as batch {row.batch_id!r}", reason="PAYOUT_BATCH_DUPLICATE_CONTENT"
            )
        if row.content_sha256 != sha:
            raise AlreadyExists(f"batch {batch_id!r} was accepted with other content", reason="PAYOUT_BATCH_ID_REUSED")
        return await self.get_batch(batch_id)

    async def _batch_requests(
        self, connection: AsyncConnection, batch_id: str, lines: Sequence[BatchLine]
    ) -> list[PayoutRequest]:
        registered = await payouts_db.destinations_of(
            connection, [line.seller_id for line in lines if not line.destination]
        )
        violations = [
            FieldViolation(f"line {line.line}: destination", f"seller {line.seller_id} has no payout destination")
            for line in lines
            if not (line.destination or registered.get(line.seller_id))
        ]
        if violations:
            raise _batch_invalid(violations)
        return [
            PayoutRequest(
                payout_id=uuid.uuid5(_BATCH_NAMESPACE, f"{batch_id}:{line.line}"),
                seller_id=line.seller_id,
                amount=line.amount,
                destination=line.destination or registered[line.seller_id],
                origin=PayoutOrigin.BATCH,
                idempotency_key=f"batch:{batch_id}:{line.line}",
                metadata=line.metadata,
                batch_id=batch_id,
                batch_line=line.line,
            )
            for line in lines
        ]

    async def get_batch(self, batch_id: str) -> PayoutBatch:
        async with self._engine.connect() as connection:
            row = await payouts_db.find_batch(connection, batch_id)
            if row is None or row.batch_id != batch_id:
                raise NotFound(f"no payout batch {batch_id!r}", reason="PAYOUT_BATCH_NOT_FOUND")
            totals = await payouts_db.batch_totals(connection, batch_id)
        return PayoutBatch(row.batch_id, row.content_sha256, row.item_count, row.created_at, totals)

    async def get_payout(self, payout_id: str) -> Payout:
        validator = Validator()
        parsed = validator.require_uuid("payout_id", payout_id)
        validator.raise_if_any()
        assert parsed is not None
        async with self._engine.connect() as connection:
            payout = await payouts_db.get(connection, parsed)
        if payout is None:
            raise NotFound(f"no payout {payout_id}", reason="PAYOUT_NOT_FOUND")
        return payout

    async def list_payouts(
        self, *, seller_id: str, batch_id: str, size: int, page_token: str
    ) -> tuple[list[Payout], str]:
        validator = Validator()
        if bool(seller_id) == bool(batch_id):
            validator.add("seller_id", "exactly one of seller_id and batch_id must be set")
        elif seller_id:
            validate_query(seller_id)
        after_seq = 0
        if page_token:
            scope, _, seq = page_token.rpartition(":")
            if scope != (seller_id or batch_id) or not seq.isdigit():
                raise InvalidArgument("page_token is not a token of this listing", reason="INVALID_PAGE_TOKEN")
            after_seq = int(seq)
        validator.raise_if_any()
        limit = page_size(size)
        async with self._engine.connect() as connection:
            rows = await payouts_db.list_page(
                connection, seller_id=seller_id or None, batch_id=batch_id or None, after_seq=after_seq, limit=limit + 1
            )
        page = rows[:limit]
        next_token = f"{seller_id or batch_id}:{page[-1][0]}" if len(rows) > limit else ""
        return [payout for _, payout in page], next_token

    async def run_schedule(self, day: date) -> ScheduleRun:
        """On a payout day, pays every seller with a destination all of an available balance that reaches
        the minimum, once per seller, currency and day. Other days do nothing."""
        if not self._schedule.is_payout_day(day):
            return ScheduleRun(day, False, [])
        async with self._engine.begin() as connection:
            candidates = await payouts_db.schedule_candidates(connection)
            requests: list[PayoutRequest] = []
            without_destination = below_minimum = held = 0
            for row in candidates:
                if row.available_minor < 0:
                    held += 1
                elif row.available_minor < max(self._schedule.minimum_minor, 1):
                    below_minimum += row.available_minor > 0
                elif row.destination is None:
                    without_destination += 1
                else:
                    key = self._schedule.idempotency_key(day, row.currency)
                    if await payouts_db.find_by_key(connection, row.seller_id, key) is None:
                        requests.append(
                            PayoutRequest(
                                payout_id=uuid.uuid4(),
                                seller_id=row.seller_id,
                                amount=Money(row.available_minor, row.currency),
                                destination=row.destination,
                                origin=PayoutOrigin.SCHEDULED,
                                idempotency_key=key,
                            )
                        )
            shortfalls = await self._reserve(connection, requests)
            assert not shortfalls, "the candidates' balances are locked and cover their own amounts"
            payouts = [await payouts_db.get(connection, request.payout_id) for request in requests]
        log.info("payout schedule %s: %d payouts", day.isoformat(), len(requests))
        return ScheduleRun(
            day, True, [payout for payout in payouts if payout is not None], without_destination, below_minimum, held
        )

    async def record_outcomes(self, connection: AsyncConnection, outcomes: Sequence[PayoutEvent]) -> list[BalanceEntry]:
        """Settles paid and failed payouts in the consumer's transaction, once per payout."""
        entries = await payouts_db.settle(connection, outcomes)
        await outbox.append(connection, [balance_updated(entry) for entry in entries])
        return entries


def _batch_invalid(violations: Sequence[FieldViolation]) -> InvalidArgument:
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return InvalidArgument(
        f"payout batch rejected, nothing accepted: {first.field}: {first.description}{more}",
        reason="PAYOUT_BATCH_INVALID",
        violations=violations,
    )


def _batch_short(shortfalls: Sequence[Shortfall], lines: Sequence[BatchLine]) -> FailedPrecondition:
    lines_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for line in lines:
        lines_of[(line.seller_id, line.amount.currency)].append(line.line)
    violations = [
        FieldViolation(
            "lines " + ", ".join(map(str, lines_of[(shortfall.seller_id, shortfall.currency)][:50])),
            shortfall.describe(),
        )
        for shortfall in shortfalls
    ]
    return FailedPrecondition(
        f"payout batch rejected, nothing accepted: {shortfalls[0].describe()}"
        + (f" (and {len(shortfalls) - 1} more sellers)" if len(shortfalls) > 1 else ""),
        reason="INSUFFICIENT_AVAILABLE_BALANCE",
        violations=violations,
    )
