"""The /v1 request pipeline: authentication, injected faults, idempotency, then the endpoint."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from aiohttp import web

from psp_sandbox import errors
from psp_sandbox.errors import ApiResult, StripeHttpError
from psp_sandbox.faults import Fault, FaultKind
from psp_sandbox.forms import FormDict, FormError, parse_form
from psp_sandbox.idempotency import MAX_KEY_LENGTH, StoredResponse
from psp_sandbox.ids import new_id
from psp_sandbox.state import SandboxState

Endpoint = Callable[[SandboxState, FormDict, dict[str, str], str | None], ApiResult]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_KEY = web.AppKey("psp_sandbox_state", SandboxState)
TEST_KEY_PREFIX = "sk_test_"
# The scheme and host the current request came to, for the absolute URLs some objects carry (a report
# file's `url`): the sandbox answers on whatever name its clients reach it by.
REQUEST_BASE_URL: ContextVar[str] = ContextVar("request_base_url", default="")


def v1_handler(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        request_id = new_id("req")
        REQUEST_BASE_URL.set(f"{request.scheme}://{request.host}")  # each request runs in a task of its own
        try:
            response = await _handle(request, endpoint, request_id)
        except StripeHttpError as error:
            response = error.to_response()
        response.headers["Request-Id"] = request_id
        return response

    return handle


async def _handle(request: web.Request, endpoint: Endpoint, request_id: str) -> web.Response:
    state = request.app[STATE_KEY]
    scope = authenticate(request)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        raise errors.invalid_request(f"Idempotency keys must be 1 to {MAX_KEY_LENGTH} characters long.")
    fault = state.faults.take(request.path, idempotency_key)
    try:
        _raise_injected_error(fault, idempotency_key)
        return await _execute(request, endpoint, request_id, scope=scope, idempotency_key=idempotency_key, fault=fault)
    finally:
        # Whatever the answer, even an error, it is lost with the connection.
        if fault is not None and fault.kind is FaultKind.DROP_RESPONSE:
            _drop_connection(request)


def _raise_injected_error(fault: Fault | None, idempotency_key: str | None) -> None:
    """Injected 500s, 429s and 409s happen before anything else: the request did nothing."""
    if fault is None:
        return
    if fault.kind is FaultKind.HTTP_500:
        raise errors.api_error()
    if fault.kind is FaultKind.HTTP_429:
        raise errors.rate_limited(fault.retry_after_s)
    if fault.kind is FaultKind.HTTP_409_IN_FLIGHT:
        assert idempotency_key is not None, "the fault only matches requests with a key"
        raise errors.idempotency_key_in_use(idempotency_key)


async def _execute(
    request: web.Request,
    endpoint: Endpoint,
    request_id: str,
    *,
    scope: str,
    idempotency_key: str | None,
    fault: Fault | None,
) -> web.Response:
    state = request.app[STATE_KEY]
    form = await _read_form(request)
    path_params = dict(request.match_info)
    if request.method != "POST" or idempotency_key is None:
        await _delay_before(state, fault)
        status, body = endpoint(state, form, path_params, idempotency_key)
        await _delay_after(state, fault)
        return _response(status, _encode(body))

    fingerprint = _fingerprint(request, form)
    replay = state.idempotency.begin(scope, idempotency_key, fingerprint)
    if replay is not None:
        await _delay_before(state, fault)
        response = _response(replay.status, replay.body)
        response.headers.update(
            {
                "Idempotent-Replayed": "true",
                "Original-Request": replay.request_id,
                "Idempotency-Key": idempotency_key,
            }
        )
        await _delay_after(state, fault)
        return response
    try:
        # The key is held across the delay, so a concurrent retry sees 409 as it would on Stripe.
        await _delay_before(state, fault)
        status, body = endpoint(state, form, path_params, idempotency_key)
    except BaseException:
        state.idempotency.release(scope, idempotency_key)
        raise
    encoded = _encode(body)
    if status >= 500:
        state.idempotency.release(scope, idempotency_key)
    else:
        state.idempotency.complete(scope, idempotency_key, StoredResponse(status, encoded, request_id))
    response = _response(status, encoded)
    response.headers["Idempotency-Key"] = idempotency_key
    await _delay_after(state, fault)
    return response


def _drop_connection(request: web.Request) -> None:
    # aiohttp then fails to write the answer to the closed transport and drops it quietly.
    if request.transport is not None:
        request.transport.abort()


def authenticate(request: web.Request) -> str:
    """Returns the idempotency scope: Stripe keeps keys per account, here per API key (hashed)."""
    api_key = _api_key(request.headers.get("Authorization", ""))
    if not api_key:
        raise errors.authentication_failed(
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
        )
    if not api_key.startswith(TEST_KEY_PREFIX) or len(api_key) <= len(TEST_KEY_PREFIX):
        masked = f"{api_key[:8]}{'*' * 8}{api_key[-4:]}" if len(api_key) > 12 else "****"
        raise errors.authentication_failed(f"Invalid API Key provided: {masked}")
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _api_key(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme == "Bearer":
        return credentials.strip()
    if scheme == "Basic":
        # `curl -u sk_test_...:` as in Stripe's docs: the key is the user name, the password empty.
        try:
            return base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


async def _read_form(request: web.Request) -> FormDict:
    try:
        if request.method == "GET":
            return parse_form(request.query_string)
        return parse_form(await request.text())
    except FormError as error:
        raise errors.invalid_request(str(error), error.param) from None


def _fingerprint(request: web.Request, form: FormDict) -> str:
    canonical = json.dumps([request.method, request.path, form], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _delay_before(state: SandboxState, fault: Fault | None) -> None:
    if fault is not None and fault.kind is FaultKind.LATENCY:
        await state.sleep(fault.latency_ms / 1000)


async def _delay_after(state: SandboxState, fault: Fault | None) -> None:
    # The effect is already recorded and stored for replay; only the answer is late.
    if fault is not None and fault.kind is FaultKind.TIMEOUT_AFTER_CHARGE:
        await state.sleep(fault.latency_ms / 1000)


def _encode(body: errors.JsonObject) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _response(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def unrecognized_url(request: web.Request) -> web.StreamResponse:
    try:
        authenticate(request)
        raise errors.unrecognized_url(request.method, request.path)
    except StripeHttpError as error:
        return error.to_response()
