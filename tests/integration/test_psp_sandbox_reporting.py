"""The sandbox's Reporting API through the official stripe SDK: a run is pending, then succeeded with a file
that itemizes the day as Stripe's report would; columns and time zone as asked; Stripe's errors for bad
parameters; file contents only with the API key; the discrepancy switches in reports."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
import stripe

from psp_sandbox.app import RunningSandbox
from tests.integration.reconciliation_shop import sandbox_now

API_KEY = "sk_test_reporting"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DAY_S = 86_400
BALANCE_CHANGE = "balance_change_from_activity.itemized.3"
PAYOUTS = "payouts.itemized.3"


@dataclass(frozen=True)
class Day:
    """What the test did on one sandbox day, which is over (the clock moved a day on) so reports cover it."""

    start_s: int
    end_s: int
    charge_usd: Any  # PaymentIntent of 1250 USD, order-1, 250 refunded
    charge_eur: Any  # PaymentIntent of 990 EUR, order-2
    refund: Any  # Refund of 250 USD, refund-1
    payout: Any  # Payout of 700 USD, payout-1

    def interval(self) -> dict[str, int]:
        return {"interval_start": self.start_s, "interval_end": self.end_s}


@pytest_asyncio.fixture
async def sdk(sandbox: RunningSandbox) -> AsyncIterator[stripe.StripeClient]:
    async with aiohttp.ClientSession() as session:
        yield stripe.StripeClient(
            API_KEY,
            base_addresses={"api": sandbox.url},
            http_client=stripe.AIOHTTPClient(session=session),
            max_network_retries=0,
        )


async def _admin(sandbox: RunningSandbox, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, f"{sandbox.url}{path}", **kwargs) as response:
        return response.status, await response.json()


@pytest_asyncio.fixture
async def day(sdk: stripe.StripeClient, sandbox: RunningSandbox) -> Day:
    now_s = int((await sandbox_now(sandbox)).timestamp())
    if now_s % DAY_S > DAY_S - 300:  # everything on one sandbox day: step past midnight rather than straddle it
        await _admin(sandbox, "POST", "/_sandbox/clock", json={"advance_s": 600})
        now_s += 600
    intents = sdk.v1.payment_intents
    charge_usd = await intents.create_async(params=_charge(1250, "usd", "order-1"))
    charge_eur = await intents.create_async(params=_charge(990, "eur", "order-2"))
    refund = await sdk.v1.refunds.create_async(
        params={"payment_intent": charge_usd.id, "amount": 250, "metadata": {"refund_id": "refund-1"}}
    )
    payout = await sdk.v1.payouts.create_async(
        params={
            "amount": 700,
            "currency": "usd",
            "destination": "ba_test_success",
            "metadata": {"payout_id": "payout-1"},
        }
    )
    await _admin(sandbox, "POST", "/_sandbox/clock", json={"advance_s": DAY_S})
    start_s = now_s - now_s % DAY_S
    return Day(start_s, start_s + DAY_S, charge_usd, charge_eur, refund, payout)


def _charge(amount: int, currency: str, order_id: str) -> Any:
    return {
        "amount": amount,
        "currency": currency,
        "payment_method": "pm_card_visa",
        "confirm": True,
        "metadata": {"payment_order_id": order_id},
        "description": f"Order {order_id}",
    }


async def _finished(sdk: stripe.StripeClient, run: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while run.status == "pending":
        assert time.monotonic() < deadline, f"report run {run.id} still pending"
        await asyncio.sleep(0.1)
        run = await sdk.v1.reporting.report_runs.retrieve_async(run.id)
    return run


async def _report(sdk: stripe.StripeClient, report_type: str, parameters: dict[str, Any]) -> list[list[str]]:
    """Runs the report to its end; its rows, header first."""
    run = await sdk.v1.reporting.report_runs.create_async(params={"report_type": report_type, "parameters": parameters})
    run = await _finished(sdk, run)
    assert run.status == "succeeded", run
    return list(csv.reader(io.StringIO((await _download(run.result.url, AUTH))[1].decode())))


async def _download(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.read()


async def test_a_run_is_pending_then_succeeds_with_a_file_that_itemizes_the_days_activity(
    sdk: stripe.StripeClient, sandbox: RunningSandbox, day: Day
) -> None:
    await _admin(sandbox, "POST", "/_sandbox/reporting/runs", json={"run_delay_ms": 1500})

    created = await sdk.v1.reporting.report_runs.create_async(
        params={"report_type": BALANCE_CHANGE, "parameters": day.interval()}
    )
    again = await sdk.v1.reporting.report_runs.retrieve_async(created.id)
    run = await _finished(sdk, again)
    file = run.result
    status, content = await _download(file.url, AUTH)
    retrieved = await sdk.v1.files.retrieve_async(file.id)

    assert created.object == "reporting.report_run" and created.id.startswith("frr_")
    assert (created.status, created.result, again.status) == ("pending", None, "pending")
    assert created.parameters.interval_start == day.start_s and created.report_type == BALANCE_CHANGE
    assert run.status == "succeeded" and run.succeeded_at >= run.created and run.error is None
    assert (file.object, file.purpose, file.type) == ("file", "finance_report_run", "csv")
    assert file.url == f"{sandbox.url}/v1/files/{file.id}/contents"
    assert status == 200 and file.size == len(content) == retrieved.size
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert list(rows[0]) == [
        *("balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on", "currency"),
        *("gross", "fee", "net", "reporting_category", "description"),
    ]
    # Charges and refunds, not the payout (Stripe's payouts report has it); amounts in major units.
    # Made in the same second, the two charges come in the order of their ids; the refund after them.
    assert sorted((r["reporting_category"], r["currency"], r["gross"], r["fee"], r["net"]) for r in rows) == [
        ("charge", "eur", "9.9", "0", "9.9"),
        ("charge", "usd", "12.5", "0", "12.5"),
        ("refund", "usd", "-2.5", "0", "-2.5"),
    ]
    refund, charge = rows[2], next(r for r in rows if r["currency"] == "usd")
    assert refund["balance_transaction_id"] == day.refund.balance_transaction
    assert charge["description"] == "Order order-1" and charge["created"] == charge["created_utc"]


async def test_the_payouts_report_itemizes_the_days_payouts(sdk: stripe.StripeClient, day: Day) -> None:
    header, *rows = await _report(sdk, PAYOUTS, day.interval())
    payouts = [dict(zip(header, row, strict=True)) for row in rows]

    assert header[:2] == ["payout_id", "effective_at_utc"]
    assert [(p["payout_id"], p["reporting_category"], p["currency"], p["gross"], p["net"]) for p in payouts] == [
        (day.payout.id, "payout", "usd", "-7", "-7")
    ]
    assert payouts[0]["balance_transaction_id"] == day.payout.balance_transaction
    assert payouts[0]["payout_status"] == "paid"


async def test_columns_come_as_asked_in_that_order_and_local_times_in_the_timezone(
    sdk: stripe.StripeClient, day: Day
) -> None:
    columns = [
        *("source_id", "reporting_category", "gross", "payment_metadata[payment_order_id]"),
        *("refund_metadata[refund_id]", "payment_intent_id", "created", "created_utc"),
    ]
    parameters = {**day.interval(), "columns": columns, "timezone": "America/New_York"}

    header, *rows = await _report(sdk, BALANCE_CHANGE, parameters)

    assert header == columns
    assert sorted(row[:6] for row in rows) == sorted(
        [
            [day.charge_usd.latest_charge, "charge", "12.5", "order-1", "", day.charge_usd.id],
            [day.charge_eur.latest_charge, "charge", "9.9", "order-2", "", day.charge_eur.id],
            # A refund's row carries the refunded payment's metadata and intent too, as on Stripe.
            [day.refund.id, "refund", "-2.5", "order-1", "refund-1", day.charge_usd.id],
        ]
    )
    created_utc = datetime.fromisoformat(rows[0][7] + "+00:00")
    assert rows[0][6] == created_utc.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%d %H:%M:%S")


def _run(**parameters: Any) -> Callable[[int], dict[str, Any]]:
    """A create request for the day before `now_s`, its parameters changed: None leaves one out, and a
    callable gets `now_s`."""

    def request(now_s: int) -> dict[str, Any]:
        merged = {"interval_start": now_s - DAY_S, "interval_end": now_s, **parameters}
        resolved = {k: v(now_s) if callable(v) else v for k, v in merged.items() if v is not None}
        return {"report_type": BALANCE_CHANGE, "parameters": resolved}

    return request


@pytest.mark.parametrize(
    ("build", "param", "code"),
    [
        (lambda now_s: {**_run()(now_s), "report_type": "payout_reconciliation.itemized.5"}, "report_type", None),
        (lambda now_s: {"parameters": _run()(now_s)["parameters"]}, "report_type", "parameter_missing"),
        (lambda now_s: {**_run()(now_s), "surprise": "1"}, "surprise", "parameter_unknown"),
        (_run(interval_start=None), "parameters[interval_start]", "parameter_missing"),
        (_run(interval_start="yesterday"), "parameters[interval_start]", "parameter_invalid_integer"),
        (_run(interval_start=lambda now_s: now_s), "parameters[interval_start]", None),  # not before the end
        (_run(interval_end=lambda now_s: now_s + 3600), "parameters[interval_end]", None),  # not over yet
        (_run(columns=["gross", "nonsense"]), "parameters[columns]", None),
        (_run(columns=["payout_id"]), "parameters[columns]", None),  # the payouts report's
        (_run(columns=["gross", "gross"]), "parameters[columns]", None),
        (_run(timezone="Mars/Olympus_Mons"), "parameters[timezone]", None),
        (_run(currency="usd"), "parameters[currency]", "parameter_unknown"),  # a filter the sandbox lacks
    ],
)
async def test_invalid_runs_are_refused_with_stripes_error_naming_the_parameter(
    sdk: stripe.StripeClient,
    sandbox: RunningSandbox,
    build: Callable[[int], dict[str, Any]],
    param: str,
    code: str | None,
) -> None:
    request = build(int((await sandbox_now(sandbox)).timestamp()))

    with pytest.raises(stripe.InvalidRequestError) as raised:
        await sdk.v1.reporting.report_runs.create_async(params=request)  # type: ignore[arg-type]

    error = raised.value
    assert error.http_status == 400 and error.param == param and error.code == code
    assert error.json_body is not None and error.json_body["error"]["type"] == "invalid_request_error"


async def test_unknown_runs_and_files_are_not_found(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as run:
        await sdk.v1.reporting.report_runs.retrieve_async("frr_missing")
    with pytest.raises(stripe.InvalidRequestError) as file:
        await sdk.v1.files.retrieve_async("file_missing")

    assert (run.value.http_status, run.value.code) == (404, "resource_missing")
    assert (file.value.http_status, file.value.code) == (404, "resource_missing")


async def test_file_contents_are_served_only_with_the_api_key(
    sdk: stripe.StripeClient, sandbox: RunningSandbox, day: Day
) -> None:
    run = await sdk.v1.reporting.report_runs.create_async(params={"report_type": PAYOUTS, "parameters": day.interval()})
    url = (await _finished(sdk, run)).result.url

    anonymous, anonymous_body = await _download(url, {})
    publishable, _ = await _download(url, {"Authorization": "Bearer pk_test_notasecretkey"})
    as_user, _ = await _download(url, {"Authorization": "Basic " + _basic(API_KEY)})  # curl -u sk_test_...:
    missing, _ = await _download(f"{sandbox.url}/v1/files/file_missing/contents", AUTH)

    assert (anonymous, publishable, as_user, missing) == (401, 401, 200, 404)
    assert b"authentication_error" in anonymous_body


def _basic(user: str) -> str:
    return base64.b64encode(f"{user}:".encode()).decode()


async def test_switches_put_discrepancies_into_reports_until_cleared(
    sdk: stripe.StripeClient, sandbox: RunningSandbox, day: Day
) -> None:
    switches = (
        f"drop={day.charge_eur.id}&change_amount={day.charge_usd.id}:-50&duplicate={day.refund.id}"
        "&unknown_charges=1&fees=1"
    )
    status, settings = await _admin(sandbox, "POST", "/_sandbox/reporting/switches", data=switches)
    truncated, refused = await _admin(sandbox, "POST", "/_sandbox/reporting/switches", data="truncate=1")
    _, unchanged = await _admin(sandbox, "GET", "/_sandbox/reporting")
    columns = ["payment_intent_id", "reporting_category", "currency", "gross", "fee", "net"]

    _, *rows = await _report(sdk, BALANCE_CHANGE, {**day.interval(), "columns": columns})
    await _admin(sandbox, "DELETE", "/_sandbox/reporting/switches")
    _, *clean = await _report(sdk, BALANCE_CHANGE, {**day.interval(), "columns": columns})

    assert status == 200 and settings["switches"]["fees"] is True
    assert settings["switches"]["change_amount"] == {day.charge_usd.id: -50}
    assert (truncated, refused["error"]["param"]) == (400, "truncate")  # a report has no trailer
    assert unchanged == settings
    tag = time.strftime("%Y%m%d", time.gmtime(day.start_s))
    assert rows == [
        # 12.50 less 0.50; the fee (2.9% + 0.30 of 12.50) is on what was charged.
        [day.charge_usd.id, "charge", "usd", "12", "0.66", "11.34"],
        [day.charge_usd.id, "refund", "usd", "-2.5", "0", "-2.5"],
        [day.charge_usd.id, "refund", "usd", "-2.5", "0", "-2.5"],
        [f"pi_unknown_{tag}_1", "charge", "usd", "12.34", "0.66", "11.68"],
    ]
    assert [row[1] for row in clean] == ["charge", "charge", "refund"]


async def test_a_run_fails_with_its_error_when_told_to_or_when_its_switches_are_too_much(
    sdk: stripe.StripeClient, sandbox: RunningSandbox, day: Day
) -> None:
    runs = sdk.v1.reporting.report_runs
    await _admin(sandbox, "POST", "/_sandbox/reporting/runs", json={"fail_with": "Data not available yet."})
    told = await _finished(sdk, await runs.create_async(params={"report_type": PAYOUTS, "parameters": day.interval()}))
    await _admin(sandbox, "POST", "/_sandbox/reporting/runs", json={"fail_with": None})
    await _admin(sandbox, "POST", "/_sandbox/reporting/switches", data="unknown_charges=100000")
    two_days = {"interval_start": day.start_s - DAY_S, "interval_end": day.end_s}
    too_much = await _finished(sdk, await runs.create_async(params={"report_type": PAYOUTS, "parameters": two_days}))
    _, reset = await _admin(sandbox, "POST", "/_sandbox/reset")
    _, settings = await _admin(sandbox, "GET", "/_sandbox/reporting")

    assert (told.status, told.error, told.result) == ("failed", "Data not available yet.", None)
    assert too_much.status == "failed" and "too long" in too_much.error
    assert reset == {"reset": True}  # and with it the reporting defaults
    assert (settings["run_delay_ms"], settings["fail_with"], settings["switches"]["unknown_charges"]) == (500, None, 0)


async def test_report_types_say_up_to_when_data_is_available(sdk: stripe.StripeClient, sandbox: RunningSandbox) -> None:
    report_type = await sdk.v1.reporting.report_types.retrieve_async("payouts.itemized.3")

    assert (report_type.id, report_type.version) == ("payouts.itemized.3", 3)
    assert report_type.data_available_end == sandbox.state.clock.now_s()
    with pytest.raises(stripe.InvalidRequestError, match=r"No such reporting\.report_type"):
        await sdk.v1.reporting.report_types.retrieve_async("payout_reconciliation.itemized.5")
