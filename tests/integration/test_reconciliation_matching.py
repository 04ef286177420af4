"""Reconciliation on real PostgreSQL against the PSP sandbox's own settlement file: every discrepancy the
sandbox can inject is found and classified, and a clean day has no mismatch at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.reconciliation.settlement_sources import SandboxDailyFile
from tests.integration.reconciliation_shop import Shop, sandbox_today, shop_fixtures

DATABASE = "settle_reconciliation_matching"


engine, shop = shop_fixtures(DATABASE)


async def test_a_clean_day_reconciles_without_a_single_mismatch(shop: Shop) -> None:
    first = await shop.charge(1_250)
    await shop.charge(990, "EUR")
    await shop.refund(first, 250)
    await shop.payout(700)

    summary, mismatches = await shop.reconcile(
        await shop.settlement_file(), as_of=datetime.now(UTC) + timedelta(days=9)
    )

    assert mismatches == []
    assert summary["lines_imported"] == 4 and summary["mismatch_count"] == 0
    assert summary["currencies"]["USD"]["matched_lines"] == 3


async def test_every_injected_discrepancy_is_found_and_classified(shop: Shop) -> None:
    fine = await shop.charge(1_000)
    changed = await shop.charge(2_000)
    other_currency = await shop.charge(3_000)
    doubled = await shop.charge(4_000)
    dropped = await shop.charge(5_000)
    failed_here = await shop.charge(6_000, outcome="failed")
    never_booked = await shop.charge(7_000, outcome="outcome_only")
    late = await shop.payout(800)
    await shop.refund(fine, 100)
    ref = shop.references
    content = await shop.settlement_file(
        change_amount=f"{ref[changed]}:-50",
        change_currency=f"{ref[other_currency]}:EUR",
        duplicate=ref[doubled],
        drop=ref[dropped],
        unknown_charges="1",
        extra_fee_lines="1",
        settle_late=ref[late],
    )

    # Nine days on, past the settlement delay: what is still not settled is missing, not in transit.
    summary, mismatches = await shop.reconcile(content, as_of=datetime.now(UTC) + timedelta(days=9))

    by_kind: dict[str, list[Any]] = {}
    for row in mismatches:
        by_kind.setdefault(row.kind, []).append(row)
    assert sorted(by_kind) == [
        "AMOUNT_MISMATCH",
        "CURRENCY_MISMATCH",
        "DUPLICATE",
        "MISSING_IN_LEDGER",
        "MISSING_IN_SETTLEMENT",
        "STATUS_MISMATCH",
        "UNEXPECTED_FEE",
    ]
    assert [(str(r.item_id), r.amount_minor, r.expected_minor) for r in by_kind["AMOUNT_MISMATCH"]] == [
        (changed, 1_950, 2_000)
    ]
    assert [(str(r.item_id), r.currency) for r in by_kind["CURRENCY_MISMATCH"]] == [(other_currency, "EUR")]
    assert len(by_kind["DUPLICATE"]) == 1 and by_kind["DUPLICATE"][0].amount_minor == 4_000
    # The unknown charge (no item) and the charge only the executor recorded (the ledger never did).
    assert {(str(r.item_id or ""), r.amount_minor) for r in by_kind["MISSING_IN_LEDGER"]} == {
        ("", 1_234),
        (never_booked, 7_000),
    }
    # The dropped charge, and the payout the PSP settles a day late (its file is not imported yet).
    assert {str(r.item_id) for r in by_kind["MISSING_IN_SETTLEMENT"]} == {dropped, late}
    assert [str(r.item_id) for r in by_kind["STATUS_MISMATCH"]] == [failed_here]
    assert [r.amount_minor for r in by_kind["UNEXPECTED_FEE"]] == [500]
    assert summary["mismatch_count"] == len(mismatches)
    report = shop.last_report
    assert report is not None
    csv_lines = report.mismatches_csv.splitlines()
    assert csv_lines[0].startswith("kind,severity,currency,amount_minor,amount")
    assert len(csv_lines) == 1 + len(mismatches)
    assert csv_lines[1].startswith("MISSING_IN_LEDGER,critical") or csv_lines[1].startswith("STATUS_MISMATCH,critical")
    assert "<svg" in report.html and "AMOUNT_MISMATCH" in report.html

    # The next day's file brings the late payout: it matches; only the dropped charge is still missing.
    tomorrow = await shop.settlement_file(days_later=1, settle_late=ref[late])
    _, next_day = await shop.reconcile(tomorrow, as_of=datetime.now(UTC) + timedelta(days=9))
    assert [(r.kind, str(r.item_id)) for r in next_day] == [("MISSING_IN_SETTLEMENT", dropped)]


async def test_a_run_repeats_identically_and_a_young_booking_is_in_transit(shop: Shop) -> None:
    kept = await shop.charge(1_500)
    dropped = await shop.charge(2_500)
    content = await shop.settlement_file(drop=shop.references[dropped])

    summary, mismatches = await shop.reconcile(content, as_of=datetime.now(UTC))
    first_report = shop.last_report
    again, repeated = await shop.reconcile(content, as_of=datetime.now(UTC) + timedelta(days=30))

    assert mismatches == [] and kept  # within the settlement delay: in transit, not missing
    assert (again, repeated) == (summary, mismatches)
    assert shop.last_report == first_report  # byte-identical reports


async def test_the_nightly_job_reconciles_a_day_once(shop: Shop) -> None:
    await shop.charge(4_321)
    day = await sandbox_today(shop.sandbox)
    nightly = shop.nightly(SandboxDailyFile(shop.sandbox.url))

    assert await nightly.reconcile_day(day) is True
    assert await nightly.reconcile_day(day) is False  # already reconciled
    assert await nightly.reconcile_day(day + timedelta(days=30)) is False  # nothing settled that day
    # The day's run covers every file of the day in this module's database, the other tests' included.
    assert (await shop.day_summary(day))["lines_imported"] >= 1


async def test_three_way_the_order_the_outcome_the_ledger_and_the_settlement(shop: Shop) -> None:
    agreed = await shop.charge(1_100)
    overcharged = await shop.charge(2_600, ordered=2_500)  # executor and ledger agree with the PSP, not the order
    lost_outcome = await shop.charge(3_300, outcome="ordered")

    summary, mismatches = await shop.reconcile(
        await shop.settlement_file(), as_of=datetime.now(UTC) + timedelta(days=9)
    )

    # Earlier tests of this module left bookings of the same day that no file settles; only ours count here.
    ours = {agreed, overcharged, lost_outcome}
    found = {(row.kind, str(row.item_id)): row for row in mismatches if str(row.item_id) in ours}
    assert sorted(found) == sorted([("AMOUNT_MISMATCH", overcharged), ("MISSING_IN_LEDGER", lost_outcome)])
    assert "ordered 2500" in found["AMOUNT_MISMATCH", overcharged].description
    assert "recorded no outcome" in found["MISSING_IN_LEDGER", lost_outcome].description
    assert summary["lines_imported"] == 3 and not [row for row in mismatches if row.line and row.item_id is None]


def _bank_statement(day: str, entries: list[tuple[int, str, list[str]]]) -> bytes:
    """A minified camt.053.001.08 statement of GBP debits, one Ntry per (signed amount, NbOfTxs, EndToEndIds)."""
    ntries = []
    for number, (amount_minor, count, references) in enumerate(entries, start=1):
        details = "".join(f"<TxDtls><Refs><EndToEndId>{ref}</EndToEndId></Refs></TxDtls>" for ref in references)
        ntries.append(
            f"<Ntry><NtryRef>{number}</NtryRef><Amt Ccy='GBP'>{-amount_minor / 100:.2f}</Amt>"
            f"<CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
            f"<AcctSvcrRef>BANK-{day}-{number}</AcctSvcrRef>"
            f"<NtryDtls><Btch><NbOfTxs>{count}</NbOfTxs></Btch>{details}</NtryDtls></Ntry>"
        )
    opening = -sum(amount for amount, _, _ in entries)  # what the debits take the account down to zero from
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.08'><BkToCstmrStmt>"
        f"<GrpHdr><MsgId>M-{day}</MsgId><CreDtTm>{day}T23:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>S-{day}</Id><Acct><Id><IBAN>GB33BUKB20201555555555</IBAN></Id><Ccy>GBP</Ccy></Acct>"
        f"<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy='GBP'>{opening / 100:.2f}</Amt>"
        f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
        "<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy='GBP'>0.00</Amt>"
        f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
        + "".join(ntries)
        + "</Stmt></BkToCstmrStmt></Document>"
    ).encode()


async def test_one_bank_entry_for_many_payouts_by_reference_or_by_count_and_sum(shop: Shop) -> None:
    # GBP: no other test of this module pays out in it, so the day's open payouts are only these.
    named = [await shop.payout(amount, "GBP") for amount in (500, 700)]
    counted = [await shop.payout(amount, "GBP") for amount in (900, 1_100)]
    short = await shop.payout(400, "GBP")
    unknown = str(uuid.uuid4())
    day = datetime.now(UTC).date().isoformat()
    statement = _bank_statement(
        day,
        [
            (-1_200, 2, named),  # names both payouts (TxDtls), pays both: matched
            (-2_000, 2, []),  # names none, two transactions adding up: the day's two other open payouts
            (-450, 2, [short, unknown]),  # one payout Settle never made, and a total that does not add up
        ],
    )

    summary, mismatches = await shop.reconcile(
        statement, as_of=datetime.now(UTC) + timedelta(days=9), file_format="camt053"
    )

    assert summary["balance_checks"][0]["balanced"] is True, summary
    # Past the settlement delay: a payout no entry took would be MISSING_IN_SETTLEMENT.
    mine = {*named, *counted, short}
    about_mine = [row for row in mismatches if row.line is not None or str(row.item_id) in mine]
    assert sorted((row.kind, row.line is not None) for row in about_mine) == [
        ("AMOUNT_MISMATCH", True),
        ("MISSING_IN_LEDGER", True),
    ]
    by_kind = {row.kind: row for row in about_mine}
    assert unknown in by_kind["MISSING_IN_LEDGER"].description
    assert (by_kind["AMOUNT_MISMATCH"].amount_minor, by_kind["AMOUNT_MISMATCH"].expected_minor) == (-450, -400)
