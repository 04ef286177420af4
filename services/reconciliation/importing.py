"""Importing a settlement file: registered by its SHA-256, parsed as a stream, written with COPY.

A file is read twice: once to hash it (a re-import of the same bytes is a no-op, answered before any
parsing), then to parse it while its lines, quarantined lines and balance checks are copied into the
database in ONE transaction. A parser that rejects the file (truncated, undecodable, a required column
missing) rolls everything back, so a file is imported whole or not at all; a malformed line is only
quarantined. Memory stays constant: nothing holds more than one line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.reconciliation.parsing.adyen import AdyenSettlementParser
from services.reconciliation.parsing.camt053 import Camt053Parser
from services.reconciliation.parsing.model import BalanceCheck, Quarantined, SettlementParser
from services.reconciliation.parsing.sandbox import SandboxSettlementParser
from services.reconciliation.parsing.stripe import StripeItemizedParser

PARSERS: dict[str, Callable[[], SettlementParser]] = {
    "sandbox": SandboxSettlementParser,
    "stripe": StripeItemizedParser,
    "adyen": AdyenSettlementParser,
    "camt053": Camt053Parser,
}
_HASH_CHUNK = 1 << 20
_LINE_COLUMNS = (
    "file_id, line, kind, raw_type, psp_reference, merchant_reference, currency, gross_minor, fee_minor, "
    "net_minor, occurred_at, batch, status, details"
)


@dataclass(frozen=True, slots=True)
class ImportResult:
    file_id: str
    already_imported: bool
    lines_read: int
    lines_imported: int
    quarantined: list[Quarantined]
    checks: list[BalanceCheck]


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


async def import_file(engine: AsyncEngine, stream: BinaryIO, file_format: str, file_name: str) -> ImportResult:
    """Imports a seekable binary stream; raises FileRejected (nothing written) if it cannot be read."""
    parser = PARSERS[file_format]()
    file_id = sha256_of(stream)
    async with engine.begin() as connection:
        # COPY of a million lines is one statement, longer than the services' default timeout.
        await connection.execute(text("SET LOCAL statement_timeout = '30min'"))
        if await _existing(connection, file_id) is not None:
            return await _result_of(connection, file_id, already_imported=True)
        await connection.execute(
            text(
                "INSERT INTO settlement_files (file_id, format, file_name, lines_read, lines_imported, "
                "lines_quarantined) VALUES (:file_id, :format, :name, 0, 0, 0)"
            ),
            {"file_id": file_id, "format": file_format, "name": file_name[:255]},
        )
        quarantined: list[Quarantined] = []
        imported = await _copy_lines(connection, file_id, parser, stream, quarantined)
        await _copy_quarantined(connection, file_id, quarantined)
        await _store_checks(connection, file_id, parser.checks)
        await connection.execute(
            text(
                "UPDATE settlement_files SET lines_read = :read, lines_imported = :imported, "
                "lines_quarantined = :quarantined WHERE file_id = :file_id"
            ),
            {
                "file_id": file_id,
                "read": imported + len(quarantined),
                "imported": imported,
                "quarantined": len(quarantined),
            },
        )
    return ImportResult(file_id, False, imported + len(quarantined), imported, quarantined, parser.checks)


async def _driver(connection: AsyncConnection) -> Any:
    """psycopg's own connection under SQLAlchemy's, in the same transaction: COPY is not in SQLAlchemy."""
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def _copy_lines(
    connection: AsyncConnection,
    file_id: str,
    parser: SettlementParser,
    stream: BinaryIO,
    quarantined: list[Quarantined],
) -> int:
    imported = 0
    driver = await _driver(connection)
    async with driver.cursor() as cursor, cursor.copy(f"COPY settlement_lines ({_LINE_COLUMNS}) FROM STDIN") as copy:
        for item in parser.parse(stream):
            if isinstance(item, Quarantined):
                quarantined.append(item)  # few by nature; a file of nothing else is still bounded by its lines
                continue
            await copy.write_row(
                (
                    file_id,
                    item.line,
                    str(item.kind),
                    item.raw_type[:100],
                    item.psp_reference[:255],
                    item.merchant_reference[:255],
                    item.currency,
                    item.gross_minor,
                    item.fee_minor,
                    item.net_minor,
                    item.occurred_at,
                    item.batch[:255],
                    item.status[:32],
                    json.dumps(item.details),
                )
            )
            imported += 1
    return imported


async def _copy_quarantined(connection: AsyncConnection, file_id: str, quarantined: list[Quarantined]) -> None:
    if not quarantined:
        return
    driver = await _driver(connection)
    async with (
        driver.cursor() as cursor,
        cursor.copy("COPY quarantined_lines (file_id, line, reason, raw) FROM STDIN") as copy,
    ):
        for item in quarantined:
            await copy.write_row((file_id, item.line, item.reason[:1000], item.raw[:200]))


async def _store_checks(connection: AsyncConnection, file_id: str, checks: list[BalanceCheck]) -> None:
    if checks:
        await connection.execute(
            text(
                "INSERT INTO balance_checks (file_id, scope, currency, expected_minor, actual_minor) "
                "VALUES (:file_id, :scope, :currency, :expected, :actual)"
            ),
            [
                {
                    "file_id": file_id,
                    "scope": check.scope,
                    "currency": check.currency,
                    "expected": check.expected_minor,
                    "actual": check.actual_minor,
                }
                for check in checks
            ],
        )


async def _existing(connection: AsyncConnection, file_id: str) -> Any:
    return (
        await connection.execute(text("SELECT file_id FROM settlement_files WHERE file_id = :id"), {"id": file_id})
    ).first()


async def _result_of(connection: AsyncConnection, file_id: str, *, already_imported: bool) -> ImportResult:
    row = (
        await connection.execute(
            text("SELECT lines_read, lines_imported FROM settlement_files WHERE file_id = :id"), {"id": file_id}
        )
    ).one()
    quarantined = [
        Quarantined(q.line, q.reason, q.raw)
        for q in await connection.execute(
            text("SELECT line, reason, raw FROM quarantined_lines WHERE file_id = :id ORDER BY line"), {"id": file_id}
        )
    ]
    checks = [
        BalanceCheck(c.scope, c.currency, c.expected_minor, c.actual_minor)
        for c in await connection.execute(
            text(
                "SELECT scope, currency, expected_minor, actual_minor FROM balance_checks WHERE file_id = :id "
                "ORDER BY scope, currency"
            ),
            {"id": file_id},
        )
    ]
    return ImportResult(file_id, already_imported, row.lines_read, row.lines_imported, quarantined, checks)
