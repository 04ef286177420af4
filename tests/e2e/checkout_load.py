"""A steady checkout load for end-to-end tests that restart services under it.

Each lane creates one checkout at a time and sends the same request again until it lands:
CreatePayment is idempotent on checkout_id, so a retry across a restart of the payment service can
never create a second payment. Only errors that a restart explains are retried.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
from settle.payment.v1 import payment_pb2_grpc

from services.cli.endpoints import Endpoints
from services.cli.workload import CheckoutFactory
from services.common import clients

# A stopping or restarting server: refused connections, calls cut at the end of a grace period.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


class CheckoutLoad:
    def __init__(self, endpoints: Endpoints, *, lanes: int = 2, pause_s: float = 0.05, seed: int = 11) -> None:
        self._endpoints = endpoints
        self._lanes = lanes
        self._pause_s = pause_s
        self._factory = CheckoutFactory(uuid.uuid4().hex[:8], sellers=12, seed=seed)
        self._stopping = asyncio.Event()
        self._landed = asyncio.Condition()
        self.accepted: dict[str, str] = {}  # checkout id → payment id, for every CreatePayment answered
        self.retries_by_code: dict[str, int] = {}

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with self._endpoints.channel("payment", "checkout") as channel:
            stub = clients.payment_stub(channel)
            await asyncio.gather(*(self._lane(stub) for _ in range(self._lanes)))

    async def _lane(self, stub: payment_pb2_grpc.PaymentServiceStub) -> None:
        while not self._stopping.is_set():
            request = self._factory.next()
            # A request in progress is finished even after stop(), so no checkout is left half-sent.
            while True:
                try:
                    response = await stub.CreatePayment(request, timeout=10)
                except grpc.aio.AioRpcError as error:
                    if error.code() not in RETRYABLE:
                        raise
                    name = error.code().name
                    self.retries_by_code[name] = self.retries_by_code.get(name, 0) + 1
                    await asyncio.sleep(0.2)
                    continue
                async with self._landed:
                    self.accepted[request.checkout_id] = response.payment.payment_id
                    self._landed.notify_all()
                break
            await asyncio.sleep(self._pause_s)

    async def wait_for_more(self, count: int, timeout_s: float = 60.0) -> None:
        """Returns once `count` more checkouts were accepted: the load is really flowing."""
        target = len(self.accepted) + count
        async with asyncio.timeout(timeout_s), self._landed:
            await self._landed.wait_for(lambda: len(self.accepted) >= target)
