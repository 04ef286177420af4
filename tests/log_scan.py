"""Finds what must never be in a log: card numbers, API keys and other secrets.

A card number is a run of 13 to 19 digits that passes the Luhn check, written plain or grouped as
cards are printed ("4242 4242 4242 4242", "4242-4242-4242-4242", Amex "3782 822463 10005"), starting
with a digit a card network issues (2 to 6: Mastercard, Amex/JCB/Diners, Visa, Mastercard, Discover/
UnionPay). What logs are full of is excluded by those rules: hex trace ids and UUIDs (digit runs inside
a word or a dashed identifier), epoch timestamps (they start with 1), zero padding (one repeated digit).

A secret is a known secret value, or a token starting with a prefix that marks a key: Stripe's secret,
restricted and webhook keys and Settle's own API keys.

Findings are masked, so a failing test's output never repeats the leak it reports, and name the JSON
field of a log line they are in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Groups of digits with single spaces or dashes between them, standing alone: not part of a word or of a
# dashed identifier. A card may be any run of consecutive groups in it ("qty 2 card 4242 4242 ...").
_DIGIT_GROUPS = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*(?![\w-])")
_SEPARATED = re.compile(r"(\d+)")
# How cards are printed: in fours (the last group shorter), or 4-6-5 / 4-6-4 (Amex, Diners).
_CARD_GROUPINGS = (re.compile(r"\d{4}(?:[ -]\d{4})*[ -]\d{1,4}"), re.compile(r"\d{4}[ -]\d{6}[ -]\d{4,5}"))
SECRET_PREFIXES = ("sk_live_", "sk_test_", "rk_", "whsec_", "sk_settle_")
# At a word start (so "network_" is not "rk_"), followed by the key's characters.
_SECRET_TOKEN = re.compile(r"\b(?:" + "|".join(map(re.escape, SECRET_PREFIXES)) + r")[A-Za-z0-9_\-]{4,}")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    line: int
    what: str  # masked

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(written: str) -> bool:
    digits = re.sub(r"[ -]", "", written)
    grouped = written == digits or any(grouping.fullmatch(written) for grouping in _CARD_GROUPINGS)
    return grouped and 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and luhn_valid(digits)


def _cards(text: str) -> list[tuple[str, str]]:
    """(as written, digits only) for each card number in `text`: the longest run of groups from each group."""
    found = []
    for match in _DIGIT_GROUPS.finditer(text):
        parts = _SEPARATED.split(match.group())[1:-1]  # digits, separator, digits, ...
        groups = len(parts) // 2 + 1
        start = 0
        while start < groups:
            windows = ("".join(parts[2 * start : 2 * end - 1]) for end in range(groups, start, -1))
            written = next((window for window in windows if _is_card(window)), None)
            if written is None:
                start += 1
                continue
            found.append((written, re.sub(r"[ -]", "", written)))
            start += written.count(" ") + written.count("-") + 1
    return found


def card_numbers(text: str) -> list[str]:
    """The card numbers in `text`, as digits only."""
    return [digits for _, digits in _cards(text)]


def mask_card(digits: str) -> str:
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def mask_secret(secret: str) -> str:
    prefix = next((p for p in SECRET_PREFIXES if secret.startswith(p)), secret[:4])
    return f"{prefix}... ({len(secret)} characters)"


def _field_of(line: str, fragment: str) -> str:
    """` in field F` when `line` is a JSON object with `fragment` in its field F; else nothing."""
    try:
        record = json.loads(line)
    except ValueError:
        return ""
    if not isinstance(record, dict):
        return ""
    for name, value in record.items():
        if fragment in (value if isinstance(value, str) else json.dumps(value)):
            return f" in field {name}"
    return ""


def scan_line(line: str, secrets: Iterable[str] = ()) -> list[str]:
    """What `line` leaks, masked: card numbers, known secret values, key-like tokens, private keys."""
    found = [f"card number {mask_card(digits)}{_field_of(line, written)}" for written, digits in _cards(line)]
    known = [secret for secret in secrets if secret and secret in line]
    found += [f"secret value {mask_secret(secret)}{_field_of(line, secret)}" for secret in known]
    found += [
        f"key-like token {mask_secret(token)}{_field_of(line, token)}"
        for token in _SECRET_TOKEN.findall(line)
        if not any(token in secret for secret in known)  # already reported as the value itself
    ]
    if _PRIVATE_KEY.search(line):
        found.append("a PEM private key")
    return found


def scan_file(path: Path, secrets: Iterable[str] = ()) -> Iterator[Finding]:
    secrets = [secret for secret in secrets if secret]
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            for what in scan_line(line, secrets):
                yield Finding(path, number, what)


def scan_tree(root: Path, secrets: Iterable[str] = ()) -> list[Finding]:
    """Every finding in every file below `root`."""
    secrets = list(secrets)
    return [finding for path in sorted(root.rglob("*")) if path.is_file() for finding in scan_file(path, secrets)]
