"""The part of Stripe's search query language Settle uses: `metadata['k']:'v'`, `status:'x'`,
`currency:'x'` and `amount:N` clauses joined by AND, over payment intents and (a sandbox extra) payouts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psp_sandbox.indexes import ObjectIndex

JsonObject = dict[str, Any]

MAX_CLAUSES = 10
_PAGE_PREFIX = "page_"
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_CLAUSE = re.compile(
    rf"\s*(?:metadata\[(?P<key>{_QUOTED})\]|(?P<field>status|currency|amount))"
    rf":(?:(?P<value>{_QUOTED})|(?P<number>\d+))\s*"
)
_AND = re.compile(r"AND\s")


class SearchQueryError(ValueError):
    pass


@dataclass(frozen=True)
class Clause:
    field: str  # "metadata" / "status" / "currency" / "amount"
    value: str
    metadata_key: str | None = None

    def matches(self, obj: JsonObject) -> bool:
        if self.metadata_key is not None:
            return bool(obj["metadata"].get(self.metadata_key) == self.value)
        return str(obj[self.field]) == self.value


def parse_query(query: str) -> list[Clause]:
    clauses: list[Clause] = []
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None or len(clauses) >= MAX_CLAUSES:
            raise SearchQueryError(f"Invalid search query at position {position}: {query!r}")
        clauses.append(_clause(match))
        position = match.end()
        if position == len(query):
            return clauses
        separator = _AND.match(query, position)
        if separator is None:
            raise SearchQueryError(f"Expected 'AND' at position {position} of the search query: {query!r}")
        position = separator.end()


def _clause(match: re.Match[str]) -> Clause:
    value = _unquote(match["value"]) if match["value"] is not None else match["number"]
    if match["key"] is not None:
        return Clause("metadata", value, _unquote(match["key"]))
    field = match["field"]
    if (field == "amount") != (match["number"] is not None):
        raise SearchQueryError(f"'{field}' needs a {'number' if field == 'amount' else 'quoted string'}")
    return Clause(field, value.lower() if field == "currency" else value)


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def search(index: ObjectIndex, clauses: list[Clause], limit: int, page: str | None, url: str) -> JsonObject:
    offset = _decode_page(page)
    first_metadata = next((clause for clause in clauses if clause.metadata_key is not None), None)
    candidates: Iterable[JsonObject] = (
        index.newest_first()
        if first_metadata is None or first_metadata.metadata_key is None
        else index.with_metadata_newest_first(first_metadata.metadata_key, first_metadata.value)
    )
    matching = [obj for obj in candidates if all(clause.matches(obj) for clause in clauses)]
    data = matching[offset : offset + limit]
    has_more = len(matching) > offset + limit
    return {
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": f"{_PAGE_PREFIX}{offset + limit}" if has_more else None,
        "url": url,
    }


def _decode_page(page: str | None) -> int:
    if page is None:
        return 0
    digits = page.removeprefix(_PAGE_PREFIX)
    if not page.startswith(_PAGE_PREFIX) or not digits.isdigit():
        raise SearchQueryError(f"Invalid page: {page}")
    return int(digits)
