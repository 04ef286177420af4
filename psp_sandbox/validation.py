"""Validation of request parameters with Stripe's messages, params and codes: the shared checks, and
PaymentIntent create parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psp_sandbox import errors
from psp_sandbox.card_outcomes import is_known_payment_method
from psp_sandbox.forms import FormDict, FormError, FormValue, as_list, as_string_map

MAX_AMOUNT_MINOR = 99_999_999
_INTEGER = re.compile(r"-?[0-9]{1,19}")
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_DESCRIPTION_LENGTH = 1000
SUPPORTED_PAYMENT_METHOD_TYPES = frozenset({"card"})
SUPPORTED_CURRENCIES = frozenset(
    {"aed", "aud", "bhd", "brl", "cad", "chf", "clp", "cny", "czk", "dkk", "eur", "gbp", "hkd", "huf"}
    | {"idr", "ils", "inr", "isk", "jod", "jpy", "krw", "kwd", "mxn", "myr", "nok", "nzd", "omr", "php"}
    | {"pln", "ron", "sek", "sgd", "thb", "tnd", "try", "twd", "usd", "vnd", "zar"}
)
ALLOWED_PARAMS = frozenset(
    {"amount", "currency", "payment_method", "confirm", "metadata", "description", "expand"}
    # Stripe renamed the request parameter in API 2026-10-28.endive; both versions are accepted.
    | {"payment_method_types", "allowed_payment_method_types"}
)


@dataclass(frozen=True)
class CreateParams:
    amount: int
    currency: str
    payment_method: str | None
    confirm: bool
    payment_method_types: list[str]
    metadata: dict[str, str]
    description: str | None


def parse_create_params(form: FormDict) -> CreateParams:
    reject_unknown_params(form, ALLOWED_PARAMS)
    try:
        return CreateParams(
            amount=amount_param(form),
            currency=currency_param(form),
            payment_method=_payment_method(form),
            confirm=_boolean(form, "confirm"),
            payment_method_types=_payment_method_types(form),
            metadata=metadata_param(form),
            description=optional_string_param(form, "description", MAX_DESCRIPTION_LENGTH),
        )
    except FormError as error:
        raise errors.invalid_request(str(error), error.param) from None


def reject_unknown_params(form: FormDict, allowed: frozenset[str]) -> None:
    for name in form:
        if name not in allowed:
            raise errors.invalid_request(f"Received unknown parameter: {name}", name, "parameter_unknown")


def string_param(form: FormDict, name: str) -> str | None:
    value: FormValue | None = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.invalid_request(f"Invalid string: {name} must be a string.", name)
    return value


def amount_param(form: FormDict) -> int:
    raw = string_param(form, "amount")
    if raw is None:
        raise errors.parameter_missing("amount")
    if _INTEGER.fullmatch(raw) is None:
        raise errors.parameter_invalid_integer("amount")
    amount = int(raw)
    if amount < 1:
        raise errors.invalid_request("This value must be greater than or equal to 1.", "amount", "amount_too_small")
    if amount > MAX_AMOUNT_MINOR:
        message = f"Amount must be no more than {MAX_AMOUNT_MINOR} in the smallest currency unit."
        raise errors.invalid_request(message, "amount", "amount_too_large")
    return amount


def currency_param(form: FormDict) -> str:
    raw = string_param(form, "currency")
    if raw is None:
        raise errors.parameter_missing("currency")
    currency = raw.lower()
    if currency not in SUPPORTED_CURRENCIES:
        supported = ", ".join(sorted(SUPPORTED_CURRENCIES))
        raise errors.invalid_request(
            f"Invalid currency: {raw}. Stripe currently supports these currencies: {supported}", "currency"
        )
    return currency


def _payment_method(form: FormDict) -> str | None:
    token = string_param(form, "payment_method")
    if token is not None and not is_known_payment_method(token):
        raise errors.resource_missing(f"No such PaymentMethod: '{token}'", "payment_method")
    return token


def _boolean(form: FormDict, name: str) -> bool:
    raw = string_param(form, name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise errors.invalid_request(f"Invalid boolean: {raw}", name)


def _payment_method_types(form: FormDict) -> list[str]:
    names = [name for name in ("payment_method_types", "allowed_payment_method_types") if name in form]
    if not names:
        return ["card"]
    if len(names) > 1:
        message = "You may only specify one of these parameters: " + ", ".join(names) + "."
        raise errors.invalid_request(message, names[1])
    types: list[str] = []
    for item in as_list(form[names[0]], names[0]):
        if not isinstance(item, str) or item not in SUPPORTED_PAYMENT_METHOD_TYPES:
            message = f"The payment method type provided: {item} is invalid."
            raise errors.invalid_request(message, names[0], "payment_intent_invalid_parameter")
        types.append(item)
    return types or ["card"]


def metadata_param(form: FormDict) -> dict[str, str]:
    raw = form.get("metadata")
    try:
        metadata = {} if raw is None else as_string_map(raw, "metadata")
    except FormError as error:
        raise errors.invalid_request(str(error), error.param) from None
    if len(metadata) > MAX_METADATA_KEYS:
        raise errors.invalid_request(f"Metadata can have at most {MAX_METADATA_KEYS} keys.", "metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_LENGTH:
            message = f"Metadata keys can have at most {MAX_METADATA_KEY_LENGTH} characters."
            raise errors.invalid_request(message, f"metadata[{key}]")
        if len(value) > MAX_METADATA_VALUE_LENGTH:
            message = f"Metadata values can have at most {MAX_METADATA_VALUE_LENGTH} characters."
            raise errors.invalid_request(message, f"metadata[{key}]")
    return metadata


def optional_string_param(form: FormDict, name: str, max_length: int) -> str | None:
    value = string_param(form, name)
    if value is not None and len(value) > max_length:
        raise errors.invalid_request(f"{name} can have at most {max_length} characters.", name)
    return value
