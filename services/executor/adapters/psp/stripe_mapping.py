"""Translation of Stripe's answers (PaymentIntents and SDK errors) into the executor's PSP port."""

from __future__ import annotations

import math
from collections.abc import Mapping

import stripe

from services.executor.psp_port import ChargeResult, PspOutcomeUnknown, PspRequestRejected

PENDING_STATUSES = frozenset({"processing", "requires_action", "requires_confirmation", "requires_capture"})
# Refusals of a refund that Stripe answers as invalid requests but that are definite outcomes: the
# charge cannot give that refund, and sending it again cannot change that.
REFUND_REFUSALS = frozenset({"charge_already_refunded", "amount_too_large", "charge_not_refundable"})
# Payout states before the bank's final word (Stripe's payout lifecycle).
PAYOUT_PENDING_STATUSES = frozenset({"pending", "in_transit"})
MAX_RETRY_AFTER_S = 3600.0


def result_of_intent(intent: stripe.PaymentIntent) -> ChargeResult:
    if intent.status == "succeeded":
        return ChargeResult(True, intent.id, "", "")
    if intent.status in PENDING_STATUSES:
        raise PspOutcomeUnknown(f"payment intent {intent.id} is still {intent.status}")
    error = intent.last_payment_error
    if error is not None:
        code = _field(error, "decline_code") or _field(error, "code") or "card_declined"
        return ChargeResult(False, intent.id, code, _field(error, "message") or "")
    # A canceled intent, or one never confirmed: no money moved.
    return ChargeResult(False, intent.id, intent.status, _field(intent, "cancellation_reason") or "")


def result_of_refund(refund: stripe.StripeObject) -> ChargeResult:
    status = _field(refund, "status")
    if status == "succeeded":
        return ChargeResult(True, refund["id"], "", "")
    if status in ("pending", "requires_action"):
        raise PspOutcomeUnknown(f"refund {refund['id']} is still {status}")
    code = _field(refund, "failure_reason") or status or "refund_failed"
    return ChargeResult(False, refund["id"], code, f"the PSP did not refund ({status})")


def refused_result(error: stripe.InvalidRequestError) -> ChargeResult:
    return ChargeResult(False, "", error.code or "refund_refused", error.user_message or "")


def result_of_payout(payout: stripe.StripeObject) -> ChargeResult:
    status = _field(payout, "status")
    if status == "paid":
        return ChargeResult(True, payout["id"], "", "")
    if status in PAYOUT_PENDING_STATUSES:
        raise PspOutcomeUnknown(f"payout {payout['id']} is still {status}")
    code = _field(payout, "failure_code") or status or "payout_failed"
    return ChargeResult(False, payout["id"], code, _field(payout, "failure_message") or "")


def declined_result(error: stripe.CardError) -> ChargeResult:
    details = error.error
    intent = _field_object(details, "payment_intent") if details is not None else None
    decline_code = _field(details, "decline_code") if details is not None else None
    code = decline_code or error.code or "card_declined"
    reference = _field(intent, "id") if intent is not None else None
    return ChargeResult(False, reference or "", code, error.user_message or "")


def _field(stripe_object: stripe.StripeObject, name: str) -> str | None:
    # The SDK raises AttributeError for fields the response left out (Stripe omits e.g. decline_code).
    value = getattr(stripe_object, name, None)
    return value if isinstance(value, str) else None


def _field_object(stripe_object: stripe.StripeObject, name: str) -> stripe.StripeObject | None:
    value = getattr(stripe_object, name, None)
    return value if isinstance(value, stripe.StripeObject) else None


def translate_error(error: Exception, action: str) -> PspOutcomeUnknown | PspRequestRejected:
    """Maps an SDK error to the port. Anything not known to be a rejection counts as unknown,
    because treating a charge that happened as failed would lose track of money."""
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return PspRequestRejected(f"{action}: the PSP rejected our credentials (HTTP {error.http_status})")
    if isinstance(error, stripe.IdempotencyError):
        return PspRequestRejected(f"{action}: idempotency key reused with different parameters")
    if isinstance(error, stripe.InvalidRequestError) and error.code != "idempotency_key_in_use":
        return PspRequestRejected(
            f"{action}: invalid request (code={error.code}, param={error.param}): {error.user_message}"
        )
    if isinstance(error, stripe.RateLimitError):
        return PspOutcomeUnknown(f"{action}: rate limited", _retry_after_s(error.headers))
    if isinstance(error, stripe.StripeError):
        status = error.http_status if error.http_status is not None else "none"
        code = (_field(error.error, "code") if error.error is not None else None) or error.code
        return PspOutcomeUnknown(f"{action}: {type(error).__name__} (HTTP {status}, code={code})")
    return PspOutcomeUnknown(f"{action}: {type(error).__name__} talking to the PSP")


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                return None  # an HTTP date; the executor's own backoff applies
            return min(seconds, MAX_RETRY_AFTER_S) if math.isfinite(seconds) and seconds >= 0 else None
    return None
