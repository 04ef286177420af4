"""In-memory PaymentGateway for unit tests, with the sandbox's rules: the outcome is chosen by the
test token, one idempotency key (the payment order id) never charges twice, reusing a key with
other parameters is rejected, and faults can be scripted before or after the charge."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from services.executor.psp_port import (
    ChargeRequest,
    ChargeResult,
    PaymentGateway,
    PspError,
    PspOutcomeUnknown,
    PspRequestRejected,
)

DEFAULT_DECLINES: dict[str, tuple[str, str]] = {
    "pm_card_chargeDeclined": ("generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
REQUIRES_ACTION_TOKENS = frozenset({"pm_card_authenticationRequired"})


@dataclass(frozen=True)
class FakeCharge:
    """Money that moved: one per succeeded attempt."""

    payment_order_id: str
    psp_reference: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class _Attempt:
    request: ChargeRequest
    result: ChargeResult


@dataclass(frozen=True)
class _ScriptedFault:
    error: PspError
    after_charge: bool


class FakePaymentGateway(PaymentGateway):
    def __init__(self) -> None:
        self.charges: list[FakeCharge] = []
        self.charge_calls = 0
        self.find_calls = 0
        self.closed = False
        self._declines = dict(DEFAULT_DECLINES)
        self._remembered: dict[str, _Attempt] = {}  # by idempotency key, like the PSP's key store
        self._attempts: dict[str, list[_Attempt]] = {}  # by payment order id, like search by metadata
        self._faults: deque[_ScriptedFault] = deque()
        self._references = (f"pi_fake_{number}" for number in itertools.count(1))

    def script_decline(self, token: str, failure_code: str, failure_message: str = "Declined.") -> None:
        self._declines[token] = (failure_code, failure_message)

    def fail_next(self, error: PspError, *, after_charge: bool = False, times: int = 1) -> None:
        """The next `times` charge calls raise `error`; with `after_charge` the charge happens first
        (a timeout after the PSP moved the money)."""
        self._faults.extend(_ScriptedFault(error, after_charge) for _ in range(times))

    def forget_idempotency_keys(self) -> None:
        """What the PSP does once its key retention has passed."""
        self._remembered.clear()

    def charges_for(self, payment_order_id: str) -> list[FakeCharge]:
        return [charge for charge in self.charges if charge.payment_order_id == payment_order_id]

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.charge_calls += 1
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and not fault.after_charge:
            raise fault.error
        result = self._charge_once(request)
        if fault is not None:
            raise fault.error
        return result

    def _charge_once(self, request: ChargeRequest) -> ChargeResult:
        key = request.payment_order_id
        remembered = self._remembered.get(key)
        if remembered is not None:
            if remembered.request != request:
                raise PspRequestRejected(f"idempotency key {key} reused with different parameters")
            return remembered.result
        token = request.payment_method_token
        if not token.startswith("pm_"):
            raise PspRequestRejected(f"charge for payment order {key}: no such payment method")
        if token in REQUIRES_ACTION_TOKENS:
            raise PspOutcomeUnknown(f"charge for payment order {key}: still requires_action")
        reference = next(self._references)
        decline = self._declines.get(token)
        if decline is not None:
            result = ChargeResult(False, reference, decline[0], decline[1])
        else:
            result = ChargeResult(True, reference, "", "")
            self.charges.append(FakeCharge(key, reference, request.amount_minor, request.currency))
        attempt = _Attempt(request, result)
        self._remembered[key] = attempt
        self._attempts.setdefault(key, []).append(attempt)
        return result

    async def find_charge(self, payment_order_id: str) -> ChargeResult | None:
        self.find_calls += 1
        attempts = self._attempts.get(payment_order_id, [])
        succeeded = [attempt.result for attempt in attempts if attempt.result.succeeded]
        if succeeded:
            return succeeded[0]
        return attempts[-1].result if attempts else None

    async def close(self) -> None:
        self.closed = True
