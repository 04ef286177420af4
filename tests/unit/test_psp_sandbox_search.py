"""The sandbox's subset of Stripe's search query language."""

import pytest

from psp_sandbox.search import Clause, SearchQueryError, parse_query, search
from psp_sandbox.store import Store


def test_metadata_clauses_joined_by_and() -> None:
    clauses = parse_query("metadata['payment_order_id']:'po_1' AND status:'succeeded'")

    assert clauses == [Clause("metadata", "po_1", "payment_order_id"), Clause("status", "succeeded")]


def test_escaped_quotes_and_double_quotes() -> None:
    clauses = parse_query('metadata["note"]:\'it\\\'s\' AND currency:"USD" AND amount:1250')

    assert clauses == [
        Clause("metadata", "it's", "note"),
        Clause("currency", "usd"),
        Clause("amount", "1250"),
    ]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status:succeeded",
        "amount:'12'",
        "metadata['a']:'b' OR status:'succeeded'",
        "metadata['a']:'b' AND",
        "customer:'cus_1'",
        "metadata['a']:'b' status:'x'",
    ],
)
def test_unsupported_or_malformed_queries_are_rejected(query: str) -> None:
    with pytest.raises(SearchQueryError):
        parse_query(query)


URL = "/v1/payment_intents/search"


def _intent(intent_id: str, status: str, order_id: str) -> dict[str, object]:
    return {
        "id": intent_id,
        "status": status,
        "currency": "usd",
        "amount": 100,
        "metadata": {"payment_order_id": order_id},
    }


def test_search_filters_by_every_clause_newest_first_and_pages() -> None:
    store = Store()
    store.add_intent(_intent("pi_1", "requires_payment_method", "po_1"))
    store.add_intent(_intent("pi_2", "succeeded", "po_1"))
    store.add_intent(_intent("pi_3", "succeeded", "po_2"))
    store.add_intent(_intent("pi_4", "succeeded", "po_1"))

    only_succeeded = search(
        store.intents, parse_query("metadata['payment_order_id']:'po_1' AND status:'succeeded'"), 10, None, URL
    )
    first_page = search(store.intents, parse_query("status:'succeeded'"), 2, None, URL)
    second_page = search(store.intents, parse_query("status:'succeeded'"), 2, first_page["next_page"], URL)

    assert [intent["id"] for intent in only_succeeded["data"]] == ["pi_4", "pi_2"]
    assert only_succeeded["has_more"] is False
    assert [intent["id"] for intent in first_page["data"]] == ["pi_4", "pi_3"]
    assert first_page["has_more"] is True
    assert [intent["id"] for intent in second_page["data"]] == ["pi_2"]
    assert second_page["next_page"] is None
    assert second_page["url"] == URL
