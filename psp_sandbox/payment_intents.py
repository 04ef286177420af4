"""PaymentIntent endpoints: create (and confirm), retrieve, search.

Endpoints are synchronous on purpose: with no await between reading and writing state, each one is
atomic on the event loop, so concurrent requests cannot interleave inside a charge.
"""

from __future__ import annotations

from typing import Any

from psp_sandbox import errors
from psp_sandbox.card_outcomes import Decline, Outcome, outcome_for
from psp_sandbox.charges import charge_object
from psp_sandbox.errors import ApiResult, JsonObject
from psp_sandbox.forms import FormDict, FormError, as_list
from psp_sandbox.ids import new_id
from psp_sandbox.listing import search_page
from psp_sandbox.state import SandboxState
from psp_sandbox.validation import CreateParams, parse_create_params, reject_unknown_params

CARD_ERROR_STATUS = 402
SEARCH_URL = "/v1/payment_intents/search"
RETRIEVE_PARAMS = frozenset({"expand"})
EXPANDABLE = frozenset({"latest_charge"})


def create_payment_intent(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    params = parse_create_params(form)
    if params.confirm and params.payment_method is None:
        message = "You cannot confirm this PaymentIntent because it's missing a payment method."
        raise errors.invalid_request(message, "payment_method", "payment_intent_unexpected_state")
    intent = _new_intent(state, params)
    if not params.confirm:
        intent["status"] = "requires_confirmation" if params.payment_method else "requires_payment_method"
        state.store.add_intent(intent)
        return 200, intent
    assert params.payment_method is not None
    outcome = outcome_for(params.payment_method)
    if isinstance(outcome, Decline):
        return _decline(state, intent, outcome)
    if outcome is Outcome.REQUIRES_ACTION:
        intent["status"] = "requires_action"
        intent["next_action"] = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect"},
        }
        state.store.add_intent(intent)
        return 200, intent
    charge_id = new_id("ch")
    intent.update(status="succeeded", amount_received=params.amount, latest_charge=charge_id)
    state.store.add_intent(intent)
    state.store.add_charge(
        {
            "payment_intent_id": intent["id"],
            "charge_id": charge_id,
            "amount": params.amount,
            "currency": params.currency,
            "payment_order_id": params.metadata.get("payment_order_id"),
            "metadata": params.metadata,
            "created": intent["created"],
            "idempotency_key": idempotency_key,
        }
    )
    return 200, intent


def _decline(state: SandboxState, intent: JsonObject, decline: Decline) -> ApiResult:
    # Like Stripe, a declined confirmation leaves a failed charge behind; it moves no money.
    charge_id = new_id("ch")
    error: JsonObject = {
        "type": "card_error",
        "code": decline.code,
        "charge": charge_id,
        "doc_url": errors.DOC_URL_BASE + decline.code.replace("_", "-"),
        "message": decline.message,
        "payment_method": {"id": intent["payment_method"], "object": "payment_method", "type": "card"},
    }
    if decline.decline_code is not None:
        error["decline_code"] = decline.decline_code
    if decline.param is not None:
        error["param"] = decline.param
    intent.update(status="requires_payment_method", latest_charge=charge_id, last_payment_error=error)
    state.store.add_intent(intent)
    return CARD_ERROR_STATUS, {"error": {**error, "payment_intent": intent}}


def _new_intent(state: SandboxState, params: CreateParams) -> JsonObject:
    intent_id = new_id("pi")
    intent: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "allowed_payment_method_types": params.payment_method_types,
        "amount": params.amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{new_id('cs')[3:]}",
        "confirmation_method": "automatic",
        "created": state.clock.now_s(),
        "currency": params.currency,
        "customer": None,
        "description": params.description,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": params.metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": params.payment_method,
        "payment_method_types": params.payment_method_types,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    return intent


def retrieve_payment_intent(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, RETRIEVE_PARAMS)
    intent_id = path_params["intent"]
    intent = state.store.intent(intent_id)
    if intent is None:
        raise errors.resource_missing(f"No such payment_intent: '{intent_id}'")
    if "latest_charge" not in _expand(form):
        return 200, intent
    charge_id = intent["latest_charge"]
    charge = None if charge_id is None else charge_object(intent, state.refunds.refunded_on_charge(charge_id))
    # A copy: the stored intent keeps the bare id, which is what every other answer shows.
    return 200, {**intent, "latest_charge": charge}


def _expand(form: FormDict) -> set[str]:
    raw = form.get("expand")
    try:
        names = [] if raw is None else as_list(raw, "expand")
    except FormError as error:
        raise errors.invalid_request(str(error), error.param) from None
    expanded: set[str] = set()
    for name in names:
        if not isinstance(name, str) or name not in EXPANDABLE:
            raise errors.invalid_request(f"This property cannot be expanded ({name}).", "expand")
        expanded.add(name)
    return expanded


def search_payment_intents(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    return 200, search_page(state.store.intents, form, SEARCH_URL)
