"""Payout endpoints, after Stripe's Payouts API (to a seller's external bank account): create, retrieve,
list, and search by metadata.

Where the sandbox differs from Stripe, on purpose:
- A payout is final when created: `paid`, or `failed` with the bank's `failure_code`, as its destination
  decides (bank_accounts.py). On Stripe it starts `pending` (then `in_transit`) and becomes `paid` or
  `failed` days later, announced by `payout.paid` / `payout.failed` webhooks; creating it answers 200 in
  both cases, as here. The sandbox sends that webhook at once (announce.py).
- `destination` is required; Stripe would fall back on the account's default external account.
- `GET /v1/payouts/search` does not exist on Stripe, which cannot search payouts. It stands in for
  recovery by listing: a caller that lost the answer to a create finds its payout with
  `query=metadata['payout_id']:'...'`, in the language of PaymentIntent search.
"""

from __future__ import annotations

from psp_sandbox import errors
from psp_sandbox.bank_accounts import failure_for, is_bank_account
from psp_sandbox.errors import ApiResult, JsonObject
from psp_sandbox.forms import FormDict
from psp_sandbox.ids import new_id
from psp_sandbox.listing import LIST_PARAMS, list_page, search_page
from psp_sandbox.state import SandboxState
from psp_sandbox.validation import (
    MAX_DESCRIPTION_LENGTH,
    amount_param,
    currency_param,
    metadata_param,
    optional_string_param,
    reject_unknown_params,
    string_param,
)

LIST_URL = "/v1/payouts"
SEARCH_URL = "/v1/payouts/search"
CREATE_PARAMS = frozenset({"amount", "currency", "destination", "metadata", "description"})


def create_payout(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, CREATE_PARAMS)
    amount = amount_param(form)
    currency = currency_param(form)
    destination = _destination(form)
    metadata = metadata_param(form)
    description = optional_string_param(form, "description", MAX_DESCRIPTION_LENGTH)
    failure = failure_for(destination)
    now_s = state.clock.now_s()
    payout: JsonObject = {
        "id": new_id("po"),
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": now_s,
        "automatic": False,
        "balance_transaction": new_id("txn"),
        "created": now_s,
        "currency": currency,
        "description": description,
        "destination": destination,
        # Stripe gives a failed payout a second balance transaction that returns the money to the balance.
        "failure_balance_transaction": new_id("txn") if failure else None,
        "failure_code": failure.code if failure else None,
        "failure_message": failure.message if failure else None,
        "livemode": False,
        "metadata": metadata,
        "method": "standard",
        "original_payout": None,
        "reconciliation_status": "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": "failed" if failure else "paid",
        "trace_id": None,
        "type": "bank_account",
    }
    record = (
        None
        if failure
        else {
            "stripe_payout_id": payout["id"],
            "payout_id": metadata.get("payout_id"),
            "amount": amount,
            "currency": currency,
            "destination": destination,
            "metadata": metadata,
            "created": now_s,
            "idempotency_key": idempotency_key,
        }
    )
    state.payouts.add(payout, record)
    return 200, payout


def _destination(form: FormDict) -> str:
    destination = string_param(form, "destination")
    if destination is None:
        raise errors.parameter_missing("destination")
    if not is_bank_account(destination):
        raise errors.resource_missing(f"No such external account: '{destination}'", "destination")
    return destination


def retrieve_payout(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    payout_id = path_params["payout"]
    payout = state.payouts.index.get(payout_id)
    if payout is None:
        raise errors.resource_missing(f"No such payout: '{payout_id}'")
    return 200, payout


def list_payouts(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    reject_unknown_params(form, LIST_PARAMS)
    return 200, list_page(state.payouts.index.newest_first(), form, LIST_URL, "payout")


def search_payouts(
    state: SandboxState, form: FormDict, path_params: dict[str, str], idempotency_key: str | None
) -> ApiResult:
    return 200, search_page(state.payouts.index, form, SEARCH_URL)
