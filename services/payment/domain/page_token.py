"""Opaque ListPayments page tokens: the keyset position (created_at, payment id) plus the filter."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import FieldViolation, InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_TOKEN_LENGTH = 512
_VERSION = 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last payment of a page; the next page starts strictly after it (newest first)."""

    created_at: datetime
    payment_id: uuid.UUID


class InvalidPageToken(InvalidArgument):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"page_token is not valid: {detail}; start again with an empty page_token",
            reason="INVALID_PAGE_TOKEN",
            violations=[FieldViolation("page_token", detail)],
        )


def page_size(requested: int) -> int:
    """The effective page size: 0 means the default; otherwise 1..MAX_PAGE_SIZE."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size must be between 0 and {MAX_PAGE_SIZE} (got {requested})",
            violations=[FieldViolation("page_size", f"must be between 0 and {MAX_PAGE_SIZE}")],
        )
    return requested


def _checksum(body: dict[str, object]) -> str:
    # Not a secret: it only makes edited or truncated tokens fail loudly instead of paging wrongly.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def encode(cursor: Cursor, buyer_id: str) -> str:
    micros = (cursor.created_at - _EPOCH) // _MICROSECOND
    body: dict[str, object] = {"v": _VERSION, "t": micros, "id": str(cursor.payment_id), "b": buyer_id}
    body["c"] = _checksum(body)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, buyer_id: str) -> Cursor:
    """The cursor in `token`, which must have been issued for the same `buyer_id` filter."""
    if len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidPageToken("too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidPageToken("not a token this service issued") from None
    if not isinstance(body, dict) or set(body) != {"v", "t", "id", "b", "c"}:
        raise InvalidPageToken("not a token this service issued")
    checksum = body.pop("c")
    if body["v"] != _VERSION or checksum != _checksum(body):
        raise InvalidPageToken("the token was altered")
    micros, payment_id, token_buyer_id = body["t"], body["id"], body["b"]
    if type(micros) is not int or not isinstance(payment_id, str) or not isinstance(token_buyer_id, str):
        raise InvalidPageToken("not a token this service issued")
    if token_buyer_id != buyer_id:
        raise InvalidPageToken("it was issued for a different buyer_id filter")
    try:
        return Cursor(_EPOCH + micros * _MICROSECOND, uuid.UUID(payment_id))
    except (ValueError, OverflowError):
        raise InvalidPageToken("not a token this service issued") from None
