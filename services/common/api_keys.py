"""API keys as services know them: an id, the SHA-256 of the key and its scopes — never the key itself.

A plain (unkeyed, unsalted) SHA-256 is enough here, unlike for passwords: every Settle key is a random
token of at least 128 bits (`new_key` makes 192), so nobody can guess or precompute its preimage, and a
slow hash would only cost CPU on every call. A leaked record therefore does not let anyone call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.errors import Unauthenticated

# Scopes: `payments` (checkouts create and read payments), `finance` (read-only ledger, wallet and
# reconciliation), `admin` (operators: executor admin API and everything finance may read).
KNOWN_SCOPES = frozenset({"payments", "finance", "admin"})
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_BYTES = 24  # 192 bits of randomness per key


def hash_key(key: str) -> str:
    """The lowercase hex SHA-256 of a key, as stored in a record."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(role: str) -> str:
    """A new random key; the role in its prefix only helps people tell keys apart (and scanners find them)."""
    return f"sk_settle_{role}_{secrets.token_urlsafe(_KEY_BYTES)}"


class ApiKeyRecord(BaseModel):
    """One active key: `{"id": "checkout-2026-11", "sha256": "<hex>", "scopes": ["payments"]}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Names the key in logs and in rotation; not secret.
    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    sha256: str
    scopes: tuple[str, ...] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _is_sha256_hex(cls, value: str) -> str:
        if not _SHA256_HEX.match(value.lower()):
            raise ValueError("must be the 64 hex digits of the key's SHA-256")
        return value.lower()

    @field_validator("scopes")
    @classmethod
    def _scopes_are_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - KNOWN_SCOPES
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(KNOWN_SCOPES)}")
        return value

    @classmethod
    def of(cls, key_id: str, key: str, scopes: Sequence[str]) -> ApiKeyRecord:
        return cls(id=key_id, sha256=hash_key(key), scopes=tuple(scopes))


def check_unique(records: Sequence[ApiKeyRecord]) -> None:
    """Raises ValueError if two records share an id or a key: either would make logs or scopes ambiguous."""
    ids = [record.id for record in records]
    if len(set(ids)) != len(ids):
        raise ValueError("every API key id must be unique")
    if len({record.sha256 for record in records}) != len(records):
        raise ValueError("the same API key appears twice")


@dataclass(frozen=True)
class Caller:
    """Who called: the id of the key presented and the scopes it grants."""

    key_id: str
    scopes: frozenset[str]


class ApiKeyAuthority:
    """Finds the record of a presented key, comparing its hash with every record in constant time."""

    def __init__(self, records: Sequence[ApiKeyRecord]) -> None:
        check_unique(records)
        self._records = [(bytes.fromhex(r.sha256), Caller(r.id, frozenset(r.scopes))) for r in records]

    def authenticate(self, presented: str) -> Caller:
        digest = hashlib.sha256(presented.encode()).digest()
        found: Caller | None = None
        for stored, caller in self._records:
            # No early exit: every record is compared, so the time taken does not tell which one matched
            # (or how many records come before it). Two active keys with the same scopes = a rotation.
            if hmac.compare_digest(stored, digest):
                found = caller
        if found is None:
            raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
        return found

    def scopes_of(self, presented: str) -> frozenset[str]:
        return self.authenticate(presented).scopes
