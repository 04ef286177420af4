"""Payment methods: only PSP tokens are accepted, never card numbers (PCI scope stays at the PSP)."""

from __future__ import annotations

import re

from services.common.errors import Validator

MAX_TOKEN_LENGTH = 255

_TOKEN = re.compile(r"(pm|tok)_[A-Za-z0-9_]+")
# A primary account number is 12-19 digits, often typed with spaces or dashes between groups.
_CARD_NUMBER = re.compile(r"[0-9][0-9 -]{10,}[0-9]")
# Real PSP tokens are random letters and digits; 12 digits in a row is a card number smuggled inside.
_DIGIT_RUN = re.compile(r"[0-9]{12,}")


def is_card_number(value: str) -> bool:
    """True when `value` is or contains what looks like a card number (12-19 digits, maybe grouped)."""
    if _DIGIT_RUN.search(value):
        return True
    return bool(_CARD_NUMBER.fullmatch(value)) and 12 <= sum(c.isdigit() for c in value) <= 19


def check_payment_method_token(check: Validator, token: str) -> None:
    field = "payment_method_token"
    if not token:
        check.add(field, "is required")
    elif is_card_number(token):
        # Never echo the value: it may be a real card number.
        check.add(field, "card numbers are not accepted; send the PSP's payment-method token (pm_... or tok_...)")
    elif len(token) > MAX_TOKEN_LENGTH:
        check.add(field, f"must be at most {MAX_TOKEN_LENGTH} characters (got {len(token)})")
    elif not _TOKEN.fullmatch(token):
        check.add(field, "must be a PSP payment-method token: 'pm_' or 'tok_' followed by letters, digits or _")
