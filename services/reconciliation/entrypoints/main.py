"""The reconciliation process: the booked-items consumer, the gRPC API and the outbox relay."""

from __future__ import annotations

import asyncio

from settle.reconciliation.v1 import reconciliation_pb2_grpc

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import BackgroundLoop, ServiceProcess
from services.common.tls import client_tls
from services.reconciliation.booked_items import TOPICS, BookedItemsHandler
from services.reconciliation.config import ReconciliationSettings
from services.reconciliation.entrypoints.grpc import SCOPES, ReconciliationServicer
from services.reconciliation.fee_booking import FeeBooker
from services.reconciliation.matching import MatchingRules
from services.reconciliation.metrics import OPEN_MISMATCHES_INTERVAL_S, ReconciliationMetrics
from services.reconciliation.nightly import NightlyReconciliation
from services.reconciliation.service import ReconciliationService
from services.reconciliation.settlement_sources import SandboxDailyFile, SettlementSource, StripeReportRun

SERVICE = "reconciliation"


async def create_service(settings: ReconciliationSettings) -> tuple[ServiceProcess, int]:
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    platform.add_consumer("booked", TOPICS, BookedItemsHandler())
    fees = None
    if settings.book_psp_fees:
        if not (settings.ledger_grpc_address and settings.ledger_api_key):
            raise ValueError("SETTLE_BOOK_PSP_FEES needs SETTLE_LEDGER_GRPC_ADDRESS and SETTLE_LEDGER_API_KEY")
        fees = FeeBooker(
            platform.engine, settings.ledger_grpc_address, settings.ledger_api_key, tls=client_tls(settings)
        )
    metrics = ReconciliationMetrics(platform.metrics)
    platform.add_gauge_query("open-mismatches", metrics.sample_open, OPEN_MISMATCHES_INTERVAL_S)
    service = ReconciliationService(
        platform.engine, MatchingRules(settings.match_window_days, settings.settlement_delay_days), fees, metrics
    )
    if settings.nightly_check_interval_s > 0:
        nightly = NightlyReconciliation(
            platform.engine,
            service,
            settlement_source(settings),
            hour_utc=settings.nightly_hour_utc,
            check_interval_s=settings.nightly_check_interval_s,
        )
        platform.add_loop(BackgroundLoop("reconciliation-nightly", nightly.run, nightly.stop))
    registrations = [
        (
            reconciliation_pb2_grpc.add_ReconciliationServiceServicer_to_server,
            ReconciliationServicer(service),
            "settle.reconciliation.v1.ReconciliationService",
        )
    ]
    return platform.build_process(registrations, SCOPES)


def settlement_source(settings: ReconciliationSettings) -> SettlementSource:
    if settings.settlement_source == "stripe_report":
        return StripeReportRun(
            settings.psp_api_key.get_secret_value(),
            settings.psp_api_base,
            settings.report_types,
            timeout_s=settings.report_timeout_s,
        )
    return SandboxDailyFile(settings.psp_api_base)


async def _serve(settings: ReconciliationSettings) -> None:
    process, _ = await create_service(settings)
    await process.run()


def main() -> None:
    settings = load_settings(ReconciliationSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
