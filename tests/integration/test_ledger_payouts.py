"""Payout entries on real PostgreSQL, through the ledger's `outcomes` handler (no broker: the events are
built as the consumer decodes them): each step moves the payout between the seller's accounts and the
PSP, once per payout step whatever event id carries it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money as MoneyMessage
from settle.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.consumer import EventRejected
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    InboundEvent,
)
from services.ledger.entrypoints.consumer import TOPICS, OutcomesHandler
from services.ledger.service import LedgerService
from tests.integration.test_ledger_books import balance_and_posting_sum, order, post


def payout_event(topic: str, payout_id: str, seller_id: str, amount_minor: int) -> InboundEvent:
    """A `payout.*` event as the consumer decodes it, under a new event id."""
    amount = MoneyMessage(amount_minor=amount_minor, currency="USD")
    common = {"payout_id": payout_id, "seller_id": seller_id, "amount": amount, "destination": "ba_test"}
    message: Message
    if topic == PAYOUT_REQUESTED:
        message = events_pb2.PayoutRequested(**common)
    elif topic == PAYOUT_PAID:
        message = events_pb2.PayoutPaid(**common, psp_reference=f"po_{payout_id[:8]}")
    else:
        message = events_pb2.PayoutFailed(**common, failure_code="account_closed", failure_message="closed")
    return InboundEvent(uuid.uuid4(), topic, payout_id, message, datetime.now(UTC), "", 0, 0)


async def handle(engine: AsyncEngine, events: Sequence[InboundEvent]) -> None:
    """One consumer batch: its own transaction, as the consumer runs it."""
    async with engine.begin() as connection:
        await OutcomesHandler(LedgerService(engine)).handle(connection, events)


async def payout_entries(engine: AsyncEngine, payout_id: str) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """(kind, psp_reference, postings) of the payout's entries, in journal order."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT e.kind, e.psp_reference, "
                    "array_agg(p.account ORDER BY p.position) AS accounts, "
                    "array_agg(p.amount_minor ORDER BY p.position) AS amounts "
                    "FROM journal_entries AS e JOIN postings AS p USING (entry_id) "
                    "WHERE e.payout_id = :payout_id GROUP BY e.seq, e.kind, e.psp_reference ORDER BY e.seq"
                ),
                {"payout_id": payout_id},
            )
        ).all()
    return [(row.kind, row.psp_reference, list(zip(row.accounts, row.amounts, strict=True))) for row in rows]


async def announcements(engine: AsyncEngine, key: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE topic = :topic AND message_key = :key"),
            {"topic": LEDGER_ENTRY_POSTED, "key": key.encode()},
        )
    return int(count or 0)


async def accounts_of(engine: AsyncEngine, seller_id: str) -> tuple[int, int]:
    """(seller_payable, payouts_in_transit) balances, each checked against the sum of its postings."""
    payable, payable_postings = await balance_and_posting_sum(engine, f"seller_payable:{seller_id}")
    in_transit, in_transit_postings = await balance_and_posting_sum(engine, f"payouts_in_transit:{seller_id}")
    assert (payable, in_transit) == (payable_postings, in_transit_postings)
    return payable, in_transit


def test_the_consumer_reads_the_payout_topics() -> None:
    assert {PAYOUT_REQUESTED, PAYOUT_PAID, PAYOUT_FAILED} <= set(TOPICS)


async def test_a_paid_payout_moves_the_sellers_money_through_transit_to_the_psp(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id, payout_id = engines["ledger"], f"seller-{unique}", str(uuid.uuid4())
    await post(engine, [order(seller_id, 10_000)])
    receivable_before, _ = await balance_and_posting_sum(engine, "psp_receivable")

    await handle(engine, [payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 6_000)])
    # Reserved: the seller is owed the same in total, but 6,000 of it is on its way.
    assert await accounts_of(engine, seller_id) == (-4_000, -6_000)

    await handle(engine, [payout_event(PAYOUT_PAID, payout_id, seller_id, 6_000)])
    assert await accounts_of(engine, seller_id) == (-4_000, 0)
    receivable_after, _ = await balance_and_posting_sum(engine, "psp_receivable")
    assert receivable_after - receivable_before == -6_000

    payable, in_transit = f"seller_payable:{seller_id}", f"payouts_in_transit:{seller_id}"
    assert await payout_entries(engine, payout_id) == [
        ("payout_requested", "", [(payable, 6_000), (in_transit, -6_000)]),
        ("payout_paid", f"po_{payout_id[:8]}", [(in_transit, 6_000), ("psp_receivable", -6_000)]),
    ]
    assert await announcements(engine, payout_id) == 2  # keyed by the payout: its steps stay in order
    assert (await LedgerService(engine).trial_balance()).balanced


async def test_a_failed_payout_gives_the_seller_back_what_was_reserved(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id, payout_id = engines["ledger"], f"seller-{unique}", str(uuid.uuid4())
    await post(engine, [order(seller_id, 5_000)])
    receivable_before, _ = await balance_and_posting_sum(engine, "psp_receivable")
    # Both steps in one batch, as the consumer may well get them, the outcome under the lower event id:
    # the journal still has the request first.
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    requested = dataclasses.replace(payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 5_000), event_id=high)
    failed = dataclasses.replace(payout_event(PAYOUT_FAILED, payout_id, seller_id, 5_000), event_id=low)
    await handle(engine, [failed, requested])
    assert await accounts_of(engine, seller_id) == (-5_000, 0)
    assert await balance_and_posting_sum(engine, "psp_receivable") == (receivable_before, receivable_before)
    assert [kind for kind, _, _ in await payout_entries(engine, payout_id)] == ["payout_requested", "payout_failed"]
    assert (await LedgerService(engine).trial_balance()).balanced


async def test_each_step_is_booked_once_per_payout_whatever_event_id_carries_it(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id, payout_id = engines["ledger"], f"seller-{unique}", str(uuid.uuid4())
    requested = payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 700)
    await handle(engine, [requested, payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 700)])
    await handle(engine, [payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 700)])  # replayed, new event id
    await handle(engine, [payout_event(PAYOUT_PAID, payout_id, seller_id, 700)])
    await handle(engine, [payout_event(PAYOUT_PAID, payout_id, seller_id, 700)])  # replayed, new event id
    entries = await payout_entries(engine, payout_id)
    assert [kind for kind, _, _ in entries] == ["payout_requested", "payout_paid"]
    assert await accounts_of(engine, seller_id) == (700, 0)  # paid out before any sale: a debt, booked once
    assert await announcements(engine, payout_id) == 2


async def test_racing_replays_of_one_payout_step_book_it_once(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine, seller_id, payout_id = engines["ledger"], f"seller-{unique}", str(uuid.uuid4())
    batches = [[payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 250)] for _ in range(20)]
    await asyncio.gather(*(handle(engine, batch) for batch in batches))
    assert len(await payout_entries(engine, payout_id)) == 1
    assert await accounts_of(engine, seller_id) == (250, -250)


async def test_an_invalid_payout_event_is_rejected_for_the_dlq(engines: dict[str, AsyncEngine], unique: str) -> None:
    payout_id = str(uuid.uuid4())
    bad = payout_event(PAYOUT_REQUESTED, payout_id, f"seller-{unique}", 0)
    with pytest.raises(EventRejected, match=r"amount\.amount_minor"):
        await handle(engines["ledger"], [bad])
    assert await payout_entries(engines["ledger"], payout_id) == []


@pytest.mark.parametrize(
    ("kind", "memo", "reverses_sale", "constraint"),
    [
        ("payout_paid", "", False, "journal_entries_payout_has_id"),
        ("psp_fee", "", False, "journal_entries_fee_has_reference"),
        ("reversal", "why", False, "journal_entries_reversal_has_entry_and_reason"),
        ("reversal", "", True, "journal_entries_reversal_has_entry_and_reason"),
        ("payment_order_succeeded", "", True, "journal_entries_reversal_has_entry_and_reason"),
    ],
)
async def test_the_database_refuses_an_entry_without_what_its_kind_needs(
    engines: dict[str, AsyncEngine], unique: str, kind: str, memo: str, reverses_sale: bool, constraint: str
) -> None:
    [sale] = await post(engines["ledger"], [order(f"seller-{unique}", 100)])
    with pytest.raises(DBAPIError, match=constraint):
        async with engines["ledger"].begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO journal_entries (entry_id, kind, cause_event_id, memo, reverses_entry_id) "
                    "VALUES (:id, :kind, :cause, :memo, :reversed)"
                ),
                {
                    "id": uuid.uuid4(),
                    "kind": kind,
                    "cause": uuid.uuid4(),
                    "memo": memo,
                    "reversed": sale.entry.entry_id if reverses_sale else None,
                },
            )


async def test_the_database_refuses_an_account_outside_the_chart(engines: dict[str, AsyncEngine]) -> None:
    with pytest.raises(DBAPIError, match="postings_account_check"):
        async with engines["ledger"].begin() as connection:
            entry_id = uuid.uuid4()
            await connection.execute(
                text("INSERT INTO journal_entries (entry_id, kind, cause_event_id) VALUES (:id, 'manual_test', :c)"),
                {"id": entry_id, "c": uuid.uuid4()},
            )
            await connection.execute(
                text(
                    "INSERT INTO postings VALUES (:id, 0, 'payouts_in_transit:a', 'USD', 1), "
                    "(:id, 1, 'payouts_in_transit', 'USD', -1)"
                ),
                {"id": entry_id},
            )
