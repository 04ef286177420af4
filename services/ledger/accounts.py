"""The ledger's chart of accounts.

Every account has one balance per currency; balance = debits - credits, so a positive posting is a
debit and a negative posting a credit.

| account                          | type      | normal side | holds                                              |
|----------------------------------|-----------|-------------|----------------------------------------------------|
| `psp_receivable`                 | asset     | debit       | money the PSP collected for us, not yet paid out   |
| `bank_cash`                      | asset     | debit       | money in the platform's bank account               |
| `seller_payable:<seller_id>`     | liability | credit      | what the platform owes one seller                  |
| `payouts_in_transit:<seller_id>` | liability | credit      | a seller's payouts requested but not yet paid      |
| `platform_revenue`               | revenue   | credit      | the platform's take rate (none charged yet)        |
| `psp_fees`                       | expense   | debit       | fees the PSP charged                               |
| `refunds_clearing`               | liability | credit      | refunds requested but not yet confirmed            |

Entries (kind: postings; builders in domain.py, payouts.py, corrections.py):
- `payment_order_succeeded`: DR psp_receivable, CR seller_payable:<seller> (the order amount).
- `refund_succeeded`: DR seller_payable:<seller>, CR psp_receivable (the amount given back).
- `payout_requested`: DR seller_payable:<seller>, CR payouts_in_transit:<seller> (reserved to pay out).
- `payout_paid`: DR payouts_in_transit:<seller>, CR psp_receivable (the PSP paid the seller's bank).
- `payout_failed`: DR payouts_in_transit:<seller>, CR seller_payable:<seller> (owed to the seller again).
- `psp_fee`: DR psp_fees, CR psp_receivable (a fee the PSP kept, booked by an operator).
- `reversal`: every posting of the reversed entry, negated (a correction; entries are never changed).

The database enforces the same account names (CHECK on postings.account, 0001_initial.py and
0003_payouts_fees_reversals.py).
"""

from __future__ import annotations

import re

PSP_RECEIVABLE = "psp_receivable"
BANK_CASH = "bank_cash"
PLATFORM_REVENUE = "platform_revenue"
PSP_FEES = "psp_fees"
REFUNDS_CLEARING = "refunds_clearing"
SELLER_PAYABLE_PREFIX = "seller_payable:"
PAYOUTS_IN_TRANSIT_PREFIX = "payouts_in_transit:"
FIXED_ACCOUNTS = frozenset({PSP_RECEIVABLE, BANK_CASH, PLATFORM_REVENUE, PSP_FEES, REFUNDS_CLEARING})
# Same rule as the database's CHECK: a seller id of 1 to 64 characters, none an ASCII control character.
# fullmatch, not `$`, which would accept a trailing newline that the database refuses.
_SELLER_ACCOUNT = re.compile(r"(seller_payable|payouts_in_transit):[^\x00-\x1f]{1,64}")


def seller_payable(seller_id: str) -> str:
    return SELLER_PAYABLE_PREFIX + seller_id


def payouts_in_transit(seller_id: str) -> str:
    return PAYOUTS_IN_TRANSIT_PREFIX + seller_id


def is_account(account: str) -> bool:
    return account in FIXED_ACCOUNTS or bool(_SELLER_ACCOUNT.fullmatch(account))
