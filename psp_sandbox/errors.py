"""Stripe's error shapes, so the official SDK raises the same exception classes it would against Stripe."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JsonObject = dict[str, Any]
ApiResult = tuple[int, JsonObject]  # what an endpoint answers: HTTP status and JSON body

DOC_URL_BASE = "https://stripe.com/docs/error-codes/"


class StripeHttpError(Exception):
    """An error answer. Raised before an endpoint starts executing, so it is never stored for replay."""

    def __init__(self, status: int, error: JsonObject, headers: dict[str, str] | None = None) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.headers = headers or {}

    def to_response(self) -> web.Response:
        return json_response({"error": self.error}, status=self.status, headers=self.headers)


def json_response(body: JsonObject, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(error_type: str, message: str, param: str | None, code: str | None) -> JsonObject:
    error: JsonObject = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = DOC_URL_BASE + code.replace("_", "-")
    if param is not None:
        error["param"] = param
    return error


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> StripeHttpError:
    return StripeHttpError(400, _error("invalid_request_error", message, param, code))


def parameter_missing(param: str) -> StripeHttpError:
    return invalid_request(f"Missing required param: {param}.", param, "parameter_missing")


def parameter_invalid_integer(param: str) -> StripeHttpError:
    return invalid_request("Invalid integer: must be a whole number.", param, "parameter_invalid_integer")


def resource_missing(message: str, param: str | None = None, *, status: int | None = None) -> StripeHttpError:
    """404 for the object in the URL; 400 by default for one named by a parameter."""
    if status is None:
        status = 400 if param is not None else 404
    return StripeHttpError(status, _error("invalid_request_error", message, param, "resource_missing"))


def refused(message: str, code: str, param: str | None = None) -> ApiResult:
    """A 400 found while executing (a refund the charge cannot give): answered, not raised, so it is
    stored for idempotent replay like the card errors, as Stripe keeps every result of an executed request."""
    return 400, {"error": _error("invalid_request_error", message, param, code)}


def unrecognized_url(method: str, path: str) -> StripeHttpError:
    message = (
        f"Unrecognized request URL ({method}: {path}). "
        "Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
    )
    return StripeHttpError(404, _error("invalid_request_error", message, None, None))


def authentication_failed(message: str) -> StripeHttpError:
    return StripeHttpError(401, _error("authentication_error", message, None, None))


def idempotency_mismatch(key: str) -> StripeHttpError:
    message = (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        f"Try using a key other than '{key}' if you meant to execute a different request."
    )
    return StripeHttpError(400, _error("idempotency_error", message, None, None))


def idempotency_key_in_use(key: str) -> StripeHttpError:
    message = (
        f"There is currently another in-progress request using this Stripe token (probably the idempotency "
        f"key '{key}'). Please try again later."
    )
    error = _error("invalid_request_error", message, None, "idempotency_key_in_use")
    return StripeHttpError(409, error, {"Stripe-Should-Retry": "true"})


def api_error() -> StripeHttpError:
    message = "An unknown error occurred while processing your request. (Injected by the PSP sandbox.)"
    return StripeHttpError(500, _error("api_error", message, None, None))


def rate_limited(retry_after_s: int) -> StripeHttpError:
    message = "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."
    error = _error("rate_limit_error", message, None, "rate_limit")
    return StripeHttpError(429, error, {"Retry-After": str(retry_after_s)})
