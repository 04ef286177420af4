"""The transactional outbox: events are stored in the same transaction as the state they describe."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.events import (
    CONTENT_TYPE_PROTOBUF,
    HEADER_CONTENT_TYPE,
    HEADER_EVENT_ID,
    HEADER_EVENT_TIME,
    HEADER_EVENT_TYPE,
    HEADER_TRACEPARENT,
    OutboundEvent,
)
from services.common.tracing import current_traceparent

_metadata = MetaData()

outbox_table = Table(
    "outbox",
    _metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("topic", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("message_key", LargeBinary, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("published_at", DateTime(timezone=True)),
)

processed_events_table = Table(
    "processed_events",
    _metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("processed_at", DateTime(timezone=True)),
)


def envelope_headers(event_id: str, event_type: str, event_time: datetime) -> dict[str, str]:
    return {
        HEADER_EVENT_ID: event_id,
        HEADER_EVENT_TYPE: event_type,
        HEADER_EVENT_TIME: event_time.isoformat(),
        HEADER_TRACEPARENT: current_traceparent(),
        HEADER_CONTENT_TYPE: CONTENT_TYPE_PROTOBUF,
    }


async def append(connection: AsyncConnection, events: Sequence[OutboundEvent]) -> None:
    """Stores `events` for publication; call inside the transaction that makes the change they describe."""
    if not events:
        return
    now = datetime.now(UTC)
    rows = []
    for event in events:
        event_type = event.message.DESCRIPTOR.full_name
        rows.append(
            {
                "event_id": event.event_id,
                "topic": event.topic,
                "event_type": event_type,
                "message_key": event.key.encode(),
                "payload": event.message.SerializeToString(deterministic=True),
                "headers": envelope_headers(str(event.event_id), event_type, now),
                "created_at": now,
            }
        )
    await connection.execute(outbox_table.insert(), rows)


async def append_raw(
    connection: AsyncConnection,
    *,
    topic: str,
    key: bytes,
    payload: bytes,
    event_id: str,
    event_type: str,
    headers: dict[str, str],
) -> None:
    """Stores an already-encoded message (dead letters keep the original bytes and headers)."""
    await connection.execute(
        outbox_table.insert(),
        [
            {
                "event_id": uuid.uuid4(),
                "topic": topic,
                "event_type": event_type,
                "message_key": key,
                "payload": payload,
                "headers": {**headers, HEADER_EVENT_ID: headers.get(HEADER_EVENT_ID, event_id)},
                "created_at": datetime.now(UTC),
            }
        ],
    )


async def backlog(connection: AsyncConnection) -> tuple[int, float | None]:
    """Unpublished events, and how long the oldest has waited in seconds (None when there is none). Both
    read the partial index of unpublished rows only."""
    count = await connection.scalar(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    age_s = await connection.scalar(
        text(
            "SELECT extract(epoch FROM clock_timestamp() - created_at) FROM outbox "
            "WHERE published_at IS NULL ORDER BY seq LIMIT 1"
        )
    )
    return int(count or 0), None if age_s is None else max(float(age_s), 0.0)
