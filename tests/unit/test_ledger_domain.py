"""The ledger's pure rules: double entry, the chart of accounts, and which orders can be booked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.common.succeeded_orders import SucceededOrder, parse_succeeded_order
from services.ledger.accounts import PSP_RECEIVABLE, is_account, seller_payable
from services.ledger.domain import (
    JournalEntry,
    PostedEntry,
    Posting,
    TrialBalance,
    UnbalancedEntry,
    check_balanced,
    payment_order_succeeded_entry,
    validate_account_query,
)
from services.ledger.service import entry_posted


def _order(amount_minor: int = 1999, currency: str = "USD", seller_id: str = "seller-7") -> SucceededOrder:
    return SucceededOrder(uuid.uuid4(), seller_id, Money(amount_minor, currency), uuid.uuid4())


@pytest.mark.parametrize(("amount_minor", "currency"), [(1, "USD"), (1999, "EUR"), (500, "JPY"), (99_999_999, "KWD")])
def test_a_succeeded_order_debits_psp_receivable_and_credits_the_seller(amount_minor: int, currency: str) -> None:
    order = _order(amount_minor, currency)
    entry = payment_order_succeeded_entry(order, uuid.uuid4())
    assert entry.kind == "payment_order_succeeded"
    assert entry.payment_order_id == order.payment_order_id
    assert entry.cause_event_id == order.event_id
    assert entry.postings == (
        Posting(PSP_RECEIVABLE, Money(amount_minor, currency)),
        Posting("seller_payable:seller-7", Money(-amount_minor, currency)),
    )
    assert sum(p.amount.amount_minor for p in entry.postings) == 0


@pytest.mark.parametrize(
    "postings",
    [
        (),
        (Posting(PSP_RECEIVABLE, Money(5, "USD")),),
        (Posting(PSP_RECEIVABLE, Money(5, "USD")), Posting("seller_payable:a", Money(-4, "USD"))),
        (Posting(PSP_RECEIVABLE, Money(5, "USD")), Posting("seller_payable:a", Money(-5, "EUR"))),
        (Posting(PSP_RECEIVABLE, Money(0, "USD")), Posting("seller_payable:a", Money(0, "USD"))),
        (Posting("cash_in_hand", Money(5, "USD")), Posting("seller_payable:a", Money(-5, "USD"))),
    ],
)
def test_an_entry_that_breaks_double_entry_cannot_be_built(postings: tuple[Posting, ...]) -> None:
    with pytest.raises(UnbalancedEntry):
        JournalEntry(uuid.uuid4(), "test", None, uuid.uuid4(), postings)


def test_several_currencies_balance_each_on_its_own() -> None:
    check_balanced(
        [
            Posting(PSP_RECEIVABLE, Money(5, "USD")),
            Posting("seller_payable:a", Money(-5, "USD")),
            Posting(PSP_RECEIVABLE, Money(700, "JPY")),
            Posting("seller_payable:b", Money(-300, "JPY")),
            Posting("seller_payable:c", Money(-400, "JPY")),
        ]
    )


def test_the_chart_of_accounts() -> None:
    for account in ("psp_receivable", "bank_cash", "platform_revenue", "psp_fees", "refunds_clearing"):
        assert is_account(account)
    assert is_account(seller_payable("s-1")) and is_account(seller_payable("x" * 64))
    for account in (
        "",
        "seller_payable:",
        "seller_payable:" + "x" * 65,
        "seller_payable:a\tb",
        "revenue",
        "PSP_RECEIVABLE",
    ):
        assert not is_account(account)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"payment_order_id": "123"}, "payment_order_id"),
        ({"seller_id": ""}, "seller_id"),
        ({"seller_id": " padded "}, "seller_id"),
        ({"amount_minor": 0}, "amount.amount_minor"),
        ({"amount_minor": -1}, "amount.amount_minor"),
        ({"currency": "ZZZ"}, "amount.currency"),
    ],
)
def test_an_invalid_succeeded_order_is_refused_naming_the_field(overrides: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "payment_order_id": str(uuid.uuid4()),
        "seller_id": "seller-1",
        "amount_minor": 100,
        "currency": "USD",
        "event_id": uuid.uuid4(),
    }
    fields.update(overrides)
    with pytest.raises(InvalidArgument) as caught:
        parse_succeeded_order(**fields)  # type: ignore[arg-type]
    assert [v.field for v in caught.value.violations] == [field]


def test_account_queries_name_the_bad_field() -> None:
    validate_account_query("seller_payable:s-1", "USD")
    with pytest.raises(InvalidArgument) as caught:
        validate_account_query("nonsense", "usd")
    assert {v.field for v in caught.value.violations} == {"account", "currency"}


def test_a_trial_balance_is_balanced_only_when_totals_are_zero_and_balances_match_postings() -> None:
    zero = (Money(0, "USD"), Money(0, "EUR"))
    assert TrialBalance((), zero, balances_match_postings=True).balanced
    assert not TrialBalance((), zero, balances_match_postings=False).balanced
    assert not TrialBalance((), (Money(0, "USD"), Money(1, "EUR")), balances_match_postings=True).balanced


def test_the_posted_event_carries_the_postings_and_the_cause() -> None:
    order = _order(250, "GBP")
    entry = payment_order_succeeded_entry(order, uuid.uuid4())
    event = entry_posted(PostedEntry(1, entry, datetime.now(UTC)))
    assert event.key == str(order.payment_order_id)
    message = event.message
    assert message.cause_event_id == str(order.event_id)  # type: ignore[attr-defined]
    assert [(p.account, p.amount.amount_minor, p.amount.currency) for p in message.postings] == [  # type: ignore[attr-defined]
        ("psp_receivable", 250, "GBP"),
        ("seller_payable:seller-7", -250, "GBP"),
    ]
