"""PaymentGateway on Stripe's official SDK; also talks to the PSP sandbox, which speaks the same API.

Every charge carries the payment order id as Stripe's idempotency key (the SDK would otherwise invent
a random one per call, which would let a retry charge twice) and in metadata for search. The SDK does
no retries of its own: the executor owns the retry budget and backoff.
"""

from __future__ import annotations

import logging

import aiohttp
import stripe

from services.executor.adapters.psp.stripe_mapping import declined_result, result_of_intent, translate_error
from services.executor.psp_port import ChargeRequest, ChargeResult, PaymentGateway

_logger = logging.getLogger(__name__)
SEARCH_LIMIT = 100


class _DropSdkBodies(logging.Filter):
    """The SDK logs whole request and response bodies at DEBUG (payment method tokens, client
    secrets); those lines must not reach our logs whatever level the service runs at."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_SDK_LOG_FILTER = _DropSdkBodies()


class StripeGateway(PaymentGateway):
    def __init__(self, api_key: str, api_base: str, timeout_s: float = 10.0) -> None:
        logging.getLogger("stripe").addFilter(_SDK_LOG_FILTER)  # adding the same filter twice is a no-op
        if not api_key:
            raise ValueError("api_key must not be empty")
        if not 0 < timeout_s <= 600:
            raise ValueError("timeout_s must be in (0, 600]")
        self._http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http_client,
            max_network_retries=0,
        )

    def __repr__(self) -> str:
        return "StripeGateway()"  # never the API key

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        order_id = request.payment_order_id
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": request.amount_minor,
                    "currency": request.currency.lower(),
                    "payment_method": request.payment_method_token,
                    "confirm": True,
                    # Named `payment_method_types` before API version 2026-10-28.endive.
                    "allowed_payment_method_types": ["card"],
                    "metadata": {
                        "payment_order_id": order_id,
                        "payment_id": request.payment_id,
                        "seller_id": request.seller_id,
                    },
                    "description": f"Settle payment order {order_id}",
                },
                options={"idempotency_key": order_id},
            )
        except stripe.CardError as error:
            result = declined_result(error)
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"charge for payment order {order_id}") from error
        else:
            result = result_of_intent(intent)
        _logger.info(
            "psp charge %s",
            "succeeded" if result.succeeded else f"declined: {result.failure_code}",
            extra={"payment_order_id": order_id, "psp_reference": result.psp_reference},
        )
        return result

    async def find_charge(self, payment_order_id: str) -> ChargeResult | None:
        escaped = payment_order_id.replace("\\", "\\\\").replace("'", "\\'")
        try:
            found = await self._client.v1.payment_intents.search_async(
                params={"query": f"metadata['payment_order_id']:'{escaped}'", "limit": SEARCH_LIMIT}
            )
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"search for payment order {payment_order_id}") from error
        intents = sorted(found.data, key=lambda intent: intent.created)
        succeeded = [intent for intent in intents if intent.status == "succeeded"]
        if len(succeeded) > 1:
            # Only possible if an order was retried after the PSP forgot its key; reconciliation
            # flags the duplicate, and the first charge is the one the order stands for.
            _logger.error(
                "psp holds %d succeeded charges for one payment order",
                len(succeeded),
                extra={"payment_order_id": payment_order_id},
            )
        if succeeded:
            return result_of_intent(succeeded[0])
        if not intents:
            return None
        return result_of_intent(intents[-1])

    async def close(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK
