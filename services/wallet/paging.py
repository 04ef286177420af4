"""Opaque, snapshot-stable page tokens for ListBalanceEntries, bound to one seller.

Entries can commit out of `seq` order (two batches race for a seller's balance row), so a plain keyset
on `seq` could skip one forever. The first page records the database snapshot it was read at; every
later page filters on `pg_visible_in_snapshot(txid, snapshot)` as well as `seq > after`, so a listing
is exactly the seller's entries as of its first page. The token is URL-safe base64 of a small JSON
document; anything else is INVALID_ARGUMENT/INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = 1
# A snapshot lists the transactions in progress when it was taken; bound the token all the same.
_TOKEN_MAX_LENGTH = 64 * 1024
# pg_snapshot text form: xmin:xmax:xip_list (xip_list comma-separated, may be empty).
_SNAPSHOT = re.compile(r"^(\d{1,20}):(\d{1,20}):((?:\d{1,20})(?:,\d{1,20})*)?$")
_XID8_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class EntriesCursor:
    """Where the next page starts: after entry `after_seq` of `seller_id`, as of `snapshot`."""

    seller_id: str
    snapshot: str
    after_seq: int


def page_size(requested: int) -> int:
    """0 means the default; anything above the maximum is lowered to it (AIP-158)."""
    if requested < 0:
        raise InvalidArgument(
            f"page_size: must not be negative (got {requested})",
            violations=[FieldViolation("page_size", "must not be negative")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def is_snapshot(text: str) -> bool:
    """True when `text` is a pg_snapshot PostgreSQL accepts: xmin <= each xip (ascending) < xmax."""
    match = _SNAPSHOT.match(text)
    if not match:
        return False
    xmin, xmax = int(match.group(1)), int(match.group(2))
    xip = [int(x) for x in match.group(3).split(",")] if match.group(3) else []
    in_range = all(xmin <= x < xmax for x in xip) and xip == sorted(xip)
    return 0 < xmin <= xmax <= _XID8_MAX and in_range


def encode_token(cursor: EntriesCursor) -> str:
    document = {"v": _TOKEN_VERSION, "seller": cursor.seller_id, "snapshot": cursor.snapshot, "after": cursor.after_seq}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invalid_token(why: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token: {why}; pass the next_page_token of the previous page unchanged",
        reason="INVALID_PAGE_TOKEN",
        violations=[FieldViolation("page_token", why)],
    )


def decode_token(token: str, seller_id: str) -> EntriesCursor:
    """The cursor in `token`, which must have been issued for `seller_id`."""
    if len(token) > _TOKEN_MAX_LENGTH:
        raise invalid_token("is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid_token("is not a page token") from None
    if not isinstance(document, dict) or document.get("v") != _TOKEN_VERSION:
        raise invalid_token("is not a page token of this version")
    after, snapshot, seller = document.get("after"), document.get("snapshot"), document.get("seller")
    if type(after) is not int or after < 0 or not isinstance(seller, str):
        raise invalid_token("is malformed")
    if not isinstance(snapshot, str) or not is_snapshot(snapshot):
        raise invalid_token("is malformed")
    if seller != seller_id:
        raise invalid_token("was issued for another seller")
    return EntriesCursor(seller_id, snapshot, after)
