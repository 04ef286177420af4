"""ListPayments page tokens and page sizes (pure)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.payment.domain import page_token
from services.payment.domain.page_token import Cursor


def _cursor() -> Cursor:
    return Cursor(datetime(2025, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC), uuid.uuid4())


def _reason(token: str, buyer_id: str = "") -> str:
    with pytest.raises(InvalidArgument) as caught:
        page_token.decode(token, buyer_id)
    assert [v.field for v in caught.value.violations] == ["page_token"]
    return caught.value.reason


def test_a_token_round_trips_to_the_microsecond() -> None:
    cursor = _cursor()
    token = page_token.encode(cursor, "buyer-1")
    assert page_token.decode(token, "buyer-1") == cursor
    assert "=" not in token and "+" not in token and "/" not in token


def test_a_token_is_only_valid_for_the_filter_it_was_issued_for() -> None:
    token = page_token.encode(_cursor(), "buyer-1")
    assert _reason(token, "buyer-2") == "INVALID_PAGE_TOKEN"
    assert _reason(token, "") == "INVALID_PAGE_TOKEN"


def test_an_edited_token_is_refused() -> None:
    cursor = _cursor()
    token = page_token.encode(cursor, "")
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["t"] += 1
    edited = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    assert _reason(edited) == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize("token", ["garbage!", "e30", "bnVsbA", "x" * 600, "W10"])
def test_garbage_is_refused(token: str) -> None:
    assert _reason(token) == "INVALID_PAGE_TOKEN"


def test_page_sizes() -> None:
    assert page_token.page_size(0) == 50
    assert page_token.page_size(1) == 1
    assert page_token.page_size(500) == 500
    for bad in (-1, 501):
        with pytest.raises(InvalidArgument) as caught:
            page_token.page_size(bad)
        assert caught.value.reason == "VALIDATION_FAILED"
        assert caught.value.violations[0].field == "page_size"
