"""The nightly reconciliation's Stripe source on real PostgreSQL against the PSP sandbox's Reporting API:
money moved through the real StripeGateway reconciles without a mismatch from Stripe's own reports, a
discrepancy injected into them is found, and the nightly job reconciles each day once."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from psp_sandbox.app import RunningSandbox
from services.reconciliation.settlement_sources import SettlementNotYetAvailable, SettlementSourceError, StripeReportRun
from services.reconciliation.stripe_report_files import BALANCE_CHANGE, PAYOUTS
from tests.integration.reconciliation_shop import API_KEY, DAY_S, Shop, sandbox_now, sandbox_post, shop_fixtures

DATABASE = "settle_reconciliation_report_source"
PAST_THE_SETTLEMENT_DELAY = timedelta(days=9)


engine, shop = shop_fixtures(DATABASE)


async def _day_over(sandbox: RunningSandbox) -> date:
    """The sandbox's day, once over: its clock moves a day on, as reports only cover what has happened."""
    day = (await sandbox_now(sandbox)).date()
    await sandbox_post(sandbox, "/_sandbox/clock", json={"advance_s": DAY_S})
    return day


def _source(sandbox: RunningSandbox, timeout_s: float = 30.0, api_key: str = API_KEY) -> StripeReportRun:
    return StripeReportRun(api_key, sandbox.url, [BALANCE_CHANGE, PAYOUTS], timeout_s=timeout_s)


async def _reports(source: StripeReportRun, day: date) -> list[bytes]:
    async with contextlib.aclosing(source.files(day)) as files:
        return [file.stream.read() async for file in files]


async def test_a_clean_day_of_stripe_reports_reconciles_without_a_single_mismatch(shop: Shop) -> None:
    first = await shop.charge(1_250)
    await shop.charge(990, "EUR")
    await shop.refund(first, 250)
    await shop.payout(700)
    day = await _day_over(shop.sandbox)

    activity, payouts = await _reports(_source(shop.sandbox), day)
    # Within the settlement delay: other tests' bookings of the day, which no report here settles, are in
    # transit, so any mismatch would be about these reports.
    summary, mismatches = await shop.reconcile(activity, payouts, as_of=datetime.now(UTC), file_format="stripe")

    assert mismatches == []
    assert summary["lines_imported"] == 4 and summary["mismatch_count"] == 0
    assert summary["currencies"]["USD"]["matched_lines"] == 3
    assert summary["currencies"]["EUR"]["matched_lines"] == 1
    assert activity.startswith(b'"balance_transaction_id","created_utc"')
    assert payouts.startswith(b'"payout_id","effective_at_utc",')  # as Stripe names them; the parser reads both


async def test_a_discrepancy_injected_into_the_reports_is_found(shop: Shop) -> None:
    fine = await shop.charge(1_000)
    changed = await shop.charge(2_000)
    dropped = await shop.charge(3_000)
    doubled = await shop.payout(800)
    refund = await shop.refund(fine, 100)
    ref = shop.references
    switches = (
        f"change_amount={ref[changed]}:-50&drop={ref[dropped]}&duplicate={ref[doubled]}"
        "&unknown_charges=1&extra_fee_lines=1"
    )
    await sandbox_post(shop.sandbox, "/_sandbox/reporting/switches", data=switches)
    day = await _day_over(shop.sandbox)

    reports = await _reports(_source(shop.sandbox), day)
    _, mismatches = await shop.reconcile(
        *reports, as_of=datetime.now(UTC) + PAST_THE_SETTLEMENT_DELAY, file_format="stripe"
    )

    # Other tests' bookings of the day are missing from these reports too; only this test's count here.
    ours = {fine, changed, dropped, doubled, refund}
    found = sorted(
        (row.kind, str(row.item_id or ""), row.amount_minor)
        for row in mismatches
        if row.line is not None or str(row.item_id) in ours
    )
    assert found == sorted(
        [
            ("AMOUNT_MISMATCH", changed, 1_950),
            ("MISSING_IN_SETTLEMENT", dropped, 3_000),
            ("MISSING_IN_LEDGER", "", 1_234),  # the charge for a PaymentIntent that never existed
            ("DUPLICATE", "", -800),  # the payout's second row
            ("UNEXPECTED_FEE", "", 500),  # the standalone fee line
        ]
    )


async def test_the_nightly_job_takes_stripes_reports_and_reconciles_a_day_once(shop: Shop) -> None:
    await shop.charge(4_321)
    day = await _day_over(shop.sandbox)
    nightly = shop.nightly(_source(shop.sandbox))

    assert await nightly.reconcile_day(day) is True
    assert await nightly.reconcile_day(day) is False  # already reconciled
    assert await nightly.reconcile_day(day - timedelta(days=30)) is False  # nothing settled that day
    # The day's run covers every file of the day in this module's database, the other tests' included.
    assert (await shop.day_summary(day))["lines_imported"] >= 1


@pytest.mark.parametrize(
    ("setup", "source_options", "why"),
    [
        ({"fail_with": "Data for this interval is not available yet."}, {}, "failed: Data for this interval"),
        ({"run_delay_ms": 5_000}, {"timeout_s": 1.0}, "did not finish in 1 s"),
        ({}, {"api_key": "rk_live_0123456789"}, "Invalid API Key"),
    ],
)
async def test_a_report_that_fails_or_never_finishes_fails_the_fetch_saying_why(
    shop: Shop, setup: dict[str, Any], source_options: dict[str, Any], why: str
) -> None:
    if setup:
        await sandbox_post(shop.sandbox, "/_sandbox/reporting/runs", json=setup)
    day = await _day_over(shop.sandbox)

    with pytest.raises(SettlementSourceError, match=why) as raised:
        await _reports(_source(shop.sandbox, **source_options), day)

    assert "rk_live_0123456789" not in str(raised.value)  # a key is never written out whole


async def test_a_day_not_over_yet_is_left_for_a_later_check_before_any_run_is_made(shop: Shop) -> None:
    today = (await sandbox_now(shop.sandbox)).date()

    # The report types' data_available_end says so before any run is created.
    with pytest.raises(SettlementNotYetAvailable, match=r"has data up to"):
        await _reports(_source(shop.sandbox), today)
