"""The API keys of a local Settle: plaintext for the CLI in `<data_dir>/api_keys.json` (0600), hashed
records for the services in `<data_dir>/api_key_records.json` (SETTLE_API_KEYS_FILE).

A role (checkout, finance, admin) may have several active keys while one is being rotated: the newest
is the one the CLI uses, the older ones stay valid until retired.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.cli.private_files import write_private
from services.common.api_keys import ApiKeyRecord, new_key

ROLE_SCOPES = {"checkout": ("payments",), "finance": ("finance",), "admin": ("admin",)}
ROLES = tuple(ROLE_SCOPES)
KEYS_FILE = "api_keys.json"
RECORDS_FILE = "api_key_records.json"


class KeyStoreError(ValueError):
    """A rotation or retirement that cannot be done; the message says why."""


@dataclass(frozen=True)
class StoredKey:
    id: str
    role: str
    key: str
    created_at: str

    @classmethod
    def new(cls, role: str) -> StoredKey:
        if role not in ROLE_SCOPES:
            raise KeyStoreError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        now = datetime.now(UTC)
        # The date says which key is older at a glance; the random suffix keeps two rotations a day apart.
        key_id = f"{role}-{now:%Y-%m-%d}-{secrets.token_hex(3)}"
        return cls(key_id, role, new_key(role), now.isoformat(timespec="seconds"))

    def record(self) -> ApiKeyRecord:
        return ApiKeyRecord.of(self.id, self.key, ROLE_SCOPES[self.role])


@dataclass
class ApiKeys:
    keys: list[StoredKey]

    @classmethod
    def generate(cls) -> ApiKeys:
        return cls([StoredKey.new(role) for role in ROLES])

    @classmethod
    def of(cls, *, checkout: str, finance: str, admin: str) -> ApiKeys:
        """Given keys, one per role (tests, and keys.json files from before rotation existed)."""
        given = {"checkout": checkout, "finance": finance, "admin": admin}
        return cls([StoredKey(f"{role}-initial", role, key, "") for role, key in given.items()])

    def current(self, role: str) -> StoredKey:
        candidates = [key for key in self.keys if key.role == role]
        if not candidates:
            raise KeyStoreError(f"no active key for role {role!r}")
        return candidates[-1]

    @property
    def checkout(self) -> str:
        return self.current("checkout").key

    @property
    def finance(self) -> str:
        return self.current("finance").key

    @property
    def admin(self) -> str:
        return self.current("admin").key

    def records(self) -> list[ApiKeyRecord]:
        return [key.record() for key in self.keys]

    def rotate(self, role: str) -> StoredKey:
        """Adds a new key for `role`, which the CLI uses from now on; the previous ones stay valid."""
        added = StoredKey.new(role)
        self.keys.append(added)
        return added

    def retire(self, key_id: str) -> StoredKey:
        retired = next((key for key in self.keys if key.id == key_id), None)
        if retired is None:
            raise KeyStoreError(f"no active key with id {key_id!r}")
        if sum(key.role == retired.role for key in self.keys) == 1:
            raise KeyStoreError(f"{key_id} is the only {retired.role} key; rotate first (settle keys rotate)")
        self.keys.remove(retired)
        return retired

    @classmethod
    def load(cls, data_dir: Path) -> ApiKeys | None:
        path = data_dir / KEYS_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        if "keys" not in raw:  # the first format: one key per role, no ids
            return cls.of(checkout=raw["checkout"], finance=raw["finance"], admin=raw["admin"])
        return cls([StoredKey(**key) for key in raw["keys"]])

    @classmethod
    def load_or_create(cls, data_dir: Path) -> ApiKeys:
        """Keys persist with the data so clients keep working across restarts."""
        keys = cls.load(data_dir)
        if keys is None:
            keys = cls.generate()
            keys.save(data_dir)
        return keys

    def save(self, data_dir: Path) -> None:
        """Writes the plaintext keys (for the CLI) and the hashed records (for the services)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        write_private(data_dir / KEYS_FILE, json.dumps({"keys": [asdict(key) for key in self.keys]}, indent=2).encode())
        records = [record.model_dump(mode="json") for record in self.records()]
        write_private(data_dir / RECORDS_FILE, json.dumps(records, indent=2).encode())
