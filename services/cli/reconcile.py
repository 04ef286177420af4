"""`settle reconcile --file F --format sandbox|stripe|adyen|camt053 [--date D] [--out DIR] [--json]`.

Streams the file to the reconciliation service (registered by its SHA-256: a re-import is a no-op),
reconciles it (or, with `--date`, every file with lines on that day), and writes the run's reports into
`--out` (summary.json, mismatches.csv, report.html). With `--json` it prints one JSON object: lines read,
imported, quarantined (with line numbers and reasons), matched, mismatches by kind with amounts per
currency, and the balance checks. A file that cannot be parsed exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from settle.reconciliation.v1 import reconciliation_pb2, reconciliation_pb2_grpc

from services.cli.endpoints import Endpoints, default_data_dir

FORMATS = ("sandbox", "stripe", "adyen", "camt053")
_CHUNK = 1 << 20


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    reconcile = commands.add_parser("reconcile", parents=parents, help="import a settlement file and reconcile it")
    reconcile.add_argument("--file", type=Path, required=True)
    reconcile.add_argument("--format", choices=FORMATS, required=True)
    reconcile.add_argument("--date", default="", help="reconcile every file with lines on this day (YYYY-MM-DD)")
    reconcile.add_argument("--out", type=Path, default=None, help="write summary.json, mismatches.csv, report.html")
    reconcile.add_argument("--json", action="store_true", help="print the run summary as one JSON object")
    reconcile.set_defaults(handler=cmd_reconcile)


async def _chunks(path: Path, file_format: str) -> AsyncIterator[reconciliation_pb2.ImportSettlementFileRequest]:
    first = True
    with path.open("rb") as stream:
        while chunk := await asyncio.to_thread(stream.read, _CHUNK):
            request = reconciliation_pb2.ImportSettlementFileRequest(chunk=chunk)
            if first:
                request.file_name, request.format, first = path.name, file_format, False
            yield request
    if first:  # an empty file still names itself, so the service can say it is empty
        yield reconciliation_pb2.ImportSettlementFileRequest(file_name=path.name, format=file_format)


async def reconcile(
    stub: reconciliation_pb2_grpc.ReconciliationServiceStub, path: Path, file_format: str, day: str
) -> tuple[
    reconciliation_pb2.ImportSettlementFileResponse, reconciliation_pb2.Run, reconciliation_pb2.GetReportResponse
]:
    imported: reconciliation_pb2.ImportSettlementFileResponse = await stub.ImportSettlementFile(
        _chunks(path, file_format), timeout=3600
    )
    request = (
        reconciliation_pb2.RunReconciliationRequest(date=day)
        if day
        else (reconciliation_pb2.RunReconciliationRequest(file_id=imported.file_id))
    )
    run = (await stub.RunReconciliation(request, timeout=3600)).run
    report: reconciliation_pb2.GetReportResponse = await stub.GetReport(
        reconciliation_pb2.GetReportRequest(run_id=run.run_id), timeout=600
    )
    return imported, run, report


def summary_of(
    imported: reconciliation_pb2.ImportSettlementFileResponse, run: reconciliation_pb2.Run
) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(run.summary_json)
    return {
        "run_id": run.run_id,
        "scope": run.scope,
        "file_id": imported.file_id,
        "already_imported": imported.already_imported,
        "lines_read": imported.lines_read,
        "lines_imported": imported.lines_imported,
        "lines_quarantined": len(imported.quarantined),
        "quarantined": [{"line": q.line, "reason": q.reason} for q in imported.quarantined],
        "matched": sum(c["matched_lines"] for c in summary.get("currencies", {}).values()),
        "mismatch_count": run.mismatch_count,
        "mismatches": summary.get("mismatches", {}),
        "balance_checks": [
            {
                "scope": c.scope,
                "currency": c.currency,
                "expected_minor": c.expected_minor,
                "actual_minor": c.actual_minor,
                "balanced": c.balanced,
            }
            for c in imported.checks
        ],
    }


def _write_reports(out: Path, report: reconciliation_pb2.GetReportResponse) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(report.summary_json + "\n", encoding="utf-8")
    (out / "mismatches.csv").write_bytes(report.mismatches_csv.encode())
    (out / "report.html").write_text(report.html, encoding="utf-8")


async def _run(endpoints: Endpoints, options: argparse.Namespace) -> int:
    async with endpoints.channel("reconciliation", "finance") as channel:
        stub = reconciliation_pb2_grpc.ReconciliationServiceStub(channel)
        imported, run, report = await reconcile(stub, options.file, options.format, options.date)
    if options.out:
        _write_reports(options.out, report)
    summary = summary_of(imported, run)
    if options.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"{options.file.name}: {summary['lines_read']} lines read, {summary['lines_imported']} imported, "
            f"{summary['lines_quarantined']} quarantined; {summary['matched']} matched, "
            f"{summary['mismatch_count']} mismatches (run {run.run_id})"
        )
        for kind, by_currency in sorted(summary["mismatches"].items()):
            amounts = ", ".join(
                f"{v['count']} in {ccy}, total {v['amount_minor']}" for ccy, v in sorted(by_currency.items())
            )
            print(f"  {kind}: {amounts}")
    return 0


def cmd_reconcile(options: argparse.Namespace) -> int:
    if not options.file.is_file():
        print(f"settle reconcile: no such file: {options.file}", file=sys.stderr)
        return 2
    endpoints = Endpoints.load(options.data_dir or default_data_dir())
    if endpoints is None:
        print("settle reconcile: no running Settle found; start one with `settle up`", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(endpoints, options))
    except grpc.aio.AioRpcError as error:
        print(f"settle reconcile: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
