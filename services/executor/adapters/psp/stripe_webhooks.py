"""Stripe webhook events: verified with the official SDK, then translated into the executor's PspNotice.

Nothing in the body is looked at before its signature verifies. The SDK's `WebhookSignature.verify_header`
checks the HMAC (any one of the header's `v1` signatures may match, as while Stripe rolls a secret) and
rejects timestamps older than the tolerance. It does not reject timestamps in the future: in stripe
16.1.0 (stripe/_webhook.py, `verify_header`) the only time check is
`if tolerance and timestamp < time.time() - tolerance`. A signed request stamped far ahead would stay
replayable until then, so `verify` rejects those itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from services.executor.adapters.psp.stripe_amounts import StripeAmountError, from_stripe
from services.executor.adapters.psp.stripe_mapping import result_of_intent, result_of_payout, result_of_refund
from services.executor.psp_notices import NoticeKind, PspNotice, RejectionReason, WebhookRejected
from services.executor.psp_port import ChargeResult, PspOutcomeUnknown

MAX_ID_LENGTH = 255
_OBJECTS: dict[str, tuple[NoticeKind, str, Callable[[dict[str, Any]], ChargeResult]]] = {
    # object type: (kind, the metadata key holding the executor's id, the PSP's word on the object)
    "payment_intent": (
        NoticeKind.CHARGE,
        "payment_order_id",
        lambda data: result_of_intent(stripe.PaymentIntent.construct_from(data, None)),
    ),
    "refund": (NoticeKind.REFUND, "refund_id", lambda data: result_of_refund(stripe.Refund.construct_from(data, None))),
    "payout": (NoticeKind.PAYOUT, "payout_id", lambda data: result_of_payout(stripe.Payout.construct_from(data, None))),
}


class StripeWebhookVerifier:
    def __init__(self, secret: str, tolerance_s: int) -> None:
        if not secret.strip():
            raise ValueError("the webhook signing secret must not be empty")
        if tolerance_s <= 0:
            # The SDK treats a tolerance of 0 as "no time check at all".
            raise ValueError("tolerance_s must be positive")
        self._secret = secret
        self._tolerance_s = tolerance_s

    def __repr__(self) -> str:
        return f"StripeWebhookVerifier(tolerance_s={self._tolerance_s})"  # never the secret

    def verify(self, payload: bytes, signature_header: str | None) -> PspNotice:
        """The event in `payload` if it is signed with our secret within the tolerance; else WebhookRejected."""
        if not signature_header:
            raise WebhookRejected(RejectionReason.SIGNATURE_MISSING, "no Stripe-Signature header")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected(RejectionReason.MALFORMED_BODY, "the body is not UTF-8 text") from None
        timestamp = _timestamp_of(signature_header)
        now_s = time.time()
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, self._secret, self._tolerance_s)
        except stripe.SignatureVerificationError as error:
            # The SDK checks the signature first and the age second; a stale request is rejected as stale
            # whether or not its signature also fails: either reason alone is enough.
            if timestamp < now_s - self._tolerance_s:
                raise WebhookRejected(
                    RejectionReason.TIMESTAMP_TOO_OLD,
                    f"signed {now_s - timestamp:.0f} s ago; the tolerance is {self._tolerance_s} s",
                ) from None
            # The SDK's messages name what failed and never quote the body.
            raise WebhookRejected(RejectionReason.SIGNATURE_INVALID, str(error)) from None
        if timestamp > now_s + self._tolerance_s:
            raise WebhookRejected(
                RejectionReason.TIMESTAMP_IN_FUTURE,
                f"signed {timestamp - now_s:.0f} s in the future; the tolerance is {self._tolerance_s} s",
            )
        return parse_event(text)


def _timestamp_of(signature_header: str) -> int:
    # The header's grammar as the SDK reads it: comma-separated `key=value` items, the first `t` counts.
    for item in signature_header.split(","):
        key, _, value = item.partition("=")
        if key == "t":
            if value.isdecimal():
                return int(value)
            break
    raise WebhookRejected(
        RejectionReason.SIGNATURE_INVALID, "the Stripe-Signature header has no timestamp `t=<unix seconds>`"
    )


def parse_event(text: str) -> PspNotice:
    """Translates a verified event body; raises WebhookRejected naming the first thing wrong with it."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"the body is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        raise WebhookRejected(RejectionReason.MALFORMED_BODY, message) from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise _malformed('the body is not an event object (`object` must be "event")')
    event_id = _text(event, "id", "")
    if not event_id.startswith("evt_"):
        raise _malformed('`id` must start with "evt_"')
    event_type = _text(event, "type", "")
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise _malformed("`created` must be a non-negative integer (unix seconds)")
    data = event.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data_object, dict):
        raise _malformed("`data.object` must be an object")
    created_at = datetime.fromtimestamp(created, UTC)
    known = _OBJECTS.get(str(data_object.get("object")))
    if known is None:
        return PspNotice(event_id, event_type, created_at, None, "", "", 0, "", "", None)
    kind, metadata_key, result_of = known
    object_id = _text(data_object, "id", "data.object.")
    _text(data_object, "status", "data.object.")  # the PSP's word below is read from it
    amount = data_object.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise _malformed("`data.object.amount` must be an integer (minor units)")
    currency = _text(data_object, "currency", "data.object.").upper()
    try:
        amount_minor = from_stripe(amount, currency)
    except StripeAmountError as error:
        raise _malformed(f"`data.object.amount`: {error}") from None
    metadata = data_object.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _malformed("`data.object.metadata` must be an object")
    execution_id = metadata.get(metadata_key)
    payment_intent = data_object.get("payment_intent") if kind is NoticeKind.REFUND else None
    try:
        result: ChargeResult | None = result_of(data_object)
    except PspOutcomeUnknown:
        result = None  # still pending at the PSP: a later event will tell
    return PspNotice(
        event_id=event_id,
        event_type=event_type,
        created_at=created_at,
        kind=kind,
        object_id=object_id,
        execution_id=execution_id if isinstance(execution_id, str) else "",
        amount_minor=amount_minor,
        currency=currency,
        charge_psp_reference=payment_intent if isinstance(payment_intent, str) else "",
        result=result,
    )


def _text(source: dict[str, Any], name: str, path: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise _malformed(f"`{path}{name}` must be a string of 1 to {MAX_ID_LENGTH} characters")
    return value


def _malformed(message: str) -> WebhookRejected:
    return WebhookRejected(RejectionReason.MALFORMED_EVENT, message)
