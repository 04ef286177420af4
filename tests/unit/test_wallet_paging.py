"""ListBalanceEntries page tokens: opaque, bound to the seller and its snapshot, refused when forged."""

from __future__ import annotations

import base64
import json

import pytest

from services.common.errors import InvalidArgument
from services.wallet.paging import EntriesCursor, decode_token, encode_token, is_snapshot, page_size


def test_a_token_round_trips_for_the_same_seller() -> None:
    cursor = EntriesCursor("seller-1", "740:745:741,743", 42)
    assert decode_token(encode_token(cursor), "seller-1") == cursor


def _token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24",  # "not json"
        _token([1, 2]),
        _token({"v": 2, "seller": "seller-1", "snapshot": "5:5:", "after": 1}),
        _token({"v": 1, "seller": "seller-1", "snapshot": "5:5:", "after": -1}),
        _token({"v": 1, "seller": "seller-1", "snapshot": "5:5:", "after": "1"}),
        _token({"v": 1, "seller": "seller-1", "snapshot": "5:5:", "after": True}),
        _token({"v": 1, "seller": "seller-1", "after": 1}),
        _token({"v": 1, "seller": "seller-1", "snapshot": "5:4:", "after": 1}),
        _token({"v": 1, "seller": "seller-1", "snapshot": "5:9:1; SELECT 1", "after": 1}),
        _token({"v": 1, "snapshot": "5:5:", "after": 1}),
        _token({"v": 1, "seller": "seller-2", "snapshot": "5:5:", "after": 1}),
        "A" * 70_000,
    ],
)
def test_anything_but_a_token_for_this_seller_is_an_invalid_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, "seller-1")
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in caught.value.violations] == ["page_token"]


@pytest.mark.parametrize(("snapshot", "valid"), [("740:740:", True), ("740:745:741,744", True), ("0:0:", False),
                                                 ("740:745:744,741", False), ("740:745:745", False)])  # fmt: skip
def test_only_snapshots_postgresql_accepts_pass(snapshot: str, valid: bool) -> None:
    assert is_snapshot(snapshot) is valid


def test_page_size_defaults_to_100_and_is_capped_at_1000() -> None:
    assert page_size(0) == 100
    assert page_size(1) == 1
    assert page_size(1000) == 1000
    assert page_size(5000) == 1000
    with pytest.raises(InvalidArgument) as caught:
        page_size(-1)
    assert [v.field for v in caught.value.violations] == ["page_size"]
