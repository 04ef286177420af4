"""Structured JSON logs; every line carries the trace id and, where known, the payment order id."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from services.common.tracing import current_trace_id

_payment_order_id: ContextVar[str] = ContextVar("payment_order_id", default="")
_service: ContextVar[str] = ContextVar("service", default="")

_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@contextmanager
def payment_order_context(payment_order_id: str) -> Iterator[None]:
    """Tags every log line written inside the block with the payment order id."""
    token = _payment_order_id.set(payment_order_id)
    try:
        yield
    finally:
        _payment_order_id.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": _service.get(),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": current_trace_id(),
            "payment_order_id": _payment_order_id.get(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    _service.set(service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Kafka client logs every reconnect and the stripe SDK every request at INFO: noise, and CPU on
    # the hot path. Settle logs each PSP call's outcome itself.
    for chatty in ("aiokafka", "stripe"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
