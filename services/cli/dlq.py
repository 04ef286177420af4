"""`settle dlq`: list dead-lettered events, replay them to the topics they came from, or acknowledge the
ones that must not be replayed.

Listing shows the dead letters nobody has dealt with yet (`--all`: every one, with how it was handled).
Replaying and acknowledging record what was done (dlq_handled.py), which is what `settle status`
counts: only unhandled dead letters need attention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka.errors import KafkaError

from services.cli.dlq_handled import (
    AUDIT_TOPIC,
    REASON_MAX_LENGTH,
    Action,
    AuditEntry,
    HandledPlan,
    plan,
    read_audit,
    record_handled,
)
from services.cli.dlq_letters import DeadLetter, list_dead_letters, replay
from services.cli.endpoints import Endpoints, default_data_dir


class _UsageError(Exception):
    """A command line that cannot be carried out; nothing was changed."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    dlq = commands.add_parser("dlq", help="list, replay and acknowledge dead-lettered events")
    dlq.set_defaults(handler=cmd_dlq)
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    topic_help = "a topic or its .dlq; repeatable (default: every Settle topic)"

    listing = actions.add_parser("list", parents=parents, help="show the dead letters not dealt with yet")
    listing.add_argument("--topic", dest="topics", action="append", metavar="TOPIC", help=topic_help)
    listing.add_argument("--all", action="store_true", help="also those replayed or acknowledged, and how")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.add_argument("--limit", type=int, default=1000, help="show at most this many (default: 1000)")

    for name, help_text, all_help in (
        ("replay", "re-publish dead letters to their source topics under new event ids", "replay every unhandled one"),
        ("ack", "mark dead letters dealt with without replaying them", "acknowledge every unhandled one of --topic"),
    ):
        command = actions.add_parser(name, parents=parents, help=help_text)
        command.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids as `settle dlq list` shows them")
        command.add_argument("--all", action="store_true", help=all_help)
        command.add_argument("--topic", dest="topics", action="append", metavar="TOPIC", help=topic_help)
        command.add_argument("--dry-run", action="store_true", help="only show what would be done")
        if name == "ack":
            command.add_argument("--reason", required=True, help="why they are not replayed (kept in the audit)")


def _bootstrap_servers(data_dir: Path) -> str | None:
    configured = os.environ.get("SETTLE_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured
    endpoints = Endpoints.load(data_dir)
    return endpoints.kafka_bootstrap_servers if endpoints else None


def cmd_dlq(options: argparse.Namespace) -> int:
    data_dir = options.data_dir or default_data_dir()
    servers = _bootstrap_servers(data_dir)
    if servers is None:
        print(
            f"settle dlq: no Kafka to read: set SETTLE_KAFKA_BOOTSTRAP_SERVERS, or start Settle "
            f"(`settle up`) so that {data_dir / 'endpoints.json'} exists",
            file=sys.stderr,
        )
        return 2
    command = {"list": _list, "replay": _replay, "ack": _ack}[options.dlq_command]
    try:
        return asyncio.run(command(servers, options))
    except _UsageError as error:
        print(f"settle dlq {options.dlq_command}: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:
        print(f"settle dlq: Kafka at {servers} failed: {error}", file=sys.stderr)
        return 1


async def _list(servers: str, options: argparse.Namespace) -> int:
    dead_letters = await list_dead_letters(servers, options.topics, limit=options.limit, unhandled_only=not options.all)
    audit = await read_audit(servers) if options.all else {}
    if options.json:
        shown = [_json(dead_letter, audit, with_handling=options.all) for dead_letter in dead_letters]
        print(json.dumps({"dead_letters": shown}))
    else:
        print(_render(dead_letters, options.limit, audit if options.all else None))
    return 0


def _json(dead_letter: DeadLetter, audit: Mapping[str, AuditEntry], *, with_handling: bool) -> dict[str, object]:
    shown = dead_letter.as_json()
    if with_handling:
        entry = audit.get(dead_letter.id)
        shown["handling"] = None if entry is None else entry.as_json()
    return shown


def _handling(dead_letter: DeadLetter, audit: Mapping[str, AuditEntry]) -> str:
    entry = audit.get(dead_letter.id)
    if not dead_letter.handled:
        # Dealt with behind an unhandled one: not counted yet (see _handled_lines).
        return "-" if entry is None else _shorten(f"not yet: {entry.summary()}, behind an unhandled one", 70)
    return _shorten(entry.summary(), 60) if entry else f"yes (no record in {AUDIT_TOPIC})"


def _render(dead_letters: Sequence[DeadLetter], limit: int, audit: Mapping[str, AuditEntry] | None) -> str:
    """A table, the reason last (unpadded); with `audit`, every dead letter and how it was handled."""
    if not dead_letters:
        return "no dead letters" if audit is not None else "no unhandled dead letters (`--all` shows the others)"
    header = ("ID", "TIME (UTC)", "CONSUMER", "KEY", *(("HANDLED",) if audit is not None else ()), "REASON")
    rows = [header]
    for d in dead_letters:
        handled = (_handling(d, audit),) if audit is not None else ()
        time, key = d.timestamp.strftime("%Y-%m-%d %H:%M:%S"), _shorten(d.key.decode(errors="replace"), 40)
        rows.append((d.id, time, d.consumer or "-", key or "-", *handled, _shorten(d.reason, 100) or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
    more = f" (the first {limit}; raise --limit to see more)" if len(dead_letters) >= limit else ""
    kind = "" if audit is not None else " unhandled (`--all` also shows those replayed or acknowledged)"
    return "\n".join([*lines, f"total: {len(dead_letters)}{kind}{more}"])


def _shorten(text: str, width: int) -> str:
    # Reasons can span lines (tracebacks in messages); a table row must not.
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


async def _chosen(servers: str, options: argparse.Namespace) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The dead letters the command names, and every dead letter listed to find them."""
    if bool(options.ids) == options.all:
        raise _UsageError("give dead-letter ids or --all (not both)")
    topics = options.topics or [dead_letter_id.rsplit("/", 2)[0] for dead_letter_id in options.ids]
    # All of them, with no listing limit: `plan` needs every unhandled dead letter of the partitions.
    listed = await list_dead_letters(servers, topics, limit=sys.maxsize, unhandled_only=options.all)
    if options.all:
        return listed, listed
    by_id = {dead_letter.id: dead_letter for dead_letter in listed}
    ids = list(dict.fromkeys(options.ids))
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise _UsageError(
            f"unknown dead letters: {', '.join(unknown)} "
            "(ids look like <topic>.dlq/<partition>/<offset>; see `settle dlq list --all`)"
        )
    return [by_id[i] for i in ids], listed


async def _replay(servers: str, options: argparse.Namespace) -> int:
    chosen, listed = await _chosen(servers, options)
    if not chosen:
        print("no dead letters to replay")
        return 0
    handling = plan(listed, {dead_letter.id for dead_letter in chosen})
    if not options.dry_run:
        await replay(servers, chosen)
        await record_handled(servers, chosen, handling, Action.REPLAYED)
    verb = "would replay" if options.dry_run else "replayed"
    for d in chosen:
        again = " (handled before: consumers dedupe a second replay)" if d.handled else ""
        print(f"{verb} {d.id} to {d.source_topic} as event {d.replay_event_id}{again}")
    print("\n".join(_handled_lines(handling, options.dry_run, "replay")))
    return 0


async def _ack(servers: str, options: argparse.Namespace) -> int:
    reason = " ".join(options.reason.split())
    if not reason or len(reason) > REASON_MAX_LENGTH:
        raise _UsageError(f"--reason must say why they are not replayed, in 1 to {REASON_MAX_LENGTH} characters")
    if options.all and not options.topics:
        # One topic's poison at a time: acknowledging every DLQ at once would hide unrelated incidents.
        raise _UsageError("--all needs --topic")
    chosen, listed = await _chosen(servers, options)
    fresh = [d for d in chosen if not d.handled]
    handling = plan(listed, {d.id for d in fresh})
    if fresh and not options.dry_run:
        await record_handled(servers, fresh, handling, Action.ACKNOWLEDGED, reason)
    verb = "would acknowledge" if options.dry_run else "acknowledged"
    lines = [f"{verb} {d.id} (not replayed): {reason}" for d in fresh]
    lines += [f"{d.id} was handled already: nothing to do" for d in chosen if d.handled]
    print(
        "\n".join([*(lines or ["no dead letters to acknowledge"]), *_handled_lines(handling, options.dry_run, "ack")])
    )
    return 0


def _handled_lines(handling: HandledPlan, dry_run: bool, command: str) -> list[str]:
    marked = "would be handled" if dry_run else "handled"
    lines = [
        f"{partition.topic}/{partition.partition}: every dead letter before offset {offset} {marked}"
        for partition, offset in sorted(handling.offsets.items())
    ]
    lines += [
        f"not counted as handled yet: {d.id}, because {first.id} before it is not; deal with that one, then run "
        + (
            f"`settle dlq replay {d.id}` again (a second replay is deduped)"
            if command == "replay"
            else f"`settle dlq ack {d.id} --reason ...` again"
        )
        for d, first in handling.behind_unhandled
    ]
    return lines
