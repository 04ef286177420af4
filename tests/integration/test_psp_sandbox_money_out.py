"""Money out of the PSP sandbox: Stripe's Refunds and Payouts subsets, through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import stripe
from stripe.params import RefundCreateParams

from psp_sandbox.app import RunningSandbox, start_sandbox

API_KEY = "sk_test_sandbox"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest_asyncio.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[stripe.StripeClient]:
    async with _SandboxClient(sandbox) as sdk:
        yield sdk


class _SandboxClient:
    """A StripeClient on the sandbox, as the executor builds it, that closes its HTTP client."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self._http_client = stripe.AIOHTTPClient(timeout=5)
        self._client = stripe.StripeClient(
            API_KEY, base_addresses={"api": sandbox.url}, http_client=self._http_client, max_network_retries=0
        )

    async def __aenter__(self) -> stripe.StripeClient:
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]


async def _charge(
    client: stripe.StripeClient, order_id: str = "po_1", amount: int = 1250, token: str = "pm_card_visa"
) -> stripe.PaymentIntent:
    return await client.v1.payment_intents.create_async(
        params={
            "amount": amount,
            "currency": "usd",
            "payment_method": token,
            "confirm": True,
            "allowed_payment_method_types": ["card"],
            "metadata": {"payment_order_id": order_id},
        },
        options={"idempotency_key": order_id},
    )


async def _declined_intent_id(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> str:
    form = {"amount": "1250", "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": "true"}
    async with http.post(f"{sandbox.url}/v1/payment_intents", data=form, headers=AUTH) as response:
        assert response.status == 402
        return str((await response.json())["error"]["payment_intent"]["id"])


async def _refund(
    client: stripe.StripeClient, intent_id: str, key: str, amount: int | None = None, order_id: str = "po_1"
) -> stripe.Refund:
    params: RefundCreateParams = {"payment_intent": intent_id, "metadata": {"payment_order_id": order_id}}
    if amount is not None:
        params["amount"] = amount
    return await client.v1.refunds.create_async(params=params, options={"idempotency_key": key})


async def _payout(
    client: stripe.StripeClient, payout_id: str, destination: str = "ba_test_success", amount: int = 5000
) -> stripe.Payout:
    return await client.v1.payouts.create_async(
        params={
            "amount": amount,
            "currency": "usd",
            "destination": destination,
            "metadata": {"payout_id": payout_id},
            "description": f"payout {payout_id}",
        },
        options={"idempotency_key": payout_id},
    )


async def _sandbox_list(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, resource: str, **query: str
) -> list[dict[str, Any]]:
    async with http.get(f"{sandbox.url}/_sandbox/{resource}", params=query) as response:
        assert response.status == 200, await response.text()
        return list((await response.json())["data"])


async def _fault(http: aiohttp.ClientSession, sandbox: RunningSandbox, **spec: Any) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/faults", json=spec) as response:
        assert response.status == 200, await response.text()


async def _search_payouts(client: stripe.StripeClient, query: str) -> stripe.StripeObject:
    """The SDK has no payout search (Stripe has none): a raw request, deserialized as the SDK would."""
    response = await client.raw_request_async("get", "/v1/payouts/search", query=query)
    return client.deserialize(response, api_mode="V1")


def _replayed(obj: stripe.StripeObject) -> bool:
    assert obj.last_response is not None
    return obj.last_response.headers.get("Idempotent-Replayed") == "true"


async def _invalid_request(call: Awaitable[object]) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await call
    return raised.value


# Refunds


async def test_partial_then_full_refund_tracks_what_the_charge_has_left(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent = await _charge(client)

    partial = await _refund(client, intent.id, "rf_1", amount=500)
    rest = await _refund(client, intent.id, "rf_2")
    expanded = await client.v1.payment_intents.retrieve_async(intent.id, params={"expand": ["latest_charge"]})

    assert partial.id.startswith("re_")
    assert partial.object == "refund"
    assert (partial.amount, partial.currency, partial.status) == (500, "usd", "succeeded")
    assert partial.payment_intent == intent.id
    assert partial.charge == intent.latest_charge
    assert partial.to_dict()["metadata"] == {"payment_order_id": "po_1"}
    assert str(partial.balance_transaction).startswith("txn_")
    assert partial.reason is None
    assert isinstance(partial.created, int)
    assert rest.amount == 750  # no amount: everything not refunded yet
    charge = expanded.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.id, charge.amount, charge.amount_refunded, charge.refunded) == (
        intent.latest_charge,
        1250,
        1250,
        True,
    )
    records = await _sandbox_list(http, sandbox, "refunds", payment_order_id="po_1")
    assert records == [
        {
            "stripe_refund_id": refund.id,
            "payment_intent_id": intent.id,
            "charge_id": intent.latest_charge,
            "amount": refund.amount,
            "currency": "usd",
            "payment_order_id": "po_1",
            "metadata": {"payment_order_id": "po_1"},
            "created": refund.created,
            "idempotency_key": key,
        }
        for refund, key in ((partial, "rf_1"), (rest, "rf_2"))
    ]


async def test_latest_charge_of_a_declined_intent_expands_to_a_failed_charge(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent_id = await _declined_intent_id(http, sandbox)

    intent = await client.v1.payment_intents.retrieve_async(intent_id, params={"expand": ["latest_charge"]})
    plain = await client.v1.payment_intents.retrieve_async(intent_id)
    refused = await _invalid_request(client.v1.payment_intents.retrieve_async(intent_id, params={"expand": ["x"]}))

    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.status, charge.paid, charge.amount_refunded, charge.failure_code) == (
        "failed",
        False,
        0,
        "card_declined",
    )
    assert plain.latest_charge == charge.id
    assert (refused.http_status, refused.param) == (400, "expand")


async def test_refund_more_than_is_left_is_amount_too_large_with_stripes_message(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent = await _charge(client)
    await _refund(client, intent.id, "rf_1", amount=1000)

    error = await _invalid_request(_refund(client, intent.id, "rf_2", amount=500))

    assert error.http_status == 400
    assert error.code == "amount_too_large"
    assert error.param == "amount"
    assert error.user_message == "Refund amount ($5.00) is greater than unrefunded amount on charge ($2.50)"
    assert [record["amount"] for record in await _sandbox_list(http, sandbox, "refunds")] == [1000]


async def test_refund_of_a_fully_refunded_charge_is_charge_already_refunded(client: stripe.StripeClient) -> None:
    intent = await _charge(client)
    await _refund(client, intent.id, "rf_1")

    error = await _invalid_request(_refund(client, intent.id, "rf_2", amount=1))

    assert (error.http_status, error.code) == (400, "charge_already_refunded")
    assert error.user_message == f"Charge {intent.latest_charge} has already been refunded."


async def test_refund_of_a_declined_intent_is_refused(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent_id = await _declined_intent_id(http, sandbox)

    error = await _invalid_request(_refund(client, intent_id, "rf_1"))

    assert (error.http_status, error.code, error.param) == (400, "charge_not_refundable", "payment_intent")
    assert error.user_message == f"This PaymentIntent ({intent_id}) does not have a successful charge to refund."
    assert await _sandbox_list(http, sandbox, "refunds") == []


async def test_refund_of_an_unknown_intent_is_404_resource_missing(client: stripe.StripeClient) -> None:
    error = await _invalid_request(_refund(client, "pi_missing", "rf_1"))

    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "payment_intent")
    assert error.user_message == "No such payment_intent: 'pi_missing'"


@pytest.mark.parametrize(
    ("form", "param", "code"),
    [
        ({"amount": "100"}, "payment_intent", "parameter_missing"),
        ({"payment_intent": "pi_x", "amount": "0"}, "amount", "amount_too_small"),
        ({"payment_intent": "pi_x", "amount": "1.5"}, "amount", "parameter_invalid_integer"),
        ({"payment_intent": "pi_x", "reason": "changed_mind"}, "reason", None),
        ({"charge": "ch_x"}, "charge", "parameter_unknown"),
    ],
)
async def test_invalid_refund_parameters_are_400_naming_the_param(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, form: dict[str, str], param: str, code: str | None
) -> None:
    async with http.post(f"{sandbox.url}/v1/refunds", data=form, headers=AUTH) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert (error["type"], error["param"], error.get("code")) == ("invalid_request_error", param, code)


async def test_refund_with_the_same_key_is_replayed_and_refunds_once(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent = await _charge(client)

    first = await _refund(client, intent.id, "rf_1", amount=300)
    again = await _refund(client, intent.id, "rf_1", amount=300)
    with pytest.raises(stripe.IdempotencyError):
        await _refund(client, intent.id, "rf_1", amount=400)

    assert again.id == first.id
    assert not _replayed(first)
    assert _replayed(again)
    assert len(await _sandbox_list(http, sandbox, "refunds", payment_order_id="po_1")) == 1


async def test_a_refused_refund_is_stored_for_replay_like_stripe(client: stripe.StripeClient) -> None:
    intent = await _charge(client)

    first = await _invalid_request(_refund(client, intent.id, "rf_1", amount=5000))
    again = await _invalid_request(_refund(client, intent.id, "rf_1", amount=5000))

    assert first.code == again.code == "amount_too_large"
    assert again.headers is not None
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_refunds_are_listed_by_payment_intent_newest_first_and_retrieved_by_id(
    client: stripe.StripeClient,
) -> None:
    intent = await _charge(client, "po_1")
    other = await _charge(client, "po_2")
    first = await _refund(client, intent.id, "rf_1", amount=100)
    second = await _refund(client, intent.id, "rf_2", amount=200)
    await _refund(client, other.id, "rf_3", amount=300, order_id="po_2")

    listed = await client.v1.refunds.list_async(params={"payment_intent": intent.id})
    first_page = await client.v1.refunds.list_async(params={"payment_intent": intent.id, "limit": 1})
    next_page = await client.v1.refunds.list_async(
        params={"payment_intent": intent.id, "limit": 1, "starting_after": first_page.data[0].id}
    )
    everything = await client.v1.refunds.list_async()
    retrieved = await client.v1.refunds.retrieve_async(first.id)
    missing = await _invalid_request(client.v1.refunds.retrieve_async("re_missing"))

    assert listed.to_dict()["object"] == "list"
    assert listed.url == "/v1/refunds"
    assert listed.has_more is False
    assert [refund.id for refund in listed.data] == [second.id, first.id]
    assert ([refund.id for refund in first_page.data], first_page.has_more) == ([second.id], True)
    assert ([refund.id for refund in next_page.data], next_page.has_more) == ([first.id], False)
    assert len(everything.data) == 3
    assert retrieved.to_dict() == first.to_dict()
    assert (missing.http_status, missing.code) == (404, "resource_missing")


async def test_faults_apply_to_refunds_by_path(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent = await _charge(client)
    await _fault(http, sandbox, fault="http_500", match={"path_prefix": "/v1/refunds"})

    with pytest.raises(stripe.APIError) as raised:
        await _refund(client, intent.id, "rf_1")
    refunds_after_failure = await _sandbox_list(http, sandbox, "refunds")
    retried = await _refund(client, intent.id, "rf_1")

    assert raised.value.http_status == 500
    assert refunds_after_failure == []
    assert not _replayed(retried)
    assert retried.amount == 1250


# Payouts


async def test_payout_to_a_good_bank_account_is_paid_and_recorded(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    payout = await _payout(client, "pay_1")

    assert payout.id.startswith("po_")
    assert payout.object == "payout"
    assert (payout.amount, payout.currency, payout.status) == (5000, "usd", "paid")
    assert payout.destination == "ba_test_success"
    assert payout.to_dict()["metadata"] == {"payout_id": "pay_1"}
    assert payout.description == "payout pay_1"
    assert (payout.failure_code, payout.failure_message) == (None, None)
    assert (payout.type, payout.method, payout.livemode) == ("bank_account", "standard", False)
    assert await _sandbox_list(http, sandbox, "payouts", payout_id="pay_1") == [
        {
            "stripe_payout_id": payout.id,
            "payout_id": "pay_1",
            "amount": 5000,
            "currency": "usd",
            "destination": "ba_test_success",
            "metadata": {"payout_id": "pay_1"},
            "created": payout.created,
            "idempotency_key": "pay_1",
        }
    ]
    assert await _sandbox_list(http, sandbox, "payouts", payout_id="pay_other") == []


async def test_any_other_bank_account_is_paid(client: stripe.StripeClient) -> None:
    payout = await _payout(client, "pay_1", destination="ba_1Qx2seller")

    assert payout.status == "paid"


@pytest.mark.parametrize(
    ("destination", "failure_code", "failure_message"),
    [
        (
            "ba_test_no_account",
            "no_account",
            "The bank account details on file are probably incorrect. "
            "No bank account could be located with those details.",
        ),
        ("ba_test_account_closed", "account_closed", "The bank account has been closed."),
        (
            "ba_test_insufficient_funds",
            "insufficient_funds",
            "Your Stripe account has insufficient funds to cover the payout.",
        ),
    ],
)
async def test_failing_bank_accounts_fail_the_payout_and_move_no_money(
    client: stripe.StripeClient,
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    destination: str,
    failure_code: str,
    failure_message: str,
) -> None:
    payout = await _payout(client, "pay_1", destination=destination)
    retrieved = await client.v1.payouts.retrieve_async(payout.id)

    assert (payout.status, payout.failure_code, payout.failure_message) == ("failed", failure_code, failure_message)
    assert str(payout.failure_balance_transaction).startswith("txn_")
    assert retrieved.to_dict() == payout.to_dict()
    assert await _sandbox_list(http, sandbox, "payouts") == []


@pytest.mark.parametrize("destination", ["acct_1Qx2seller", "card_123", "ba_"])
async def test_a_destination_that_is_no_bank_account_is_refused(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox, destination: str
) -> None:
    error = await _invalid_request(_payout(client, "pay_1", destination=destination))

    assert (error.http_status, error.code, error.param) == (400, "resource_missing", "destination")
    assert error.user_message == f"No such external account: '{destination}'"
    assert await _sandbox_list(http, sandbox, "payouts") == []


@pytest.mark.parametrize(
    ("form", "param", "code"),
    [
        ({"amount": "100", "currency": "usd"}, "destination", "parameter_missing"),
        ({"currency": "usd", "destination": "ba_1"}, "amount", "parameter_missing"),
        ({"amount": "100", "destination": "ba_1"}, "currency", "parameter_missing"),
        ({"amount": "-5", "currency": "usd", "destination": "ba_1"}, "amount", "amount_too_small"),
        (
            {"amount": "100", "currency": "usd", "destination": "ba_1", "method": "instant"},
            "method",
            "parameter_unknown",
        ),
    ],
)
async def test_invalid_payout_parameters_are_400_naming_the_param(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, form: dict[str, str], param: str, code: str
) -> None:
    async with http.post(f"{sandbox.url}/v1/payouts", data=form, headers=AUTH) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert (error["param"], error["code"]) == (param, code)


async def test_payouts_are_found_by_metadata_listed_and_retrieved(client: stripe.StripeClient) -> None:
    first = await _payout(client, "pay_1")
    failed = await _payout(client, "pay_2", destination="ba_test_account_closed")
    retried = await _payout(client, "pay_2-retry", destination="ba_test_success")

    found = await _search_payouts(client, "metadata['payout_id']:'pay_1'")
    failed_only = await _search_payouts(client, "metadata['payout_id']:'pay_2' AND status:'failed'")
    nothing = await _search_payouts(client, "metadata['payout_id']:'pay_3'")
    listed = await client.v1.payouts.list_async()
    retrieved = await client.v1.payouts.retrieve_async(first.id)
    missing = await _invalid_request(client.v1.payouts.retrieve_async("po_missing"))
    malformed = await _invalid_request(_search_payouts(client, "metadata['payout_id']:pay_1"))

    assert found["object"] == "search_result"
    assert found["url"] == "/v1/payouts/search"
    assert [payout.id for payout in found["data"]] == [first.id]
    assert isinstance(found["data"][0], stripe.Payout)
    assert [payout.id for payout in failed_only["data"]] == [failed.id]
    assert nothing["data"] == []
    assert (listed.to_dict()["object"], listed.url, listed.has_more) == ("list", "/v1/payouts", False)
    assert [payout.id for payout in listed.data] == [retried.id, failed.id, first.id]
    assert retrieved.to_dict() == first.to_dict()
    assert (missing.http_status, missing.code) == (404, "resource_missing")
    assert (malformed.http_status, malformed.param) == (400, "query")


async def test_payout_with_the_same_key_is_replayed_and_pays_once(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    first = await _payout(client, "pay_1")
    again = await _payout(client, "pay_1")

    assert again.id == first.id
    assert _replayed(again)
    assert len(await _sandbox_list(http, sandbox, "payouts")) == 1


async def test_a_dropped_payout_answer_is_found_by_search_and_replayed(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="drop_response", match={"path_prefix": "/v1/payouts", "idempotency_key": "pay_1"})

    with pytest.raises(stripe.APIConnectionError):
        await _payout(client, "pay_1")
    found = await _search_payouts(client, "metadata['payout_id']:'pay_1'")
    retried = await _payout(client, "pay_1")

    assert [payout.id for payout in found["data"]] == [retried.id]
    assert _replayed(retried)
    assert len(await _sandbox_list(http, sandbox, "payouts", payout_id="pay_1")) == 1


# Restart and reset


async def test_refunds_and_payouts_survive_a_restart_with_a_data_dir(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first_run = await start_sandbox("127.0.0.1", 0, tmp_path)
    try:
        async with _SandboxClient(first_run) as client:
            intent = await _charge(client)
            refund = await _refund(client, intent.id, "rf_1", amount=1000)
            paid = await _payout(client, "pay_1")
            failed = await _payout(client, "pay_2", destination="ba_test_no_account")
    finally:
        await first_run.close()

    second_run = await start_sandbox("127.0.0.1", 0, tmp_path)
    try:
        async with _SandboxClient(second_run) as client:
            retrieved_refund = await client.v1.refunds.retrieve_async(refund.id)
            listed = await client.v1.refunds.list_async(params={"payment_intent": intent.id})
            replayed = await _refund(client, intent.id, "rf_1", amount=1000)
            over_refund = await _invalid_request(_refund(client, intent.id, "rf_2", amount=500))
            found_paid = await _search_payouts(client, "metadata['payout_id']:'pay_1'")
            retrieved_failed = await client.v1.payouts.retrieve_async(failed.id)
            replayed_payout = await _payout(client, "pay_1")
        refund_records = await _sandbox_list(http, second_run, "refunds")
        payout_records = await _sandbox_list(http, second_run, "payouts")
    finally:
        await second_run.close()

    assert retrieved_refund.to_dict() == refund.to_dict()
    assert [listed_refund.id for listed_refund in listed.data] == [refund.id]
    assert replayed.id == refund.id
    assert _replayed(replayed)
    assert over_refund.code == "amount_too_large"  # the 1000 refunded before the restart still counts
    assert [payout.id for payout in found_paid["data"]] == [paid.id]
    assert retrieved_failed.to_dict() == failed.to_dict()
    assert replayed_payout.id == paid.id
    assert [record["stripe_refund_id"] for record in refund_records] == [refund.id]
    assert [record["stripe_payout_id"] for record in payout_records] == [paid.id]


async def test_reset_forgets_refunds_and_payouts(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    intent = await _charge(client)
    refund = await _refund(client, intent.id, "rf_1")
    payout = await _payout(client, "pay_1")

    async with http.post(f"{sandbox.url}/_sandbox/reset") as response:
        assert response.status == 200
    refund_records = await _sandbox_list(http, sandbox, "refunds")
    payout_records = await _sandbox_list(http, sandbox, "payouts")
    missing_refund = await _invalid_request(client.v1.refunds.retrieve_async(refund.id))
    missing_payout = await _invalid_request(client.v1.payouts.retrieve_async(payout.id))
    listed = await client.v1.payouts.list_async()
    repaid = await _payout(client, "pay_1")

    assert (refund_records, payout_records, listed.data) == ([], [], [])
    assert missing_refund.http_status == missing_payout.http_status == 404
    assert repaid.id != payout.id
    assert not _replayed(repaid)
