"""Application factory and an in-process runner, so tests can start the sandbox on port 0."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from psp_sandbox.admin import admin_routes
from psp_sandbox.announce import announced
from psp_sandbox.api import STATE_KEY, unrecognized_url, v1_handler
from psp_sandbox.files import file_contents, retrieve_file
from psp_sandbox.idempotency import DEFAULT_RETENTION_S
from psp_sandbox.payment_intents import create_payment_intent, retrieve_payment_intent, search_payment_intents
from psp_sandbox.payouts import create_payout, list_payouts, retrieve_payout, search_payouts
from psp_sandbox.refunds import create_refund, list_refunds, retrieve_refund
from psp_sandbox.report_admin import report_admin_routes
from psp_sandbox.report_runs import create_report_run, retrieve_report_run, retrieve_report_type
from psp_sandbox.state import SandboxState
from psp_sandbox.webhook_admin import webhook_routes
from psp_sandbox.webhook_settings import WebhookSettings

MAX_REQUEST_BYTES = 256 * 1024
SHUTDOWN_TIMEOUT_S = 5.0


def create_app(state: SandboxState) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE_KEY] = state
    app.add_routes(
        [
            web.post("/v1/payment_intents", v1_handler(announced(create_payment_intent))),
            # Search routes come before `{intent}` / `{payout}` so "search" is not taken for an id.
            web.get("/v1/payment_intents/search", v1_handler(search_payment_intents)),
            web.get("/v1/payment_intents/{intent}", v1_handler(retrieve_payment_intent)),
            web.post("/v1/refunds", v1_handler(announced(create_refund))),
            web.get("/v1/refunds", v1_handler(list_refunds)),
            web.get("/v1/refunds/{refund}", v1_handler(retrieve_refund)),
            web.post("/v1/payouts", v1_handler(announced(create_payout))),
            web.get("/v1/payouts", v1_handler(list_payouts)),
            web.get("/v1/payouts/search", v1_handler(search_payouts)),
            web.get("/v1/payouts/{payout}", v1_handler(retrieve_payout)),
            web.get("/v1/reporting/report_types/{report_type}", v1_handler(retrieve_report_type)),
            web.post("/v1/reporting/report_runs", v1_handler(create_report_run)),
            web.get("/v1/reporting/report_runs/{report_run}", v1_handler(retrieve_report_run)),
            web.get("/v1/files/{file}", v1_handler(retrieve_file)),
            web.get("/v1/files/{file}/contents", file_contents),
            web.route("*", "/v1/{tail:.*}", unrecognized_url),
            *admin_routes(),
            *report_admin_routes(),
            *webhook_routes(),
        ]
    )
    return app


@dataclass
class RunningSandbox:
    url: str
    state: SandboxState
    _runner: web.AppRunner

    async def close(self) -> None:
        self.state.begin_shutdown()
        await self._runner.cleanup()
        await self.state.webhooks.close()
        self.state.close()


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    data_dir: str | Path | None = None,
    *,
    idempotency_retention_s: int = DEFAULT_RETENTION_S,
    webhooks: WebhookSettings | None = None,
) -> RunningSandbox:
    state = SandboxState(idempotency_retention_s, Path(data_dir) if data_dir is not None else None, webhooks)
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        await state.webhooks.close()
        state.close()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningSandbox(url=f"http://{url_host}:{bound_port}", state=state, _runner=runner)
