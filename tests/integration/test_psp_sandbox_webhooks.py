"""The PSP sandbox sends Stripe-shaped, signed webhook events to a real local HTTP receiver, at least once."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import stripe
from aiohttp import web

from psp_sandbox.__main__ import parse_args
from psp_sandbox.app import RunningSandbox, start_sandbox
from psp_sandbox.webhook_deliveries import DeliveryPolicy
from psp_sandbox.webhook_settings import WebhookSettings

SECRET = "whsec_sandbox_test_0123456789"
AUTH = {"Authorization": "Bearer sk_test_webhooks"}
FAST_RETRIES = DeliveryPolicy(max_attempts=50, first_retry_s=0.02, max_retry_s=0.1, timeout_s=2)


@dataclass
class Receiver:
    """A webhook endpoint that keeps every request and answers `fail_first` of them with a 500."""

    fail_first: int = 0
    hold_s: float = 0.0
    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (Stripe-Signature, body)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("Stripe-Signature", ""), await request.read()))
        self.arrived.set()
        await asyncio.sleep(self.hold_s)
        if len(self.requests) <= self.fail_first:
            return web.Response(status=500)
        return web.Response(text="ok")

    def events(self) -> list[dict[str, Any]]:
        """Every request's event, verified with the official SDK (raises if any signature is bad)."""
        return [
            stripe.Webhook.construct_event(body, header, SECRET, tolerance=300).to_dict()
            for header, body in self.requests
        ]

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} webhook requests arrived"
            await asyncio.sleep(0.02)


async def _serve(receiver: Receiver, port: int = 0) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.add_routes([web.post("/hooks", receiver.handle)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    runner, port = await _serve(receiver)
    yield receiver, f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


@pytest_asyncio.fixture
async def sandbox(receiver: tuple[Receiver, str]) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(webhooks=WebhookSettings(url=receiver[1], secrets=(SECRET,)))
    running.state.webhooks.policy = FAST_RETRIES
    yield running
    await running.close()


async def _post(http: aiohttp.ClientSession, url: str, form: dict[str, str], key: str | None = None) -> Any:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    async with http.post(url, data=form, headers=headers) as response:
        return await response.json()


async def _charge(http: aiohttp.ClientSession, sandbox: RunningSandbox, token: str = "pm_card_visa") -> Any:
    order_id = str(uuid.uuid4())
    form = {
        "amount": "1250",
        "currency": "usd",
        "payment_method": token,
        "confirm": "true",
        "metadata[payment_order_id]": order_id,
    }
    return await _post(http, f"{sandbox.url}/v1/payment_intents", form, order_id)


async def test_a_charge_is_announced_by_a_signed_stripe_event(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    intent = await _charge(http, sandbox)
    await receiver[0].wait_for(1)

    [event] = receiver[0].events()
    assert event["id"].startswith("evt_") and event["object"] == "event"
    assert (event["type"], event["livemode"], event["api_version"]) == (
        "payment_intent.succeeded",
        False,
        "2026-10-28.endive",
    )
    assert isinstance(event["created"], int)
    assert event["data"]["object"]["id"] == intent["id"]
    assert event["data"]["object"]["metadata"] == intent["metadata"]
    assert event["request"]["idempotency_key"] == intent["metadata"]["payment_order_id"]


async def test_declines_refunds_and_payouts_are_announced_as_stripe_does(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    declined = await _charge(http, sandbox, "pm_card_chargeDeclinedInsufficientFunds")
    charged = await _charge(http, sandbox)
    refund = await _post(
        http, f"{sandbox.url}/v1/refunds", {"payment_intent": charged["id"], "amount": "250"}, "refund-key-1"
    )
    for destination in ("ba_test_success", "ba_test_account_closed"):
        form = {"amount": "500", "currency": "eur", "destination": destination, "metadata[payout_id]": destination}
        await _post(http, f"{sandbox.url}/v1/payouts", form, f"payout-{destination}")
    await receiver[0].wait_for(6)

    announced = {(event["type"], event["data"]["object"]["id"]) for event in receiver[0].events()}
    assert ("payment_intent.payment_failed", declined["error"]["payment_intent"]["id"]) in announced
    assert ("payment_intent.succeeded", charged["id"]) in announced
    assert ("refund.created", refund["id"]) in announced
    assert ("charge.refunded", charged["latest_charge"]) in announced
    assert {event_type for event_type, _ in announced} >= {"payout.paid", "payout.failed"}
    assert len(announced) == 6


async def test_an_idempotent_replay_announces_nothing_again(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    form = {"amount": "700", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}
    first = await _post(http, f"{sandbox.url}/v1/payment_intents", form, "replayed-key")
    again = await _post(http, f"{sandbox.url}/v1/payment_intents", form, "replayed-key")
    assert first["id"] == again["id"]
    await receiver[0].wait_for(1)
    await asyncio.sleep(0.2)
    assert len(receiver[0].requests) == 1


async def test_a_failed_delivery_is_retried_with_the_same_event_freshly_signed(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    receiver[0].fail_first = 2
    await _charge(http, sandbox)
    await receiver[0].wait_for(3)
    await asyncio.sleep(0.2)

    events = receiver[0].events()
    assert len(events) == 3 and len({event["id"] for event in events}) == 1
    assert len({body for _, body in receiver[0].requests}) == 1, "the body is the same on every attempt"
    stats = sandbox.state.webhooks.stats
    assert (stats.published, stats.attempts, stats.failed_attempts, stats.delivered) == (1, 3, 2, 1)


async def test_events_published_before_the_receiver_listens_arrive_once_it_does(
    http: aiohttp.ClientSession,
) -> None:
    port = _free_port()
    running = await start_sandbox(webhooks=WebhookSettings(url=f"http://127.0.0.1:{port}/hooks", secrets=(SECRET,)))
    running.state.webhooks.policy = FAST_RETRIES
    try:
        await _charge(http, running)
        await asyncio.sleep(0.3)  # several attempts find nobody listening
        assert running.state.webhooks.stats.failed_attempts >= 2
        receiver = Receiver()
        runner, _ = await _serve(receiver, port)
        try:
            await receiver.wait_for(1)
            assert receiver.events()[0]["type"] == "payment_intent.succeeded"
        finally:
            await runner.cleanup()
    finally:
        await running.close()


async def test_the_duplicate_switch_delivers_every_event_twice(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{sandbox.url}/_sandbox/webhooks", json={"duplicate_delivery": True}) as response:
        assert response.status == 200
        assert (await response.json())["settings"]["duplicate_delivery"] is True
    await _charge(http, sandbox)
    await receiver[0].wait_for(2)

    first, second = receiver[0].events()
    assert first["id"] == second["id"]


async def test_the_signature_offset_switch_makes_stale_or_future_signatures(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    sandbox.state.webhooks.settings.signature_offset_s = -600
    await _charge(http, sandbox)
    await receiver[0].wait_for(1)
    header, body = receiver[0].requests[0]

    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert time.time() - timestamp == pytest.approx(600, abs=5)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(body, header, SECRET, tolerance=300)


async def test_the_delay_switch_holds_events_and_the_api_answer_never_waits_for_delivery(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str], http: aiohttp.ClientSession
) -> None:
    receiver[0].hold_s = 3.0  # a slow endpoint
    sandbox.state.webhooks.settings.delay_ms = 1000
    started = time.monotonic()
    await _charge(http, sandbox)
    assert time.monotonic() - started < 1.0, "the API answered without waiting for the delivery"
    await asyncio.sleep(0.3)
    assert receiver[0].requests == []
    await receiver[0].wait_for(1)
    assert time.monotonic() - started >= 1.0


async def test_the_admin_api_shows_no_secret_and_refuses_bad_settings(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sandbox.url}/_sandbox/webhooks") as response:
        view = await response.json()
    assert view["settings"]["secret_count"] == 1 and SECRET not in json.dumps(view)
    for body, message in [
        ({"secrets": ["not-a-whsec"]}, "starts with 'whsec_'"),
        ({"url": "ftp://x"}, "absolute http(s) URL"),
        ({"delay_ms": -1}, "'delay_ms' must be an integer"),
        ({"color": "red"}, "holding some of"),
    ]:
        async with http.post(f"{sandbox.url}/_sandbox/webhooks", json=body) as response:
            assert response.status == 400
            assert message in (await response.json())["error"]["message"]
    async with http.post(f"{sandbox.url}/_sandbox/webhooks", json={"url": None}) as response:
        assert (await response.json())["settings"]["url"] is None
    async with http.post(f"{sandbox.url}/_sandbox/reset") as response:
        assert response.status == 200
    assert sandbox.state.webhooks.settings.url is not None, "a reset restores the started settings"


def test_the_command_line_takes_the_webhook_endpoint_and_secrets() -> None:
    args = parse_args(["--webhook-url", "http://127.0.0.1:9/hooks", "--webhook-secret", SECRET])
    assert args.webhooks == WebhookSettings(url="http://127.0.0.1:9/hooks", secrets=(SECRET,))
    assert parse_args([]).webhooks is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook-url", "http://127.0.0.1:9/hooks"], "needs --webhook-secret"),
        (["--webhook-secret", SECRET], "needs --webhook-url"),
        (["--webhook-url", "http://127.0.0.1:9/hooks", "--webhook-secret", "secret"], "starts with 'whsec_'"),
    ],
)
def test_the_command_line_refuses_webhook_settings_that_cannot_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err
