"""`settle ledger export`: the ledger's books as an hledger journal, read from a running Settle.

Streams the ledger's ExportJournal (finance key) into a file. The file appears only once the whole
export has arrived: it is written beside the target and renamed at the end, so a failed export never
leaves a truncated journal, which hledger would happily read as a smaller (still balanced) ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from settle.ledger.v1 import ledger_pb2

from services.cli.endpoints import Endpoints, default_data_dir
from services.common import clients
from services.common.timestamps import timestamp_of

FORMATS = {"hledger": ledger_pb2.ExportJournalRequest.FORMAT_HLEDGER}
# A local ledger answers at once; longer means nothing listens at the recorded address.
READY_TIMEOUT_S = 3.0
_COMMAND = "settle ledger export"


class LedgerUnreachable(Exception):
    """Nothing answers at the ledger's recorded address: Settle is not running (any more)."""


def moment(value: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 time; a time without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a date (YYYY-MM-DD) nor an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    ledger = commands.add_parser("ledger", help="read the ledger's books")
    actions = ledger.add_subparsers(dest="ledger_command", required=True)
    exporting = actions.add_parser(
        "export",
        parents=parents,
        help="write the journal to a file in plain-text accounting format",
        description="Writes the ledger's journal, read at one snapshot, for e.g. `hledger -f FILE balance`.",
    )
    exporting.add_argument("--format", choices=sorted(FORMATS), default="hledger", help="default: hledger")
    exporting.add_argument("--out", type=Path, required=True, metavar="FILE", help="e.g. books.journal")
    exporting.add_argument(
        "--from", dest="from_time", type=moment, metavar="DATE", help="only entries posted at or after (UTC)"
    )
    exporting.add_argument(
        "--to", dest="to_time", type=moment, metavar="DATE", help="only entries posted before (UTC; exclusive)"
    )
    exporting.set_defaults(handler=cmd_ledger_export)


def _timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    return timestamp_of(when)


def export_request(options: argparse.Namespace) -> ledger_pb2.ExportJournalRequest:
    return ledger_pb2.ExportJournalRequest(
        format=FORMATS[options.format],
        from_time=_timestamp(options.from_time),
        to_time=_timestamp(options.to_time),
    )


@contextmanager
def _replacing(target: Path) -> Iterator[IO[str]]:
    """A file that becomes `target` when the block ends normally, and is removed when it fails."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below, not just closed
        "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    try:
        with handle:
            yield handle
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


async def export_journal(endpoints: Endpoints, request: ledger_pb2.ExportJournalRequest, out: IO[str]) -> int:
    """Streams the export into `out` (with the finance key); returns the number of journal entries written."""
    async with endpoints.channel("ledger", "finance") as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
        except TimeoutError:
            raise LedgerUnreachable(endpoints.grpc["ledger"]) from None
        entries = 0
        async for chunk in clients.ledger_stub(channel).ExportJournal(request):
            out.write(chunk.text)
            entries += chunk.entry_count
        return entries


def _not_running(reason: str) -> int:
    print(f"{_COMMAND}: no running Settle found ({reason}); start one with `settle up`", file=sys.stderr)
    return 2


def cmd_ledger_export(options: argparse.Namespace) -> int:
    data_dir = options.data_dir or default_data_dir()
    if options.from_time and options.to_time and options.to_time <= options.from_time:
        print(f"{_COMMAND}: --to must be after --from (the period is [from, to))", file=sys.stderr)
        return 2
    endpoints = Endpoints.load(data_dir)
    if endpoints is None or "ledger" not in endpoints.grpc:
        return _not_running(f"{data_dir / 'endpoints.json'} does not exist or names no ledger")
    address, out = endpoints.grpc["ledger"], options.out
    try:
        with _replacing(out) as handle:
            entries = asyncio.run(export_journal(endpoints, export_request(options), handle))
    except LedgerUnreachable:
        return _not_running(f"nothing answers at the ledger's address {address}")
    except grpc.aio.AioRpcError as error:
        print(f"{_COMMAND}: the ledger failed the export: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{_COMMAND}: cannot write {out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {entries} journal entries to {out} (check it with: hledger -f {out} balance)")
    return 0
