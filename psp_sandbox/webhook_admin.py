"""`/_sandbox/webhooks`: see and change where events go, how they are signed, and the delivery test switches.

`GET` answers the settings (never the secrets), delivery counts and the latest deliveries. `POST` takes a
JSON object with any of: `url` (null turns webhooks off), `secrets` (a list of `whsec_...`; more than one
while rolling a secret), `duplicate_delivery` (bool), `delay_ms` (int), `signature_offset_s` (int).
`POST /_sandbox/reset` restores the settings the sandbox started with.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web

from psp_sandbox.api import STATE_KEY
from psp_sandbox.errors import JsonObject, json_response
from psp_sandbox.webhook_settings import (
    MAX_DELAY_MS,
    MAX_SIGNATURE_OFFSET_S,
    WebhookConfigError,
    WebhookSettings,
    check_secrets,
    check_url,
)
from psp_sandbox.webhooks import WebhookSender

FIELDS = frozenset({"url", "secrets", "duplicate_delivery", "delay_ms", "signature_offset_s"})


def _view(sender: WebhookSender) -> JsonObject:
    return {
        "settings": sender.settings.to_json(),
        "stats": sender.stats.to_json(),
        "pending": sender.pending,
        "recent": [delivery.to_json() for delivery in sender.recent],
    }


async def get_webhooks(request: web.Request) -> web.Response:
    return json_response(_view(request.app[STATE_KEY].webhooks))


async def update_webhooks(request: web.Request) -> web.Response:
    sender = request.app[STATE_KEY].webhooks
    try:
        text = await request.text()
        body = json.loads(text) if text.strip() else {}
        sender.settings = updated_settings(sender.settings, body)
    except (json.JSONDecodeError, WebhookConfigError) as error:
        return json_response({"error": {"type": "invalid_request_error", "message": str(error)}}, status=400)
    return json_response(_view(sender))


def updated_settings(current: WebhookSettings, body: Any) -> WebhookSettings:
    if not isinstance(body, dict) or not body or set(body) - FIELDS:
        raise WebhookConfigError(f"the body must be a JSON object holding some of {sorted(FIELDS)}")
    settings = replace(current)
    if "url" in body:
        url = body["url"]
        if url is not None and not isinstance(url, str):
            raise WebhookConfigError("'url' must be a string or null")
        settings.url = None if url is None else check_url(url)
    if "secrets" in body:
        secrets = body["secrets"]
        if not isinstance(secrets, list) or not all(isinstance(secret, str) for secret in secrets):
            raise WebhookConfigError("'secrets' must be a list of strings")
        settings.secrets = check_secrets(secrets)
    if "duplicate_delivery" in body:
        if not isinstance(body["duplicate_delivery"], bool):
            raise WebhookConfigError("'duplicate_delivery' must be true or false")
        settings.duplicate_delivery = body["duplicate_delivery"]
    if "delay_ms" in body:
        settings.delay_ms = _int_field(body, "delay_ms", 0, MAX_DELAY_MS)
    if "signature_offset_s" in body:
        limit = MAX_SIGNATURE_OFFSET_S
        settings.signature_offset_s = _int_field(body, "signature_offset_s", -limit, limit)
    if settings.url is not None and not settings.secrets:
        raise WebhookConfigError("a webhook URL needs 'secrets' to sign its events with")
    return settings


def _int_field(body: JsonObject, name: str, minimum: int, maximum: int) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise WebhookConfigError(f"'{name}' must be an integer from {minimum} to {maximum}")
    return value


def webhook_routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/webhooks", get_webhooks), web.post("/_sandbox/webhooks", update_webhooks)]
