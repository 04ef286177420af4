"""Stripe's list and search requests: `limit` and `starting_after` pages, `query` and `page` searches."""

from __future__ import annotations

from psp_sandbox import errors
from psp_sandbox.errors import JsonObject
from psp_sandbox.forms import FormDict
from psp_sandbox.indexes import ObjectIndex
from psp_sandbox.search import SearchQueryError, parse_query, search
from psp_sandbox.validation import string_param

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
LIST_PARAMS = frozenset({"limit", "starting_after"})


def list_page(newest_first: list[JsonObject], form: FormDict, url: str, kind: str) -> JsonObject:
    """A page of a list newest first, as Stripe's list endpoints answer; `kind` names the object in errors."""
    limit = _limit(form)
    starting_after = string_param(form, "starting_after")
    start = 0
    if starting_after is not None:
        ids = [obj["id"] for obj in newest_first]
        if starting_after not in ids:
            raise errors.resource_missing(f"No such {kind}: '{starting_after}'", "starting_after")
        start = ids.index(starting_after) + 1
    return {
        "object": "list",
        "data": newest_first[start : start + limit],
        "has_more": len(newest_first) > start + limit,
        "url": url,
    }


def search_page(index: ObjectIndex, form: FormDict, url: str) -> JsonObject:
    query = string_param(form, "query")
    if query is None:
        raise errors.parameter_missing("query")
    limit = _limit(form)
    page = string_param(form, "page")
    try:
        return search(index, parse_query(query), limit, page, url)
    except SearchQueryError as error:
        raise errors.invalid_request(str(error), "query") from None


def _limit(form: FormDict) -> int:
    limit = form.get("limit", str(DEFAULT_LIMIT))
    if not isinstance(limit, str) or not (limit.isdecimal() and len(limit) <= 3 and 1 <= int(limit) <= MAX_LIMIT):
        raise errors.invalid_request(f"limit must be an integer from 1 to {MAX_LIMIT}.", "limit")
    return int(limit)
