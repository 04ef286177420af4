"""The PSP sandbox speaks Stripe's API: formats, errors, idempotency, faults, persistence."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import stripe

from psp_sandbox.app import RunningSandbox, start_sandbox

API_KEY = "sk_test_sandbox"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.AIOHTTPClient(timeout=5)
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": sandbox.url}, http_client=http_client, max_network_retries=0
    )
    await http_client.close_async()  # type: ignore[no-untyped-call]


def _form(order_id: str = "po_1", token: str = "pm_card_visa", amount: int = 1250, **extra: str) -> dict[str, str]:
    return {
        "amount": str(amount),
        "currency": "usd",
        "payment_method": token,
        "confirm": "true",
        "payment_method_types[0]": "card",
        "metadata[payment_order_id]": order_id,
        **extra,
    }


async def _create(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, form: dict[str, str], key: str | None = None
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    headers = dict(AUTH) | ({"Idempotency-Key": key} if key else {})
    async with http.post(f"{sandbox.url}/v1/payment_intents", data=form, headers=headers) as response:
        return response.status, await response.json(), response


async def _charges(http: aiohttp.ClientSession, sandbox: RunningSandbox, order_id: str) -> list[dict[str, Any]]:
    async with http.get(f"{sandbox.url}/_sandbox/charges", params={"payment_order_id": order_id}) as response:
        body: dict[str, Any] = await response.json()
        return list(body["data"])


async def _fault(http: aiohttp.ClientSession, sandbox: RunningSandbox, **spec: Any) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/faults", json=spec) as response:
        assert response.status == 200, await response.text()


async def _sdk_charge(client: stripe.StripeClient, order_id: str) -> stripe.PaymentIntent:
    """A charge as the executor's StripeGateway makes it: the order id is the idempotency key."""
    return await client.v1.payment_intents.create_async(
        params={
            "amount": 1250,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "allowed_payment_method_types": ["card"],
            "metadata": {"payment_order_id": order_id},
        },
        options={"idempotency_key": order_id},
    )


def _was_replayed(intent: stripe.PaymentIntent) -> bool:
    assert intent.last_response is not None
    return intent.last_response.headers.get("Idempotent-Replayed") == "true"


async def _set_config(http: aiohttp.ClientSession, sandbox: RunningSandbox, body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{sandbox.url}/_sandbox/config", json=body) as response:
        return response.status, await response.json()


async def _advance_clock(http: aiohttp.ClientSession, sandbox: RunningSandbox, seconds: int) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/clock", json={"advance_s": seconds}) as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("headers", "message_start"),
    [
        ({}, "You did not provide an API key"),
        (
            {"Authorization": "Bearer sk_live_0123456789abcdef"},
            "Invalid API Key provided: sk_live_********cdef",
        ),
        ({"Authorization": "Basic c2tfbGl2ZV94Og=="}, "Invalid API Key provided: ****"),
        ({"Authorization": "Basic !!!"}, "You did not provide an API key"),
    ],
)
async def test_requests_without_a_test_secret_key_are_refused(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, headers: dict[str, str], message_start: str
) -> None:
    async with http.post(f"{sandbox.url}/v1/payment_intents", data=_form(), headers=headers) as response:
        body = await response.json()

    assert response.status == 401
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"].startswith(message_start)
    assert await _charges(http, sandbox, "po_1") == []


async def test_basic_auth_with_the_key_as_user_name_is_accepted_like_curl_u(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    basic = {"Authorization": "Basic c2tfdGVzdF94Og=="}  # sk_test_x:
    async with http.post(f"{sandbox.url}/v1/payment_intents", data=_form(), headers=basic) as response:
        assert response.status == 200


async def test_sdk_sees_authentication_error(sandbox: RunningSandbox) -> None:
    http_client = stripe.AIOHTTPClient(timeout=5)
    client = stripe.StripeClient("sk_live_nope", base_addresses={"api": sandbox.url}, http_client=http_client)
    try:
        with pytest.raises(stripe.AuthenticationError):
            await client.v1.payment_intents.retrieve_async("pi_1")
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]


async def test_confirmed_intent_succeeds_and_is_recorded_as_a_charge(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    status, intent, response = await _create(http, sandbox, _form(description="order po_1"), key="po_1")

    assert status == 200
    assert response.headers["Request-Id"].startswith("req_")
    assert intent["id"].startswith("pi_")
    assert intent["object"] == "payment_intent"
    assert (intent["amount"], intent["amount_received"], intent["currency"]) == (1250, 1250, "usd")
    assert intent["status"] == "succeeded"
    assert intent["latest_charge"].startswith("ch_")
    assert intent["metadata"] == {"payment_order_id": "po_1"}
    assert intent["payment_method"] == "pm_card_visa"
    assert intent["payment_method_types"] == ["card"]
    assert intent["livemode"] is False
    assert isinstance(intent["created"], int)
    [charge] = await _charges(http, sandbox, "po_1")
    assert charge == {
        "payment_intent_id": intent["id"],
        "charge_id": intent["latest_charge"],
        "amount": 1250,
        "currency": "usd",
        "payment_order_id": "po_1",
        "metadata": {"payment_order_id": "po_1"},
        "created": intent["created"],
        "idempotency_key": "po_1",
    }


@pytest.mark.parametrize(
    ("token", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", None),
    ],
)
async def test_decline_tokens_answer_402_card_error_and_move_no_money(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, token: str, code: str, decline_code: str | None
) -> None:
    status, body, _ = await _create(http, sandbox, _form(token=token), key="po_1")

    error = body["error"]
    assert status == 402
    assert error["type"] == "card_error"
    assert error["code"] == code
    assert error.get("decline_code") == decline_code
    assert error["message"]
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert error["payment_intent"]["last_payment_error"]["code"] == code
    assert await _charges(http, sandbox, "po_1") == []
    async with http.get(f"{sandbox.url}/v1/payment_intents/{error['payment_intent']['id']}", headers=AUTH) as got:
        assert (await got.json())["status"] == "requires_payment_method"


@pytest.mark.parametrize(
    ("changes", "param", "code"),
    [
        ({"payment_method": "tok_visa"}, "payment_method", "resource_missing"),
        ({"amount": "0"}, "amount", "amount_too_small"),
        ({"amount": "12.50"}, "amount", "parameter_invalid_integer"),
        ({"currency": "xyz"}, "currency", None),
        ({"colour": "blue"}, "colour", "parameter_unknown"),
        ({"payment_method_types[0]": "sofort"}, "payment_method_types", "payment_intent_invalid_parameter"),
    ],
)
async def test_invalid_parameters_are_400_invalid_request_error_naming_the_param(
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    changes: dict[str, str],
    param: str,
    code: str | None,
) -> None:
    status, body, _ = await _create(http, sandbox, _form() | changes)

    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert body["error"].get("code") == code


async def test_missing_amount(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    form = _form()
    del form["amount"]

    status, body, _ = await _create(http, sandbox, form)

    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "parameter_missing", "amount")


async def test_unknown_intent_and_unknown_url_are_404(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    async with http.get(f"{sandbox.url}/v1/payment_intents/pi_missing", headers=AUTH) as response:
        missing = await response.json()
        assert response.status == 404
    async with http.get(f"{sandbox.url}/v1/customers", headers=AUTH) as response:
        unknown = await response.json()
        assert response.status == 404

    assert missing["error"]["code"] == "resource_missing"
    assert unknown["error"]["message"].startswith("Unrecognized request URL (GET: /v1/customers)")


async def test_same_key_same_parameters_replays_the_first_answer_exactly(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    headers = AUTH | {"Idempotency-Key": "po_1"}
    url = f"{sandbox.url}/v1/payment_intents"
    async with http.post(url, data=_form(), headers=headers) as first:
        first_body = await first.read()
    async with http.post(url, data=_form(), headers=headers) as second:
        second_body = await second.read()

    assert second.status == first.status == 200
    assert second_body == first_body
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    assert "Idempotent-Replayed" not in first.headers
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_stored_card_errors_are_replayed_too(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    form = _form(token="pm_card_chargeDeclined")
    first_status, first, _ = await _create(http, sandbox, form, key="po_1")
    second_status, second, response = await _create(http, sandbox, form, key="po_1")

    assert first_status == second_status == 402
    assert second == first
    assert response.headers["Idempotent-Replayed"] == "true"


async def test_same_key_different_parameters_is_an_idempotency_error(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _create(http, sandbox, _form(), key="po_1")
    status, body, _ = await _create(http, sandbox, _form(amount=999), key="po_1")

    assert status == 400
    assert body["error"]["type"] == "idempotency_error"
    assert body["error"]["message"] == (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        "Try using a key other than 'po_1' if you meant to execute a different request."
    )
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_validation_failures_are_not_stored_so_the_key_stays_usable(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    bad_status, _, _ = await _create(http, sandbox, _form(currency="xyz"), key="po_1")
    good_status, _, _ = await _create(http, sandbox, _form(), key="po_1")

    assert (bad_status, good_status) == (400, 200)


async def test_concurrent_request_with_a_key_in_flight_gets_409(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="latency", latency_ms=400, match={"idempotency_key": "po_1"})

    first = asyncio.create_task(_create(http, sandbox, _form(), key="po_1"))
    await asyncio.sleep(0.1)
    second_status, second_body, second_response = await _create(http, sandbox, _form(), key="po_1")
    first_status, _, _ = await first

    assert first_status == 200
    assert second_status == 409
    assert second_body["error"]["type"] == "invalid_request_error"
    assert second_body["error"]["code"] == "idempotency_key_in_use"
    assert second_response.headers["Stripe-Should-Retry"] == "true"
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_injected_500_does_nothing_and_is_not_stored(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_500")

    failed_status, failed, _ = await _create(http, sandbox, _form(), key="po_1")
    charges_after_failure = await _charges(http, sandbox, "po_1")
    retried_status, _, retried = await _create(http, sandbox, _form(), key="po_1")

    assert (failed_status, failed["error"]["type"]) == (500, "api_error")
    assert charges_after_failure == []
    assert retried_status == 200
    assert "Idempotent-Replayed" not in retried.headers
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_injected_429_carries_retry_after_and_applies_count_times(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_429", count=2, retry_after_s=7)

    answers = [await _create(http, sandbox, _form(), key="po_1") for _ in range(3)]

    assert [status for status, _, _ in answers] == [429, 429, 200]
    assert answers[0][1]["error"]["type"] == "rate_limit_error"
    assert answers[0][2].headers["Retry-After"] == "7"
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_faults_match_on_idempotency_key_and_path_and_can_be_cleared(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_500", match={"idempotency_key": "po_2"})
    await _fault(http, sandbox, fault="http_500", match={"path_prefix": "/v1/refunds"})

    other_key_status, _, _ = await _create(http, sandbox, _form("po_1"), key="po_1")
    async with http.delete(f"{sandbox.url}/_sandbox/faults") as response:
        cleared = await response.json()
    matched_after_clear_status, _, _ = await _create(http, sandbox, _form("po_2"), key="po_2")

    assert other_key_status == 200
    assert cleared == {"deleted": 2}
    assert matched_after_clear_status == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"fault": "meteor"},
        {"fault": "latency", "count": 0},
        {"fault": "latency", "latency_ms": "fast"},
        {"fault": "http_500", "match": {"method": "POST"}},
        {"fault": "http_500", "surprise": 1},
    ],
)
async def test_invalid_fault_specs_are_refused(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, spec: dict[str, Any]
) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/faults", json=spec) as response:
        assert response.status == 400


async def test_timeout_after_charge_moves_money_then_answers_late(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="timeout_after_charge", latency_ms=5000)

    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.5):
            await _create(http, sandbox, _form(), key="po_1")
    charges = await _charges(http, sandbox, "po_1")
    retried_status, retried, response = await _create(http, sandbox, _form(), key="po_1")

    assert len(charges) == 1
    assert retried_status == 200
    assert response.headers["Idempotent-Replayed"] == "true"
    assert retried["id"] == charges[0]["payment_intent_id"]
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_drop_response_charges_then_the_sdk_sees_a_connection_error_and_a_retry_replays(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="drop_response", match={"idempotency_key": "po_1"})

    with pytest.raises(stripe.APIConnectionError):
        await _sdk_charge(client, "po_1")
    charges = await _charges(http, sandbox, "po_1")
    retried = await _sdk_charge(client, "po_1")

    assert len(charges) == 1
    assert retried.id == charges[0]["payment_intent_id"]
    assert retried.status == "succeeded"
    assert _was_replayed(retried)
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_drop_response_drops_error_answers_too(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    await _fault(http, sandbox, fault="drop_response")

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _create(http, sandbox, _form(token="pm_card_chargeDeclined"), key="po_1")
    status, body, response = await _create(http, sandbox, _form(token="pm_card_chargeDeclined"), key="po_1")

    assert (status, body["error"]["code"]) == (402, "card_declined")
    assert response.headers["Idempotent-Replayed"] == "true"


async def test_http_409_in_flight_is_idempotency_key_in_use_and_moves_no_money(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_409_in_flight")

    # The SDK has no class for 409s: it raises a plain APIError and leaves the code in the error object.
    with pytest.raises(stripe.APIError) as raised:
        await _sdk_charge(client, "po_1")
    charges_after_conflict = await _charges(http, sandbox, "po_1")
    retried = await _sdk_charge(client, "po_1")

    assert raised.value.http_status == 409
    assert raised.value.error is not None
    assert raised.value.error.code == "idempotency_key_in_use"
    assert raised.value.headers is not None
    assert raised.value.headers["Stripe-Should-Retry"] == "true"
    assert charges_after_conflict == []
    # Nothing ran, so the key was never claimed: the retry is a first execution, not a replay.
    assert not _was_replayed(retried)
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_http_409_in_flight_passes_over_requests_without_a_key(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _fault(http, sandbox, fault="http_409_in_flight")

    keyless_status, _, _ = await _create(http, sandbox, _form("po_1"))
    keyed_status, _, _ = await _create(http, sandbox, _form("po_2"), key="po_2")

    assert (keyless_status, keyed_status) == (200, 409)


async def test_latency_fault_delays_the_answer(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    await _fault(http, sandbox, fault="latency", latency_ms=300)

    started = asyncio.get_running_loop().time()
    status, _, _ = await _create(http, sandbox, _form(), key="po_1")

    assert status == 200
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_search_by_metadata_and_status_through_the_sdk(
    client: stripe.StripeClient, http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    _, declined, _ = await _create(http, sandbox, _form("po_it's", token="pm_card_chargeDeclined"), key="a")
    _, succeeded, _ = await _create(http, sandbox, _form("po_it's"), key="b")
    await _create(http, sandbox, _form("po_other"), key="c")

    by_order = await client.v1.payment_intents.search_async(
        params={"query": "metadata['payment_order_id']:'po_it\\'s'"}
    )
    succeeded_only = await client.v1.payment_intents.search_async(
        params={"query": "metadata['payment_order_id']:'po_it\\'s' AND status:'succeeded'"}
    )

    assert by_order["object"] == "search_result"
    assert by_order["url"] == "/v1/payment_intents/search"
    assert by_order.has_more is False
    assert {intent.id for intent in by_order.data} == {
        declined["error"]["payment_intent"]["id"],
        succeeded["id"],
    }
    assert [intent.id for intent in succeeded_only.data] == [succeeded["id"]]


async def test_malformed_search_query_is_400(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.search_async(params={"query": "metadata['a']:b"})

    assert raised.value.param == "query"


async def test_key_is_forgotten_after_retention_on_the_sandbox_clock(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _create(http, sandbox, _form(), key="po_1")
    async with http.post(f"{sandbox.url}/_sandbox/clock", json={"advance_s": 24 * 3600 - 60}) as response:
        assert response.status == 200
    _, before_expiry, before_response = await _create(http, sandbox, _form(), key="po_1")
    async with http.post(f"{sandbox.url}/_sandbox/clock", json={"advance_s": 120}) as response:
        clock = await response.json()
    _, after_expiry, after_response = await _create(http, sandbox, _form(), key="po_1")

    assert before_response.headers["Idempotent-Replayed"] == "true"
    assert clock["offset_s"] == 24 * 3600 + 60
    assert "Idempotent-Replayed" not in after_response.headers
    assert after_expiry["id"] != before_expiry["id"]
    # The PSP moved money twice for one order: why the executor must search by metadata before retrying late.
    assert len(await _charges(http, sandbox, "po_1")) == 2


async def test_config_reports_the_retention_the_sandbox_started_with(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    async with http.get(f"{sandbox.url}/_sandbox/config") as response:
        assert await response.json() == {"idempotency_retention_s": 24 * 3600}


async def test_retention_changed_at_runtime_forgets_keys_sooner_so_a_retry_charges_again(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    status, config = await _set_config(http, sandbox, {"idempotency_retention_s": 60})
    _, first, _ = await _create(http, sandbox, _form(), key="po_1")
    await _advance_clock(http, sandbox, 59)
    _, before_expiry, before_response = await _create(http, sandbox, _form(), key="po_1")
    await _advance_clock(http, sandbox, 1)
    _, after_expiry, after_response = await _create(http, sandbox, _form(), key="po_1")

    assert (status, config) == (200, {"idempotency_retention_s": 60})
    assert before_response.headers["Idempotent-Replayed"] == "true"
    assert before_expiry == first
    assert "Idempotent-Replayed" not in after_response.headers
    assert after_expiry["id"] != first["id"]
    assert len(await _charges(http, sandbox, "po_1")) == 2


async def test_lengthening_retention_does_not_revive_a_forgotten_key(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _set_config(http, sandbox, {"idempotency_retention_s": 60})
    await _create(http, sandbox, _form(), key="po_1")
    await _advance_clock(http, sandbox, 60)
    await _set_config(http, sandbox, {"idempotency_retention_s": 3600})
    _, _, response = await _create(http, sandbox, _form(), key="po_1")

    assert "Idempotent-Replayed" not in response.headers
    assert len(await _charges(http, sandbox, "po_1")) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_retention_s": 0},
        {"idempotency_retention_s": -5},
        {"idempotency_retention_s": 1.5},
        {"idempotency_retention_s": "60"},
        {"idempotency_retention_s": True},
        {"idempotency_retention_s": 60, "surprise": 1},
        {},
        [60],
    ],
)
async def test_invalid_config_is_refused_and_changes_nothing(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, body: Any
) -> None:
    status, refused = await _set_config(http, sandbox, body)
    async with http.get(f"{sandbox.url}/_sandbox/config") as response:
        config = await response.json()

    assert status == 400
    assert "idempotency_retention_s" in refused["error"]["message"]
    assert config == {"idempotency_retention_s": 24 * 3600}


async def test_reset_restores_the_retention_the_sandbox_started_with(
    http: aiohttp.ClientSession, sandbox: RunningSandbox
) -> None:
    await _set_config(http, sandbox, {"idempotency_retention_s": 60})

    async with http.post(f"{sandbox.url}/_sandbox/reset") as response:
        assert response.status == 200
    async with http.get(f"{sandbox.url}/_sandbox/config") as response:
        config = await response.json()

    assert config == {"idempotency_retention_s": 24 * 3600}


async def test_reset_clears_everything(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> None:
    await _create(http, sandbox, _form(), key="po_1")
    await _fault(http, sandbox, fault="http_500", match={"idempotency_key": "nobody"})

    async with http.post(f"{sandbox.url}/_sandbox/reset") as response:
        assert response.status == 200
    async with http.get(f"{sandbox.url}/_sandbox/faults") as response:
        faults = await response.json()
    status, _, replay = await _create(http, sandbox, _form(), key="po_1")

    assert faults == {"data": []}
    assert status == 200
    assert "Idempotent-Replayed" not in replay.headers
    assert len(await _charges(http, sandbox, "po_1")) == 1


async def test_charge_record_and_keys_survive_a_restart_with_a_data_dir(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first_run = await start_sandbox("127.0.0.1", 0, tmp_path)
    try:
        _, intent, _ = await _create(http, first_run, _form(), key="po_1")
        await _create(http, first_run, _form("po_2", token="pm_card_chargeDeclined"), key="po_2")
    finally:
        await first_run.close()

    second_run = await start_sandbox("127.0.0.1", 0, tmp_path)
    try:
        charges = await _charges(http, second_run, "po_1")
        async with http.get(f"{second_run.url}/v1/payment_intents/{intent['id']}", headers=AUTH) as response:
            retrieved = await response.json()
        _, replayed, replay_response = await _create(http, second_run, _form(), key="po_1")
        all_charges = await _charges(http, second_run, "po_1")
    finally:
        await second_run.close()

    assert [charge["payment_intent_id"] for charge in charges] == [intent["id"]]
    assert retrieved == intent
    assert replayed == intent
    assert replay_response.headers["Idempotent-Replayed"] == "true"
    assert len(all_charges) == 1


async def test_runs_as_a_process_with_its_flags_and_stops_cleanly_on_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "psp_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--idempotency-retention-s",
        "90",
        cwd=REPO_ROOT,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode().strip()
        prefix = "psp-sandbox listening on "
        assert line.startswith(prefix)
        url = line.removeprefix(prefix)
        async with http.get(f"{url}/_sandbox/health") as response:
            assert response.status == 200
        async with http.get(f"{url}/_sandbox/config") as response:
            assert await response.json() == {"idempotency_retention_s": 90}
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
