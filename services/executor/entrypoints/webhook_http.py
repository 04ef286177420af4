"""The PSP webhook endpoint, `POST /webhooks/psp`, on its own HTTP port in the executor process.

Translation only: the adapter verifies the signature and reads the event, the service acts on it.
- 200 `{"received": true, "disposition": ...}`: processed, now or before; the PSP stops redelivering.
- 400 `{"error": {"reason": ..., "message": ...}}`: not verified, too old or new, or malformed. Nothing of
  the body was used or stored; the log line has its size and a hash prefix, never its content. A body
  that verifies but is not a readable event is a PSP bug: it is answered 400 too, so that it shows as
  failing in the PSP's delivery log, where it must be raised, and not stored, because nothing in it can
  be trusted to key a record.
- 503: the database is unavailable; the PSP redelivers later (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Protocol

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from services.executor.psp_notices import PspNotice, WebhookRejected
from services.executor.service.webhook_metrics import WebhookMetrics
from services.executor.service.webhooks import Disposition

log = logging.getLogger(__name__)

ROUTE = "/webhooks/psp"
SIGNATURE_HEADER = "Stripe-Signature"
MAX_BODY_BYTES = 512 * 1024  # Stripe's event bodies are a few kB; larger is answered 413 unread
SHUTDOWN_TIMEOUT_S = 10.0
PRUNE_BATCH_SIZE = 1000
PRUNE_MAX_BATCHES = 100  # per sweep; the next sweep continues


class Verifier(Protocol):
    def verify(self, payload: bytes, signature_header: str | None) -> PspNotice: ...


class Processor(Protocol):
    async def process(self, notice: PspNotice) -> Disposition: ...

    async def prune(self, *, older_than_s: int, limit: int) -> int: ...


def create_webhook_app(
    verifier: Verifier, processor: Processor, metrics: WebhookMetrics | None = None
) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        payload = await request.read()
        try:
            notice = verifier.verify(payload, request.headers.get(SIGNATURE_HEADER))
        except WebhookRejected as rejected:
            if metrics is not None:
                metrics.rejected(rejected.reason.value)
            log.warning(
                "PSP webhook rejected: %s",
                rejected,
                extra={
                    "body_bytes": len(payload),
                    "body_sha256_prefix": hashlib.sha256(payload).hexdigest()[:16],
                    "remote": request.remote,
                },
            )
            return web.json_response(
                {"error": {"reason": rejected.reason.value, "message": rejected.message}}, status=400
            )
        try:
            disposition = await processor.process(notice)
        except (DBAPIError, OSError) as error:
            log.error("PSP webhook %s not processed, database unavailable: %s", notice.event_id, type(error).__name__)
            return web.json_response({"error": {"reason": "UNAVAILABLE", "message": "try again later"}}, status=503)
        log.info(
            "PSP webhook %s %s: %s",
            notice.event_type,
            notice.event_id,
            disposition,
            extra={"psp_event_id": notice.event_id, "execution_id": notice.execution_id},
        )
        return web.json_response({"received": True, "disposition": disposition.value})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.add_routes([web.post(ROUTE, receive)])
    return app


class WebhookServer:
    """The endpoint's HTTP server as a background loop: listens from start() (or run()) until stop(), and
    meanwhile forgets events older than the retention."""

    def __init__(
        self,
        app: web.Application,
        processor: Processor,
        *,
        host: str,
        port: int,
        retention_s: int,
        prune_interval_s: float = 3600.0,
    ) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        self._processor = processor
        self._host = host
        self._port = port
        self._retention_s = retention_s
        self._prune_interval_s = prune_interval_s
        self._started = False
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        """Listens; returns the port bound (useful with port 0)."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._started = True
        port = int(self._runner.addresses[0][1])
        log.info("PSP webhook endpoint listening on %s:%d%s", self._host, port, ROUTE)
        return port

    async def run(self) -> None:
        try:
            if not self._started:
                await self.start()
            while not self._stopping.is_set():
                await self._prune()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._prune_interval_s)
        finally:
            # Stops listening, then lets requests in flight finish (their transactions commit or roll back).
            await self._runner.cleanup()

    def stop(self) -> None:
        self._stopping.set()

    async def _prune(self) -> None:
        try:
            for _ in range(PRUNE_MAX_BATCHES):
                deleted = await self._processor.prune(older_than_s=self._retention_s, limit=PRUNE_BATCH_SIZE)
                if deleted < PRUNE_BATCH_SIZE or self._stopping.is_set():
                    return
        except (DBAPIError, OSError) as error:
            log.error("could not prune old PSP webhook events: %s", error)
