"""Kafka topics, their payload types and the event envelope carried in Kafka headers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.message import Message
from settle.events.v1 import events_pb2

PAYMENT_ORDER_REQUESTED = "payment.order.requested"
PAYMENT_ORDER_SUCCEEDED = "payment.order.succeeded"
PAYMENT_ORDER_FAILED = "payment.order.failed"
PAYMENT_REFUND_REQUESTED = "payment.refund.requested"
PAYMENT_REFUND_SUCCEEDED = "payment.refund.succeeded"
PAYMENT_REFUND_FAILED = "payment.refund.failed"
PAYOUT_REQUESTED = "payout.requested"
PAYOUT_PAID = "payout.paid"
PAYOUT_FAILED = "payout.failed"
RECONCILIATION_RUN_COMPLETED = "reconciliation.run.completed"
RECONCILIATION_MISMATCH_FOUND = "reconciliation.mismatch.found"
WALLET_BALANCE_UPDATED = "wallet.balance.updated"
LEDGER_ENTRY_POSTED = "ledger.entry.posted"

# The payload type of every topic. A topic carries exactly one event type, named in the
# `event_type` header as the protobuf full name so consumers can check before decoding.
PAYLOAD_TYPES: dict[str, type[Message]] = {
    PAYMENT_ORDER_REQUESTED: events_pb2.PaymentOrderRequested,
    PAYMENT_ORDER_SUCCEEDED: events_pb2.PaymentOrderSucceeded,
    PAYMENT_ORDER_FAILED: events_pb2.PaymentOrderFailed,
    PAYMENT_REFUND_REQUESTED: events_pb2.RefundRequested,
    PAYMENT_REFUND_SUCCEEDED: events_pb2.RefundSucceeded,
    PAYMENT_REFUND_FAILED: events_pb2.RefundFailed,
    PAYOUT_REQUESTED: events_pb2.PayoutRequested,
    PAYOUT_PAID: events_pb2.PayoutPaid,
    PAYOUT_FAILED: events_pb2.PayoutFailed,
    RECONCILIATION_RUN_COMPLETED: events_pb2.ReconciliationRunCompleted,
    RECONCILIATION_MISMATCH_FOUND: events_pb2.ReconciliationMismatchFound,
    WALLET_BALANCE_UPDATED: events_pb2.WalletBalanceUpdated,
    LEDGER_ENTRY_POSTED: events_pb2.LedgerEntryPosted,
}

HEADER_EVENT_ID = "event_id"
HEADER_EVENT_TYPE = "event_type"
HEADER_EVENT_TIME = "event_time"
HEADER_TRACEPARENT = "traceparent"
HEADER_CONTENT_TYPE = "content_type"
CONTENT_TYPE_PROTOBUF = "application/x-protobuf"

# Headers added to a message published to `<topic>.dlq`.
HEADER_DLQ_ERROR = "dlq_error"
HEADER_DLQ_SOURCE = "dlq_source"  # "<topic>/<partition>/<offset>"
HEADER_DLQ_CONSUMER = "dlq_consumer"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    """An event to publish through the outbox. `key` decides the partition (ordering per key)."""

    topic: str
    key: str
    message: Message
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        expected = PAYLOAD_TYPES.get(self.topic)
        if expected is None or not isinstance(self.message, expected):
            raise TypeError(f"topic {self.topic!r} does not carry {type(self.message).__name__}")


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """A consumed, decoded event."""

    event_id: uuid.UUID
    topic: str
    key: str
    message: Message
    event_time: datetime
    traceparent: str
    partition: int
    offset: int
