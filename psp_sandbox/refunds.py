"""Refund endpoints, after Stripe's Refunds API: create (by PaymentIntent), retrieve, list.

A refund is `succeeded` when created, as card refunds on Stripe's test mode are. Like every endpoint it is
synchronous, so two refunds of one charge cannot both take what is left of it. The sandbox names the
charge to refund by `payment_intent` only; Stripe's `charge` parameter is refused as unknown.
Refusals found while executing (no successful charge, already refunded, more than is left) are answered
and stored for idempotent replay, like card errors; invalid parameters and unknown intents are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from psp_sandbox import errors
from psp_sandbox.errors import ApiResult, JsonObject
from psp_sandbox.forms import FormDict
from psp_sandbox.ids import new_id
from psp_sandbox.listing import LIST_PARAMS, list_page
from psp_sandbox.money import format_amount
from psp_sandbox.state import SandboxState
from psp_sandbox.validation import amount_param, metadata_param, reject_unknown_params, string_param

LIST_URL = "/v1/refunds"
CREATE_PARAMS = frozenset({"payment_intent", "amount", "metadata", "reason"})
REASONS = ("duplicate", "fraudulent", "requested_by_customer")


@dataclass(frozen=True)
class RefundParams:
    payment_intent: str
    amount: int | None  # None: everything not refunded yet
    metadata: dict[str, str]
    reason: str | None


def create_refund(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    params = _parse_create(form)
    intent = state.store.intent(params.payment_intent)
    if intent is None:
        message = f"No such payment_intent: '{params.payment_intent}'"
        raise errors.resource_missing(message, "payment_intent", status=404)
    if intent["status"] != "succeeded":
        message = f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund."
        return errors.refused(message, "charge_not_refundable", "payment_intent")
    charge_id = intent["latest_charge"]
    currency = intent["currency"]
    remaining = intent["amount_received"] - state.refunds.refunded_on_charge(charge_id)
    if remaining == 0:
        return errors.refused(f"Charge {charge_id} has already been refunded.", "charge_already_refunded")
    amount = remaining if params.amount is None else params.amount
    if amount > remaining:
        message = (
            f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded amount on charge "
            f"({format_amount(remaining, currency)})"
        )
        return errors.refused(message, "amount_too_large", "amount")
    refund: JsonObject = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "charge": charge_id,
        "created": state.clock.now_s(),
        "currency": currency,
        "description": None,
        "metadata": params.metadata,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "reason": params.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    record = {
        "stripe_refund_id": refund["id"],
        "payment_intent_id": intent["id"],
        "charge_id": charge_id,
        "amount": amount,
        "currency": currency,
        "payment_order_id": params.metadata.get("payment_order_id"),
        "metadata": params.metadata,
        "created": refund["created"],
        "idempotency_key": idempotency_key,
    }
    state.refunds.add(refund, record)
    return 200, refund


def _parse_create(form: FormDict) -> RefundParams:
    reject_unknown_params(form, CREATE_PARAMS)
    payment_intent = string_param(form, "payment_intent")
    if payment_intent is None:
        raise errors.parameter_missing("payment_intent")
    reason = string_param(form, "reason")
    if reason is not None and reason not in REASONS:
        message = f"Invalid reason: must be one of {', '.join(REASONS[:-1])}, or {REASONS[-1]}"
        raise errors.invalid_request(message, "reason")
    return RefundParams(
        payment_intent=payment_intent,
        amount=amount_param(form) if "amount" in form else None,
        metadata=metadata_param(form),
        reason=reason,
    )


def retrieve_refund(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    refund_id = path_params["refund"]
    refund = state.refunds.refund(refund_id)
    if refund is None:
        raise errors.resource_missing(f"No such refund: '{refund_id}'")
    return 200, refund


def list_refunds(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, LIST_PARAMS | {"payment_intent"})
    refunds = state.refunds.newest_first(string_param(form, "payment_intent"))
    return 200, list_page(refunds, form, LIST_URL, "refund")
