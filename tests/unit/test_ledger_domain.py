"""The ledger's pure rules: double entry, the chart of accounts, which orders can be booked, and the
entries of payouts, PSP fees and reversals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.common.money import Money
from services.common.payout_events import PayoutEvent, PayoutStep
from services.common.succeeded_orders import SucceededOrder, parse_succeeded_order
from services.common.succeeded_refunds import SucceededRefund
from services.ledger.accounts import PSP_RECEIVABLE, is_account, payouts_in_transit, seller_payable
from services.ledger.corrections import (
    LedgerEntryIsReversal,
    PspFee,
    is_same_fee,
    psp_fee_entry,
    reversal_entry,
    validate_psp_fee,
    validate_reversal,
)
from services.ledger.domain import (
    JournalEntry,
    PostedEntry,
    Posting,
    TrialBalance,
    UnbalancedEntry,
    check_balanced,
    payment_order_succeeded_entry,
    refund_succeeded_entry,
    validate_account_query,
)
from services.ledger.payouts import payout_entry
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
    assert is_account(payouts_in_transit("s-1")) and is_account(payouts_in_transit("x" * 64))
    assert payouts_in_transit("s-1") == "payouts_in_transit:s-1"
    for account in (
        "",
        "seller_payable:",
        "seller_payable:" + "x" * 65,
        "seller_payable:a\tb",
        "seller_payable:a\n",
        "payouts_in_transit",
        "payouts_in_transit:",
        "payouts_in_transit:" + "x" * 65,
        "payouts_in_transit:a\nb",
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


def _payout(step: PayoutStep, amount_minor: int = 7_500, currency: str = "EUR") -> PayoutEvent:
    return PayoutEvent(
        step=step,
        payout_id=uuid.uuid4(),
        seller_id="seller-7",
        amount=Money(amount_minor, currency),
        destination="ba_123",
        event_id=uuid.uuid4(),
        psp_reference="" if step is PayoutStep.REQUESTED else "po_1",
    )


@pytest.mark.parametrize(
    ("step", "kind", "debited", "credited"),
    [
        (PayoutStep.REQUESTED, "payout_requested", "seller_payable:seller-7", "payouts_in_transit:seller-7"),
        (PayoutStep.PAID, "payout_paid", "payouts_in_transit:seller-7", "psp_receivable"),
        (PayoutStep.FAILED, "payout_failed", "payouts_in_transit:seller-7", "seller_payable:seller-7"),
    ],
)
def test_each_payout_step_moves_the_amount_between_the_sellers_accounts_and_the_psp(
    step: PayoutStep, kind: str, debited: str, credited: str
) -> None:
    payout = _payout(step)
    entry = payout_entry(payout, uuid.uuid4())
    assert (entry.kind, entry.payout_id, entry.cause_event_id) == (kind, payout.payout_id, payout.event_id)
    assert entry.payment_order_id is None and entry.psp_reference == payout.psp_reference
    assert entry.postings == (Posting(debited, Money(7_500, "EUR")), Posting(credited, Money(-7_500, "EUR")))


def test_a_paid_payout_leaves_nothing_in_transit_and_a_failed_one_gives_the_seller_everything_back() -> None:
    def net(*steps: PayoutStep) -> dict[str, int]:
        totals: dict[str, int] = {}
        for step in steps:
            for posting in payout_entry(_payout(step), uuid.uuid4()).postings:
                totals[posting.account] = totals.get(posting.account, 0) + posting.amount.amount_minor
        return {account: total for account, total in totals.items() if total}

    assert net(PayoutStep.REQUESTED, PayoutStep.PAID) == {"seller_payable:seller-7": 7_500, "psp_receivable": -7_500}
    assert net(PayoutStep.REQUESTED, PayoutStep.FAILED) == {}


def test_a_payout_entry_is_announced_under_its_payout_id() -> None:
    payout = _payout(PayoutStep.PAID)
    event = entry_posted(PostedEntry(1, payout_entry(payout, uuid.uuid4()), datetime.now(UTC)))
    assert event.key == str(payout.payout_id)


def _fee(**overrides: object) -> PspFee:
    fields: dict[str, object] = {
        "amount_minor": 35,
        "currency": "USD",
        "psp_reference": "ch_123",
        "memo": "processing fee",
        "idempotency_key": "settlement-line-1",
    }
    fields.update(overrides)
    return validate_psp_fee(**fields)  # type: ignore[arg-type]


def test_a_psp_fee_debits_fees_and_credits_the_receivable_keeping_reference_and_memo() -> None:
    entry = psp_fee_entry(_fee(), uuid.uuid4())
    assert entry.kind == "psp_fee" and entry.payment_order_id is None
    assert entry.postings == (Posting("psp_fees", Money(35, "USD")), Posting("psp_receivable", Money(-35, "USD")))
    assert (entry.psp_reference, entry.memo) == ("ch_123", "processing fee")
    assert _fee(memo="").memo == ""  # the memo is optional


def test_a_fee_s_cause_is_derived_from_its_idempotency_key_only() -> None:
    first = psp_fee_entry(_fee(), uuid.uuid4())
    assert psp_fee_entry(_fee(), uuid.uuid4()).cause_event_id == first.cause_event_id
    assert psp_fee_entry(_fee(amount_minor=36), uuid.uuid4()).cause_event_id == first.cause_event_id
    assert psp_fee_entry(_fee(idempotency_key="settlement-line-2"), uuid.uuid4()).cause_event_id != (
        first.cause_event_id
    )


def test_a_repeated_fee_is_the_same_only_with_the_same_request() -> None:
    posted = psp_fee_entry(_fee(), uuid.uuid4())
    assert is_same_fee(posted, _fee())
    for other in (
        _fee(amount_minor=36),
        _fee(currency="EUR"),
        _fee(psp_reference="ch_124"),
        _fee(memo="chargeback fee"),
    ):
        assert not is_same_fee(posted, other)


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"amount_minor": 0}, {"amount.amount_minor"}),
        ({"amount_minor": -5}, {"amount.amount_minor"}),
        ({"amount_minor": 100_000_000}, {"amount.amount_minor"}),
        ({"currency": "usd"}, {"amount.currency"}),
        ({"currency": ""}, {"amount.currency"}),
        ({"psp_reference": ""}, {"psp_reference"}),
        ({"psp_reference": "x" * 256}, {"psp_reference"}),
        ({"memo": "x" * 501}, {"memo"}),
        ({"memo": "two\nlines"}, {"memo"}),
        ({"idempotency_key": ""}, {"idempotency_key"}),
        ({"idempotency_key": "k" * 256}, {"idempotency_key"}),
        (
            {"amount_minor": 0, "currency": "", "psp_reference": "", "idempotency_key": ""},
            {"amount.amount_minor", "amount.currency", "psp_reference", "idempotency_key"},
        ),
    ],
)
def test_an_invalid_fee_is_refused_naming_every_bad_field(overrides: dict[str, object], fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _fee(**overrides)
    assert caught.value.reason == "VALIDATION_FAILED"
    assert {v.field for v in caught.value.violations} == fields


def test_the_longest_valid_fee_fields_are_accepted() -> None:
    fee = _fee(amount_minor=99_999_999, psp_reference="r" * 255, memo="m" * 500, idempotency_key="k" * 255)
    assert fee.amount == Money(99_999_999, "USD")


def test_a_reversal_negates_every_posting_and_keeps_what_it_corrects() -> None:
    refund = SucceededRefund(uuid.uuid4(), uuid.uuid4(), "seller-7", Money(300, "JPY"), uuid.uuid4())
    original = refund_succeeded_entry(refund, uuid.uuid4())
    reversal = reversal_entry(original, uuid.uuid4(), "booked twice by hand")
    assert reversal.kind == "reversal" and reversal.memo == "booked twice by hand"
    assert reversal.reverses_entry_id == original.entry_id
    assert (reversal.payment_order_id, reversal.refund_id) == (original.payment_order_id, original.refund_id)
    assert reversal.postings == (
        Posting("seller_payable:seller-7", Money(-300, "JPY")),
        Posting("psp_receivable", Money(300, "JPY")),
    )
    # One reversal per entry: its cause is derived from the entry it reverses.
    assert reversal_entry(original, uuid.uuid4(), "another reason").cause_event_id == reversal.cause_event_id


def test_a_reversal_is_not_reversed_again() -> None:
    reversal = reversal_entry(payment_order_succeeded_entry(_order(), uuid.uuid4()), uuid.uuid4(), "wrong amount")
    with pytest.raises(LedgerEntryIsReversal) as caught:
        reversal_entry(reversal, uuid.uuid4(), "undo the undo")
    assert caught.value.reason == "LEDGER_ENTRY_IS_REVERSAL"


@pytest.mark.parametrize(
    ("entry_id", "reason", "fields"),
    [
        ("not-a-uuid", "why", {"entry_id"}),
        (uuid.uuid4().hex, "why", {"entry_id"}),
        (str(uuid.uuid4()), "", {"reason"}),
        (str(uuid.uuid4()), "x" * 501, {"reason"}),
        ("", "", {"entry_id", "reason"}),
    ],
)
def test_an_invalid_reversal_request_is_refused_naming_every_bad_field(
    entry_id: str, reason: str, fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_reversal(entry_id=entry_id, reason=reason)
    assert {v.field for v in caught.value.violations} == fields
