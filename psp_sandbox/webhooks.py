"""Webhook events as Stripe sends them: an Event object per change, signed, POSTed to one endpoint at least once.

Signing follows Stripe (https://docs.stripe.com/webhooks#verify-manually): the `Stripe-Signature` header is
`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint secret>`, with one `v1`
per secret while a secret is being rolled. Every attempt is signed afresh at the time of sending, so a
retry minutes later is still inside the receiver's tolerance; the body, and so the event id, stays the same.

Delivery is a task per event, off the API request's path: non-2xx answers, timeouts and connection errors
are retried with exponential backoff up to a budget (Stripe retries for three days; the sandbox
compresses that to minutes), so events published before the receiver listens (`settle up` starts the
sandbox before the services) arrive once it does. Order is not guaranteed, as on Stripe. Pending
deliveries live in memory only: a sandbox restart loses them (the executor's recovery search covers that).

Test switches (`POST /_sandbox/webhooks`, webhook_admin.py): `duplicate_delivery` sends every event twice,
`delay_ms` holds each event before its first attempt, `signature_offset_s` signs as if the sandbox's
clock were off by that much (negative: a stale signature, positive: one from the future).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from psp_sandbox.clock import SandboxClock
from psp_sandbox.ids import new_id
from psp_sandbox.webhook_deliveries import Delivery, DeliveryPolicy, DeliveryStats
from psp_sandbox.webhook_settings import WebhookSettings, signature_header

JsonObject = dict[str, Any]

API_VERSION = "2026-10-28.endive"  # the version the executor's SDK pins (Stripe sends the account's)
MAX_PENDING_DELIVERIES = 10_000  # beyond this, new deliveries are dropped (and counted): bounded memory
MAX_CONCURRENT_POSTS = 16
RECENT_DELIVERIES = 200  # kept for GET /_sandbox/webhooks
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

_logger = logging.getLogger(__name__)


@dataclass
class _Runtime:
    """What only exists inside the event loop: created on first use, so the sender can be built outside it."""

    session: aiohttp.ClientSession
    semaphore: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_POSTS))


class WebhookSender:
    def __init__(
        self, clock: SandboxClock, settings: WebhookSettings | None = None, policy: DeliveryPolicy | None = None
    ) -> None:
        self._clock = clock
        self._started = settings or WebhookSettings()
        self.settings = replace(self._started)
        self.policy = policy or DeliveryPolicy()
        self.stats = DeliveryStats()
        self.recent: deque[Delivery] = deque(maxlen=RECENT_DELIVERIES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runtime: _Runtime | None = None
        self._closing = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def publish(self, event_type: str, data_object: JsonObject, idempotency_key: str | None = None) -> str | None:
        """Creates an event about `data_object` and schedules its delivery. Must run on the event loop.

        Returns the event id, or None when no endpoint is configured (no event is created then, as an
        account without webhook endpoints gets none delivered).
        """
        settings = self.settings
        if settings.url is None or not settings.secrets:
            return None
        event_id = new_id("evt")
        event: JsonObject = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": self._clock.now_s(),
            "data": {"object": data_object},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": idempotency_key},
            "type": event_type,
        }
        # Encoded now: the body is a snapshot of the object as of the change, whatever happens to it later.
        payload = json.dumps(event, separators=(",", ":")).encode()
        self.stats.published += 1
        for _ in range(2 if settings.duplicate_delivery else 1):
            self._schedule(Delivery(event_id, event_type, settings.url, payload))
        return event_id

    def _schedule(self, delivery: Delivery) -> None:
        if len(self._tasks) >= MAX_PENDING_DELIVERIES:
            self.stats.dropped += 1
            _logger.error("webhook %s dropped: %d deliveries already pending", delivery.event_id, len(self._tasks))
            return
        self.recent.append(delivery)
        task = asyncio.get_running_loop().create_task(self._deliver(delivery), name=f"webhook-{delivery.event_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            if self.settings.delay_ms:
                await self._sleep(self.settings.delay_ms / 1000)
            while not self._closing.is_set():
                if await self._attempt(delivery):
                    delivery.state = "delivered"
                    self.stats.delivered += 1
                    return
                if delivery.attempts >= self.policy.max_attempts:
                    delivery.state = "given_up"
                    self.stats.given_up += 1
                    _logger.warning("webhook %s given up after %d attempts", delivery.event_id, delivery.attempts)
                    return
                await self._sleep(self.policy.backoff_s(delivery.attempts))
        except asyncio.CancelledError:
            delivery.state = "cancelled"
            raise

    async def _attempt(self, delivery: Delivery) -> bool:
        runtime = self._runtime_now()
        timestamp = int(time.time()) + self.settings.signature_offset_s  # real time: receivers compare to theirs
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature_header(delivery.payload, self.settings.secrets, timestamp),
        }
        async with runtime.semaphore:
            delivery.attempts += 1
            self.stats.attempts += 1
            try:
                async with runtime.session.post(
                    delivery.url,
                    data=delivery.payload,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.policy.timeout_s),
                    allow_redirects=False,  # as Stripe: a redirect is a failed delivery
                ) as response:
                    await response.read()
                    delivery.last_status = response.status
                    delivered = 200 <= response.status < 300
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                _logger.info("webhook %s attempt %d failed: %s", delivery.event_id, delivery.attempts, error)
                delivered = False
        if not delivered:
            self.stats.failed_attempts += 1
        return delivered

    def _runtime_now(self) -> _Runtime:
        if self._runtime is None:
            self._runtime = _Runtime(aiohttp.ClientSession())
        return self._runtime

    async def _sleep(self, seconds: float) -> None:
        """Waits, or less if the sender is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def reset(self) -> None:
        """Back to the settings the sandbox started with; events not delivered yet are forgotten."""
        self.settings = replace(self._started)
        for task in self._tasks:
            task.cancel()
        self.stats = DeliveryStats()
        self.recent.clear()

    async def close(self) -> None:
        self._closing.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runtime is not None:
            await self._runtime.session.close()
            self._runtime = None
