"""Object ids in Stripe's style: a type prefix and 24 random alphanumerics (`pi_3Qx...`)."""

from __future__ import annotations

import random
import string

_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(random.choices(_ALPHABET, k=_ID_LENGTH))}"
