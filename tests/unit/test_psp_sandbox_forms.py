"""Stripe's bracket form encoding, as the official SDK writes it."""

from urllib.parse import urlencode

import pytest

from psp_sandbox.forms import FormError, as_list, as_string_map, parse_form


def test_nested_metadata_and_indexed_array_are_decoded() -> None:
    encoded = (
        urlencode(
            [
                ("amount", "1250"),
                ("metadata[payment_order_id]", "po_1"),
                ("metadata[seller_id]", "seller 7"),
                ("payment_method_types[0]", "card"),
                ("payment_method_types[1]", "link"),
            ]
        )
        .replace("%5B", "[")
        .replace("%5D", "]")
    )

    form = parse_form(encoded)

    assert form["amount"] == "1250"
    assert as_string_map(form["metadata"], "metadata") == {
        "payment_order_id": "po_1",
        "seller_id": "seller 7",
    }
    assert as_list(form["payment_method_types"], "payment_method_types") == ["card", "link"]


def test_percent_encoded_brackets_are_accepted() -> None:
    form = parse_form("metadata%5Bk%5D=v")

    assert form == {"metadata": {"k": "v"}}


def test_empty_brackets_append_in_order() -> None:
    form = parse_form("expand[]=a&expand[]=b")

    assert as_list(form["expand"], "expand") == ["a", "b"]


def test_digit_keys_stay_metadata_keys_when_read_as_a_map() -> None:
    form = parse_form("metadata[0]=zero")

    assert as_string_map(form["metadata"], "metadata") == {"0": "zero"}


def test_array_indices_out_of_order_are_read_by_index() -> None:
    form = parse_form("types[1]=b&types[0]=a&types[2]=c")

    assert as_list(form["types"], "types") == ["a", "b", "c"]


def test_array_with_gap_is_rejected() -> None:
    form = parse_form("types[0]=a&types[2]=c")

    with pytest.raises(FormError) as raised:
        as_list(form["types"], "types")
    assert raised.value.param == "types"


@pytest.mark.parametrize(
    "encoded",
    ["amount=1&amount=2", "metadata=x&metadata[k]=v", "metadata[k]=v&metadata=x", "a]b=1", "[x]=1"],
)
def test_ambiguous_or_malformed_keys_are_rejected(encoded: str) -> None:
    with pytest.raises(FormError):
        parse_form(encoded)


def test_nesting_depth_is_limited() -> None:
    with pytest.raises(FormError):
        parse_form("a[b][c][d][e][f]=1")


def test_empty_string_clears_a_hash() -> None:
    assert as_string_map(parse_form("metadata=")["metadata"], "metadata") == {}
