"""The reconciliation use cases behind the gRPC API, the CLI and the nightly schedule."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO, cast

from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import outbox
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Validator
from services.common.events import RECONCILIATION_MISMATCH_FOUND, RECONCILIATION_RUN_COMPLETED, OutboundEvent
from services.common.snapshot_paging import invalid_token, page_size
from services.reconciliation import reports
from services.reconciliation.fee_booking import FeeBooker
from services.reconciliation.importing import PARSERS, ImportResult, import_file
from services.reconciliation.matching import MatchingRules
from services.reconciliation.metrics import ReconciliationMetrics
from services.reconciliation.parsing.model import FileRejected
from services.reconciliation.runs import Run, run

MAX_FILE_BYTES = 2 << 30
_SPOOL_BYTES = 8 << 20  # small files stay in memory, big ones go to a temporary file
_MISMATCH_COLUMNS = (
    "mismatch_id, run_id, kind, severity, suggested_action, file_id, line, item_id, currency, amount_minor, "
    "expected_minor, description, resolved_at, resolved_by, resolution"
)


class ReconciliationService:
    def __init__(
        self,
        engine: AsyncEngine,
        rules: MatchingRules,
        fees: FeeBooker | None = None,
        metrics: ReconciliationMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._rules = rules
        self._fees = fees  # books reported fees in the ledger, when configured
        self._metrics = metrics

    async def import_upload(self, file_name: str, file_format: str, chunks: AsyncIterator[bytes]) -> ImportResult:
        validator = Validator()
        validator.require_text("file_name", file_name, max_length=255)
        if file_format not in PARSERS:
            validator.add("format", f"must be one of {', '.join(sorted(PARSERS))} (got {file_format!r})")
        validator.raise_if_any()
        with SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_FILE_BYTES:
                    raise InvalidArgument("chunk: the file is over 2 GiB", reason="VALIDATION_FAILED")
                spool.write(chunk)
            if size == 0:
                raise InvalidArgument("chunk: the file is empty", reason="VALIDATION_FAILED")
            spool.seek(0)
            return await self.import_stream(cast(BinaryIO, spool), file_format, file_name)

    async def import_stream(self, stream: BinaryIO, file_format: str, file_name: str) -> ImportResult:
        try:
            return await import_file(self._engine, stream, file_format, file_name)
        except FileRejected as error:
            raise InvalidArgument(
                f"settlement file rejected, nothing imported: {error}", reason="SETTLEMENT_FILE_REJECTED"
            ) from error

    async def run_file(self, file_id: str, as_of: datetime | None = None) -> Run:
        async with self._engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT count(*) FROM settlement_files WHERE file_id = :id"), {"id": file_id}
            )
        if not found:
            raise NotFound(f"no settlement file {file_id}", reason="SETTLEMENT_FILE_NOT_FOUND")
        return await self._run(f"file:{file_id}", [file_id], as_of)

    async def run_day(self, day: date, as_of: datetime | None = None) -> Run:
        """Reconciles every file with lines on `day` (UTC) together."""
        async with self._engine.connect() as connection:
            files = list(
                await connection.scalars(
                    text(
                        "SELECT DISTINCT file_id FROM settlement_lines WHERE occurred_at >= CAST(:day AS date) "
                        "AND occurred_at < CAST(:day AS date) + 1 ORDER BY file_id"
                    ),
                    {"day": day},
                )
            )
        if not files:
            raise FailedPrecondition(
                f"no settlement file has lines on {day.isoformat()}", reason="NOTHING_TO_RECONCILE"
            )
        return await self._run(f"date:{day.isoformat()}", files, as_of)

    async def _run(self, scope: str, file_ids: list[str], as_of: datetime | None) -> Run:
        result = await run(self._engine, scope, file_ids, as_of or datetime.now(UTC), self._rules)
        if not result.repeated:
            await self._announce(result)
            if self._metrics is not None:
                self._metrics.run_finished(result.summary)
        if self._fees is not None:
            await self._fees.book(result.run_id)  # also retries fees a failed earlier attempt left open
        return result

    async def _announce(self, result: Run) -> None:
        """`reconciliation.run.completed` and one `reconciliation.mismatch.found` per mismatch, in the outbox."""
        async with self._engine.begin() as connection:
            rows = await reports.mismatch_rows(connection, result.run_id)
            events = [
                OutboundEvent(
                    RECONCILIATION_MISMATCH_FOUND,
                    key=str(result.run_id),
                    message=events_pb2.ReconciliationMismatchFound(
                        mismatch_id=str(row.mismatch_id),
                        run_id=str(result.run_id),
                        kind=row.kind,
                        severity=row.severity,
                        amount=Money(amount_minor=row.amount_minor, currency=row.currency),
                        item_id=str(row.item_id or ""),
                        description=row.description,
                    ),
                )
                for row in rows
            ]
            events.append(
                OutboundEvent(
                    RECONCILIATION_RUN_COMPLETED,
                    key=str(result.run_id),
                    message=events_pb2.ReconciliationRunCompleted(
                        run_id=str(result.run_id),
                        scope=result.scope,
                        mismatch_count=len(rows),
                        summary_json=reports.summary_json(result.summary),
                    ),
                )
            )
            await outbox.append(connection, events)

    async def get_run(self, run_id: str) -> Run:
        parsed = _run_id(run_id)
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(text("SELECT scope, summary FROM runs WHERE run_id = :run"), {"run": parsed})
            ).one_or_none()
            if row is None:
                raise NotFound(f"no run {run_id}", reason="RUN_NOT_FOUND")
            files = list(
                await connection.scalars(
                    text("SELECT DISTINCT file_id FROM mismatches WHERE run_id = :run AND file_id IS NOT NULL"),
                    {"run": parsed},
                )
            )
        scope: str = row.scope
        file_ids = [scope.removeprefix("file:")] if scope.startswith("file:") else sorted(files)
        return Run(parsed, scope, file_ids, dict(row.summary), repeated=True)

    async def report(self, run_id: str) -> reports.Report:
        parsed = _run_id(run_id)
        await self.get_run(run_id)
        async with self._engine.connect() as connection:
            return await reports.build(connection, parsed)

    async def list_mismatches(
        self, run_id: str, *, kind: str, unresolved_only: bool, size: int, page_token: str
    ) -> tuple[list[Any], str]:
        """Keyset pages in (severity, kind, id) order: a mismatch resolved mid-listing never shifts a page."""
        parsed = _run_id(run_id)
        limit = page_size(size)
        scope = f"{parsed}|{kind}|{unresolved_only}"
        after = _decode_mismatch_token(page_token, scope) if page_token else None
        async with self._engine.connect() as connection:
            rows = list(
                await connection.execute(
                    text(
                        f"SELECT {_MISMATCH_COLUMNS}, {_SEVERITY_RANK} AS rank FROM mismatches WHERE run_id = :run "
                        "AND (:kind = '' OR kind = :kind) AND (NOT :unresolved OR resolved_at IS NULL) "
                        f"AND (CAST(:after_id AS uuid) IS NULL OR ({_SEVERITY_RANK}, kind, mismatch_id) "
                        "    > (:after_rank, :after_kind, CAST(:after_id AS uuid))) "
                        f"ORDER BY {_SEVERITY_RANK}, kind, mismatch_id LIMIT :limit"
                    ),
                    {
                        "run": parsed,
                        "kind": kind,
                        "unresolved": unresolved_only,
                        "after_rank": after[0] if after else 0,
                        "after_kind": after[1] if after else "",
                        "after_id": after[2] if after else None,
                        "limit": limit + 1,
                    },
                )
            )
        if len(rows) <= limit:
            return rows, ""
        last = rows[limit - 1]
        return rows[:limit], _encode_mismatch_token(scope, (last.rank, last.kind, str(last.mismatch_id)))

    async def resolve(self, mismatch_id: str, resolution: str, resolved_by: str) -> Any:
        validator = Validator()
        parsed = validator.require_uuid("mismatch_id", mismatch_id)
        validator.require_text("resolution", resolution, max_length=1000)
        validator.require_text("resolved_by", resolved_by, max_length=200)
        validator.raise_if_any()
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    text(
                        "UPDATE mismatches SET resolved_at = now(), resolved_by = :who, resolution = :why "
                        f"WHERE mismatch_id = :id AND resolved_at IS NULL RETURNING {_MISMATCH_COLUMNS}"
                    ),
                    {"id": parsed, "who": resolved_by, "why": resolution},
                )
            ).one_or_none()
            if row is not None:
                return row
            exists = await connection.scalar(
                text("SELECT count(*) FROM mismatches WHERE mismatch_id = :id"), {"id": parsed}
            )
        if not exists:
            raise NotFound(f"no mismatch {mismatch_id}", reason="MISMATCH_NOT_FOUND")
        raise FailedPrecondition(f"mismatch {mismatch_id} is already resolved", reason="MISMATCH_ALREADY_RESOLVED")


def _run_id(value: str) -> uuid.UUID:
    validator = Validator()
    parsed = validator.require_uuid("run_id", value)
    validator.raise_if_any()
    assert parsed is not None
    return parsed


_SEVERITY_RANK = "CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
_MismatchKey = tuple[int, str, str]  # severity rank, kind, mismatch id: where the next page starts


def _encode_mismatch_token(scope: str, key: _MismatchKey) -> str:
    document = json.dumps({"v": 1, "scope": scope, "after": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(document).decode().rstrip("=")


def _decode_mismatch_token(token: str, scope: str) -> _MismatchKey:
    """The key in a token of this listing; a token of another run or other filters is refused."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        rank, kind, mismatch_id = document["after"]
        bound_to = document["scope"]
        uuid.UUID(mismatch_id)
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise invalid_token("is not a page token of ListMismatches") from None
    if type(rank) is not int or not isinstance(kind, str) or document.get("v") != 1:
        raise invalid_token("is malformed")
    if bound_to != scope:
        raise invalid_token("was issued for another run or other filters")
    return rank, kind, mismatch_id
