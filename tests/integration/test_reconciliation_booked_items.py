"""Reconciliation's index of what Settle booked: outcomes and ledger entries merged per item, any order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.message import Message
from settle.common.v1.money_pb2 import Money
from settle.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.consumer import EventRejected
from services.common.db import create_engine, service_database_url
from services.common.events import (
    LEDGER_ENTRY_POSTED,
    PAYMENT_ORDER_FAILED,
    PAYMENT_ORDER_REQUESTED,
    PAYMENT_ORDER_SUCCEEDED,
    PAYOUT_PAID,
    PAYOUT_REQUESTED,
    InboundEvent,
)
from services.common.infra import Infrastructure
from services.common.migrations import database_name, upgrade
from services.reconciliation.booked_items import BookedItemsHandler


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    upgrade("reconciliation", infra.database_url)
    created = create_engine(service_database_url(infra.database_url, database_name("reconciliation")))
    yield created
    await created.dispose()


def _event(topic: str, message: Message) -> InboundEvent:
    return InboundEvent(uuid.uuid4(), topic, "key", message, datetime.now(UTC), "", 0, 0)


def _usd(amount_minor: int) -> Money:
    return Money(amount_minor=amount_minor, currency="USD")


def _ledger(kind: str, amount_minor: int, **ids: str) -> InboundEvent:
    return _event(
        LEDGER_ENTRY_POSTED,
        events_pb2.LedgerEntryPosted(
            entry_id=str(uuid.uuid4()),
            kind=kind,
            postings=[
                events_pb2.LedgerPosting(account="psp_receivable", amount=_usd(amount_minor)),
                events_pb2.LedgerPosting(account="seller_payable:s", amount=_usd(-amount_minor)),
            ],
            **ids,
        ),
    )


async def _handle(engine: AsyncEngine, *events: InboundEvent) -> None:
    async with engine.begin() as connection:
        await BookedItemsHandler().handle(connection, events)


async def _item(engine: AsyncEngine, item_id: str) -> Any:
    async with engine.connect() as connection:
        return (
            await connection.execute(
                text(
                    "SELECT kind, status, psp_reference, amount_minor, currency FROM booked_items WHERE item_id = :id"
                ),
                {"id": item_id},
            )
        ).one()


async def test_an_outcome_and_its_ledger_entry_merge_in_either_order(engine: AsyncEngine) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    succeeded = [
        _event(
            PAYMENT_ORDER_SUCCEEDED,
            events_pb2.PaymentOrderSucceeded(payment_order_id=order, amount=_usd(900), psp_reference=f"pi_{order[:6]}"),
        )
        for order in (first, second)
    ]
    await _handle(engine, succeeded[0], _ledger("payment_order_succeeded", 900, payment_order_id=first))
    await _handle(engine, _ledger("payment_order_succeeded", 900, payment_order_id=second))
    await _handle(engine, succeeded[1], succeeded[1])  # a redelivery changes nothing

    for order in (first, second):
        assert tuple(await _item(engine, order)) == ("charge", "booked", f"pi_{order[:6]}", 900, "USD")


async def test_failures_payouts_and_entries_that_book_nothing(engine: AsyncEngine) -> None:
    failed, payout = str(uuid.uuid4()), str(uuid.uuid4())
    await _handle(
        engine,
        _event(
            PAYMENT_ORDER_FAILED,
            events_pb2.PaymentOrderFailed(payment_order_id=failed, amount=_usd(100), failure_code="card_declined"),
        ),
        _event(PAYOUT_PAID, events_pb2.PayoutPaid(payout_id=payout, amount=_usd(700), psp_reference="po_1")),
        _ledger("payout_requested", 700, payout_id=payout),  # not settled by the PSP: ignored
    )

    assert tuple(await _item(engine, failed)) == ("charge", "failed", "", 100, "USD")
    assert tuple(await _item(engine, payout)) == ("payout", "outcome_only", "po_1", -700, "USD")
    with pytest.raises(EventRejected, match="not a UUID"):
        await _handle(engine, _event(PAYOUT_PAID, events_pb2.PayoutPaid(payout_id="x", amount=_usd(1))))


async def test_the_order_joins_the_item_in_any_order_and_never_overrides_an_outcome(engine: AsyncEngine) -> None:
    early, late, unsettled, payout = (str(uuid.uuid4()) for _ in range(4))

    def requested(order: str, amount_minor: int) -> InboundEvent:
        return _event(
            PAYMENT_ORDER_REQUESTED,
            events_pb2.PaymentOrderRequested(payment_order_id=order, amount=_usd(amount_minor)),
        )

    def succeeded(order: str, amount_minor: int) -> InboundEvent:
        return _event(
            PAYMENT_ORDER_SUCCEEDED,
            events_pb2.PaymentOrderSucceeded(
                payment_order_id=order, amount=_usd(amount_minor), psp_reference=f"pi_{order[:6]}"
            ),
        )

    await _handle(engine, requested(early, 500), requested(unsettled, 300))
    await _handle(engine, succeeded(early, 500), _ledger("payment_order_succeeded", 500, payment_order_id=early))
    await _handle(engine, succeeded(late, 800), _ledger("payment_order_succeeded", 800, payment_order_id=late))
    await _handle(engine, requested(late, 750))  # arrives last, asked for less than was charged
    await _handle(engine, _event(PAYOUT_REQUESTED, events_pb2.PayoutRequested(payout_id=payout, amount=_usd(70))))

    async with engine.connect() as connection:
        rows = {
            str(row.item_id): (row.status, row.amount_minor, row.ordered_minor, row.ordered_currency)
            for row in await connection.execute(
                text(
                    "SELECT item_id, status, amount_minor, ordered_minor, ordered_currency FROM booked_items "
                    "WHERE item_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [early, late, unsettled, payout]},
            )
        }
    assert rows[early] == ("booked", 500, 500, "USD")
    assert rows[late] == ("booked", 800, 750, "USD")
    assert rows[unsettled] == ("ordered", 300, 300, "USD")
    assert rows[payout] == ("ordered", -70, -70, "USD")
