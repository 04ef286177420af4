"""What confirming with each test payment method does, after Stripe's test tokens."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str | None
    message: str
    param: str | None = None


class Outcome(Enum):
    SUCCEED = "succeed"
    REQUIRES_ACTION = "requires_action"


_DECLINED = "Your card was declined."
DECLINES: dict[str, Decline] = {
    "pm_card_chargeDeclined": Decline("card_declined", "generic_decline", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedProcessingError": Decline(
        "processing_error", None, "An error occurred while processing your card. Try again in a little bit."
    ),
    "pm_card_chargeDeclinedFraudulent": Decline("card_declined", "fraudulent", _DECLINED),
    "pm_card_chargeDeclinedLostCard": Decline("card_declined", "lost_card", _DECLINED),
    "pm_card_chargeDeclinedStolenCard": Decline("card_declined", "stolen_card", _DECLINED),
    "pm_card_chargeDeclinedExpiredCard": Decline("expired_card", "expired_card", "Your card has expired.", "exp_month"),
    "pm_card_chargeDeclinedIncorrectCvc": Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc"
    ),
}
REQUIRES_ACTION_TOKENS = frozenset({"pm_card_authenticationRequired", "pm_card_threeDSecureRequired"})


def is_known_payment_method(token: str) -> bool:
    return token.startswith("pm_")


def outcome_for(token: str) -> Outcome | Decline:
    decline = DECLINES.get(token)
    if decline is not None:
        return decline
    if token in REQUIRES_ACTION_TOKENS:
        return Outcome.REQUIRES_ACTION
    return Outcome.SUCCEED
