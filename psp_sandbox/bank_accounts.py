"""What paying out to each test bank account does, after Stripe's test account numbers.

`ba_test_no_account`, `ba_test_account_closed` and `ba_test_insufficient_funds` fail like Stripe's
000111111116, 000111111113 and 000222222227; every other `ba_...` (`ba_test_success` by convention) is
paid like 000123456789.
"""

from __future__ import annotations

from dataclasses import dataclass

BANK_ACCOUNT_PREFIX = "ba_"


@dataclass(frozen=True)
class PayoutFailure:
    code: str
    message: str


FAILURES: dict[str, PayoutFailure] = {
    "ba_test_no_account": PayoutFailure(
        "no_account",
        "The bank account details on file are probably incorrect. No bank account could be located with those details.",
    ),
    "ba_test_account_closed": PayoutFailure("account_closed", "The bank account has been closed."),
    "ba_test_insufficient_funds": PayoutFailure(
        "insufficient_funds", "Your Stripe account has insufficient funds to cover the payout."
    ),
}


def is_bank_account(destination: str) -> bool:
    return destination.startswith(BANK_ACCOUNT_PREFIX) and len(destination) > len(BANK_ACCOUNT_PREFIX)


def failure_for(destination: str) -> PayoutFailure | None:
    return FAILURES.get(destination)
