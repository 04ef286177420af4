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
    PAYMENT_ORDER_SUCCEEDED,
    PAYOUT_PAID,
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
