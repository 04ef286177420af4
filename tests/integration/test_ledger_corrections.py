"""PSP fees and reversals on real PostgreSQL, through the ledger's admin use cases: idempotent on the
caller's key or on the reversed entry, also when repeats race, and the books still balance."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import InvalidArgument
from services.common.events import PAYOUT_REQUESTED
from services.ledger.adapters import entries_db
from services.ledger.admin_service import LedgerAdmin
from services.ledger.corrections import LedgerEntryIsReversal, LedgerEntryNotFound, PspFeeKeyReused
from services.ledger.domain import PostedEntry
from services.ledger.service import LedgerService
from tests.integration.test_ledger_books import balance_and_posting_sum, order, post
from tests.integration.test_ledger_payouts import handle, payout_event


def admin(engine: AsyncEngine) -> LedgerAdmin:
    return LedgerAdmin(engine, wake_relay=lambda: None)  # no relay runs here: the outbox rows stay


async def fee(engine: AsyncEngine, key: str, amount_minor: int = 35, memo: str = "processing fee") -> PostedEntry:
    return await admin(engine).post_psp_fee(
        amount_minor=amount_minor, currency="USD", psp_reference="ch_1", memo=memo, idempotency_key=key
    )


async def entries_with_cause(engine: AsyncEngine, cause_event_id: uuid.UUID) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM journal_entries WHERE cause_event_id = :cause"), {"cause": cause_event_id}
        )
    return int(count or 0)


async def test_a_psp_fee_is_booked_once_per_idempotency_key(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine = engines["ledger"]
    fees_before, _ = await balance_and_posting_sum(engine, "psp_fees")
    receivable_before, _ = await balance_and_posting_sum(engine, "psp_receivable")

    first = await fee(engine, f"line-{unique}")
    assert first.entry.kind == "psp_fee"
    assert (first.entry.memo, first.entry.psp_reference) == ("processing fee", "ch_1")
    assert [(p.account, p.amount.amount_minor) for p in first.entry.postings] == [
        ("psp_fees", 35),
        ("psp_receivable", -35),
    ]
    repeat = await fee(engine, f"line-{unique}")
    assert repeat == first  # the first entry, as posted

    assert await balance_and_posting_sum(engine, "psp_fees") == (fees_before + 35, fees_before + 35)
    assert await balance_and_posting_sum(engine, "psp_receivable") == (receivable_before - 35, receivable_before - 35)
    assert await entries_with_cause(engine, first.entry.cause_event_id) == 1
    assert (await LedgerService(engine).trial_balance()).balanced


@pytest.mark.parametrize(("amount_minor", "memo"), [(36, "processing fee"), (35, "chargeback fee")])
async def test_a_key_reused_for_another_fee_is_refused(
    engines: dict[str, AsyncEngine], unique: str, amount_minor: int, memo: str
) -> None:
    engine = engines["ledger"]
    first = await fee(engine, f"line-{unique}")
    with pytest.raises(PspFeeKeyReused) as caught:
        await fee(engine, f"line-{unique}", amount_minor, memo)
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_REQUEST"
    assert await entries_with_cause(engine, first.entry.cause_event_id) == 1


async def test_racing_repeats_of_a_fee_book_it_once(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine = engines["ledger"]
    posted = await asyncio.gather(*(fee(engine, f"race-{unique}") for _ in range(20)))
    assert len({entry.entry.entry_id for entry in posted}) == 1
    assert await entries_with_cause(engine, posted[0].entry.cause_event_id) == 1


async def test_an_invalid_fee_posts_nothing(engines: dict[str, AsyncEngine], unique: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await admin(engines["ledger"]).post_psp_fee(
            amount_minor=-1, currency="XYZ", psp_reference="", memo="", idempotency_key=f"bad-{unique}"
        )
    assert {v.field for v in caught.value.violations} == {"amount.amount_minor", "amount.currency", "psp_reference"}


async def test_a_reversal_negates_the_entry_once_and_is_not_reversed_again(
    engines: dict[str, AsyncEngine], unique: str
) -> None:
    engine, seller_id, payout_id = engines["ledger"], f"seller-{unique}", str(uuid.uuid4())
    await post(engine, [order(seller_id, 1_000)])
    await handle(engine, [payout_event(PAYOUT_REQUESTED, payout_id, seller_id, 400)])
    async with engine.connect() as connection:
        entry_id = await connection.scalar(
            text("SELECT entry_id FROM journal_entries WHERE payout_id = :payout_id"), {"payout_id": payout_id}
        )
        requested = await entries_db.entry_by_id(connection, entry_id)
    assert requested is not None and requested.entry.kind == "payout_requested"
    assert await balance_and_posting_sum(engine, f"payouts_in_transit:{seller_id}") == (-400, -400)

    reversal = await admin(engine).reverse_entry(entry_id=str(requested.entry.entry_id), reason="requested twice")
    assert (reversal.entry.kind, reversal.entry.memo) == ("reversal", "requested twice")
    assert reversal.entry.reverses_entry_id == requested.entry.entry_id
    assert reversal.entry.payout_id == requested.entry.payout_id
    assert [(p.account, p.amount.amount_minor) for p in reversal.entry.postings] == [
        (f"seller_payable:{seller_id}", -400),
        (f"payouts_in_transit:{seller_id}", 400),
    ]
    # Back to before the payout: the original stays as it was, the reversal nets it to nothing.
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (-1_000, -1_000)
    assert await balance_and_posting_sum(engine, f"payouts_in_transit:{seller_id}") == (0, 0)

    repeat = await admin(engine).reverse_entry(entry_id=str(requested.entry.entry_id), reason="another reason")
    assert repeat == reversal
    with pytest.raises(LedgerEntryIsReversal):
        await admin(engine).reverse_entry(entry_id=str(reversal.entry.entry_id), reason="undo the undo")
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (-1_000, -1_000)
    assert (await LedgerService(engine).trial_balance()).balanced


async def test_racing_reversals_of_one_entry_post_one(engines: dict[str, AsyncEngine], unique: str) -> None:
    engine, seller_id = engines["ledger"], f"seller-{unique}"
    [sale] = await post(engine, [order(seller_id, 900)])
    reversals = await asyncio.gather(
        *(admin(engine).reverse_entry(entry_id=str(sale.entry.entry_id), reason=f"race {n}") for n in range(20))
    )
    assert len({reversal.entry.entry_id for reversal in reversals}) == 1
    assert reversals[0].entry.payment_order_id == sale.entry.payment_order_id  # listed with its order
    assert await balance_and_posting_sum(engine, f"seller_payable:{seller_id}") == (0, 0)


async def test_an_unknown_entry_is_not_found(engines: dict[str, AsyncEngine]) -> None:
    missing = uuid.uuid4()
    with pytest.raises(LedgerEntryNotFound) as caught:
        await admin(engines["ledger"]).reverse_entry(entry_id=str(missing), reason="typo")
    assert caught.value.reason == "LEDGER_ENTRY_NOT_FOUND"
    assert str(missing) in caught.value.message
