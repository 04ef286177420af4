"""Opaque, snapshot-stable page tokens for keyset listings over `seq` (the ledger's ListEntries, the
wallet's ListBalanceEntries).

Rows can commit out of `seq` order (concurrent transactions take their `seq` before committing), so a
plain keyset on `seq` could skip a row forever. The first page records the database snapshot it was
read at (`pg_current_snapshot()`); every later page filters on `pg_visible_in_snapshot(txid, snapshot)`
as well as `seq > after`, so rows committed after the first page never appear mid-listing and the
listing is exactly the rows as of its first page.

A token is bound to its listing's scope (the ledger's `payment_order_id` filter, the wallet's seller):
a token from another scope is refused. The token is URL-safe base64 of a small JSON document; anything
else is INVALID_ARGUMENT/INVALID_PAGE_TOKEN.
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
class SnapshotCursor:
    """Where the next page starts: after row `after_seq`, as of `snapshot`, in the listing bound to `scope`."""

    snapshot: str
    after_seq: int
    scope: str


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


def encode_token(cursor: SnapshotCursor) -> str:
    document = {"v": _TOKEN_VERSION, "scope": cursor.scope, "snapshot": cursor.snapshot, "after": cursor.after_seq}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invalid_token(why: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token: {why}; pass the next_page_token of the previous page unchanged",
        reason="INVALID_PAGE_TOKEN",
        violations=[FieldViolation("page_token", why)],
    )


def decode_token(token: str, scope: str, scope_description: str) -> SnapshotCursor:
    """The cursor in `token`, which must have been issued for a listing bound to `scope`.

    `scope_description` names a listing with another scope in the error, e.g. "another seller": the
    message then reads "was issued for another seller".
    """
    if len(token) > _TOKEN_MAX_LENGTH:
        raise invalid_token("is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid_token("is not a page token") from None
    if not isinstance(document, dict) or document.get("v") != _TOKEN_VERSION:
        raise invalid_token("is not a page token of this version")
    after, snapshot, bound_to = document.get("after"), document.get("snapshot"), document.get("scope")
    if type(after) is not int or after < 0 or not isinstance(bound_to, str):
        raise invalid_token("is malformed")
    if not isinstance(snapshot, str) or not is_snapshot(snapshot):
        raise invalid_token("is malformed")
    if bound_to != scope:
        raise invalid_token(f"was issued for {scope_description}")
    return SnapshotCursor(snapshot, after, scope)
