"""Wallet balances on real PostgreSQL: races on a hot seller, once-only credits, immutable entries."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.money import Money
from services.wallet.domain import RefundDebit, Sale
from services.wallet.service import WalletService


def sale(seller_id: str, amount_minor: int, order_id: uuid.UUID | None = None, currency: str = "USD") -> Sale:
    return Sale(order_id or uuid.uuid4(), seller_id, Money(amount_minor, currency), uuid.uuid4())


async def record(engine: AsyncEngine, sales: list[Sale]) -> int:
    """One consumer batch: its own transaction, as the consumer runs it. Returns the entries written."""
    async with engine.begin() as connection:
        return len(await WalletService(engine).record_sales(connection, sales))


async def pending_and_entry_sum(engine: AsyncEngine, seller_id: str, currency: str = "USD") -> tuple[int, int]:
    async with engine.connect() as connection:
        pending = await connection.scalar(
            text("SELECT pending_minor FROM balances WHERE seller_id = :s AND currency = :c"),
            {"s": seller_id, "c": currency},
        )
        entries = await connection.scalar(
            text("SELECT coalesce(sum(amount_minor), 0) FROM balance_entries WHERE seller_id = :s AND currency = :c"),
            {"s": seller_id, "c": currency},
        )
    return int(pending or 0), int(entries)


async def test_two_hundred_concurrent_credits_on_one_hot_seller_lose_nothing(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id = engines["wallet"], f"hot-{unique}"
    amounts = [random.randint(1, 10_000) for _ in range(200)]
    written = await asyncio.gather(*(record(engine, [sale(seller_id, amount)]) for amount in amounts))
    assert sum(written) == 200
    assert await pending_and_entry_sum(engine, seller_id) == (sum(amounts), sum(amounts))
    assert await WalletService(engine).find_drift([seller_id]) == []


async def test_concurrent_batches_over_shared_sellers_neither_deadlock_nor_double_credit(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine = engines["wallet"]
    sellers = [f"shared-{unique}-{index}" for index in range(5)]
    orders = [(uuid.uuid4(), random.choice(sellers), random.randint(1, 500)) for _ in range(300)]
    batches = []
    for _ in range(60):
        # Each batch mixes sellers in random order and repeats orders other batches also carry
        # (a redelivery after a rebalance, or the same order under another event id).
        picked = random.sample(orders, 25)
        batches.append([sale(seller, amount, order_id) for order_id, seller, amount in picked])
    written = await asyncio.gather(*(record(engine, batch) for batch in batches))
    credited = {order_id for batch in batches for order_id in (s.payment_order_id for s in batch)}
    assert sum(written) == len(credited)
    expected: dict[str, int] = dict.fromkeys(sellers, 0)
    for order_id, seller, amount in orders:
        if order_id in credited:
            expected[seller] += amount
    for seller in sellers:
        assert await pending_and_entry_sum(engine, seller) == (expected[seller], expected[seller])
    assert await WalletService(engine).find_drift(sellers) == []


async def test_one_batch_aggregates_many_sellers_and_currencies(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine = engines["wallet"]
    sales = [
        sale(f"multi-{unique}-{index % 3}", 100 + index, currency=("USD", "JPY")[index % 2]) for index in range(30)
    ]
    assert await record(engine, sales) == 30
    for index in range(3):
        for currency in ("USD", "JPY"):
            seller_id = f"multi-{unique}-{index}"
            expected = sum(
                s.amount.amount_minor for s in sales if s.seller_id == seller_id and s.amount.currency == currency
            )
            assert await pending_and_entry_sum(engine, seller_id, currency) == (expected, expected)


async def test_the_database_refuses_a_second_sale_entry_for_an_order(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, order_id = engines["wallet"], uuid.uuid4()
    await record(engine, [sale(f"direct-{unique}", 100, order_id)])
    with pytest.raises(IntegrityError, match="balance_entries_one_sale_per_order"):
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO balance_entries (entry_id, seller_id, currency, bucket, amount_minor, kind, "
                    "payment_order_id, event_id) VALUES (:id, :seller, 'USD', 'pending', 100, 'sale', :order, :event)"
                ),
                {"id": uuid.uuid4(), "seller": f"direct-{unique}", "order": order_id, "event": uuid.uuid4()},
            )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE balance_entries SET amount_minor = amount_minor + 1 WHERE seller_id = :seller",
        "UPDATE balance_entries SET kind = 'other' WHERE seller_id = :seller",
        "DELETE FROM balance_entries WHERE seller_id = :seller",
        "TRUNCATE balance_entries",
    ],
)
async def test_balance_entries_are_immutable(engines: dict[str, AsyncEngine], unique: str, statement: str) -> None:
    engine, seller_id = engines["wallet"], f"immutable-{unique}"
    await record(engine, [sale(seller_id, 250)])
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as connection:
            await connection.execute(text(statement), {"seller": seller_id})
    assert await pending_and_entry_sum(engine, seller_id) == (250, 250)


async def list_all(wallet: WalletService, seller_id: str, page_size: int, token: str = "") -> list[uuid.UUID]:
    order_ids: list[uuid.UUID] = []
    while True:
        page, token = await wallet.list_entries(seller_id, page_size=page_size, page_token=token)
        order_ids += [entry.payment_order_id for entry in page if entry.payment_order_id]
        if not token:
            return order_ids


async def test_a_listing_shows_the_entries_as_of_its_first_page(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine, seller_id = engines["wallet"], f"paging-{unique}"
    wallet = WalletService(engine)
    first = [sale(seller_id, 10 + index) for index in range(4)]
    for one in first:
        await record(engine, [one])
    page, token = await wallet.list_entries(seller_id, page_size=2, page_token="")
    assert [entry.payment_order_id for entry in page] == [one.payment_order_id for one in first[:2]]
    late = sale(seller_id, 99)
    await record(engine, [late])  # committed between two pages of the listing

    rest = await list_all(wallet, seller_id, page_size=2, token=token)
    assert rest == [one.payment_order_id for one in first[2:]]
    assert await list_all(wallet, seller_id, page_size=2) == [one.payment_order_id for one in [*first, late]]


async def _debit(engine: AsyncEngine, refunds: list[RefundDebit]) -> int:
    async with engine.begin() as connection:
        return len(await WalletService(engine).record_refunds(connection, refunds))


async def test_a_refund_is_debited_from_available_once_and_a_debt_shows_as_negative(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine = engines["wallet"]
    seller_id = f"refunded-{unique}"
    charged = sale(seller_id, 2_600)
    assert await record(engine, [charged]) == 1
    refund = RefundDebit(uuid.uuid4(), charged.payment_order_id, seller_id, Money(1_000, "USD"), uuid.uuid4())
    assert await _debit(engine, [refund]) == 1
    # The same refund again, under another event id (the executor published it twice): nothing more.
    again = RefundDebit(refund.refund_id, refund.payment_order_id, seller_id, refund.amount, uuid.uuid4())
    assert await _debit(engine, [again]) == 0
    balance = await WalletService(engine).get_balance(seller_id, "USD")
    # The sale is still pending, so the refund is a debt against future payouts until it is released.
    assert (balance.pending_minor, balance.available_minor, balance.reserved_minor) == (2_600, -1_000, 0)
    async with engine.connect() as connection:
        sums = dict(
            (
                await connection.execute(
                    text("SELECT bucket, sum(amount_minor) FROM balance_entries WHERE seller_id = :s GROUP BY bucket"),
                    {"s": seller_id},
                )
            ).all()
        )
    assert sums == {"pending": 2_600, "available": -1_000}  # every bucket is the sum of its entries
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO balance_entries (entry_id, seller_id, currency, bucket, amount_minor, kind, "
                    "payment_order_id, refund_id, event_id) VALUES (:id, :s, 'USD', 'pending', -1, 'refund', "
                    ":order, :refund, :event)"
                ),
                {"id": uuid.uuid4(), "s": seller_id, "order": charged.payment_order_id, "refund": uuid.uuid4(),
                 "event": uuid.uuid4()},
            )  # fmt: skip


async def test_a_sale_is_released_to_available_once_after_its_hold_and_covers_a_refund_debt(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id = engines["wallet"], f"released-{unique}"
    wallet = WalletService(engine)
    charged = sale(seller_id, 2_600)
    assert await record(engine, [charged]) == 1
    await _debit(
        engine, [RefundDebit(uuid.uuid4(), charged.payment_order_id, seller_id, Money(1_000, "USD"), uuid.uuid4())]
    )
    await wallet.release_due(delay_s=3_600, limit=100_000)  # held for an hour: nothing of this seller moves
    assert (await wallet.get_balance(seller_id, "USD")).pending_minor == 2_600

    released = [e for e in await wallet.release_due(delay_s=0, limit=100_000) if e.seller_id == seller_id]
    assert sorted((e.bucket.value, e.amount.amount_minor, e.kind) for e in released) == [
        ("available", 2_600, "release"),
        ("pending", -2_600, "release"),
    ]
    again = await wallet.release_due(delay_s=0, limit=100_000)
    assert [e for e in again if e.seller_id == seller_id] == []  # once per order
    balance = await wallet.get_balance(seller_id, "USD")
    assert (balance.pending_minor, balance.available_minor) == (0, 1_600)  # the refund debt is covered
    assert await wallet.find_drift([seller_id]) == []
