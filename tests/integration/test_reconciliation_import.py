"""Importing settlement files into the reconciliation database: whole or not at all, once per content."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, service_database_url
from services.common.infra import Infrastructure
from services.common.migrations import database_name, upgrade
from services.reconciliation.importing import import_file
from services.reconciliation.parsing.model import FileRejected

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settlement"
HEADER = (
    "record_type,settlement_date,psp_reference,merchant_reference,type,currency,gross_minor,fee_minor,"
    "net_minor,created_utc,source_reference,line_count\n"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    upgrade("reconciliation", infra.database_url)
    created = create_engine(service_database_url(infra.database_url, database_name("reconciliation")))
    yield created
    await created.dispose()


def _sandbox_file(unique: str, *, bad_currency: bool = False, trailer: bool = True) -> bytes:
    rows = [
        f"L,2026-03-02,pi_{unique}_1,order-1,charge,USD,1000,0,1000,2026-03-02 01:00:00,ch_1,",
        f"L,2026-03-02,re_{unique}_1,refund-1,refund,{'XYZ' if bad_currency else 'USD'},-300,0,-300,"
        "2026-03-02 02:00:00,pi_1,",
    ]
    trailer_row = "T,2026-03-02,TRAILER,,,,700,0,700,,,2"
    return (HEADER + "\n".join(rows + ([trailer_row] if trailer else [])) + "\n").encode()


async def _count(engine: AsyncEngine, table: str, file_id: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table} WHERE file_id = :id"), {"id": file_id}))


async def test_a_file_is_imported_once_with_its_quarantined_lines(engine: AsyncEngine, unique: str) -> None:
    content = _sandbox_file(unique, bad_currency=True)

    first = await import_file(engine, io.BytesIO(content), "sandbox", "settlement_2026-03-02.csv")
    again = await import_file(engine, io.BytesIO(content), "sandbox", "renamed.csv")

    assert (first.already_imported, first.lines_read, first.lines_imported) == (False, 2, 1)
    assert [(q.line, "currency" in q.reason) for q in first.quarantined] == [(3, True)]
    assert again.already_imported and again.file_id == first.file_id
    assert (again.lines_read, again.lines_imported, again.quarantined) == (2, 1, first.quarantined)
    assert await _count(engine, "settlement_lines", first.file_id) == 1
    assert await _count(engine, "quarantined_lines", first.file_id) == 1


async def test_a_truncated_file_is_rejected_whole(engine: AsyncEngine, unique: str) -> None:
    content = _sandbox_file(unique, trailer=False)
    with pytest.raises(FileRejected, match="truncated"):
        await import_file(engine, io.BytesIO(content), "sandbox", "cut.csv")
    async with engine.connect() as connection:
        registered = await connection.scalar(
            text("SELECT count(*) FROM settlement_lines WHERE psp_reference = :ref"), {"ref": f"pi_{unique}_1"}
        )
    assert registered == 0


@pytest.mark.parametrize(
    ("file_format", "path"),
    [
        ("adyen", "adyen/settlement_detail_report_batch_42.csv"),
        ("camt053", "camt053/statement_v02_balanced.xml"),
        ("stripe", "stripe/payout_reconciliation_balanced.csv"),
    ],
)
async def test_every_format_imports_with_its_balance_checks(engine: AsyncEngine, file_format: str, path: str) -> None:
    content = (FIXTURES / path).read_bytes()
    result = await import_file(engine, io.BytesIO(content), file_format, Path(path).name)
    assert result.lines_imported > 0
    assert result.checks and all(check.balanced for check in result.checks)
    assert await _count(engine, "balance_checks", result.file_id) == len(result.checks)
