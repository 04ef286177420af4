"""The reconciliation process. Until its own issue lands it serves health and reflection, and its API
answers UNIMPLEMENTED with ErrorInfo reason NOT_IMPLEMENTED, so callers get a precise status."""

from __future__ import annotations

import asyncio
from typing import Any

from settle.reconciliation.v1 import reconciliation_pb2_grpc

from services.common.config import ServiceSettings, load_settings
from services.common.errors import Unimplemented
from services.common.logs import configure_logging
from services.common.platform import Platform
from services.common.runtime import ServiceProcess
from services.reconciliation.booked_items import TOPICS, BookedItemsHandler

SERVICE = "reconciliation"
_FINANCE = frozenset({"finance", "admin"})
SCOPES = {
    name: _FINANCE
    for name in (
        "ImportSettlementFile",
        "RunReconciliation",
        "GetRun",
        "ListMismatches",
        "ResolveMismatch",
        "GetReport",
    )
}


def _not_yet(method: str) -> Any:
    async def handler(self: object, request: object, context: object) -> None:
        raise Unimplemented(f"ReconciliationService.{method} is not available yet in this version of Settle")

    return handler


# Every RPC answers UNIMPLEMENTED through the shared error mapping until reconciliation is built.
NotYetReconciliationServicer = type(
    "NotYetReconciliationServicer",
    (reconciliation_pb2_grpc.ReconciliationServiceServicer,),
    {name: _not_yet(name) for name in SCOPES},
)


async def create_service(settings: ServiceSettings) -> tuple[ServiceProcess, int]:
    platform = Platform.create(SERVICE, settings)
    await platform.start()
    platform.add_consumer("booked", TOPICS, BookedItemsHandler())
    registrations = [
        (
            reconciliation_pb2_grpc.add_ReconciliationServiceServicer_to_server,
            NotYetReconciliationServicer(),
            "settle.reconciliation.v1.ReconciliationService",
        )
    ]
    return platform.build_process(registrations, SCOPES)


async def _serve(settings: ServiceSettings) -> None:
    process, _ = await create_service(settings)
    await process.run()


def main() -> None:
    settings = load_settings(ServiceSettings)
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(_serve(settings))
