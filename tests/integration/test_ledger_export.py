"""ExportJournal on real PostgreSQL over gRPC: the books as an hledger journal that balances.

Orders are booked through the ledger's own use case (LedgerService.record_succeeded_orders), the
journal is exported over gRPC and read back twice: by a strict reader here (always), and by hledger
itself when it is installed (Debian: `apt-get install -y hledger`). Without hledger the hledger half
is reported as a warning, never passed silently; the strict reader checks the same numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import re
import shutil
import socket
import subprocess
import uuid
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli import ledger_export
from services.cli.endpoints import ApiKeys, Endpoints
from services.common import tls
from services.common.errors import Unimplemented
from services.common.grpc_errors import error_info_reason, field_violations
from services.common.grpc_server import create_server
from services.common.money import CURRENCY_EXPONENTS, Money
from services.common.succeeded_orders import SucceededOrder
from services.ledger import export
from services.ledger.adapters.journal_export_db import JournalExportReader
from services.ledger.domain import PostedEntry
from services.ledger.entrypoints.grpc import LedgerServicer
from services.ledger.entrypoints.main import SCOPES, SERVICE_NAME
from services.ledger.service import LedgerService
from tests.fixtures import API_KEYS, CHECKOUT, CHECKOUT_KEY, FINANCE, FINANCE_KEY

# Small, so that every export here crosses several keyset batches.
BATCH_SIZE = 7
# The composition root (main.py) declares the scopes per method; this is the entry it needs for the
# export (finance and admin, like the other reads). Merged here so the test runs either way.
HLEDGER = shutil.which("hledger")


# ---------------------------------------------------------------------------------------------------
# A strict reader of the exported journal: only the shapes the exporter writes, anything else fails.

_COMMODITY = re.compile(r"^commodity 1000\.(?P<decimals>0*) (?P<currency>[A-Z]{3})$")
_HEADER = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2}) (?P<description>[^;\s*!(][^;]*)$")
_TAGS = re.compile(r"^    ; (?P<tags>.+)$")
_TAG = re.compile(r"^(?P<name>[a-z_]+):(?P<value>[^,\s]+)$")
# An account cannot hold two spaces, a tab or `;`; two spaces at least end it.
_POSTING = re.compile(
    r"^    (?P<account>[^\s;](?:[^;\t]*?[^\s;])?)  +(?P<amount>-?\d+(?:\.(?P<decimals>\d+))?) (?P<currency>[A-Z]{3})$"
)


@dataclass
class Transaction:
    date: str
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    postings: list[tuple[str, str, int]] = field(default_factory=list)  # account, currency, minor units


@dataclass
class Journal:
    decimals: dict[str, int]
    transactions: list[Transaction]

    def balances(self) -> dict[tuple[str, str], int]:
        """Non-zero balances per (hledger account, currency), in minor units."""
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for transaction in self.transactions:
            for account, currency, amount in transaction.postings:
                totals[account, currency] += amount
        return {key: total for key, total in totals.items() if total}

    def entry_ids(self) -> list[str]:
        return [transaction.tags["entry_id"] for transaction in self.transactions]


def _minor(amount: str, decimals: str | None, currency: str, declared: dict[str, int]) -> int:
    assert currency in declared, f"{currency} has no commodity directive"
    assert len(decimals or "") == declared[currency] == CURRENCY_EXPONENTS[currency], amount
    return int(amount.replace(".", ""))


def _close(transaction: Transaction | None) -> None:
    if transaction is None:
        return
    assert len(transaction.postings) >= 2, transaction
    totals: dict[str, int] = defaultdict(int)
    for _, currency, amount in transaction.postings:
        totals[currency] += amount
    assert not any(totals.values()), f"transaction does not balance: {transaction}"


def read_journal(journal: str) -> Journal:
    decimals: dict[str, int] = {}
    transactions: list[Transaction] = []
    current: Transaction | None = None
    for number, line in enumerate(journal.split("\n"), start=1):
        if not line:
            _close(current)
            current = None
        elif current is None and line.startswith("; "):
            assert not transactions, f"line {number}: a comment between transactions"
        elif current is None and (commodity := _COMMODITY.match(line)):
            assert not transactions and commodity["currency"] not in decimals, f"line {number}: {line!r}"
            decimals[commodity["currency"]] = len(commodity["decimals"])
        elif current is None and (header := _HEADER.match(line)):
            datetime.strptime(header["date"], "%Y-%m-%d")  # a real date
            current = Transaction(header["date"], header["description"])
            transactions.append(current)
        elif current is not None and not current.tags and not current.postings and (tags := _TAGS.match(line)):
            for tag in tags["tags"].split(", "):
                parsed = _TAG.match(tag)
                assert parsed, f"line {number}: bad tag {tag!r}"
                current.tags[parsed["name"]] = parsed["value"]
        elif current is not None and current.tags and (posting := _POSTING.match(line)):
            account = posting["account"]
            assert "  " not in account, f"line {number}: {account!r}"
            amount = _minor(posting["amount"], posting["decimals"], posting["currency"], decimals)
            current.postings.append((account, posting["currency"], amount))
        else:
            raise AssertionError(f"line {number} is not what the exporter writes: {line!r}")
    assert current is None, "the journal must end with a blank line after its last transaction"
    return Journal(decimals, transactions)


# ---------------------------------------------------------------------------------------------------
# hledger itself.


def hledger_balances(path: Path) -> dict[tuple[str, str], int]:
    """`hledger balance --flat` of the file: checks the total is zero, returns the account balances."""
    assert HLEDGER
    plain = subprocess.run(
        [HLEDGER, "-f", str(path), "balance", "--flat"], capture_output=True, text=True, timeout=120, check=False
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.rstrip().splitlines()[-1].strip() == "0", plain.stdout[-500:]  # the total line
    bare = subprocess.run(
        [HLEDGER, "-f", str(path), "balance", "--flat", "--layout=bare", "-O", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    balances: dict[tuple[str, str], int] = {}
    rows = list(csv.reader(io.StringIO(bare.stdout)))
    assert rows[0] == ["account", "commodity", "balance"], rows[0]
    for account, currency, amount in rows[1:]:
        if account == "total":
            assert amount == "0", rows
            continue
        _, _, fraction = amount.partition(".")
        assert len(fraction) == CURRENCY_EXPONENTS[currency], (account, amount)  # the declared precision
        balances[account, currency] = int(amount.replace(".", ""))
    return balances


# ---------------------------------------------------------------------------------------------------
# A ledger gRPC server with the export enabled, and helpers.


@dataclass
class Api:
    stub: ledger_pb2_grpc.LedgerServiceStub
    address: str
    engine: AsyncEngine


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(engines: dict[str, AsyncEngine]) -> AsyncIterator[Api]:
    engine = engines["ledger"]
    servicer = LedgerServicer(LedgerService(engine), JournalExportReader(engine, batch_size=BATCH_SIZE))
    server, _ = create_server(
        service="ledger",
        registrations=[(ledger_pb2_grpc.add_LedgerServiceServicer_to_server, servicer, SERVICE_NAME)],
        api_keys=API_KEYS,
        scopes=SCOPES,
    )
    port = tls.bind(server, "127.0.0.1:0", None)  # plaintext, as SETTLE_TLS_MODE=off binds it
    await server.start()
    address = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(address) as channel:
        yield Api(ledger_pb2_grpc.LedgerServiceStub(channel), address, engine)
    await server.stop(grace=None)


def order(seller_id: str, amount_minor: int, currency: str = "USD") -> SucceededOrder:
    return SucceededOrder(uuid.uuid4(), seller_id, Money(amount_minor, currency), uuid.uuid4())


async def book(engine: AsyncEngine, orders: Sequence[SucceededOrder]) -> list[PostedEntry]:
    """One consumer batch, in its own transaction, as the ledger's consumer books it."""
    async with engine.begin() as connection:
        return await LedgerService(engine).record_succeeded_orders(connection, orders)


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def export_text(api: Api, request: ledger_pb2.ExportJournalRequest) -> tuple[str, int]:
    """The whole export and the entry count the chunks announced."""
    chunks = [chunk async for chunk in api.stub.ExportJournal(request, metadata=FINANCE)]
    assert chunks and chunks[0].entry_count == 0  # the directives come first
    return "".join(chunk.text for chunk in chunks), sum(chunk.entry_count for chunk in chunks)


async def ledger_balance(engine: AsyncEngine, account: str, currency: str) -> int:
    return (await LedgerService(engine).get_account_balance(account, currency)).amount_minor


# Seller ids hledger would misread unencoded (`;`, two spaces, a trailing space, `:`); the database
# accepts any of them (no control characters).
def tricky_sellers(unique: str) -> list[str]:
    return [f"plain-{unique}", f"semi;colon-{unique}", f"two  spaces-{unique}", f"trailing-{unique} ", f"a:b-{unique}"]


# ---------------------------------------------------------------------------------------------------


async def test_the_exported_books_balance_and_match_the_ledger(api: Api, unique: str, tmp_path: Path) -> None:
    sellers = tricky_sellers(unique)
    orders = [
        order(sellers[0], 123_456, "USD"),
        order(sellers[0], 1, "USD"),
        order(sellers[1], 500, "JPY"),
        order(sellers[2], 1_234_567, "KWD"),
        order(sellers[3], 9_999, "EUR"),
        order(sellers[4], 42, "USD"),
        order(sellers[4], 7, "JPY"),
    ]
    for index in range(0, len(orders), 3):  # several consumer batches
        await book(api.engine, orders[index : index + 3])

    journal_text, announced = await export_text(api, ledger_pb2.ExportJournalRequest())
    path = tmp_path / "books.journal"
    path.write_text(journal_text, encoding="utf-8")
    journal = read_journal(journal_text)
    assert announced == len(journal.transactions)
    assert len(set(journal.entry_ids())) == len(journal.entry_ids())
    assert {"USD", "JPY", "KWD", "EUR"} <= journal.decimals.keys()

    balances = journal.balances()
    totals: dict[str, int] = defaultdict(int)
    for (_, currency), amount in balances.items():
        totals[currency] += amount
    assert not any(totals.values()), totals  # the whole ledger balances per currency

    # Every seller of this test: the journal's balance is the ledger's balance, account by account.
    expected_sellers: dict[tuple[str, str], int] = {}
    for booked in orders:
        account = f"seller_payable:{booked.seller_id}"
        currency = booked.amount.currency
        expected_sellers[export.hledger_account(account), currency] = await ledger_balance(
            api.engine, account, currency
        )
    assert all(amount < 0 for amount in expected_sellers.values())
    assert {key: balances.get(key, 0) for key in expected_sellers} == expected_sellers
    assert len({account for account, _ in expected_sellers}) == len(sellers)  # no two sellers merged

    # And the whole journal is the trial balance (nothing else writes to this database meanwhile).
    trial = await LedgerService(api.engine).trial_balance()
    assert trial.balanced
    expected_all = {
        (export.hledger_account(account), money.currency): money.amount_minor
        for account, money in trial.accounts
        if money.amount_minor
    }
    assert balances == expected_all

    if HLEDGER is None:
        warnings.warn(
            "hledger is not installed: the journal was checked by the test's strict reader only "
            "(install it with `apt-get install -y hledger` to check it with hledger too)",
            stacklevel=1,
        )
        return
    assert hledger_balances(path) == balances


async def test_a_period_exports_the_entries_posted_in_from_inclusive_to_exclusive(api: Api, unique: str) -> None:
    posted = [(await book(api.engine, [order(f"period-{unique}", amount)]))[0] for amount in (1, 2, 3, 4)]
    times = [entry.created_at for entry in posted]
    assert times == sorted(times) and len(set(times)) == 4  # one transaction each, so distinct times

    request = ledger_pb2.ExportJournalRequest(
        format=ledger_pb2.ExportJournalRequest.FORMAT_HLEDGER,
        from_time=timestamp(times[1]),
        to_time=timestamp(times[3]),
    )
    journal_text, announced = await export_text(api, request)
    journal = read_journal(journal_text)
    ours = {str(entry.entry.entry_id) for entry in posted}
    exported = [entry_id for entry_id in journal.entry_ids() if entry_id in ours]
    assert exported == [str(posted[1].entry.entry_id), str(posted[2].entry.entry_id)]
    assert announced == len(journal.transactions)
    for transaction in journal.transactions:
        posted_at = datetime.fromisoformat(transaction.tags["posted_at"])
        assert times[1] <= posted_at < times[3]
        assert transaction.date == posted_at.astimezone(UTC).strftime("%Y-%m-%d")

    # A bound between two microseconds rounds up, so [from, to) stays exact: from just after an entry
    # excludes it, to just after an entry includes it.
    just_after = ledger_pb2.ExportJournalRequest(from_time=timestamp(times[0]), to_time=timestamp(times[2]))
    just_after.from_time.nanos += 1
    just_after.to_time.nanos += 1
    exported = [entry_id for entry_id in read_journal((await export_text(api, just_after))[0]).entry_ids()]
    assert [entry_id for entry_id in exported if entry_id in ours] == [
        str(posted[1].entry.entry_id),
        str(posted[2].entry.entry_id),
    ]


async def test_the_export_is_one_snapshot_however_long_it_streams(api: Api, unique: str) -> None:
    await book(api.engine, [order(f"snap-{unique}", amount) for amount in range(1, 3 * BATCH_SIZE)])
    call = api.stub.ExportJournal(ledger_pb2.ExportJournalRequest(), metadata=FINANCE)
    first = await call.read()  # the snapshot is taken before the first chunk is sent
    assert isinstance(first, ledger_pb2.ExportJournalChunk)
    late = await book(api.engine, [order(f"snap-late-{unique}", 5), order(f"snap-late-{unique}", 6)])
    chunks = [first]
    while (chunk := await call.read()) is not grpc.aio.EOF:
        assert isinstance(chunk, ledger_pb2.ExportJournalChunk)
        chunks.append(chunk)
    assert len(chunks) > 3  # the directives, then several batches
    assert all(chunk.entry_count <= BATCH_SIZE for chunk in chunks)
    journal = read_journal("".join(chunk.text for chunk in chunks))
    exported = set(journal.entry_ids())
    assert not exported & {str(entry.entry.entry_id) for entry in late}
    assert len(exported) == sum(chunk.entry_count for chunk in chunks)


async def test_the_reader_runs_in_one_repeatable_read_read_only_transaction(api: Api) -> None:
    async with JournalExportReader(api.engine).snapshot() as journal:
        connection = journal._connection
        assert await connection.scalar(text("SHOW transaction_isolation")) == "repeatable read"
        assert await connection.scalar(text("SHOW transaction_read_only")) == "on"
    # The connection goes back to the pool as it came: the next user writes at the default level.
    async with api.engine.connect() as connection:
        assert await connection.scalar(text("SHOW transaction_read_only")) == "off"


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (ledger_pb2.ExportJournalRequest(format=7), {"format"}),  # type: ignore[arg-type]
        (
            ledger_pb2.ExportJournalRequest(
                from_time=Timestamp(seconds=1_767_225_600), to_time=Timestamp(seconds=1_767_225_600)
            ),
            {"to_time"},
        ),
        (
            ledger_pb2.ExportJournalRequest(
                from_time=Timestamp(seconds=1_767_225_600, nanos=2), to_time=Timestamp(seconds=1_767_225_600, nanos=1)
            ),
            {"to_time"},
        ),
        (
            ledger_pb2.ExportJournalRequest(
                format=9,  # type: ignore[arg-type]
                from_time=Timestamp(seconds=1, nanos=1_000_000_000),
                to_time=Timestamp(seconds=300_000_000_000),
            ),
            {"format", "from_time", "to_time"},
        ),
    ],
)
async def test_invalid_requests_are_refused_naming_each_field(
    api: Api, request_: ledger_pb2.ExportJournalRequest, violations: set[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await export_text(api, request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info_reason(refused.value) == "VALIDATION_FAILED"
    assert set(field_violations(refused.value)) == violations


async def test_the_checkout_key_may_not_export(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in api.stub.ExportJournal(ledger_pb2.ExportJournalRequest(), metadata=CHECKOUT):
            pass
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_servicer_built_without_the_reader_answers_unimplemented(api: Api) -> None:
    servicer = LedgerServicer(LedgerService(api.engine))
    with pytest.raises(Unimplemented):
        async for _ in servicer.ExportJournal(ledger_pb2.ExportJournalRequest(), None):
            pass


# ---------------------------------------------------------------------------------------------------
# The CLI glue (`settle ledger export`), against the same server.


def cli_options(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="settle")
    commands = parser.add_subparsers(dest="command", required=True)
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path, default=None)
    ledger_export.add_parser(commands, [data_dir])
    return parser.parse_args(["ledger", "export", *args])


def journal_files(directory: Path) -> list[str]:
    """The journal files in `directory`, finished or partial (`.books.journal.xxxx.part`)."""
    return sorted(path.name for path in directory.iterdir() if "journal" in path.name)


def save_endpoints(data_dir: Path, ledger_address: str, finance_key: str = FINANCE_KEY) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    Endpoints(
        grpc={"ledger": ledger_address},
        psp_sandbox_url="http://127.0.0.1:1",
        api_keys=ApiKeys.of(checkout=CHECKOUT_KEY, finance=finance_key, admin="unused"),
        database_url="postgresql://unused",
        kafka_bootstrap_servers="127.0.0.1:1",
        infra_mode="external",
    ).save(data_dir)


async def test_the_cli_writes_the_journal_of_a_running_settle(
    api: Api, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [posted] = await book(api.engine, [order(f"cli-{unique}", 250, "EUR")])
    save_endpoints(tmp_path / "settle", api.address)
    out = tmp_path / "books.journal"
    since = (posted.created_at - timedelta(seconds=1)).isoformat()
    options = cli_options(
        "--format", "hledger", "--out", str(out), "--from", since, "--data-dir", str(tmp_path / "settle")
    )
    assert options.handler is ledger_export.cmd_ledger_export
    # In a thread: the command runs its own event loop, while this loop serves the ledger.
    assert await asyncio.to_thread(options.handler, options) == 0
    journal = read_journal(out.read_text(encoding="utf-8"))
    assert str(posted.entry.entry_id) in journal.entry_ids()
    assert f"wrote {len(journal.transactions)} journal entries to {out}" in capsys.readouterr().out
    assert journal_files(tmp_path) == [out.name]  # and no partial file left beside it


async def test_the_cli_leaves_no_file_when_the_ledger_refuses(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_endpoints(tmp_path / "settle", api.address, finance_key="not-a-key")
    out = tmp_path / "books.journal"
    options = cli_options("--out", str(out), "--data-dir", str(tmp_path / "settle"))
    assert await asyncio.to_thread(options.handler, options) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert journal_files(tmp_path) == []


def test_the_cli_exits_2_when_no_settle_was_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = cli_options("--out", str(tmp_path / "books.journal"), "--data-dir", str(tmp_path / "none"))
    assert options.handler(options) == 2
    assert "no running Settle found" in capsys.readouterr().err
    assert not (tmp_path / "books.journal").exists()


def test_the_cli_exits_2_when_settle_is_not_running_any_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    save_endpoints(tmp_path / "settle", f"127.0.0.1:{port}")
    monkeypatch.setattr(ledger_export, "READY_TIMEOUT_S", 0.5)
    options = cli_options("--out", str(tmp_path / "books.journal"), "--data-dir", str(tmp_path / "settle"))
    assert options.handler(options) == 2
    assert f"nothing answers at the ledger's address 127.0.0.1:{port}" in capsys.readouterr().err
    assert journal_files(tmp_path) == []


def test_the_cli_refuses_an_empty_period(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = cli_options("--out", str(tmp_path / "x.journal"), "--from", "2026-02-01", "--to", "2026-01-01")
    assert options.handler(options) == 2
    assert "--to must be after --from" in capsys.readouterr().err
