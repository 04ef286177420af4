"""The ledger process: composition root wiring the platform, the use cases and the entrypoints."""

from __future__ import annotations

import asyncio
import logging

from settle.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.config import load_settings
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import ServiceProcess
from services.ledger.adapters.journal_export_db import JournalExportReader
from services.ledger.admin_service import LedgerAdmin
from services.ledger.config import LedgerSettings
from services.ledger.entrypoints.consumer import TOPICS, OutcomesHandler
from services.ledger.entrypoints.grpc import LedgerServicer
from services.ledger.service import LedgerService

log = logging.getLogger(__name__)

SERVICE = "ledger"
SERVICE_NAME = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
_READERS = frozenset({"finance", "admin"})
# Writing to the books by hand (fees from settlement, corrections) is for operators only.
_ADMIN_ONLY = frozenset({"admin"})
SCOPES = {
    "GetAccountBalance": _READERS,
    "ListEntries": _READERS,
    "TrialBalance": _READERS,
    "ExportJournal": _READERS,
    "PostPspFee": _ADMIN_ONLY,
    "ReverseEntry": _ADMIN_ONLY,
}


async def create_service(settings: LedgerSettings) -> tuple[ServiceProcess, int]:
    """Builds the ledger process (gRPC server, `outcomes` consumer, outbox relay); returns it and its port."""
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    ledger = LedgerService(platform.engine)
    admin = LedgerAdmin(platform.engine, wake_relay=platform.relay.wake)
    servicer = LedgerServicer(ledger, JournalExportReader(platform.engine), admin)
    platform.add_consumer("outcomes", TOPICS, OutcomesHandler(ledger))
    return platform.build_process(
        registrations=[
            (
                ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
                servicer,
                SERVICE_NAME,
            )
        ],
        scopes=SCOPES,
    )


async def _serve(settings: LedgerSettings) -> None:
    process, port = await create_service(settings)
    log.info("ledger serving gRPC on %s:%d", settings.grpc_host, port)
    await process.run()


def main() -> None:
    settings = load_settings(LedgerSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
