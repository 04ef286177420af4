"""Webhook settings and Stripe's signature scheme (webhooks.py delivers the events).

`Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed with the endpoint's
secret used as is (`whsec_...` included), one `v1` per secret while a secret is being rolled
(https://docs.stripe.com/webhooks#verify-manually).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

JsonObject = dict[str, Any]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix Stripe gives every signing secret, not a secret
MAX_SECRETS = 3
MAX_SECRET_LENGTH = 200
MAX_DELAY_MS = 600_000
MAX_SIGNATURE_OFFSET_S = 7 * 24 * 3600


class WebhookConfigError(ValueError):
    """A webhook setting that cannot work (the message says which and why)."""


@dataclass
class WebhookSettings:
    url: str | None = None
    secrets: tuple[str, ...] = ()
    duplicate_delivery: bool = False
    delay_ms: int = 0
    signature_offset_s: int = 0

    def to_json(self) -> JsonObject:
        # Never the secrets themselves: how many there are is all an admin reader needs.
        return {
            "url": self.url,
            "secret_count": len(self.secrets),
            "duplicate_delivery": self.duplicate_delivery,
            "delay_ms": self.delay_ms,
            "signature_offset_s": self.signature_offset_s,
        }


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(f"the webhook URL must be an absolute http(s) URL, got {url!r}")
    return url


def check_secrets(secrets: Sequence[str]) -> tuple[str, ...]:
    if not 1 <= len(secrets) <= MAX_SECRETS:
        raise WebhookConfigError(f"give 1 to {MAX_SECRETS} webhook secrets (more than one while rolling a secret)")
    for secret in secrets:
        if not secret.startswith(SECRET_PREFIX) or not len(SECRET_PREFIX) < len(secret) <= MAX_SECRET_LENGTH:
            raise WebhookConfigError(
                f"a webhook secret starts with {SECRET_PREFIX!r}, is followed by its key and is at most "
                f"{MAX_SECRET_LENGTH} characters long"
            )
    return tuple(secrets)


def signature_header(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """`t=...,v1=...[,v1=...]`: one v1 per secret, each an HMAC-SHA256 of `<t>.<payload>`."""
    signed = f"{timestamp}.".encode() + payload
    signatures = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={signature}" for signature in signatures)])
