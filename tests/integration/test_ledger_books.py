"""The ledger's books on real PostgreSQL: double entry enforced by the database, races, stable paging."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.money import Money
from services.common.succeeded_orders import SucceededOrder
from services.common.succeeded_refunds import SucceededRefund
from services.ledger.domain import PostedEntry
from services.ledger.service import LedgerService


def order(
    seller_id: str, amount_minor: int, order_id: uuid.UUID | None = None, currency: str = "USD"
) -> SucceededOrder:
    return SucceededOrder(order_id or uuid.uuid4(), seller_id, Money(amount_minor, currency), uuid.uuid4())


async def post(engine: AsyncEngine, orders: list[SucceededOrder]) -> list[PostedEntry]:
    """One consumer batch: its own transaction, as the consumer runs it."""
    async with engine.begin() as connection:
        return await LedgerService(engine).record_succeeded_orders(connection, orders)


async def balance_and_posting_sum(engine: AsyncEngine, account: str, currency: str = "USD") -> tuple[int, int]:
    async with engine.connect() as connection:
        balance = await connection.scalar(
            text("SELECT balance_minor FROM account_balances WHERE account = :a AND currency = :c"),
            {"a": account, "c": currency},
        )
        postings = await connection.scalar(
            text("SELECT coalesce(sum(amount_minor), 0) FROM postings WHERE account = :a AND currency = :c"),
            {"a": account, "c": currency},
        )
    return int(balance or 0), int(postings)


async def insert_entry(connection: AsyncConnection, entry_id: uuid.UUID, postings: list[tuple[str, int]]) -> None:
    await connection.execute(
        text("INSERT INTO journal_entries (entry_id, kind, cause_event_id) VALUES (:id, 'manual_test', :cause)"),
        {"id": entry_id, "cause": uuid.uuid4()},
    )
    for position, (account, amount_minor) in enumerate(postings):
        await connection.execute(
            text("INSERT INTO postings VALUES (:id, :position, :account, 'USD', :amount)"),
            {"id": entry_id, "position": position, "account": account, "amount": amount_minor},
        )


@pytest.mark.parametrize(
    ("postings", "message"),
    [
        ([("psp_receivable", 500), ("seller_payable:x", -499)], "does not balance"),
        ([("psp_receivable", 500)], "at least 2 are required"),
        ([], "at least 2 are required"),
        ([("psp_receivable", 500), ("seller_payable:x", -250), ("seller_payable:y", -200)], "does not balance"),
    ],
)
async def test_the_database_refuses_an_entry_that_is_not_double_entry(
    engines: dict[str, AsyncEngine], postings: list[tuple[str, int]], message: str
) -> None:
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match=message):
        async with engines["ledger"].begin() as connection:
            await insert_entry(connection, entry_id, postings)
    async with engines["ledger"].connect() as connection:
        assert (
            await connection.scalar(text("SELECT count(*) FROM journal_entries WHERE entry_id = :id"), {"id": entry_id})
            == 0
        )


async def test_a_posting_cannot_be_added_to_a_committed_entry(engines: dict[str, AsyncEngine], unique: str) -> None:
    [posted] = await post(engines["ledger"], [order(f"seller-{unique}", 300)])
    with pytest.raises(DBAPIError, match="immutable"):
        async with engines["ledger"].begin() as connection:
            for position, amount in ((2, 10), (3, -10)):  # even a balanced pair
                await connection.execute(
                    text("INSERT INTO postings VALUES (:id, :position, 'psp_receivable', 'USD', :amount)"),
                    {"id": posted.entry.entry_id, "position": position, "amount": amount},
                )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entries SET kind = 'refund' WHERE entry_id = :id",
        "DELETE FROM journal_entries WHERE entry_id = :id",
        "UPDATE postings SET amount_minor = -amount_minor WHERE entry_id = :id",
        "DELETE FROM postings WHERE entry_id = :id",
        "TRUNCATE postings",
        "TRUNCATE journal_entries CASCADE",
    ],
)
async def test_entries_and_postings_are_immutable(engines: dict[str, AsyncEngine], unique: str, statement: str) -> None:
    [posted] = await post(engines["ledger"], [order(f"seller-{unique}", 300)])
    with pytest.raises(DBAPIError, match="append-only"):
        async with engines["ledger"].begin() as connection:
            await connection.execute(text(statement), {"id": posted.entry.entry_id})


async def test_replays_post_nothing_twice(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine, seller_id = engines["ledger"], f"seller-{unique}"
    first = order(seller_id, 800)
    same_event = first
    same_order_new_event = SucceededOrder(first.payment_order_id, seller_id, first.amount, uuid.uuid4())
    assert len(await post(engine, [first, same_event, same_order_new_event])) == 1
    assert await post(engine, [same_event]) == []
    assert await post(engine, [same_order_new_event]) == []
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (-800, -800)


async def test_two_hundred_concurrent_orders_for_one_hot_seller_keep_the_books_exact(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id = engines["ledger"], f"hot-{unique}"
    amounts = [random.randint(1, 10_000) for _ in range(200)]
    posted = await asyncio.gather(*(post(engine, [order(seller_id, amount)]) for amount in amounts))
    assert sum(len(entries) for entries in posted) == 200
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (-sum(amounts), -sum(amounts))
    receivable, receivable_postings = await balance_and_posting_sum(engine, "psp_receivable")
    assert receivable == receivable_postings
    trial = await LedgerService(engine).trial_balance()
    assert trial.balanced


async def test_concurrent_batches_sharing_orders_and_accounts_neither_deadlock_nor_double_post(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine = engines["ledger"]
    sellers = [f"shared-{unique}-{index}" for index in range(5)]
    orders = [
        order(random.choice(sellers), random.randint(1, 500), currency=random.choice(["USD", "EUR"]))
        for _ in range(300)
    ]
    batches = []
    for _ in range(60):
        picked = random.sample(orders, 25)
        # The same order may come again under another event id in another batch.
        batches.append(
            [
                o if random.random() < 0.5 else SucceededOrder(o.payment_order_id, o.seller_id, o.amount, uuid.uuid4())
                for o in picked
            ]
        )
    posted = await asyncio.gather(*(post(engine, batch) for batch in batches))
    booked = {o.payment_order_id for batch in batches for o in batch}
    assert sum(len(entries) for entries in posted) == len(booked)
    for seller_id in sellers:
        for currency in ("USD", "EUR"):
            expected = -sum(
                o.amount.amount_minor
                for o in orders
                if o.seller_id == seller_id and o.payment_order_id in booked and o.amount.currency == currency
            )
            assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}", currency) == (
                expected,
                expected,
            )
    assert (await LedgerService(engine).trial_balance()).balanced


async def list_all(ledger: LedgerService, token: str, seen: list[PostedEntry]) -> None:
    while token:
        page, token = await ledger.list_entries(page_size=1000, page_token=token, payment_order_id="")
        seen += page


async def test_paging_is_pinned_to_the_snapshot_of_the_first_page(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine = engines["ledger"]
    ledger = LedgerService(engine)
    [before] = await post(engine, [order(f"seller-{unique}", 1)])
    # A transaction still open when the listing starts, holding an entry older than the next one. (It
    # moves money between two accounts of its own: a posting of psp_receivable would wait for it.)
    in_flight = await engine.connect()
    transaction = await in_flight.begin()
    late_id = uuid.uuid4()
    await insert_entry(in_flight, late_id, [(f"seller_payable:a-{unique}", 2), (f"seller_payable:b-{unique}", -2)])
    await in_flight.execute(
        text("INSERT INTO account_balances (account, currency, balance_minor) VALUES (:a, 'USD', 2), (:b, 'USD', -2)"),
        {"a": f"seller_payable:a-{unique}", "b": f"seller_payable:b-{unique}"},
    )
    late_seq = await in_flight.scalar(text("SELECT seq FROM journal_entries WHERE entry_id = :id"), {"id": late_id})
    [committed] = await post(engine, [order(f"seller-{unique}", 3)])
    assert late_seq < committed.seq  # a plain keyset on seq would show it once it commits

    first_page, token = await ledger.list_entries(page_size=1, page_token="", payment_order_id="")
    assert token
    await transaction.commit()
    await in_flight.close()
    [after] = await post(engine, [order(f"seller-{unique}", 4)])  # committed between pages

    listing = list(first_page)
    await list_all(ledger, token, listing)
    ids = [posted.entry.entry_id for posted in listing]
    assert len(ids) == len(set(ids))
    assert [posted.seq for posted in listing] == sorted(posted.seq for posted in listing)
    assert before.entry.entry_id in ids and committed.entry.entry_id in ids
    assert late_id not in ids and after.entry.entry_id not in ids

    fresh_page, fresh_token = await ledger.list_entries(page_size=1, page_token="", payment_order_id="")
    fresh = list(fresh_page)
    await list_all(ledger, fresh_token, fresh)
    fresh_ids = {posted.entry.entry_id for posted in fresh}
    assert {late_id, after.entry.entry_id, before.entry.entry_id} <= fresh_ids
    assert all(posted.entry.postings for posted in fresh)


async def test_listing_by_payment_order(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine = engines["ledger"]
    target = order(f"seller-{unique}", 77)
    await post(engine, [order(f"seller-{unique}", 1), target, order(f"seller-{unique}", 2)])
    page, token = await LedgerService(engine).list_entries(
        page_size=10, page_token="", payment_order_id=str(target.payment_order_id)
    )
    assert token == ""
    [entry] = page
    assert entry.entry.payment_order_id == target.payment_order_id
    assert [p.amount.amount_minor for p in entry.entry.postings] == [77, -77]


async def test_partial_refunds_reverse_the_sale_once_per_refund(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine, seller_id = engines["ledger"], f"seller-{unique}"
    sale = order(seller_id, 1_000)
    await post(engine, [sale])
    first, second = (
        SucceededRefund(uuid.uuid4(), sale.payment_order_id, seller_id, Money(amount, "USD"), uuid.uuid4())
        for amount in (300, 700)
    )
    redelivered = SucceededRefund(first.refund_id, sale.payment_order_id, seller_id, first.amount, uuid.uuid4())
    async with engine.begin() as connection:
        posted = await LedgerService(engine).record_refunds(connection, [first, second, redelivered])
    assert sorted(entry.entry.postings[0].amount.amount_minor for entry in posted) == [300, 700]
    assert {entry.entry.kind for entry in posted} == {"refund_succeeded"}
    # Refunded in full: the seller is owed nothing more for this sale.
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (0, 0)
