"""Realistic checkouts for the demo and benchmark: several sellers each, mixed currencies, some declines."""

from __future__ import annotations

import random

from settle.payment.v1 import payment_pb2

# Stripe's test payment methods; the sandbox answers them as Stripe does.
SUCCESS_TOKEN = "pm_card_visa"  # noqa: S105 - a public test payment method, not a secret
DECLINE_TOKENS = (
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_chargeDeclinedProcessingError",
)
# Amount ranges per currency in minor units, so a JPY price looks like a JPY price.
_UNIT_PRICE_RANGES = {"USD": (199, 25_000), "EUR": (150, 20_000), "JPY": (300, 30_000)}
_CURRENCY_WEIGHTS = (("USD", 80), ("EUR", 15), ("JPY", 5))


class CheckoutFactory:
    def __init__(self, run_id: str, *, sellers: int, decline_rate_percent: int = 10, seed: int = 7) -> None:
        self._run_id = run_id
        self._sellers = [f"seller-{run_id}-{index:03d}" for index in range(sellers)]
        self._decline_rate_percent = decline_rate_percent
        self._random = random.Random(seed)
        self._count = 0

    @property
    def sellers(self) -> list[str]:
        return list(self._sellers)

    def next(self) -> payment_pb2.CreatePaymentRequest:
        self._count += 1
        rng = self._random
        currency = rng.choices([c for c, _ in _CURRENCY_WEIGHTS], weights=[w for _, w in _CURRENCY_WEIGHTS])[0]
        low, high = _UNIT_PRICE_RANGES[currency]
        declined = rng.randrange(100) < self._decline_rate_percent
        sellers = rng.sample(self._sellers, k=min(len(self._sellers), rng.randint(1, 4)))
        return payment_pb2.CreatePaymentRequest(
            checkout_id=f"checkout-{self._run_id}-{self._count:06d}",
            buyer_id=f"buyer-{rng.randrange(1, 500):04d}",
            payment_method_token=rng.choice(DECLINE_TOKENS) if declined else SUCCESS_TOKEN,
            currency=currency,
            seller_orders=[
                payment_pb2.SellerOrder(
                    seller_id=seller,
                    line_items=[
                        payment_pb2.LineItem(
                            sku=f"sku-{rng.randrange(1, 10_000):05d}",
                            description="demo item",
                            quantity=rng.randint(1, 3),
                            unit_amount_minor=rng.randint(low, high),
                        )
                        for _ in range(rng.randint(1, 3))
                    ],
                )
                for seller in sellers
            ],
        )
