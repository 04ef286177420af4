"""The live views behind `settle status` (status.py): each service's gRPC health and process, and
Kafka's consumer lag and dead letters (unhandled and handled)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiokafka import TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.dlq_letters import HANDLED_GROUP
from services.cli.endpoints import Endpoints
from services.cli.kafka_topics import Bounds, committed_offsets, existing_partitions, kafka_readers, log_bounds
from services.executor.entrypoints.consumer import TOPICS as EXECUTOR_TOPICS
from services.ledger.entrypoints.consumer import TOPICS as LEDGER_TOPICS
from services.payment.entrypoints.consumer import TOPICS as PAYMENT_TOPICS
from services.reconciliation.booked_items import TOPICS as RECONCILIATION_TOPICS
from services.wallet.entrypoints.consumer import TOPICS as WALLET_TOPICS

# The consumer groups the services run, with their topics. Each service's entrypoints/main.py calls
# `platform.add_consumer(name, TOPICS, ...)`, which names the group `settle-<service>-<name>`. Listed
# here because the embedded broker cannot list groups (no ListGroups), and real Kafka has others'.
CONSUMER_GROUPS: Mapping[str, Sequence[str]] = {
    "settle-payment-outcomes": PAYMENT_TOPICS,
    "settle-executor-requests": EXECUTOR_TOPICS,
    "settle-wallet-outcomes": WALLET_TOPICS,
    "settle-ledger-outcomes": LEDGER_TOPICS,
    "settle-reconciliation-booked": RECONCILIATION_TOPICS,
}
_KAFKA_REQUEST_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    address: str
    health: str  # SERVING, NOT_SERVING, ... or the gRPC code of a failed check (UNAVAILABLE, DEADLINE_EXCEEDED)
    pid: int | None  # as `settle up` recorded it; None when it recorded none
    pid_alive: bool | None

    @property
    def up(self) -> bool:
        return self.health == "SERVING"


@dataclass(frozen=True, slots=True)
class KafkaView:
    consumer_lag: dict[str, int]  # consumer group → messages between its committed offsets and the ends
    # For the DLQ topics that exist, `<topic>.dlq` → its dead letters nobody has dealt with yet, and
    # those replayed or acknowledged (`settle dlq`), which stay until retention removes them.
    dead_letters: dict[str, int]
    handled_dead_letters: dict[str, int] = field(default_factory=dict)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (exited, not yet reaped by `settle up`) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    if sys.platform != "linux":
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name, which is in parentheses and may itself contain ")".
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def service_state(endpoints: Endpoints, name: str, timeout_s: float) -> ServiceState:
    pid = endpoints.pids.get(name)
    return ServiceState(
        name=name,
        address=endpoints.grpc[name],
        health=await _health(endpoints, name, timeout_s),
        pid=pid,
        pid_alive=None if pid is None else pid_alive(pid),
    )


async def _health(endpoints: Endpoints, name: str, timeout_s: float) -> str:
    # The standard grpc.health.v1 check of the whole server (service ""), which every Settle server
    # answers without an API key and turns NOT_SERVING as soon as a graceful shutdown starts.
    async with endpoints.channel(name, "admin") as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def kafka_view(bootstrap_servers: str, dlq_topics: Sequence[str]) -> KafkaView:
    """Lag of every Settle consumer group and the dead letters of every DLQ topic, handled or not, from
    offsets only: nothing is read, no group is joined and no offset is committed."""
    async with kafka_readers(bootstrap_servers, "settle-status", _KAFKA_REQUEST_TIMEOUT_MS) as (admin, consumer):
        topics = {*dlq_topics, *(topic for group_topics in CONSUMER_GROUPS.values() for topic in group_topics)}
        bounds = await log_bounds(consumer, await existing_partitions(admin, sorted(topics)))
        lag = {
            group: await _unread(admin, group, {p: b for p, b in bounds.items() if p.topic in group_topics})
            for group, group_topics in CONSUMER_GROUPS.items()
        }
        dlq_bounds = {p: b for p, b in bounds.items() if p.topic in dlq_topics}
        handled = await committed_offsets(admin, HANDLED_GROUP, list(dlq_bounds))
    # A dead letter is unhandled from the handled group's offset on, as a message is unread from a group's.
    present = sorted({p.topic for p in dlq_bounds})
    unhandled = {t: sum(b.unread(handled.get(p)) for p, b in dlq_bounds.items() if p.topic == t) for t in present}
    total = {t: sum(b.size for p, b in dlq_bounds.items() if p.topic == t) for t in present}
    return KafkaView(lag, unhandled, {topic: total[topic] - unhandled[topic] for topic in present})


async def _unread(admin: Any, group: str, bounds: Mapping[TopicPartition, Bounds]) -> int:
    committed = await committed_offsets(admin, group, list(bounds))
    return sum(partition_bounds.unread(committed.get(partition)) for partition, partition_bounds in bounds.items())
