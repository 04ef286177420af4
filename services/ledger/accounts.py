"""The ledger's chart of accounts.

Every account has one balance per currency; balance = debits - credits, so a positive posting is a
debit and a negative posting a credit.

| account                      | type      | normal side | holds                                          |
|------------------------------|-----------|-------------|------------------------------------------------|
| `psp_receivable`             | asset     | debit       | money the PSP collected for us, not yet paid out |
| `bank_cash`                  | asset     | debit       | money in the platform's bank account           |
| `seller_payable:<seller_id>` | liability | credit      | what the platform owes one seller              |
| `platform_revenue`           | revenue   | credit      | the platform's take rate (none charged yet)    |
| `psp_fees`                   | expense   | debit       | fees the PSP charged                           |
| `refunds_clearing`           | liability | credit      | refunds requested but not yet confirmed        |

Entries (kind: postings):
- `payment_order_succeeded`: DR psp_receivable, CR seller_payable:<seller> (the order amount).
- Later: a refund reverses it; a payout paid is DR seller_payable, CR psp_receivable (or bank_cash);
  a PSP fee from settlement is DR psp_fees, CR psp_receivable.

The database enforces the same account names (CHECK on postings.account, 0001_initial.py).
"""

from __future__ import annotations

import re

PSP_RECEIVABLE = "psp_receivable"
BANK_CASH = "bank_cash"
PLATFORM_REVENUE = "platform_revenue"
PSP_FEES = "psp_fees"
REFUNDS_CLEARING = "refunds_clearing"
SELLER_PAYABLE_PREFIX = "seller_payable:"
FIXED_ACCOUNTS = frozenset({PSP_RECEIVABLE, BANK_CASH, PLATFORM_REVENUE, PSP_FEES, REFUNDS_CLEARING})
# Same rule as the database's CHECK: 1 to 64 characters, none of them an ASCII control character.
_SELLER_ACCOUNT = re.compile(r"^seller_payable:[^\x00-\x1f]{1,64}$")


def seller_payable(seller_id: str) -> str:
    return SELLER_PAYABLE_PREFIX + seller_id


def is_account(account: str) -> bool:
    return account in FIXED_ACCOUNTS or bool(_SELLER_ACCOUNT.match(account))
