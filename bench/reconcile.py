"""Reconciling a 1,000,000-line settlement file against a ledger index of the same size.

    python bench/reconcile.py [--lines 1000000]

On embedded PostgreSQL: books `--lines` charges into reconciliation's index of what Settle booked (COPY),
writes a sandbox settlement file of the same charges (plus a handful of injected discrepancies) to disk,
then imports it (streamed: parse + COPY) and reconciles it. Prints one JSON object: the import and match
times, lines/s end to end, the mismatches found, this process's peak RSS growth during import and
matching (the file is never held in memory), and, as the baseline measured in the same run, a bare
`COPY` of the same file's rows into an unindexed table: the most any importer could do on this database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine, service_database_url
from services.common.infra import choose_mode, start_infrastructure
from services.common.migrations import database_name, upgrade
from services.reconciliation.importing import import_file
from services.reconciliation.matching import MatchingRules
from services.reconciliation.runs import run

HEADER = (
    "record_type,settlement_date,psp_reference,merchant_reference,type,currency,gross_minor,fee_minor,net_minor,"
    "created_utc,source_reference,line_count\n"
)
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)


def _order_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=(0xB3 << 120) + n)


def _amount(n: int) -> int:
    return 100 + n % 9_900


async def book(engine: AsyncEngine, lines: int) -> None:
    """`lines` booked charges, written with COPY (the index the consumer would have built)."""
    async with engine.begin() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        async with (
            driver.cursor() as cursor,
            cursor.copy(
                "COPY booked_items (item_id, kind, psp_reference, currency, amount_minor, status, occurred_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for n in range(lines):
                when = DAY + timedelta(seconds=n % 86_000)
                await copy.write_row((_order_id(n), "charge", f"pi_bench_{n}", "USD", _amount(n), "booked", when))


def write_file(path: Path, lines: int) -> None:
    """The PSP's file for the same charges; 5 amounts changed, 5 charges dropped, 5 unknown charges."""
    gross_total = count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for n in range(lines):
            if n % (lines // 5) == 7:  # dropped: MISSING_IN_SETTLEMENT
                continue
            amount = _amount(n) - (1 if n % (lines // 5) == 11 else 0)  # AMOUNT_MISMATCH
            when = (DAY + timedelta(seconds=n % 86_000)).strftime("%Y-%m-%d %H:%M:%S")
            out.write(
                f"L,{DAY.date()},pi_bench_{n},{_order_id(n)},charge,USD,{amount},0,{amount},{when},ch_bench_{n},\n"
            )
            gross_total += amount
            count += 1
        for n in range(5):  # MISSING_IN_LEDGER
            out.write(f"L,{DAY.date()},pi_unknown_{n},,charge,USD,1234,0,1234,{DAY:%Y-%m-%d} 23:59:59,,\n")
            gross_total += 1234
            count += 1
        out.write(f"T,{DAY.date()},TRAILER,,,,{gross_total},0,{gross_total},,,{count}\n")


async def baseline(engine: AsyncEngine, path: Path) -> float:
    """Rows/s of a bare COPY of the file into an unindexed table, read the same streaming way."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TEMP TABLE raw_copy (line text) ON COMMIT DROP"))
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        started = time.perf_counter()
        rows = 0
        async with driver.cursor() as cursor, cursor.copy("COPY raw_copy (line) FROM STDIN") as copy:
            with path.open(encoding="utf-8") as stream:
                for line in stream:
                    await copy.write_row((line.rstrip("\n"),))
                    rows += 1
        return rows / (time.perf_counter() - started)


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def main(options: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="settle-bench-reconcile-") as data_dir:
        infra = start_infrastructure(choose_mode(), Path(data_dir))
        try:
            upgrade("reconciliation", infra.database_url)
            engine = create_engine(service_database_url(infra.database_url, database_name("reconciliation")))
            await book(engine, options.lines)
            path = Path(data_dir) / "settlement.csv"
            write_file(path, options.lines)
            rss_before = _rss_kib()
            started = time.perf_counter()
            with path.open("rb") as stream:
                imported = await import_file(engine, stream, "sandbox", path.name)
            imported_at = time.perf_counter()
            result = await run(
                engine, f"file:{imported.file_id}", [imported.file_id], datetime.now(UTC), MatchingRules()
            )
            finished = time.perf_counter()
            rss_growth_mib = (_rss_kib() - rss_before) / 1024
            copy_rate = await baseline(engine, path)
            await engine.dispose()
        finally:
            infra.close()
    total_s = finished - started
    lines_per_s = imported.lines_read / total_s
    mismatches = {kind: sum(v["count"] for v in by.values()) for kind, by in result.summary["mismatches"].items()}
    return {
        "lines": imported.lines_read,
        "ledger_items": options.lines,
        "import_s": round(imported_at - started, 1),
        "match_s": round(finished - imported_at, 1),
        "lines_per_s": round(lines_per_s),
        "peak_rss_growth_mib": round(rss_growth_mib, 1),
        "mismatches": mismatches,
        "baseline_bare_copy_rows_per_s": round(copy_rate),
        "ratio": round(lines_per_s / copy_rate, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
