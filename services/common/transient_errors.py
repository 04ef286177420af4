"""Which errors are the infrastructure's (a database or broker briefly away), to be retried with backoff,
rather than the work's own, which retrying cannot fix."""

from __future__ import annotations

from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

MAX_BACKOFF_S = 5.0


def is_infrastructure_error(error: BaseException) -> bool:
    if isinstance(error, OperationalError | InterfaceError | KafkaError | OSError | TimeoutError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def next_backoff(backoff_s: float) -> float:
    return min(backoff_s * 2, MAX_BACKOFF_S)
