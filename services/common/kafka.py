"""aiokafka producers and consumers configured the way Settle needs them."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def create_producer(bootstrap_servers: str, *, client_id: str) -> AIOKafkaProducer:
    # Idempotent producer with acks=all: a broker retry never writes a message twice and an
    # acknowledged message is on every in-sync replica. linger batches concurrent sends.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=30_000,
    )


def create_consumer(
    bootstrap_servers: str, *, group_id: str, topics: list[str], client_id: str, session_timeout_ms: int = 10_000
) -> AIOKafkaConsumer:
    # Offsets are committed by hand, after the database commit of the batch they cover.
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=5000,
        # A short session lets a restarted member rejoin quickly: a broker that misses a member's
        # LeaveGroup (the embedded mock does) makes the next join wait out the old session.
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(1_000, session_timeout_ms // 3),
    )
