"""The live views behind `settle status` (status.py): each service's gRPC health and process, and
Kafka's consumer lag and dead letters."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.endpoints import Endpoints
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
    dead_letters: dict[str, int]  # `<topic>.dlq` → messages in it, for the DLQ topics that exist


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
    """Lag of every Settle consumer group and the size of every DLQ topic, from offsets only: nothing
    is read, no group is joined and no offset is committed."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="settle-status", request_timeout_ms=_KAFKA_REQUEST_TIMEOUT_MS
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="settle-status",
        request_timeout_ms=_KAFKA_REQUEST_TIMEOUT_MS,
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            return await _read_offsets(admin, consumer, dlq_topics)
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def _read_offsets(admin: Any, consumer: Any, dlq_topics: Sequence[str]) -> KafkaView:
    # Partitions from the metadata of all topics: naming a missing topic could have the broker create
    # it, and a DLQ topic is meant to appear only with its first dead letter.
    described = await admin.describe_topics()
    partitions = {topic["topic"]: sorted(p["partition"] for p in topic["partitions"]) for topic in described}
    topics = {*dlq_topics, *(topic for group_topics in CONSUMER_GROUPS.values() for topic in group_topics)}
    watched = [TopicPartition(topic, partition) for topic in sorted(topics) for partition in partitions.get(topic, ())]
    starts: dict[TopicPartition, int] = await consumer.beginning_offsets(watched)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(watched)
    lag = {
        group: await _group_lag(admin, group, [tp for tp in watched if tp.topic in group_topics], starts, ends)
        for group, group_topics in CONSUMER_GROUPS.items()
    }
    dead_letters = {
        topic: sum(ends[tp] - starts[tp] for tp in watched if tp.topic == topic)
        for topic in dlq_topics
        if topic in partitions
    }
    return KafkaView(lag, dead_letters)


async def _group_lag(
    admin: Any,
    group: str,
    partitions: list[TopicPartition],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> int:
    if not partitions:
        return 0
    # Partitions named explicitly: the embedded broker cannot answer "all of the group's offsets".
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    behind = 0
    for partition in partitions:
        offset = committed.get(partition)
        # -1: the group never committed here, so it will start from the earliest offset it can read.
        position = offset.offset if offset is not None and offset.offset >= 0 else starts[partition]
        behind += max(0, ends[partition] - max(position, starts[partition]))
    return behind
