"""ListEntries page tokens: they carry a snapshot PostgreSQL accepts, and tampering is refused."""

from __future__ import annotations

import base64
import json

import pytest

from services.common.errors import InvalidArgument
from services.ledger.paging import EntriesCursor, decode_token, encode_token, is_snapshot, page_size


def _token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_a_token_round_trips_with_its_snapshot_and_filter() -> None:
    cursor = EntriesCursor("740:745:741,743", 17, "8d0c8b0e-2f0b-4c55-b1a0-2ab0f1ad6f3e")
    assert decode_token(encode_token(cursor), cursor.payment_order_id) == cursor


@pytest.mark.parametrize("snapshot", ["740:740:", "1:9:", "740:745:741", "740:745:740,744", "3:18446744073709551615:"])
def test_snapshots_postgresql_accepts(snapshot: str) -> None:
    assert is_snapshot(snapshot)


@pytest.mark.parametrize(
    "snapshot",
    [
        "",
        "0:0:",
        "745:740:",
        "740:745:746",
        "740:745:739",
        "740:745:744,741",
        "1:2",
        "a:b:",
        "1:18446744073709551616:",
        "1:5:2,,3",
        "1:5:2; DROP TABLE postings",
    ],
)
def test_snapshots_postgresql_refuses(snapshot: str) -> None:
    assert not is_snapshot(snapshot)


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        _token("text"),
        _token({"v": 1, "snapshot": "740:740:", "after": 3}),
        _token({"v": 1, "snapshot": "not a snapshot", "after": 3, "order": ""}),
        _token({"v": 1, "snapshot": "740:740:", "after": -3, "order": ""}),
        _token({"v": 9, "snapshot": "740:740:", "after": 3, "order": ""}),
        _token({"v": 1, "snapshot": "740:740:", "after": 3, "order": "8d0c8b0e-2f0b-4c55-b1a0-2ab0f1ad6f3e"}),
    ],
)
def test_anything_but_a_token_for_this_listing_is_an_invalid_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, "")
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


def test_page_size_defaults_to_100_and_is_capped_at_1000() -> None:
    assert (page_size(0), page_size(7), page_size(1001)) == (100, 7, 1000)
    with pytest.raises(InvalidArgument):
        page_size(-5)
