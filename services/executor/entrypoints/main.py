"""The executor process: the request consumer, the worker loop and the admin API on one platform."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from settle.executor.v1 import executor_pb2_grpc

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import BackgroundLoop, ServiceProcess
from services.executor.adapters.psp.stripe_gateway import StripeGateway
from services.executor.adapters.psp.stripe_webhooks import StripeWebhookVerifier
from services.executor.config import ExecutorSettings
from services.executor.entrypoints.consumer import TOPICS, RequestsHandler
from services.executor.entrypoints.grpc import SCOPES, SERVICE_NAME, ExecutorServicer
from services.executor.entrypoints.webhook_http import WebhookServer, create_webhook_app
from services.executor.entrypoints.worker_loop import WorkerLoop
from services.executor.psp_port import MoneyOutGateway, PaymentGateway
from services.executor.retry_policy import RetryPolicy
from services.executor.service.admin import ExecutorAdmin
from services.executor.service.metrics import ExecutorMetrics
from services.executor.service.psp_calls import ChargeCalls, PayoutCalls, PspCalls, RefundCalls
from services.executor.service.webhook_metrics import WebhookMetrics
from services.executor.service.webhooks import WebhookProcessor
from services.executor.service.worker import ExecutionWorker, WorkerConfig

SERVICE = "executor"


class Gateway(PaymentGateway, MoneyOutGateway, Protocol):
    """A PSP adapter that charges, refunds and pays out (StripeGateway)."""


def build_webhook_server(platform: Platform, settings: ExecutorSettings, metrics: ExecutorMetrics) -> WebhookServer:
    verifier = StripeWebhookVerifier(settings.webhook_secret.get_secret_value(), settings.webhook_tolerance_s)
    webhook_metrics = WebhookMetrics(platform.metrics, metrics)
    processor = WebhookProcessor(platform.engine, on_events=platform.relay.wake, metrics=webhook_metrics)
    return WebhookServer(
        create_webhook_app(verifier, processor, webhook_metrics),
        processor,
        host=settings.webhook_host,
        port=settings.webhook_port,
        retention_s=settings.webhook_event_retention_days * 86_400,
    )


def build_worker(
    platform: Platform, settings: ExecutorSettings, calls: PspCalls[Any], metrics: ExecutorMetrics | None = None
) -> ExecutionWorker[Any]:
    config = WorkerConfig(
        worker_id=settings.worker_id,
        policy=RetryPolicy(settings.retry_budget, settings.retry_base_ms, settings.retry_max_ms),
        stale_claim_s=settings.stale_claim_s,
        call_deadline_s=settings.call_deadline_s,
        recovery_after_s=settings.recovery_after_s,
        max_recoveries=settings.max_recoveries,
    )
    return ExecutionWorker(platform.engine, calls, config, on_events=platform.relay.wake, metrics=metrics)


async def create_service(settings: ExecutorSettings, gateway: Gateway | None = None) -> tuple[ServiceProcess, int]:
    """Builds and starts the platform and registers everything; the caller runs the process.

    A gateway passed in stays the caller's to close; one built here from the settings is closed
    when the process shuts down.
    """
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    owned_gateway = None
    if gateway is None:
        gateway = owned_gateway = StripeGateway(
            settings.psp_api_key, settings.psp_api_base, timeout_s=settings.psp_timeout_s
        )
    metrics = ExecutorMetrics(platform.metrics)
    platform.add_gauge_query("executions", metrics.sample_executions)
    # One worker loop per kind, each with its own slots, so a batch of payouts never starves charges.
    loops = {
        name: WorkerLoop(
            build_worker(platform, settings, calls, metrics),
            concurrency=settings.worker_concurrency,
            claim_batch_size=settings.claim_batch_size,
            poll_interval_s=settings.worker_poll_interval_ms / 1000,
        )
        for name, calls in (
            ("worker", ChargeCalls(gateway)),
            ("refunds", RefundCalls(gateway)),
            ("payouts", PayoutCalls(gateway)),
        )
    }

    def wake_all() -> None:
        for loop in loops.values():
            loop.wake()

    platform.add_consumer("requests", TOPICS, RequestsHandler(), wake_all)
    # Registered after the consumer so that shutdown (reverse order) stops the workers first and the
    # relay last, draining the outcome events of the calls the workers finished.
    for name, loop in loops.items():
        platform.add_loop(BackgroundLoop(f"executor-{name}", loop.run, loop.stop))
    if settings.webhook_port:
        # Last registered, so first stopped: no webhook completes an execution once the relay drains.
        webhooks = build_webhook_server(platform, settings, metrics)
        platform.add_loop(BackgroundLoop("executor-webhooks", webhooks.run, webhooks.stop))
    servicer = ExecutorServicer(ExecutorAdmin(platform.engine, on_requeued=wake_all))
    process, port = platform.build_process(
        [(executor_pb2_grpc.add_ExecutorServiceServicer_to_server, servicer, SERVICE_NAME)], SCOPES
    )
    if owned_gateway is not None:
        process.cleanup.append(owned_gateway.close)
    return process, port


async def _serve(settings: ExecutorSettings) -> None:
    process, _ = await create_service(settings)
    await process.run()


def main() -> None:
    settings = load_settings(ExecutorSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
