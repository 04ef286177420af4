"""`settle payouts ...`: operators' and finance's payout commands against a running Settle.

- `submit-batch FILE [--batch-id ID] [--format csv|xml] [--json]`: submit a payout batch file (the
  batch id defaults to the file's name without extension; the format to its extension).
- `report BATCH_ID [--group-by FIELD] --out F.csv`: the batch's items with their status, or with
  `--group-by` its totals per value of a metadata field (or seller_id, status, destination, currency).
- `run-schedule [--as-of DATE]`: run the payout schedule for a day (default today, UTC).
- `create SELLER_ID --amount N --currency C [--destination ba_...] [--idempotency-key K]`: a manual payout.
- `set-destination SELLER_ID ba_...`: where a seller's payouts go.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from settle.common.v1.money_pb2 import Money
from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.cli.endpoints import Endpoints, default_data_dir
from services.cli.payout_reports import metadata_keys_of, write_grouped_csv, write_items_csv
from services.common import clients
from services.common.grpc_errors import field_violations

_FORMATS = {"csv": wallet_pb2.PAYOUT_BATCH_FORMAT_CSV, "xml": wallet_pb2.PAYOUT_BATCH_FORMAT_XML}
_PAGE = 1000


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    payouts = commands.add_parser("payouts", parents=parents, help="payouts: batches, reports, the schedule")
    sub = payouts.add_subparsers(dest="payouts_command", required=True)
    submit = sub.add_parser("submit-batch", parents=parents, help="submit a CSV or XML payout batch file")
    submit.add_argument("file", type=Path)
    submit.add_argument("--batch-id", default=None, help="default: the file name without its extension")
    submit.add_argument("--format", choices=sorted(_FORMATS), default=None, help="default: from the extension")
    submit.add_argument("--json", action="store_true", help="print one JSON object")
    report = sub.add_parser("report", parents=parents, help="write a batch's CSV report")
    report.add_argument("batch_id")
    report.add_argument("--group-by", default=None, help="totals per value of this field instead of items")
    report.add_argument("--out", type=Path, required=True)
    schedule = sub.add_parser("run-schedule", parents=parents, help="run the payout schedule for a day")
    schedule.add_argument("--as-of", default="", help="the day, YYYY-MM-DD (default: today, UTC)")
    schedule.add_argument("--json", action="store_true", help="print one JSON object")
    create = sub.add_parser("create", parents=parents, help="pay part of a seller's available balance out now")
    create.add_argument("seller_id")
    create.add_argument("--amount", type=int, required=True, help="minor units")
    create.add_argument("--currency", required=True)
    create.add_argument("--destination", default="", help="default: the seller's payout destination")
    create.add_argument("--idempotency-key", default=None, help="reuse to retry safely (default: new)")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    destination = sub.add_parser("set-destination", parents=parents, help="set where a seller's payouts go")
    destination.add_argument("seller_id")
    destination.add_argument("destination")
    payouts.set_defaults(handler=cmd_payouts)


async def _submit(stub: wallet_pb2_grpc.WalletServiceStub, options: argparse.Namespace) -> int:
    path: Path = options.file
    file_format = options.format or path.suffix.lstrip(".").lower()
    if file_format not in _FORMATS:
        print(f"settle payouts: cannot tell the format of {path}; pass --format csv|xml", file=sys.stderr)
        return 2
    content = await asyncio.to_thread(path.read_bytes)
    request = wallet_pb2.SubmitPayoutBatchRequest(
        batch_id=options.batch_id or path.stem, format=_FORMATS[file_format], content=content
    )
    response: wallet_pb2.SubmitPayoutBatchResponse = await stub.SubmitPayoutBatch(request, timeout=300)
    batch = response.batch
    if options.json:
        print(json.dumps({"duplicate": response.duplicate, "batch": MessageToDict(batch)}))
    else:
        repeat = " (already accepted: nothing changed)" if response.duplicate else ""
        print(f"batch {batch.batch_id}: {batch.item_count} payouts accepted{repeat}; sha256 {batch.content_sha256}")
    return 0


async def _all_payouts(stub: wallet_pb2_grpc.WalletServiceStub, batch_id: str) -> list[wallet_pb2.Payout]:
    payouts: list[wallet_pb2.Payout] = []
    token = ""
    while True:
        page: wallet_pb2.ListPayoutsResponse = await stub.ListPayouts(
            wallet_pb2.ListPayoutsRequest(batch_id=batch_id, page_size=_PAGE, page_token=token), timeout=60
        )
        payouts += page.payouts
        token = page.next_page_token
        if not token:
            return payouts


async def _report(stub: wallet_pb2_grpc.WalletServiceStub, options: argparse.Namespace) -> int:
    await stub.GetPayoutBatch(wallet_pb2.GetPayoutBatchRequest(batch_id=options.batch_id), timeout=10)
    payouts = await _all_payouts(stub, options.batch_id)
    with options.out.open("w", newline="", encoding="utf-8") as out:
        if options.group_by:
            rows = write_grouped_csv(payouts, out, options.group_by)
        else:
            rows = write_items_csv(payouts, out, metadata_keys_of(payouts))
    print(f"wrote {rows} rows to {options.out}")
    return 0


async def _run_schedule(stub: wallet_pb2_grpc.WalletServiceStub, options: argparse.Namespace) -> int:
    response: wallet_pb2.RunPayoutScheduleResponse = await stub.RunPayoutSchedule(
        wallet_pb2.RunPayoutScheduleRequest(date=options.as_of), timeout=300
    )
    if options.json:
        print(json.dumps(MessageToDict(response, always_print_fields_with_no_presence=True)))
    elif not response.payout_day:
        print(f"{response.date} is not a payout day: nothing paid")
    else:
        print(
            f"{response.date}: {len(response.payouts)} payouts requested; held for debt {response.held_for_debt}, "
            f"below the minimum {response.skipped_below_minimum}, "
            f"without destination {response.skipped_without_destination}"
        )
    return 0


async def _create(stub: wallet_pb2_grpc.WalletServiceStub, options: argparse.Namespace) -> int:
    key = options.idempotency_key or f"cli-payout-{uuid.uuid4()}"
    payout: wallet_pb2.Payout = await stub.CreatePayout(
        wallet_pb2.CreatePayoutRequest(
            seller_id=options.seller_id,
            amount=Money(amount_minor=options.amount, currency=options.currency),
            destination=options.destination,
            idempotency_key=key,
        ),
        timeout=10,
    )
    if options.json:
        print(json.dumps({"idempotency_key": key, "payout": MessageToDict(payout)}))
    else:
        print(
            f"payout {payout.payout_id} of {payout.amount.amount_minor} {payout.amount.currency} (minor units) to "
            f"{payout.destination}: {wallet_pb2.PayoutStatus.Name(payout.status)}; idempotency key {key}"
        )
    return 0


async def _set_destination(stub: wallet_pb2_grpc.WalletServiceStub, options: argparse.Namespace) -> int:
    await stub.SetPayoutDestination(
        wallet_pb2.SetPayoutDestinationRequest(seller_id=options.seller_id, destination=options.destination),
        timeout=10,
    )
    print(f"payouts of {options.seller_id} go to {options.destination}")
    return 0


_COMMANDS: dict[str, Callable[[Any, argparse.Namespace], Awaitable[int]]] = {
    "submit-batch": _submit,
    "report": _report,
    "run-schedule": _run_schedule,
    "create": _create,
    "set-destination": _set_destination,
}


async def _run(endpoints: Endpoints, options: argparse.Namespace) -> int:
    async with endpoints.channel("wallet", "admin") as channel:
        return await _COMMANDS[options.payouts_command](clients.wallet_stub(channel), options)


def cmd_payouts(options: argparse.Namespace) -> int:
    endpoints = Endpoints.load(options.data_dir or default_data_dir())
    if endpoints is None:
        print("settle payouts: no running Settle found; start one with `settle up`", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(endpoints, options))
    except grpc.aio.AioRpcError as error:
        print(f"settle payouts: {error.code().name}: {error.details()}", file=sys.stderr)
        for field, description in field_violations(error).items():
            print(f"  {field}: {description}", file=sys.stderr)
        return 1
