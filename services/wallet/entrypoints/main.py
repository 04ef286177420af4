"""The wallet process: composition root wiring the platform, the use cases and the entrypoints."""

from __future__ import annotations

import asyncio
import logging

from settle.wallet.v1 import wallet_pb2, wallet_pb2_grpc

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import BackgroundLoop, ServiceProcess
from services.wallet.config import WalletSettings
from services.wallet.entrypoints.consumer import TOPICS, OutcomesHandler
from services.wallet.entrypoints.grpc import WalletServicer
from services.wallet.entrypoints.release_loop import ReleaseLoop, ScheduleLoop
from services.wallet.payout_service import PayoutService
from services.wallet.payouts import PayoutSchedule
from services.wallet.service import WalletService

log = logging.getLogger(__name__)

SERVICE = "wallet"
SERVICE_NAME = wallet_pb2.DESCRIPTOR.services_by_name["WalletService"].full_name
_READERS = frozenset({"finance", "admin"})
_ADMIN = frozenset({"admin"})
SCOPES = {
    "GetBalance": _READERS,
    "ListBalanceEntries": _READERS,
    "GetPayout": _READERS,
    "ListPayouts": _READERS,
    "GetPayoutBatch": _READERS,
    "SetPayoutDestination": _ADMIN,
    "CreatePayout": _ADMIN,
    "SubmitPayoutBatch": _ADMIN,
    "RunPayoutSchedule": _ADMIN,
    "ReleasePending": _ADMIN,
}


async def create_service(settings: WalletSettings) -> tuple[ServiceProcess, int]:
    """Builds the wallet process (gRPC server, `outcomes` consumer, outbox relay); returns it and its port."""
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    wallet = WalletService(platform.engine)
    schedule = PayoutSchedule(settings.payout_anchor_date, settings.payout_interval_days, settings.payout_minimum_minor)
    payouts = PayoutService(platform.engine, schedule)
    platform.add_consumer("outcomes", TOPICS, OutcomesHandler(wallet, payouts))
    release = ReleaseLoop(
        wallet,
        delay_s=settings.release_delay_s,
        interval_s=settings.release_interval_s,
        batch_size=settings.release_batch_size,
        on_released=platform.relay.wake,
    )
    platform.add_loop(BackgroundLoop("wallet-release", release.run, release.stop))
    if settings.payout_schedule_interval_s > 0:
        scheduler = ScheduleLoop(payouts, interval_s=settings.payout_schedule_interval_s, on_paid=platform.relay.wake)
        platform.add_loop(BackgroundLoop("wallet-payout-schedule", scheduler.run, scheduler.stop))
    servicer = WalletServicer(wallet, payouts, release_delay_s=settings.release_delay_s, on_change=platform.relay.wake)
    return platform.build_process(
        registrations=[(wallet_pb2_grpc.add_WalletServiceServicer_to_server, servicer, SERVICE_NAME)],
        scopes=SCOPES,
    )


async def _serve(settings: WalletSettings) -> None:
    process, port = await create_service(settings)
    log.info("wallet serving gRPC on %s:%d", settings.grpc_host, port)
    await process.run()


def main() -> None:
    settings = load_settings(WalletSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
