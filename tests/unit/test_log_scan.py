"""The log scanner finds card numbers and secrets, and leaves ids, amounts and timestamps alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.log_scan import card_numbers, luhn_valid, mask_card, scan_line, scan_tree


@pytest.mark.parametrize(
    "number",
    ["4242424242424242", "4000056655665556", "5555555555554444", "378282246310005", "6011111111111117"],
)
def test_stripe_test_cards_pass_luhn(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "text",
    [
        "card 4242 4242 4242 4242 declined",
        "pan=4242-4242-4242-4242",
        '{"message": "charging 4242424242424242"}',
        "amex 3782 822463 10005",
    ],
)
def test_finds_a_card_number_with_or_without_separators(text: str) -> None:
    assert card_numbers(text) in (["4242424242424242"], ["378282246310005"])


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # one digit off: fails Luhn
        "order 1234567890123 amount 1250",  # 13 digits that fail Luhn
        "seq 12345678901234567890123",  # 23 digits: too long to be a card, and no card inside it
        "balance 000000000000000",  # zero padding passes Luhn but is no card
        "28d23e06-f843-4c89-9713-1a1efc2036cb",  # a payment order id
        '"time": "2026-11-21T15:13:44.479+00:00", "amount_minor": 84773',
        "charged 250 USD for 3 items",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-4242424242424242-01",  # a traceparent's span id
        "order 12345678-4242-4242-4242-424242424242",  # digits in a UUID's groups
        "trace a4242424242424242f",  # digits inside a hex id
        '"created": 1795274021000',  # epoch milliseconds
        "1795274021000000000",  # epoch nanoseconds
    ],
)
def test_ignores_ids_amounts_and_numbers_that_fail_luhn(text: str) -> None:
    assert card_numbers(text) == []


def test_a_card_next_to_other_numbers_is_still_found() -> None:
    assert card_numbers("qty 2 card 4242 4242 4242 4242 exp 12 34") == ["4242424242424242"]
    assert card_numbers("4242424242424242 5555555555554444") == ["4242424242424242", "5555555555554444"]


def test_a_finding_names_the_json_field_it_is_in() -> None:
    line = json.dumps({"level": "INFO", "message": "paid with 4242 4242 4242 4242"})
    assert scan_line(line) == ["card number 424242******4242 in field message"]


def test_finds_key_prefixes_and_known_secret_values_masked() -> None:
    key = "sk_settle_admin_Zm9vYmFyYmF6cXV4MTIz"
    found = scan_line(f"calling with {key} and whsec_0123456789abcdef and rk_test_abcdef", [key])
    assert found == [
        "secret value sk_settle_... (36 characters)",
        "key-like token whsec_... (22 characters)",
        "key-like token rk_... (14 characters)",
    ]
    assert not any(key in line for line in found)


def test_words_that_merely_contain_a_prefix_are_not_keys() -> None:
    assert scan_line('{"logger": "network_monitor", "message": "mark_paid bookmark_x task_test_1"}') == []


def test_a_private_key_is_found() -> None:
    assert scan_line("-----BEGIN EC PRIVATE KEY-----") == ["a PEM private key"]


def test_mask_keeps_only_what_identifies_a_card() -> None:
    assert mask_card("4242424242424242") == "424242******4242"


def test_scan_tree_names_file_and_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "payment.log").write_text(
        json.dumps({"message": "ok"}) + "\n" + json.dumps({"message": "card 4242 4242 4242 4242"}) + "\n"
    )
    (logs / "wallet.log").write_text("nothing here\n")
    findings = scan_tree(logs)
    assert [(f.path.name, f.line, f.what) for f in findings] == [
        ("payment.log", 2, "card number 424242******4242 in field message")
    ]
    assert str(findings[0]) == f"{logs / 'payment.log'}:2: card number 424242******4242 in field message"
