"""The reads and checks behind `settle audit` (audit.py).

Each service database is read by one function, in one read-only REPEATABLE READ transaction, and the
checks that need only that database run there in SQL. What must be compared across services (orders,
executions, PSP charges, wallet credits, ledger entries) is loaded once per order and compared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import create_engine, service_database_url
from services.common.migrations import database_name

KINDS = (
    "duplicate_charge",
    "lost_charge",
    "orphan_charge",
    "status_mismatch",
    "wallet_mismatch",
    "ledger_mismatch",
    "seller_books_mismatch",
    "ledger_unbalanced",
    "balance_drift",
    "non_terminal",
    "outbox_backlog",
)
AUDITED_SERVICES = ("payment", "executor", "wallet", "ledger", "reconciliation")
MAX_EXAMPLES = 5
FINAL = frozenset({"SUCCEEDED", "FAILED"})
# A refund starts from a charge: a refunded order was charged, as far as the audit is concerned.
CHARGED = frozenset({"SUCCEEDED", "PARTIALLY_REFUNDED", "REFUNDED"})
_ROWS_PER_FETCH = 10_000


class Findings:
    """Breach counts (every kind, zeros included) with a few examples each, and the records checked."""

    def __init__(self) -> None:
        self.breaches: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.examples: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.checked: dict[str, int] = {}

    def add(self, kind: str, example: str, count: int = 1) -> None:
        self.add_all(kind, count, [example])

    def add_all(self, kind: str, count: int, examples: list[str]) -> None:
        self.breaches[kind] += count
        self.examples[kind] += examples[: MAX_EXAMPLES - len(self.examples[kind])]


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A payment order as the payment service or the executor recorded it."""

    status: str
    seller_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: str
    amount_minor: int
    currency: str  # upper case, as the services store it


@dataclass(frozen=True, slots=True)
class Booking:
    """What the wallet or the ledger recorded for one order's sale. Seller, amount and currency mean
    something only for a single well-formed record."""

    records: int
    well_formed: bool
    seller_id: str
    amount_minor: int
    currency: str


@dataclass
class Records:
    """Everything compared across services, keyed by payment order id."""

    orders: dict[str, OrderRecord] = field(default_factory=dict)
    executions: dict[str, OrderRecord] = field(default_factory=dict)
    charges: dict[str, list[Charge]] = field(default_factory=dict)
    unlinked_charges: list[Charge] = field(default_factory=list)
    credits: dict[str, Booking] = field(default_factory=dict)
    entries: dict[str, Booking] = field(default_factory=dict)
    # Per (seller, currency): what the seller is owed and what is on its way in payouts, by each book.
    wallet_books: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    ledger_books: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def seller_of(self, order_id: str) -> str | None:
        known = self.orders.get(order_id) or self.executions.get(order_id)
        return known.seller_id if known else None


def service_urls(server_url: str) -> dict[str, URL]:
    return {service: service_database_url(server_url, database_name(service)) for service in AUDITED_SERVICES}


@asynccontextmanager
async def read_only(url: URL) -> AsyncIterator[AsyncConnection]:
    """One connection in a read-only REPEATABLE READ transaction: every query sees one snapshot."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            # Every check reads whole tables: a nested loop, which the planner picks when its row
            # estimates for freshly written tables are low, turns a join of two scans quadratic.
            # And an audit of millions of rows may rightly outlast the services' 30 s query limit.
            await connection.execute(text("SET LOCAL enable_nestloop = off"))
            await connection.execute(text("SET LOCAL statement_timeout = '15min'"))
            yield connection
            await connection.rollback()
    finally:
        await engine.dispose()


async def _found(connection: AsyncConnection, findings: Findings, kind: str, breaches_sql: str) -> None:
    """Adds the breaches `breaches_sql` selects (one row each, described in a `what` column), loading
    only the count and the examples."""
    rows = (
        await connection.execute(
            text(f"SELECT what, count(*) OVER () AS total FROM ({breaches_sql}) AS found LIMIT :limit"),
            {"limit": MAX_EXAMPLES},
        )
    ).all()
    if rows:
        findings.add_all(kind, rows[0].total, [row.what for row in rows])


async def _count(connection: AsyncConnection, findings: Findings, counts_sql: str) -> None:
    """Adds to `checked` the single row of named counts that `counts_sql` selects."""
    row = (await connection.execute(text(counts_sql))).one()
    findings.checked.update({name: int(value) for name, value in row._mapping.items()})


async def _batches(connection: AsyncConnection, sql: str) -> AsyncIterator[Sequence[Any]]:
    """Streams a large result (server-side cursor) instead of holding it twice in memory, in batches:
    awaiting each row would cost a context switch per row."""
    result = await connection.stream(text(sql).execution_options(yield_per=_ROWS_PER_FETCH))
    async for batch in result.partitions():
        yield batch


async def _check_outbox(connection: AsyncConnection, service: str, findings: Findings) -> None:
    # The relay marks a row sent by setting published_at (services/common/relay.py).
    row = (
        await connection.execute(
            text("SELECT count(*) AS unsent, min(created_at) AS oldest FROM outbox WHERE published_at IS NULL")
        )
    ).one()
    if row.unsent:
        findings.add("outbox_backlog", f"{service}: {row.unsent} unsent outbox rows since {row.oldest}", row.unsent)


async def _order_records(connection: AsyncConnection, sql: str) -> dict[str, OrderRecord]:
    return {
        row.id: OrderRecord(row.status, row.seller_id, row.amount_minor, row.currency)
        async for batch in _batches(connection, sql)
        for row in batch
    }


async def read_payment(connection: AsyncConnection, findings: Findings, records: Records) -> None:
    await _check_outbox(connection, "payment", findings)
    records.orders = await _order_records(
        connection, "SELECT CAST(id AS text) AS id, status, seller_id, amount_minor, currency FROM payment_orders"
    )
    await _found(
        connection,
        findings,
        "non_terminal",
        "SELECT 'payment ' || id || ' is not done' AS what FROM payment_events WHERE NOT done",
    )
    await _count(connection, findings, "SELECT count(*) AS payments FROM payment_events")


async def read_executor(connection: AsyncConnection, findings: Findings, records: Records) -> None:
    await _check_outbox(connection, "executor", findings)
    records.executions = await _order_records(
        connection,
        "SELECT CAST(payment_order_id AS text) AS id, status, seller_id, amount_minor, currency FROM executions",
    )


# Sale credits per order (a well-formed one credits the pending bucket); an order id of '' stands for a
# sale credit without one.
_WALLET_SALES = """
SELECT coalesce(CAST(payment_order_id AS text), '') AS id, count(*) AS records, bool_and(bucket = 'pending') AS pending,
       min(seller_id) AS seller_id, CAST(sum(amount_minor) AS bigint) AS amount_minor, min(currency) AS currency
FROM balance_entries WHERE kind = 'sale' GROUP BY payment_order_id
"""
_WALLET_DRIFT = """
SELECT format('wallet %s %s: pending/available/reserved %s/%s/%s, its entries sum to %s/%s/%s',
              seller_id, currency, coalesce(b.pending_minor, 0), coalesce(b.available_minor, 0),
              coalesce(b.reserved_minor, 0), coalesce(s.pending_minor, 0), coalesce(s.available_minor, 0),
              coalesce(s.reserved_minor, 0)) AS what
FROM balances AS b
FULL JOIN (
    SELECT seller_id, currency,
           sum(amount_minor) FILTER (WHERE bucket = 'pending') AS pending_minor,
           sum(amount_minor) FILTER (WHERE bucket = 'available') AS available_minor,
           sum(amount_minor) FILTER (WHERE bucket = 'reserved') AS reserved_minor
    FROM balance_entries GROUP BY seller_id, currency
) AS s USING (seller_id, currency)
WHERE coalesce(b.pending_minor, 0) <> coalesce(s.pending_minor, 0)
   OR coalesce(b.available_minor, 0) <> coalesce(s.available_minor, 0)
   OR coalesce(b.reserved_minor, 0) <> coalesce(s.reserved_minor, 0)
"""


# The seller's side of the wallet: pending and available are owed, reserved is paid out but not yet paid.
_WALLET_BOOKS = """
SELECT seller_id, currency, pending_minor + available_minor AS owed, reserved_minor AS in_transit FROM balances
"""


async def read_wallet(connection: AsyncConnection, findings: Findings, records: Records) -> None:
    await _check_outbox(connection, "wallet", findings)
    records.credits = {
        row.id: Booking(row.records, row.pending, row.seller_id, row.amount_minor, row.currency)
        async for batch in _batches(connection, _WALLET_SALES)
        for row in batch
    }
    await _found(connection, findings, "balance_drift", _WALLET_DRIFT)
    records.wallet_books = {
        (row.seller_id, row.currency): (row.owed, row.in_transit)
        async for batch in _batches(connection, _WALLET_BOOKS)
        for row in batch
    }
    await _count(
        connection,
        findings,
        "SELECT (SELECT count(*) FROM balance_entries) AS wallet_entries, "
        "(SELECT count(*) FROM balances) AS wallet_balances",
    )


# Each order's sale entries with their postings summed by role: a well-formed one is exactly
# DR psp_receivable, CR seller_payable:<seller> of the same amount in one currency.
_LEDGER_SALES = """
SELECT coalesce(CAST(e.payment_order_id AS text), '') AS id, count(DISTINCT e.entry_id) AS records,
       count(p.entry_id) AS postings, count(DISTINCT p.currency) AS currencies, min(p.currency) AS currency,
       CAST(coalesce(sum(p.amount_minor) FILTER (WHERE p.account = 'psp_receivable'), 0) AS bigint) AS debited,
       CAST(coalesce(-sum(p.amount_minor) FILTER (WHERE starts_with(p.account, 'seller_payable:')), 0)
            AS bigint) AS credited,
       min(substr(p.account, length('seller_payable:') + 1))
           FILTER (WHERE starts_with(p.account, 'seller_payable:')) AS seller_id
FROM journal_entries AS e LEFT JOIN postings AS p USING (entry_id)
WHERE e.kind = 'payment_order_succeeded'
GROUP BY e.payment_order_id
"""
# Fewer than two postings, or postings not summing to zero in some currency.
_UNBALANCED_ENTRIES = """
SELECT format('entry %s (%s): %s posting(s), sums %s', entry_id, kind, postings, off) AS what
FROM (
    SELECT e.entry_id, e.kind, coalesce(sum(p.postings), 0) AS postings,
           string_agg(p.currency || ' ' || p.total, ', ') FILTER (WHERE p.total <> 0) AS off
    FROM journal_entries AS e
    LEFT JOIN (SELECT entry_id, currency, count(*) AS postings, sum(amount_minor) AS total
               FROM postings GROUP BY entry_id, currency) AS p USING (entry_id)
    GROUP BY e.entry_id, e.kind
) AS per_entry
WHERE postings < 2 OR off IS NOT NULL
"""
_UNBALANCED_TOTALS = """
SELECT format('all postings in %s sum to %s', currency, sum(amount_minor)) AS what
FROM postings GROUP BY currency HAVING sum(amount_minor) <> 0
"""
_LEDGER_DRIFT = """
SELECT format('ledger %s %s: balance %s, its postings sum to %s',
              account, currency, coalesce(b.balance_minor, 0), coalesce(p.total, 0)) AS what
FROM account_balances AS b
FULL JOIN (SELECT account, currency, sum(amount_minor) AS total FROM postings GROUP BY account, currency) AS p
    USING (account, currency)
WHERE coalesce(b.balance_minor, 0) <> coalesce(p.total, 0)
"""


# The seller accounts (liabilities: credit balances, so negative when the platform owes the seller).
_LEDGER_BOOKS = """
SELECT split_part(account, ':', 1) AS family, substr(account, strpos(account, ':') + 1) AS seller_id,
       currency, balance_minor
FROM account_balances
WHERE starts_with(account, 'seller_payable:') OR starts_with(account, 'payouts_in_transit:')
"""


async def read_ledger(connection: AsyncConnection, findings: Findings, records: Records) -> None:
    await _check_outbox(connection, "ledger", findings)
    records.entries = {
        row.id: Booking(
            row.records,
            row.postings == 2 and row.currencies == 1 and row.debited == row.credited and row.seller_id is not None,
            row.seller_id or "",
            row.debited,
            row.currency or "",
        )
        async for batch in _batches(connection, _LEDGER_SALES)
        for row in batch
    }
    await _found(connection, findings, "ledger_unbalanced", _UNBALANCED_ENTRIES)
    await _found(connection, findings, "ledger_unbalanced", _UNBALANCED_TOTALS)
    await _found(connection, findings, "balance_drift", _LEDGER_DRIFT)
    books: dict[tuple[str, str], tuple[int, int]] = {}
    async for batch in _batches(connection, _LEDGER_BOOKS):
        for row in batch:
            owed, in_transit = books.get((row.seller_id, row.currency), (0, 0))
            if row.family == "seller_payable":
                owed = -row.balance_minor
            else:
                in_transit = -row.balance_minor
            books[(row.seller_id, row.currency)] = (owed, in_transit)
    records.ledger_books = books
    await _count(
        connection,
        findings,
        "SELECT (SELECT count(*) FROM journal_entries) AS journal_entries, "
        "(SELECT count(*) FROM postings) AS postings, (SELECT count(*) FROM account_balances) AS ledger_balances",
    )


async def read_reconciliation(connection: AsyncConnection, findings: Findings, records: Records) -> None:
    await _check_outbox(connection, "reconciliation", findings)


Reader = Callable[[AsyncConnection, Findings, Records], Awaitable[None]]
READERS: dict[str, Reader] = {
    "payment": read_payment,
    "executor": read_executor,
    "wallet": read_wallet,
    "ledger": read_ledger,
    "reconciliation": read_reconciliation,
}


async def fetch_charges(sandbox_url: str, findings: Findings, records: Records) -> None:
    """The PSP's successful charges (the sandbox records no other), grouped by payment order."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{sandbox_url.rstrip('/')}/_sandbox/charges") as response,
    ):
        response.raise_for_status()
        body = await response.json()
    for raw in body["data"]:
        charge = Charge(str(raw["charge_id"]), int(raw["amount"]), str(raw["currency"]).upper())
        order_id = raw.get("payment_order_id")
        if order_id:
            records.charges.setdefault(str(order_id), []).append(charge)
        else:
            records.unlinked_charges.append(charge)
    findings.checked["charges"] = len(body["data"])


async def collect(urls: dict[str, URL], sandbox_url: str, findings: Findings) -> Records:
    """Reads every database and the PSP's charges concurrently, so their snapshots are close in time."""
    records = Records()

    async def read(service: str) -> None:
        async with read_only(urls[service]) as connection:
            await READERS[service](connection, findings, records)

    await asyncio.gather(
        *(read(service) for service in AUDITED_SERVICES), fetch_charges(sandbox_url, findings, records)
    )
    findings.checked["orders"] = len(records.orders)
    findings.checked["executions"] = len(records.executions)
    return records


def _as_outcome(status: str) -> str:
    return "SUCCEEDED" if status in CHARGED else status


def check_charges(records: Records, findings: Findings) -> None:
    """duplicate_charge and orphan_charge per charged order (and per charge naming no order); lost_charge
    per order that a service says SUCCEEDED."""
    for order_id, charges in records.charges.items():
        if len(charges) > 1:
            ids = ", ".join(charge.charge_id for charge in charges)
            findings.add("duplicate_charge", f"{order_id}: {len(charges)} charges ({ids})")
        problem = _orphan_problem(records, order_id, charges)
        if problem:
            findings.add("orphan_charge", f"{order_id}: {problem}")
    for charge in records.unlinked_charges:
        findings.add("orphan_charge", f"{charge.charge_id}: a charge without a payment_order_id")
    succeeded = [order_id for order_id, order in records.orders.items() if order.status in CHARGED]
    succeeded += [order_id for order_id, execution in records.executions.items() if execution.status == "SUCCEEDED"]
    for order_id in dict.fromkeys(succeeded):
        if order_id not in records.charges:
            findings.add("lost_charge", f"{order_id}: SUCCEEDED without a PSP charge")


def _orphan_problem(records: Records, order_id: str, charges: list[Charge]) -> str | None:
    order = records.orders.get(order_id)
    execution = records.executions.get(order_id)
    if order is None:
        return "charged, but the payment service has no such order"
    if order.status not in CHARGED:
        return f"charged, but the order is {order.status}"
    if execution is None:
        return "charged, but the executor has no execution"
    if execution.status != "SUCCEEDED":
        return f"charged, but the execution is {execution.status}"
    for charge in charges:
        if (charge.amount_minor, charge.currency) != (order.amount_minor, order.currency):
            return (
                f"charged {charge.amount_minor} {charge.currency}, "
                f"the order is for {order.amount_minor} {order.currency}"
            )
    return None


def check_statuses(records: Records, findings: Findings) -> None:
    """status_mismatch for orders both services know, once either side is final; non_terminal."""
    for order_id in records.orders.keys() & records.executions.keys():
        ours, theirs = _as_outcome(records.orders[order_id].status), records.executions[order_id].status
        if (ours in FINAL or theirs in FINAL) and ours != theirs:
            findings.add("status_mismatch", f"{order_id}: payment {ours}, executor {theirs}")
    for order_id, order in records.orders.items():
        if _as_outcome(order.status) not in FINAL:
            findings.add("non_terminal", f"order {order_id} is {order.status}")
    for order_id, execution in records.executions.items():
        if execution.status not in FINAL:
            findings.add("non_terminal", f"execution {order_id} is {execution.status}")


def check_bookings(records: Records, findings: Findings, kind: str, what: str, bookings: dict[str, Booking]) -> None:
    """One booking per charged order, for the order's seller and the charged amount; none otherwise."""
    for order_id, charges in records.charges.items():
        problem = _booking_problem(bookings.get(order_id), charges[0], records.seller_of(order_id), what)
        if problem:
            findings.add(kind, f"{order_id}: {problem}")
    for order_id in bookings.keys() - records.charges.keys():
        findings.add(kind, f"{order_id or '(no order id)'}: a {what} without a PSP charge")


def _booking_problem(booking: Booking | None, charge: Charge, seller_id: str | None, what: str) -> str | None:
    if booking is None:
        return f"charged, but no {what}"
    if booking.records != 1:
        return f"{booking.records} {what}s"
    if not booking.well_formed:
        return f"a malformed {what}"
    # A seller neither service knows (an orphan charge) cannot be checked; the amount still can.
    seller_id = seller_id or booking.seller_id
    if (booking.seller_id, booking.amount_minor, booking.currency) == (seller_id, charge.amount_minor, charge.currency):
        return None
    return (
        f"{what} of {booking.amount_minor} {booking.currency} to {booking.seller_id}, "
        f"charged {charge.amount_minor} {charge.currency} for {seller_id}"
    )


def check_seller_books(records: Records, findings: Findings) -> None:
    """Every seller's wallet balance equals the ledger's accounts of that seller: pending + available
    with seller_payable, reserved with payouts_in_transit."""
    for key in sorted(records.wallet_books.keys() | records.ledger_books.keys()):
        wallet, ledger = records.wallet_books.get(key, (0, 0)), records.ledger_books.get(key, (0, 0))
        if wallet != ledger:
            seller_id, currency = key
            findings.add(
                "seller_books_mismatch",
                f"{seller_id} {currency}: wallet owed/in transit {wallet[0]}/{wallet[1]}, "
                f"ledger {ledger[0]}/{ledger[1]}",
            )


def cross_check(records: Records, findings: Findings) -> None:
    check_charges(records, findings)
    check_statuses(records, findings)
    check_bookings(records, findings, "wallet_mismatch", "wallet sale credit", records.credits)
    check_bookings(records, findings, "ledger_mismatch", "ledger sale entry", records.entries)
    check_seller_books(records, findings)


# What keeps a system busy: work not finished, or events not yet handed to Kafka.
_BUSY_SQL = {
    "payment": "SELECT EXISTS (SELECT FROM payment_orders WHERE status NOT IN ('SUCCEEDED', 'FAILED', "
    "'PARTIALLY_REFUNDED', 'REFUNDED')) OR EXISTS (SELECT FROM payment_events WHERE NOT done)",
    "executor": "SELECT EXISTS (SELECT FROM executions WHERE status NOT IN ('SUCCEEDED', 'FAILED')) "
    "OR EXISTS (SELECT FROM refund_executions WHERE status NOT IN ('SUCCEEDED', 'FAILED')) "
    "OR EXISTS (SELECT FROM payout_executions WHERE status NOT IN ('SUCCEEDED', 'FAILED'))",
    "wallet": "SELECT EXISTS (SELECT FROM payouts WHERE status = 'REQUESTED')",
}


async def is_busy(connection: AsyncConnection, service: str) -> bool:
    work = _BUSY_SQL.get(service, "SELECT false")
    return bool(
        await connection.scalar(text(f"SELECT ({work}) OR EXISTS (SELECT FROM outbox WHERE published_at IS NULL)"))
    )
