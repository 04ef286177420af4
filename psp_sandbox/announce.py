"""Which webhook events each money-moving endpoint announces, as Stripe would (webhooks.py delivers them).

The endpoints stay unaware of webhooks: `announced` wraps one and reads its answer. An idempotent replay
never reaches the endpoint, so it announces nothing again, as on Stripe; refusals that create no object
(a refund larger than what is left) announce nothing either.
"""

from __future__ import annotations

from psp_sandbox.api import Endpoint
from psp_sandbox.charges import charge_object
from psp_sandbox.errors import ApiResult, JsonObject
from psp_sandbox.forms import FormDict
from psp_sandbox.payment_intents import CARD_ERROR_STATUS
from psp_sandbox.state import SandboxState

# PaymentIntent statuses that Stripe announces, by the event it sends.
_INTENT_EVENTS = {"succeeded": "payment_intent.succeeded", "requires_action": "payment_intent.requires_action"}
# The sandbox's payouts are final when created (payouts.py), so their final event follows at once.
_PAYOUT_EVENTS = {"paid": "payout.paid", "failed": "payout.failed"}


def announced(endpoint: Endpoint) -> Endpoint:
    def run(state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None) -> ApiResult:
        status, body = endpoint(state, form, path_params, idempotency_key)
        for event_type, data_object in events_for(state, status, body):
            state.webhooks.publish(event_type, data_object, idempotency_key)
        return status, body

    return run


def events_for(state: SandboxState, status: int, body: JsonObject) -> list[tuple[str, JsonObject]]:
    """The (event type, object) pairs an endpoint's answer announces."""
    if status == CARD_ERROR_STATUS:
        intent = body.get("error", {}).get("payment_intent")
        return [("payment_intent.payment_failed", intent)] if isinstance(intent, dict) else []
    if status != 200:
        return []
    kind = body.get("object")
    if kind == "payment_intent" and body["status"] in _INTENT_EVENTS:
        return [(_INTENT_EVENTS[body["status"]], body)]
    if kind == "refund":
        events = [("refund.created", body)]
        intent = state.store.intent(body["payment_intent"])
        if intent is not None:
            refunded = state.refunds.refunded_on_charge(body["charge"])
            events.append(("charge.refunded", charge_object(intent, refunded)))
        return events
    if kind == "payout" and body["status"] in _PAYOUT_EVENTS:
        return [(_PAYOUT_EVENTS[body["status"]], body)]
    return []
