"""The journal as an hledger journal (https://hledger.org/hledger.html#journal). Pure: no I/O.

One transaction per journal entry, dated by its posting time in UTC, with the entry's ids as tags (and,
when the entry has them, its refund, payout and reversed entry ids, PSP reference and memo):

    2026-01-15 payment_order_succeeded 0f5c...e1 9a1b...07
        ; entry_id:0f5c...e1, kind:payment_order_succeeded, payment_order_id:9a1b...07, event_id:..., posted_at:...
        assets:psp_receivable                       1234.56 USD
        liabilities:seller_payable:seller-42       -1234.56 USD

Accounts get hledger's top-level types (from the chart in accounts.py), so `hledger bs` and `hledger is`
classify them; an account this module does not know goes under `unmapped:` instead of failing the
export. Text that hledger (1.25, Debian's) or Ledger would misread is percent-encoded: two spaces or a
tab end an account name, a trailing space is silently dropped, `:` nests accounts, `;` starts a comment
(in a description; in an account name too for Ledger). The encoding is reversible, so two different
ledger accounts never become one hledger account.

Amounts are written at the currency's ISO 4217 exponent with integer arithmetic only; the ledger's sign
convention (positive = debit) is hledger's too, so amounts are copied, never negated, and each
transaction balances per commodity exactly as the entry does (nothing is added to make it balance).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.common.errors import FailedPrecondition
from services.common.money import CURRENCY_EXPONENTS
from services.ledger.accounts import (
    BANK_CASH,
    PAYOUTS_IN_TRANSIT_PREFIX,
    PLATFORM_REVENUE,
    PSP_FEES,
    PSP_RECEIVABLE,
    REFUNDS_CLEARING,
    SELLER_PAYABLE_PREFIX,
)

# hledger recognises these top-level names as account types (assets, liabilities, revenues, expenses).
ASSETS, LIABILITIES, REVENUES, EXPENSES = "assets", "liabilities", "revenues", "expenses"
# Where an account the mapping does not know goes: visible in every report, and never a reason to fail.
UNMAPPED = "unmapped"
_FIXED_ACCOUNT_TYPES = {
    PSP_RECEIVABLE: ASSETS,
    BANK_CASH: ASSETS,
    REFUNDS_CLEARING: LIABILITIES,
    PLATFORM_REVENUE: REVENUES,
    PSP_FEES: EXPENSES,
}
_PREFIXED_ACCOUNT_TYPES = {SELLER_PAYABLE_PREFIX: LIABILITIES, PAYOUTS_IN_TRANSIT_PREFIX: LIABILITIES}
# Always encoded: `%` so that the encoding can be reversed, `;` as it starts a comment (in hledger's
# descriptions, and in Ledger's account names too).
_ALWAYS_ENCODED = frozenset("%;")
_STATUS_OR_CODE_MARKS = frozenset("*!(")
# The kind is one word of the header and a tag value, which a comma would end; so are free-text tags.
_WORD_SPECIALS = ", "


class ExportRefused(FailedPrecondition):
    """The books hold something the export cannot write faithfully (never expected: the database
    enforces double entry and the currency table); writing it anyway would give a wrong file."""


@dataclass(frozen=True, slots=True)
class ExportPosting:
    """A posting as stored: deliberately not the domain's Posting, so that an account or currency
    the domain no longer accepts is still exported rather than making old books unexportable."""

    account: str
    currency: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """A journal entry as stored, with its postings in position order."""

    seq: int
    entry_id: uuid.UUID
    kind: str
    payment_order_id: uuid.UUID | None
    cause_event_id: uuid.UUID
    posted_at: datetime
    postings: tuple[ExportPosting, ...]
    refund_id: uuid.UUID | None = None
    payout_id: uuid.UUID | None = None
    reverses_entry_id: uuid.UUID | None = None
    psp_reference: str = ""
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Period:
    """Entries posted at or after `start` and before `end`; None is unbounded."""

    start: datetime | None = None
    end: datetime | None = None


def _exponent(currency: str) -> int:
    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        # Guessing would misplace the decimal point (JPY written as if it had cents is 100x off).
        raise ExportRefused(
            f"the books hold currency {currency!r}, whose ISO 4217 exponent is unknown",
            reason="CURRENCY_EXPONENT_UNKNOWN",
        )
    return exponent


def amount_text(amount_minor: int, currency: str) -> str:
    """`amount_minor` in major units, e.g. 123456 USD -> '1234.56 USD', 500 JPY -> '500 JPY'."""
    digits = _exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    if not digits:
        return f"{sign}{whole} {currency}"
    return f"{sign}{whole}.{fraction:0{digits}d} {currency}"


def commodity_directive(currency: str) -> str:
    """E.g. 'commodity 1000.00 USD'. hledger requires a decimal mark here even with no decimals, so a
    zero-exponent currency is 'commodity 1000. JPY' (hledger rejects 'commodity 1000 JPY')."""
    return f"commodity 1000.{'0' * _exponent(currency)} {currency}"


def _percent(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def _is_lone_inner_space(text: str, index: int) -> bool:
    # hledger ends an account name at two spaces and drops trailing ones, so only a single space
    # between two other characters survives parsing unchanged.
    return 0 < index < len(text) - 1 and text[index - 1] != " " and text[index + 1] != " "


def encode(text: str, specials: str = "") -> str:
    """`text` with every character hledger could misread percent-encoded (UTF-8 bytes, as in URLs):
    `%`, `;`, `specials`, non-printable characters (tabs, newlines, other whitespace than the plain
    space) and spaces that are leading, trailing or next to another space. Deterministic and reversible."""
    encoded = []
    for index, char in enumerate(text):
        unsafe = char in _ALWAYS_ENCODED or char in specials or not char.isprintable()
        if unsafe or (char == " " and not _is_lone_inner_space(text, index)):
            encoded.append(_percent(char))
        else:
            encoded.append(char)
    return "".join(encoded)


def hledger_account(account: str) -> str:
    """The hledger name of a ledger account, e.g. 'psp_receivable' -> 'assets:psp_receivable',
    'seller_payable:s-1' -> 'liabilities:seller_payable:s-1', an unknown 'x:y' -> 'unmapped:x:y'."""
    fixed = _FIXED_ACCOUNT_TYPES.get(account)
    if fixed:
        return f"{fixed}:{account}"
    for prefix, account_type in _PREFIXED_ACCOUNT_TYPES.items():
        if account.startswith(prefix):
            # A `:` inside a seller id would otherwise make a sub-account of another seller.
            return f"{account_type}:{prefix}{encode(account.removeprefix(prefix), ':')}"
    return ":".join([UNMAPPED, *(encode(part) for part in account.split(":"))])


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("posting times must be timezone-aware; a naive time would be read as local time")
    return moment.astimezone(UTC)


def _timestamp_text(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _check_balanced(entry: ExportEntry) -> None:
    totals: dict[str, int] = defaultdict(int)
    for posting in entry.postings:
        totals[posting.currency] += posting.amount_minor
    unbalanced = {currency: total for currency, total in sorted(totals.items()) if total}
    if len(entry.postings) < 2 or unbalanced:
        raise ExportRefused(
            f"journal entry {entry.entry_id} does not balance ({len(entry.postings)} postings, "
            f"sums per currency that are not zero: {unbalanced}); hledger would reject the file",
            reason="LEDGER_ENTRY_UNBALANCED",
        )


def _header(entry: ExportEntry) -> str:
    words = [encode(entry.kind, _WORD_SPECIALS), str(entry.entry_id)]
    if entry.payment_order_id:
        words.append(str(entry.payment_order_id))
    description = " ".join(words)
    if description[:1] in _STATUS_OR_CODE_MARKS:
        # A leading `*`, `!` or `(` would be read as the transaction's status or code.
        description = _percent(description[0]) + description[1:]
    return f"{_utc(entry.posted_at):%Y-%m-%d} {description}"


def _tags(entry: ExportEntry) -> str:
    # hledger tags are `name:value`, the value ending at a comma or the end of the line.
    tags = [f"entry_id:{entry.entry_id}", f"kind:{encode(entry.kind, _WORD_SPECIALS)}"]
    ids = (
        ("payment_order_id", entry.payment_order_id),
        ("refund_id", entry.refund_id),
        ("payout_id", entry.payout_id),
        ("reverses_entry_id", entry.reverses_entry_id),
    )
    tags += [f"{name}:{value}" for name, value in ids if value]
    tags += [f"event_id:{entry.cause_event_id}", f"posted_at:{_timestamp_text(entry.posted_at)}"]
    texts = (("psp_reference", entry.psp_reference), ("memo", entry.memo))
    tags += [f"{name}:{encode(value, _WORD_SPECIALS)}" for name, value in texts if value]
    return "    ; " + ", ".join(tags)


def transaction(entry: ExportEntry) -> str:
    """One entry as an hledger transaction, followed by a blank line."""
    _check_balanced(entry)
    accounts = [hledger_account(posting.account) for posting in entry.postings]
    amounts = [amount_text(posting.amount_minor, posting.currency) for posting in entry.postings]
    account_width = max(len(account) for account in accounts)
    amount_width = max(len(amount) for amount in amounts)
    # Two spaces at least between account and amount: that is what ends an account name in hledger.
    postings = [
        f"    {account:<{account_width}}  {amount:>{amount_width}}"
        for account, amount in zip(accounts, amounts, strict=True)
    ]
    return "\n".join([_header(entry), _tags(entry), *postings]) + "\n\n"


def transactions(entries: Iterable[ExportEntry]) -> str:
    return "".join(transaction(entry) for entry in entries)


def _period_text(period: Period) -> str:
    if period.start is None and period.end is None:
        return "every entry"
    start = _timestamp_text(period.start) if period.start else "the first entry"
    end = _timestamp_text(period.end) if period.end else "the export"
    return f"entries posted from {start} (inclusive) to {end} (exclusive)"


def preamble(currencies: Iterable[str], period: Period) -> str:
    """The journal's opening comment and one `commodity` directive per currency (sorted), so hledger
    shows each currency at its own precision whatever amounts it meets first."""
    lines = [
        "; Settle ledger export: one transaction per journal entry, in journal order.",
        f"; Covers {_period_text(period)}; dates are posting dates in UTC.",
        "; Positive amounts are debits, negative amounts credits.",
        "",
        *(commodity_directive(currency) for currency in sorted(set(currencies))),
    ]
    return "\n".join(lines) + "\n\n"
