"""Webhook signatures: the executor accepts exactly the events the PSP signed, recently, with our secret."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe

from psp_sandbox.webhook_settings import signature_header
from services.executor.adapters.psp.stripe_webhooks import StripeWebhookVerifier
from services.executor.psp_notices import NoticeKind, RejectionReason, WebhookRejected

SECRET = "whsec_test_executor_0123456789"
OTHER_SECRET = "whsec_test_someone_else_98765"
TOLERANCE_S = 300
ORDER_ID = "0b8e7c52-5f3c-4d0e-9a55-4f1f1d2a9e10"


def _event(**overrides: Any) -> dict[str, Any]:
    intent = {
        "id": "pi_123",
        "object": "payment_intent",
        "amount": 1250,
        "currency": "usd",
        "status": "succeeded",
        "metadata": {"payment_order_id": ORDER_ID},
    }
    event = {
        "id": "evt_123",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": intent},
        "livemode": False,
        "type": "payment_intent.succeeded",
    }
    return {**event, **overrides}


def _body(event: dict[str, Any] | None = None) -> bytes:
    return json.dumps(event or _event()).encode()


def _signed(body: bytes, *secrets: str, age_s: int = 0) -> str:
    return signature_header(body, secrets or (SECRET,), int(time.time()) - age_s)


def _rejection(body: bytes, header: str | None) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as raised:
        StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, header)
    return raised.value


def test_a_valid_signature_gives_the_event_in_the_executors_terms() -> None:
    body = _body()
    notice = StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, _signed(body))
    assert (notice.event_id, notice.event_type, notice.kind) == (
        "evt_123",
        "payment_intent.succeeded",
        NoticeKind.CHARGE,
    )
    assert (notice.execution_id, notice.object_id, notice.amount_minor, notice.currency) == (
        ORDER_ID,
        "pi_123",
        1250,
        "USD",
    )
    assert notice.result is not None and notice.result.succeeded and notice.result.psp_reference == "pi_123"


def test_the_sandbox_signs_exactly_as_the_stripe_sdk_does() -> None:
    body = _body()
    timestamp = int(time.time())
    expected = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, timestamp)
    assert signature_header(body, [SECRET], timestamp) == expected


def test_a_signature_made_with_another_secret_is_rejected() -> None:
    body = _body()
    rejected = _rejection(body, _signed(body, OTHER_SECRET))
    assert rejected.reason is RejectionReason.SIGNATURE_INVALID
    assert "No signatures found matching the expected signature" in rejected.message


def test_a_body_changed_after_signing_is_rejected() -> None:
    body = _body()
    header = _signed(body)
    tampered = body.replace(b'"amount": 1250', b'"amount": 9999')
    assert tampered != body
    assert _rejection(tampered, header).reason is RejectionReason.SIGNATURE_INVALID


@pytest.mark.parametrize("header", [None, ""])
def test_a_request_without_a_signature_header_is_rejected(header: str | None) -> None:
    rejected = _rejection(_body(), header)
    assert rejected.reason is RejectionReason.SIGNATURE_MISSING
    assert rejected.message == "no Stripe-Signature header"


@pytest.mark.parametrize("header", ["v1=abc", "t=soon,v1=abc", "garbage"])
def test_a_header_without_a_timestamp_is_rejected(header: str) -> None:
    rejected = _rejection(_body(), header)
    assert rejected.reason is RejectionReason.SIGNATURE_INVALID
    assert "no timestamp" in rejected.message


def test_a_header_without_a_v1_signature_is_rejected() -> None:
    body = _body()
    header = f"t={int(time.time())},v0=abc"
    assert _rejection(body, header).reason is RejectionReason.SIGNATURE_INVALID


def test_a_stale_timestamp_is_rejected_even_with_a_valid_signature() -> None:
    body = _body()
    rejected = _rejection(body, _signed(body, age_s=TOLERANCE_S + 60))
    assert rejected.reason is RejectionReason.TIMESTAMP_TOO_OLD
    assert "the tolerance is 300 s" in rejected.message


def test_a_timestamp_just_inside_the_tolerance_is_accepted() -> None:
    body = _body()
    assert StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, _signed(body, age_s=TOLERANCE_S - 30))


def test_a_future_timestamp_is_rejected_even_with_a_valid_signature() -> None:
    """The SDK only checks the past; a request stamped ahead would otherwise stay replayable until then."""
    body = _body()
    header = _signed(body, age_s=-(TOLERANCE_S + 60))
    stripe.WebhookSignature.verify_header(body.decode(), header, SECRET, TOLERANCE_S)  # the SDK lets it through
    rejected = _rejection(body, header)
    assert rejected.reason is RejectionReason.TIMESTAMP_IN_FUTURE
    assert "in the future" in rejected.message


def test_several_v1_signatures_verify_if_one_is_ours_as_while_stripe_rolls_a_secret() -> None:
    body = _body()
    for secrets in [(OTHER_SECRET, SECRET), (SECRET, OTHER_SECRET)]:
        header = _signed(body, *secrets)
        assert header.count("v1=") == 2
        assert StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, header).event_id == "evt_123"


def test_malformed_json_with_a_valid_signature_is_rejected_as_malformed() -> None:
    body = b'{"id": "evt_1", "object": "event",'
    rejected = _rejection(body, _signed(body))
    assert rejected.reason is RejectionReason.MALFORMED_BODY
    assert rejected.message.startswith("the body is not JSON")


def test_a_body_that_is_not_utf8_is_rejected_as_malformed() -> None:
    body = b'{"id": "\xff"}'
    assert _rejection(body, _signed(body)).reason is RejectionReason.MALFORMED_BODY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"object": "list"}, "not an event object"),
        ({"id": "123"}, '`id` must start with "evt_"'),
        ({"created": "yesterday"}, "`created` must be a non-negative integer"),
        ({"data": {}}, "`data.object` must be an object"),
        ({"type": 7}, "`type` must be a string"),
    ],
)
def test_json_that_is_not_a_well_formed_event_is_rejected(change: dict[str, Any], message: str) -> None:
    body = _body(_event(**change))
    rejected = _rejection(body, _signed(body))
    assert rejected.reason is RejectionReason.MALFORMED_EVENT
    assert message in rejected.message


def test_an_event_about_an_object_the_executor_does_not_execute_has_no_kind() -> None:
    body = _body(_event(type="charge.refunded", data={"object": {"id": "ch_1", "object": "charge"}}))
    notice = StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, _signed(body))
    assert notice.kind is None and notice.result is None


def test_a_pending_object_gives_no_outcome() -> None:
    payout = {"id": "po_1", "object": "payout", "amount": 500, "currency": "eur", "status": "in_transit"}
    body = _body(_event(type="payout.updated", data={"object": payout}))
    notice = StripeWebhookVerifier(SECRET, TOLERANCE_S).verify(body, _signed(body))
    assert notice.kind is NoticeKind.PAYOUT and notice.result is None


def test_the_verifier_never_shows_its_secret() -> None:
    verifier = StripeWebhookVerifier(SECRET, TOLERANCE_S)
    assert SECRET not in repr(verifier)
