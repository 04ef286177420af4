"""`settle keys`: make API keys and rotate those of a local Settle.

    settle keys new --role checkout      a new key and its record, for any deployment (stores nothing)
    settle keys list                     the local Settle's active keys (ids, never the keys)
    settle keys rotate checkout          a new checkout key for the local Settle; the old one stays valid
    settle keys retire checkout-...      the old key stops working

Services read their keys at start, so a change reaches them at their next start (`settle up`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.cli.api_key_store import ROLES, ApiKeys, KeyStoreError, StoredKey

_RESTART = "running services accept the change at their next start: stop `settle up` and start it again"


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    keys = commands.add_parser("keys", help="make API keys; rotate and retire those of the local Settle")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    new = actions.add_parser("new", help="print a new key and the record services need (stores nothing)")
    new.add_argument("--role", choices=ROLES, required=True)
    new.add_argument("--json", action="store_true", help="print one JSON object")
    new.set_defaults(handler=cmd_new)
    listing = actions.add_parser("list", parents=parents, help="the local Settle's active keys (ids only)")
    listing.set_defaults(handler=cmd_list)
    rotate = actions.add_parser("rotate", parents=parents, help="add a key for ROLE; the CLI uses it from now on")
    rotate.add_argument("role", choices=ROLES)
    rotate.set_defaults(handler=cmd_rotate)
    retire = actions.add_parser("retire", parents=parents, help="remove the key with this id")
    retire.add_argument("key_id")
    retire.set_defaults(handler=cmd_retire)


def cmd_new(options: argparse.Namespace) -> int:
    key = StoredKey.new(options.role)
    record = key.record().model_dump(mode="json")
    if options.json:
        print(json.dumps({"key": key.key, "record": record}))
        return 0
    print(f"key:    {key.key}")
    print("        shown once: put it in the client's secret store; Settle keeps only its hash")
    print(f"record: {json.dumps(record)}")
    print("        add it to SETTLE_API_KEYS (or the SETTLE_API_KEYS_FILE list) of every service")
    return 0


def cmd_list(options: argparse.Namespace) -> int:
    keys = _load(options.data_dir)
    if keys is None:
        return 2
    current = {keys.current(role).id for role in ROLES}
    for key in keys.keys:
        print(f"{key.id:<36} {key.role:<9} created {key.created_at or '-':<26} {'in use' if key.id in current else ''}")
    return 0


def cmd_rotate(options: argparse.Namespace) -> int:
    keys = _load(options.data_dir)
    if keys is None:
        return 2
    previous = keys.current(options.role)
    added = keys.rotate(options.role)
    keys.save(options.data_dir)
    print(f"added {added.id}; the CLI uses it from now on. {previous.id} stays valid until retired:")
    print(f"  settle keys retire {previous.id}")
    print(_RESTART)
    return 0


def cmd_retire(options: argparse.Namespace) -> int:
    keys = _load(options.data_dir)
    if keys is None:
        return 2
    try:
        retired = keys.retire(options.key_id)
    except KeyStoreError as error:
        print(f"settle keys retire: {error}", file=sys.stderr)
        return 1
    keys.save(options.data_dir)
    print(f"retired {retired.id} ({retired.role}); {_RESTART}")
    return 0


def _load(data_dir: Path) -> ApiKeys | None:
    keys = ApiKeys.load(data_dir)
    if keys is None:
        print(f"settle keys: no API keys in {data_dir}; `settle up` creates them", file=sys.stderr)
    return keys
