"""End-to-end throughput of the pay-in path, measured against pgbench on the same PostgreSQL in the same run.

    python bench/e2e.py --duration 30

Starts a whole Settle (embedded infrastructure, PSP sandbox, five service processes), drives checkouts
over gRPC for `--duration` seconds with `--concurrency` calls in flight, waits until every payment is
done (every order charged at the PSP, credited in the wallet and booked in the ledger), then runs
`pgbench` (tpcb-like, 4 clients) on the same server. Prints one JSON object:

- orders_per_s: completed payment orders / seconds from the first CreatePayment to the last completion
- create_payment_p50_ms / create_payment_p99_ms: CreatePayment latency seen by the client
- pgbench_tps and ratio = orders_per_s / pgbench_tps (how close the pipeline gets to the database's own
  transaction rate; each completed order costs several transactions across four databases)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from services.cli.stack import Stack, start_stack
from services.cli.workload import CheckoutFactory
from services.common import clients
from services.common.db import libpq_url, service_database_url


async def drive(stack: Stack, duration_s: float, concurrency: int) -> tuple[list[float], list[str], float]:
    factory = CheckoutFactory(uuid.uuid4().hex[:8], sellers=200, decline_rate_percent=0)
    latencies_ms: list[float] = []
    payment_ids: list[str] = []
    started = time.monotonic()
    stop_at = started + duration_s
    async with stack.endpoints.channel("payment", "checkout") as channel:
        stub = clients.payment_stub(channel)

        async def worker() -> None:
            while time.monotonic() < stop_at:
                request = factory.next()
                sent = time.perf_counter()
                response = await stub.CreatePayment(request, timeout=30)
                latencies_ms.append((time.perf_counter() - sent) * 1000)
                payment_ids.append(response.payment.payment_id)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies_ms, payment_ids, started


def wait_until_done(payment_url: str, payment_ids: list[str], timeout_s: float) -> tuple[int, float]:
    """Polls the payment database until every payment is done; returns (orders, seconds first→last)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(payment_url) as connection:
        while True:
            pending = connection.execute(
                "SELECT count(*) FROM payment_events WHERE id = ANY(%s::uuid[]) AND NOT done", (payment_ids,)
            ).fetchone()
            if pending and pending[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{pending[0] if pending else '?'} payments not done after {timeout_s} s")
            time.sleep(0.5)
        row = connection.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM max(o.updated_at) - min(e.created_at)) "
            "FROM payment_orders o JOIN payment_events e ON e.id = o.payment_id WHERE e.id = ANY(%s::uuid[])",
            (payment_ids,),
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def pgbench_binary() -> str:
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    found = str(bundled) if bundled.exists() else shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found (it ships with the pgserver package)")
    return found


def run_pgbench(stack: Stack, duration_s: int) -> float:
    url = libpq_url(service_database_url(stack.endpoints.database_url, "postgres"))
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS settle_pgbench")
        connection.execute("CREATE DATABASE settle_pgbench")
    target = libpq_url(service_database_url(stack.endpoints.database_url, "settle_pgbench"))
    binary = pgbench_binary()
    subprocess.run([binary, "-i", "-q", "-s", "10", target], check=True, capture_output=True)
    result = subprocess.run(
        [binary, "-c", "4", "-j", "2", "-T", str(duration_s), "-n", target], check=True, capture_output=True, text=True
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if not match:
        raise SystemExit(f"could not read pgbench's TPS from:\n{result.stdout}")
    return float(match.group(1))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--concurrency", type=int, default=32, help="CreatePayment calls in flight (default 32)")
    parser.add_argument("--pgbench-duration", type=int, default=15)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="settle-bench-") as data_dir:
        stack = start_stack(Path(data_dir), fixed_ports=False)
        try:
            latencies, payment_ids, _ = asyncio.run(drive(stack, options.duration, options.concurrency))
            payment_url = libpq_url(service_database_url(stack.endpoints.database_url, "settle_payment"))
            orders, elapsed_s = wait_until_done(payment_url, payment_ids, timeout_s=600)
            tps = run_pgbench(stack, options.pgbench_duration)
        finally:
            stack.stop()
    orders_per_s = orders / elapsed_s
    print(
        json.dumps(
            {
                "orders_per_s": round(orders_per_s, 1),
                "create_payment_p50_ms": round(statistics.median(latencies), 2),
                "create_payment_p99_ms": round(percentile(latencies, 0.99), 2),
                "pgbench_tps": round(tps, 1),
                "ratio": round(orders_per_s / tps, 4),
                "duration_s": options.duration,
                "payments": len(payment_ids),
                "orders_completed": orders,
                "completion_window_s": round(elapsed_s, 2),
                "concurrency": options.concurrency,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
