"""The payment process: the API, the outcomes consumer and the outbox relay on one platform."""

from __future__ import annotations

import asyncio

from settle.payment.v1 import payment_pb2_grpc

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import ServiceProcess
from services.payment.config import PaymentSettings
from services.payment.domain.validation import Limits
from services.payment.entrypoints.consumer import TOPICS, OutcomeHandler
from services.payment.entrypoints.grpc import SCOPES, SERVICE_NAME, PaymentServicer
from services.payment.service.create import PaymentCreator
from services.payment.service.queries import PaymentQueries
from services.payment.service.refund import RefundRequester

__all__ = ["PaymentSettings", "create_service", "main"]

SERVICE = "payment"


async def create_service(settings: PaymentSettings) -> tuple[ServiceProcess, int]:
    """Builds and starts the platform and registers everything; the caller runs the process."""
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    platform.add_consumer("outcomes", TOPICS, OutcomeHandler())
    limits = Limits(
        max_seller_orders=settings.max_seller_orders, max_checkout_total_minor=settings.max_checkout_total_minor
    )
    servicer = PaymentServicer(
        PaymentCreator(platform.engine, limits=limits, wake_relay=platform.relay.wake),
        PaymentQueries(platform.engine),
        RefundRequester(platform.engine, wake_relay=platform.relay.wake),
        watch_max_s=settings.watch_max_duration_s,
        watch_poll_s=settings.watch_poll_interval_ms / 1000,
    )
    return platform.build_process(
        [(payment_pb2_grpc.add_PaymentServiceServicer_to_server, servicer, SERVICE_NAME)], SCOPES
    )


async def _serve(settings: PaymentSettings) -> None:
    process, _ = await create_service(settings)
    await process.run()


def main() -> None:
    settings = load_settings(PaymentSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
