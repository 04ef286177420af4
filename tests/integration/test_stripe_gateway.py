"""StripeGateway, on the official stripe SDK, against the PSP sandbox: every outcome the executor
must tell apart, and exactly one charge per payment order whatever goes wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from psp_sandbox.app import RunningSandbox
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.psp_port import (
    ChargeRequest,
    ChargeResult,
    PayoutRequest,
    PspOutcomeUnknown,
    PspRequestRejected,
    RefundRequest,
)

API_KEY = "sk_test_gateway_secret"


@pytest_asyncio.fixture
async def gateway(sandbox: RunningSandbox) -> AsyncIterator[StripeGateway]:
    opened = StripeGateway(api_key=API_KEY, api_base=sandbox.url, timeout_s=5.0)
    yield opened
    await opened.close()


def _request(
    order_id: str = "po_1", token: str = "pm_card_visa", amount_minor: int = 1250, currency: str = "USD"
) -> ChargeRequest:
    return ChargeRequest(
        payment_order_id=order_id,
        amount_minor=amount_minor,
        currency=currency,
        payment_method_token=token,
        payment_id="pay_1",
        seller_id="seller_1",
        buyer_id="buyer_1",
    )


async def _charges(http: aiohttp.ClientSession, sandbox: RunningSandbox, order_id: str) -> list[dict[str, Any]]:
    async with http.get(f"{sandbox.url}/_sandbox/charges", params={"payment_order_id": order_id}) as response:
        body: dict[str, Any] = await response.json()
        return list(body["data"])


async def _fault(http: aiohttp.ClientSession, sandbox: RunningSandbox, **spec: Any) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/faults", json=spec) as response:
        assert response.status == 200, await response.text()


async def test_success_charges_with_the_order_id_as_key_and_in_metadata(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    result = await gateway.charge(_request())

    [charge] = await _charges(http, sandbox, "po_1")
    assert result == ChargeResult(True, charge["payment_intent_id"], "", "")
    assert charge["idempotency_key"] == "po_1"
    assert (charge["amount"], charge["currency"]) == (1250, "usd")
    assert charge["metadata"] == {"payment_order_id": "po_1", "payment_id": "pay_1", "seller_id": "seller_1"}


async def test_isk_goes_to_stripe_in_the_two_decimals_its_api_still_counts(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    # ISO 4217 ISK has no minor unit (Settle's 500 is 500 krónur); Stripe's API amount 100 is 1 króna.
    await gateway.charge(_request("po_isk", amount_minor=500, currency="ISK"))

    [charge] = await _charges(http, sandbox, "po_isk")
    assert (charge["amount"], charge["currency"]) == (50_000, "isk")


@pytest.mark.parametrize(
    ("token", "failure_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error"),
    ],
)
async def test_declines_are_definite_failures_with_the_psp_reason(
    gateway: StripeGateway,
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    token: str,
    failure_code: str,
) -> None:
    result = await gateway.charge(_request(token=token))

    assert not result.succeeded
    assert result.psp_reference.startswith("pi_")
    assert result.failure_code == failure_code
    assert result.failure_message
    assert await _charges(http, sandbox, "po_1") == []
    assert await gateway.find_charge("po_1") == result


async def test_retry_of_the_same_order_replays_and_charges_once(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    first = await gateway.charge(_request())
    second = await gateway.charge(_request())

    assert second == first
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_same_order_with_different_parameters_is_rejected(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await gateway.charge(_request())

    with pytest.raises(PspRequestRejected):
        await gateway.charge(_request(amount_minor=999))
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_unknown_payment_method_is_rejected_not_declined(gateway: StripeGateway) -> None:
    with pytest.raises(PspRequestRejected):
        await gateway.charge(_request(token="tok_visa"))


async def test_concurrent_charge_of_an_order_in_flight_is_unknown_and_charges_once(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="latency", latency_ms=500, match={"idempotency_key": "po_1"})

    first = asyncio.create_task(gateway.charge(_request()))
    await asyncio.sleep(0.15)
    with pytest.raises(PspOutcomeUnknown) as raised:
        await gateway.charge(_request())
    first_result = await first

    assert raised.value.retry_after_s is None
    assert first_result.succeeded
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_server_error_is_unknown_and_moves_no_money(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_500")

    with pytest.raises(PspOutcomeUnknown):
        await gateway.charge(_request())

    assert await _charges(http, sandbox, "po_1") == []
    assert (await gateway.charge(_request())).succeeded


async def test_rate_limit_is_unknown_with_retry_after(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_429", retry_after_s=3)

    with pytest.raises(PspOutcomeUnknown) as raised:
        await gateway.charge(_request())

    assert raised.value.retry_after_s == 3.0
    assert await _charges(http, sandbox, "po_1") == []


async def test_timeout_after_the_psp_charged_converges_to_one_charge(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    impatient = StripeGateway(api_key=API_KEY, api_base=sandbox.url, timeout_s=0.5)
    try:
        await _fault(http, sandbox, fault="timeout_after_charge", latency_ms=3000)
        with pytest.raises(PspOutcomeUnknown):
            await impatient.charge(_request())

        found = await impatient.find_charge("po_1")
        retried = await impatient.charge(_request())
    finally:
        await impatient.close()

    assert found is not None and found.succeeded
    assert retried == found
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_unreachable_psp_is_unknown() -> None:
    unreachable = StripeGateway(api_key=API_KEY, api_base="http://127.0.0.1:9", timeout_s=1.0)
    try:
        with pytest.raises(PspOutcomeUnknown):
            await unreachable.charge(_request())
        with pytest.raises(PspOutcomeUnknown):
            await unreachable.find_charge("po_1")
    finally:
        await unreachable.close()


async def test_find_charge_searches_by_order_id(gateway: StripeGateway) -> None:
    charged = await gateway.charge(_request("po_1"))
    await gateway.charge(_request("po_2"))

    assert await gateway.find_charge("po_1") == charged
    assert await gateway.find_charge("po_never_sent") is None
    assert await gateway.find_charge("po_it's") is None


async def test_requires_action_is_unknown(gateway: StripeGateway) -> None:
    with pytest.raises(PspOutcomeUnknown):
        await gateway.charge(_request(token="pm_card_authenticationRequired"))
    with pytest.raises(PspOutcomeUnknown):
        await gateway.find_charge("po_1")


async def test_forgotten_key_charges_again_and_find_charge_reports_the_first(
    gateway: StripeGateway, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    first = await gateway.charge(_request())
    async with http.post(f"{sandbox.url}/_sandbox/clock", json={"advance_s": 24 * 3600 + 1}) as response:
        assert response.status == 200

    second = await gateway.charge(_request())

    assert second.psp_reference != first.psp_reference
    assert len(await _charges(http, sandbox, "po_1")) == 2
    assert await gateway.find_charge("po_1") == first


async def test_bad_api_key_is_rejected_and_never_shown(
    sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk_live_do_not_print_me"
    misconfigured = StripeGateway(api_key=secret, api_base=sandbox.url, timeout_s=5.0)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(PspRequestRejected) as raised:
            await misconfigured.charge(_request())
    finally:
        await misconfigured.close()

    assert secret not in str(raised.value)
    assert secret not in repr(misconfigured)
    assert secret not in caplog.text


async def test_no_token_or_key_in_logs_or_errors(
    gateway: StripeGateway,
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await gateway.charge(_request())
    await gateway.charge(_request(token="pm_card_chargeDeclined", order_id="po_2"))
    await _fault(http, sandbox, fault="http_500")
    with pytest.raises(PspOutcomeUnknown) as raised:
        await gateway.charge(dataclasses.replace(_request("po_3")))

    assert API_KEY not in caplog.text
    assert API_KEY not in str(raised.value)
    assert "pm_card" not in caplog.text


def _refund(refund_id: str, intent_id: str, amount_minor: int) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_order_id="po_1",
        charge_psp_reference=intent_id,
        amount_minor=amount_minor,
        currency="USD",
    )


def _payout(payout_id: str, destination: str = "ba_test_success") -> PayoutRequest:
    return PayoutRequest(
        payout_id=payout_id,
        seller_id="seller_1",
        amount_minor=700,
        currency="USD",
        destination=destination,
        batch_id="",
    )


async def test_refunds_are_keyed_by_refund_id_and_refusals_are_definite(gateway: StripeGateway) -> None:
    charge = await gateway.charge(_request(amount_minor=1000))

    first = await gateway.refund(_refund("re-key-1", charge.psp_reference, 600))
    replay = await gateway.refund(_refund("re-key-1", charge.psp_reference, 600))
    too_large = await gateway.refund(_refund("re-key-2", charge.psp_reference, 500))

    assert first.succeeded and first.psp_reference.startswith("re_")
    assert replay == first  # the same key is the same refund, not a second one
    assert (too_large.succeeded, too_large.failure_code) == (False, "amount_too_large")
    assert await gateway.find_refund("re-key-1", charge.psp_reference) == first
    assert await gateway.find_refund("re-key-3", charge.psp_reference) is None


async def test_refund_of_an_unknown_charge_is_rejected_not_failed(gateway: StripeGateway) -> None:
    with pytest.raises(PspRequestRejected):
        await gateway.refund(_refund("re-key-9", "pi_does_not_exist", 100))


async def test_payouts_are_keyed_by_payout_id_and_the_bank_decides_the_outcome(gateway: StripeGateway) -> None:
    paid = await gateway.payout(_payout("payout-1"))
    again = await gateway.payout(_payout("payout-1"))
    closed = await gateway.payout(_payout("payout-2", "ba_test_account_closed"))

    assert paid.succeeded and paid.psp_reference.startswith("po_")
    assert again == paid
    assert (closed.succeeded, closed.failure_code) == (False, "account_closed")
    assert await gateway.find_payout("payout-1") == paid
    assert await gateway.find_payout("payout-2") == closed
    assert await gateway.find_payout("payout-3") is None
