"""Snapshot-stable page tokens (ledger ListEntries, wallet ListBalanceEntries): opaque, bound to the
listing's scope and snapshot, carrying a snapshot PostgreSQL accepts, and refused when forged."""

from __future__ import annotations

import base64
import json

import pytest

from services.common.errors import InvalidArgument
from services.common.snapshot_paging import SnapshotCursor, decode_token, encode_token, is_snapshot, page_size

# The two bindings in use: the ledger binds the payment_order_id filter, the wallet the seller.
ORDER_FILTER = "a listing with another payment_order_id filter"
SELLER = "another seller"


def _token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("cursor", "scope_description"),
    [
        (SnapshotCursor("740:745:741,743", 17, "8d0c8b0e-2f0b-4c55-b1a0-2ab0f1ad6f3e"), ORDER_FILTER),
        (SnapshotCursor("740:745:741,743", 17, ""), ORDER_FILTER),
        (SnapshotCursor("740:745:741,743", 42, "seller-1"), SELLER),
    ],
)
def test_a_token_round_trips_with_its_snapshot_and_scope(cursor: SnapshotCursor, scope_description: str) -> None:
    assert decode_token(encode_token(cursor), cursor.scope, scope_description) == cursor


@pytest.mark.parametrize(
    "snapshot", ["740:740:", "1:9:", "740:745:741", "740:745:740,744", "740:745:741,744", "3:18446744073709551615:"]
)
def test_snapshots_postgresql_accepts(snapshot: str) -> None:
    assert is_snapshot(snapshot) is True


@pytest.mark.parametrize(
    "snapshot",
    [
        "",
        "0:0:",
        "745:740:",
        "740:745:746",
        "740:745:745",
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
    assert is_snapshot(snapshot) is False


@pytest.mark.parametrize(
    ("token", "scope", "scope_description"),
    [
        # Bound to the ledger's payment_order_id filter (here: no filter).
        ("%%%", "", ORDER_FILTER),
        (_token("text"), "", ORDER_FILTER),
        (_token({"v": 1, "snapshot": "740:740:", "after": 3}), "", ORDER_FILTER),
        (_token({"v": 1, "snapshot": "not a snapshot", "after": 3, "scope": ""}), "", ORDER_FILTER),
        (_token({"v": 1, "snapshot": "740:740:", "after": -3, "scope": ""}), "", ORDER_FILTER),
        (_token({"v": 9, "snapshot": "740:740:", "after": 3, "scope": ""}), "", ORDER_FILTER),
        (
            _token({"v": 1, "snapshot": "740:740:", "after": 3, "scope": "8d0c8b0e-2f0b-4c55-b1a0-2ab0f1ad6f3e"}),
            "",
            ORDER_FILTER,
        ),
        # Bound to the wallet's seller.
        ("garbage!", "seller-1", SELLER),
        ("bm90IGpzb24", "seller-1", SELLER),  # "not json"
        (_token([1, 2]), "seller-1", SELLER),
        (_token({"v": 2, "scope": "seller-1", "snapshot": "5:5:", "after": 1}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "snapshot": "5:5:", "after": -1}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "snapshot": "5:5:", "after": "1"}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "snapshot": "5:5:", "after": True}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "after": 1}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "snapshot": "5:4:", "after": 1}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-1", "snapshot": "5:9:1; SELECT 1", "after": 1}), "seller-1", SELLER),
        (_token({"v": 1, "snapshot": "5:5:", "after": 1}), "seller-1", SELLER),
        (_token({"v": 1, "scope": "seller-2", "snapshot": "5:5:", "after": 1}), "seller-1", SELLER),
        ("A" * 70_000, "seller-1", SELLER),
    ],
)
def test_anything_but_a_token_for_this_listing_is_an_invalid_page_token(
    token: str, scope: str, scope_description: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, scope, scope_description)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in caught.value.violations] == ["page_token"]


@pytest.mark.parametrize(
    ("issued_for", "scope", "scope_description", "why"),
    [
        ("8d0c8b0e-2f0b-4c55-b1a0-2ab0f1ad6f3e", "", ORDER_FILTER, f"was issued for {ORDER_FILTER}"),
        ("seller-2", "seller-1", SELLER, "was issued for another seller"),
    ],
)
def test_a_token_for_another_scope_says_so(issued_for: str, scope: str, scope_description: str, why: str) -> None:
    token = encode_token(SnapshotCursor("5:5:", 1, issued_for))
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, scope, scope_description)
    assert [v.description for v in caught.value.violations] == [why]


def test_page_size_defaults_to_100_and_is_capped_at_1000() -> None:
    assert (page_size(0), page_size(1), page_size(7), page_size(1000)) == (100, 1, 7, 1000)
    assert (page_size(1001), page_size(5000)) == (1000, 1000)
    for negative in (-1, -5):
        with pytest.raises(InvalidArgument) as caught:
            page_size(negative)
        assert [v.field for v in caught.value.violations] == ["page_size"]
