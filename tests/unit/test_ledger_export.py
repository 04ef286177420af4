"""The hledger formatter: amounts at each currency's exponent, accounts, sanitising, balance, directives."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest

from services.common.money import CURRENCY_EXPONENTS
from services.ledger import export
from services.ledger.accounts import FIXED_ACCOUNTS
from services.ledger.export import ExportEntry, ExportPosting, ExportRefused, Period

ENTRY_ID = uuid.UUID("0f5c7a52-52f6-4a43-9a39-0b5f0d3f61e1")
ORDER_ID = uuid.UUID("9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c07")
EVENT_ID = uuid.UUID("5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f")
POSTED_AT = datetime(2026, 1, 15, 10, 11, 12, 123456, tzinfo=UTC)
POSTING_LINE = re.compile(r"^    (?P<account>\S(?:.*?\S)?)  +(?P<amount>-?\d+(?:\.\d+)?) (?P<currency>[A-Z]{3})$")


def entry(*postings: tuple[str, str, int], posted_at: datetime = POSTED_AT, kind: str = "payment_order_succeeded",
          order_id: uuid.UUID | None = ORDER_ID) -> ExportEntry:  # fmt: skip
    return ExportEntry(
        seq=1,
        entry_id=ENTRY_ID,
        kind=kind,
        payment_order_id=order_id,
        cause_event_id=EVENT_ID,
        posted_at=posted_at,
        postings=tuple(ExportPosting(account, currency, amount) for account, currency, amount in postings),
    )


def sale(amount_minor: int, currency: str = "USD", seller: str = "seller-42") -> ExportEntry:
    return entry(("psp_receivable", currency, amount_minor), (f"seller_payable:{seller}", currency, -amount_minor))


@pytest.mark.parametrize(
    ("amount_minor", "currency", "text"),
    [
        (123456, "USD", "1234.56 USD"),
        (500, "JPY", "500 JPY"),
        (-1200, "EUR", "-12.00 EUR"),
        (1234567, "KWD", "1234.567 KWD"),
        (0, "USD", "0.00 USD"),
        (0, "JPY", "0 JPY"),
        (0, "KWD", "0.000 KWD"),
        (1, "USD", "0.01 USD"),
        (-1, "USD", "-0.01 USD"),
        (-5, "KWD", "-0.005 KWD"),
        (-7, "JPY", "-7 JPY"),
        (100, "USD", "1.00 USD"),
        (-99_999_999, "CLP", "-99999999 CLP"),
        # The extremes of BIGINT: a float would already be off by hundreds here.
        (9_223_372_036_854_775_807, "USD", "92233720368547758.07 USD"),
        (-9_223_372_036_854_775_808, "USD", "-92233720368547758.08 USD"),
        (9_223_372_036_854_775_807, "BHD", "9223372036854775.807 BHD"),
    ],
)
def test_amounts_are_written_at_the_currency_exponent(amount_minor: int, currency: str, text: str) -> None:
    assert export.amount_text(amount_minor, currency) == text


def test_a_currency_of_unknown_exponent_is_refused_not_guessed() -> None:
    with pytest.raises(ExportRefused) as refused:
        export.amount_text(100, "XYZ")
    assert refused.value.reason == "CURRENCY_EXPONENT_UNKNOWN"
    with pytest.raises(ExportRefused):
        export.commodity_directive("XYZ")


@pytest.mark.parametrize(
    ("currency", "directive"),
    [("USD", "commodity 1000.00 USD"), ("JPY", "commodity 1000. JPY"), ("KWD", "commodity 1000.000 KWD")],
)
def test_commodity_directives_declare_the_precision(currency: str, directive: str) -> None:
    # hledger 1.25 rejects `commodity 1000 JPY` ("Please include a decimal point"): the trailing mark is needed.
    assert export.commodity_directive(currency) == directive


def test_the_preamble_declares_each_currency_once_in_order_before_any_transaction() -> None:
    text = export.preamble(["USD", "JPY", "USD", "KWD"], Period())
    directives = [line for line in text.splitlines() if line.startswith("commodity")]
    assert directives == ["commodity 1000. JPY", "commodity 1000.000 KWD", "commodity 1000.00 USD"]
    assert all(line.startswith(";") or line.startswith("commodity") or not line for line in text.splitlines())
    assert text.endswith("\n\n")


def test_the_preamble_states_the_period() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    assert "every entry" in export.preamble([], Period())
    bounded = export.preamble([], Period(start, end))
    assert "2026-01-01T00:00:00.000000Z (inclusive)" in bounded and "2026-02-01T00:00:00.000000Z (exclusive)" in bounded


@pytest.mark.parametrize(
    ("account", "hledger"),
    [
        ("psp_receivable", "assets:psp_receivable"),
        ("bank_cash", "assets:bank_cash"),
        ("refunds_clearing", "liabilities:refunds_clearing"),
        ("platform_revenue", "revenues:platform_revenue"),
        ("psp_fees", "expenses:psp_fees"),
        ("seller_payable:seller-42", "liabilities:seller_payable:seller-42"),
        ("seller_payable:Café Olé", "liabilities:seller_payable:Café Olé"),
        ("payouts_in_transit", "unmapped:payouts_in_transit"),
        ("payouts_in_transit:seller-1", "liabilities:payouts_in_transit:seller-1"),
        ("payouts_in_transit:a:b c", "liabilities:payouts_in_transit:a%3Ab c"),
    ],
)
def test_accounts_map_to_hledger_types(account: str, hledger: str) -> None:
    assert export.hledger_account(account) == hledger


def test_every_account_of_the_chart_has_a_type() -> None:
    # A new account in accounts.py must get its hledger type here too, or it is exported as unmapped.
    for account in FIXED_ACCOUNTS:
        assert not export.hledger_account(account).startswith(f"{export.UNMAPPED}:"), account


TRICKY_SELLERS = [
    "a;b",
    "a  b",
    "a\tb",
    "trailing ",
    " leading",
    "a b",
    "a:b",
    "100%",
    "a%3Bb",
    "nbsp\u00a0x",
    "line\u2028sep",
    "a   b",
    "(paren)",
    "a,b",
]


@pytest.mark.parametrize("seller", TRICKY_SELLERS)
def test_seller_ids_hledger_would_misread_are_encoded_reversibly(seller: str) -> None:
    name = export.hledger_account(f"seller_payable:{seller}")
    prefix = "liabilities:seller_payable:"
    assert name.startswith(prefix)
    segment = name.removeprefix(prefix)
    assert "  " not in name and ";" not in name and ":" not in segment
    assert name == name.strip() and name.isprintable()
    assert unquote(segment) == seller  # reversible, hence two sellers never merge
    assert export.hledger_account(f"seller_payable:{seller}") == name  # deterministic


def test_encoding_examples() -> None:
    assert export.hledger_account("seller_payable:a;b  c\td: ") == "liabilities:seller_payable:a%3Bb%20%20c%09d%3A%20"
    assert export.hledger_account("seller_payable:a b") == "liabilities:seller_payable:a b"
    assert export.hledger_account("odd;account:x  y") == "unmapped:odd%3Baccount:x%20%20y"


def test_distinct_accounts_stay_distinct() -> None:
    accounts = [f"seller_payable:{seller}" for seller in TRICKY_SELLERS] + [
        "seller_payable:a%3Ab",
        "seller_payable:trailing",
        "seller_payable:leading",
        "seller_payable:a",
    ]
    assert len({export.hledger_account(account) for account in accounts}) == len(accounts)


def test_a_transaction_has_the_header_tags_and_one_line_per_posting() -> None:
    text = export.transaction(sale(123456))
    assert text == (
        f"2026-01-15 payment_order_succeeded {ENTRY_ID} {ORDER_ID}\n"
        f"    ; entry_id:{ENTRY_ID}, kind:payment_order_succeeded, payment_order_id:{ORDER_ID}, "
        f"event_id:{EVENT_ID}, posted_at:2026-01-15T10:11:12.123456Z\n"
        "    assets:psp_receivable                  1234.56 USD\n"
        "    liabilities:seller_payable:seller-42  -1234.56 USD\n"
        "\n"
    )


def test_an_entry_without_payment_order_has_no_order_in_header_or_tags() -> None:
    text = export.transaction(entry(("bank_cash", "EUR", 10), ("psp_receivable", "EUR", -10), order_id=None))
    header, tags = text.splitlines()[:2]
    assert header == f"2026-01-15 payment_order_succeeded {ENTRY_ID}"
    assert "payment_order_id" not in tags


def test_the_date_is_the_utc_date_of_the_posting_time() -> None:
    new_york = timezone(timedelta(hours=-5))
    late_evening = datetime(2026, 1, 15, 23, 30, tzinfo=new_york)  # 2026-01-16 04:30 UTC
    text = export.transaction(
        entry(("psp_receivable", "USD", 1), ("seller_payable:s", "USD", -1), posted_at=late_evening)
    )
    assert text.startswith("2026-01-16 ")
    assert "posted_at:2026-01-16T04:30:00.000000Z" in text


def test_a_correction_carries_its_ids_reference_and_memo_as_tags() -> None:
    refund_id, payout_id, reversed_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    reversal = ExportEntry(
        seq=2,
        entry_id=ENTRY_ID,
        kind="reversal",
        payment_order_id=None,
        cause_event_id=EVENT_ID,
        posted_at=POSTED_AT,
        postings=(
            ExportPosting("payouts_in_transit:s-1", "USD", 500),
            ExportPosting("seller_payable:s-1", "USD", -500),
        ),
        refund_id=refund_id,
        payout_id=payout_id,
        reverses_entry_id=reversed_id,
        psp_reference="po_1",
        memo="wrong seller, see; ticket 7",
    )
    tags = export.transaction(reversal).splitlines()[1]
    assert tags == (
        f"    ; entry_id:{ENTRY_ID}, kind:reversal, refund_id:{refund_id}, payout_id:{payout_id}, "
        f"reverses_entry_id:{reversed_id}, event_id:{EVENT_ID}, posted_at:2026-01-15T10:11:12.123456Z, "
        "psp_reference:po_1, memo:wrong%20seller%2C%20see%3B%20ticket%207"
    )
    assert unquote(tags.rpartition("memo:")[2]) == "wrong seller, see; ticket 7"


def test_a_naive_posting_time_is_refused() -> None:
    naive = entry(
        ("psp_receivable", "USD", 1), ("seller_payable:s", "USD", -1), posted_at=POSTED_AT.replace(tzinfo=None)
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        export.transaction(naive)


def test_a_kind_hledger_would_misread_is_encoded_in_header_and_tags() -> None:
    text = export.transaction(entry(("psp_receivable", "USD", 1), ("seller_payable:s", "USD", -1), kind="(odd;kind, x"))
    header, tags = text.splitlines()[:2]
    assert header.startswith("2026-01-15 %28odd%3Bkind%2C%20x ")
    assert "kind:(odd%3Bkind%2C%20x," in tags


def test_account_and_amount_are_separated_by_at_least_two_spaces() -> None:
    text = export.transaction(sale(5, seller="a b"))
    postings = [line for line in text.splitlines() if POSTING_LINE.match(line)]
    assert len(postings) == 2
    assert POSTING_LINE.match(postings[1])["account"] == "liabilities:seller_payable:a b"  # type: ignore[index]


def minor_units(amount: str, currency: str) -> int:
    """Parses an exported amount back, insisting on exactly the currency's decimals."""
    digits = CURRENCY_EXPONENTS[currency]
    sign = -1 if amount.startswith("-") else 1
    whole, _, fraction = amount.lstrip("-").partition(".")
    assert len(fraction) == digits, amount
    return sign * (int(whole) * 10**digits + int(fraction or "0"))


def test_each_transaction_balances_per_commodity_as_the_entry_does() -> None:
    mixed = entry(
        ("psp_receivable", "USD", 10_001),
        ("seller_payable:a", "USD", -7_000),
        ("seller_payable:b", "USD", -3_001),
        ("psp_receivable", "JPY", 999),
        ("seller_payable:a", "JPY", -999),
        ("psp_receivable", "KWD", 1),
        ("psp_fees", "KWD", 2),
        ("seller_payable:c", "KWD", -3),
    )
    text = export.transaction(mixed)
    totals: dict[str, int] = defaultdict(int)
    lines = [POSTING_LINE.match(line) for line in text.splitlines()[2:] if line]
    assert len(lines) == 8 and all(lines)
    for match in lines:
        assert match is not None
        totals[match["currency"]] += minor_units(match["amount"], match["currency"])
    assert totals == {"USD": 0, "JPY": 0, "KWD": 0}


@pytest.mark.parametrize(
    "postings",
    [
        [("psp_receivable", "USD", 500), ("seller_payable:x", "USD", -499)],
        [("psp_receivable", "USD", 500), ("seller_payable:x", "EUR", -500)],
        [("psp_receivable", "USD", 500)],
        [],
    ],
)
def test_an_unbalanced_entry_is_refused_rather_than_balanced(postings: list[tuple[str, str, int]]) -> None:
    with pytest.raises(ExportRefused) as refused:
        export.transaction(entry(*postings))
    assert refused.value.reason == "LEDGER_ENTRY_UNBALANCED"
    assert str(ENTRY_ID) in refused.value.message


def test_transactions_are_concatenated_in_the_given_order() -> None:
    first, second = sale(1), sale(2, currency="JPY")
    assert export.transactions([first, second]) == export.transaction(first) + export.transaction(second)
    assert export.transactions([]) == ""
