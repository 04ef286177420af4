"""PaymentGateway on Stripe's official SDK; also talks to the PSP sandbox, which speaks the same API.

Every charge carries the payment order id as Stripe's idempotency key (the SDK would otherwise invent
a random one per call, which would let a retry charge twice) and in metadata for search. The SDK does
no retries of its own: the executor owns the retry budget and backoff.
"""

from __future__ import annotations

import logging

import aiohttp
import stripe

from services.executor.adapters.psp.stripe_amounts import to_stripe
from services.executor.adapters.psp.stripe_mapping import (
    REFUND_REFUSALS,
    declined_result,
    refused_result,
    result_of_intent,
    result_of_payout,
    result_of_refund,
    translate_error,
)
from services.executor.psp_port import (
    ChargeRequest,
    ChargeResult,
    MoneyOutGateway,
    PaymentGateway,
    PayoutRequest,
    RefundRequest,
)

_logger = logging.getLogger(__name__)
SEARCH_LIMIT = 100


class _DropSdkBodies(logging.Filter):
    """The SDK logs whole request and response bodies at DEBUG (payment method tokens, client
    secrets); those lines must not reach our logs whatever level the service runs at."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_SDK_LOG_FILTER = _DropSdkBodies()


class StripeGateway(PaymentGateway, MoneyOutGateway):
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
                    "amount": to_stripe(request.amount_minor, request.currency),
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
        try:
            found = await self._client.v1.payment_intents.search_async(
                params={"query": _metadata_query("payment_order_id", payment_order_id), "limit": SEARCH_LIMIT}
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

    async def refund(self, request: RefundRequest) -> ChargeResult:
        try:
            refund = await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": request.charge_psp_reference,
                    "amount": to_stripe(request.amount_minor, request.currency),
                    "metadata": {"refund_id": request.refund_id, "payment_order_id": request.payment_order_id},
                },
                options={"idempotency_key": request.refund_id},
            )
        except stripe.InvalidRequestError as error:
            if error.code not in REFUND_REFUSALS:
                raise translate_error(error, f"refund {request.refund_id}") from error
            result = refused_result(error)
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"refund {request.refund_id}") from error
        else:
            result = result_of_refund(refund)
        _logger.info(
            "psp refund %s",
            "succeeded" if result.succeeded else f"refused: {result.failure_code}",
            extra={"refund_id": request.refund_id, "psp_reference": result.psp_reference},
        )
        return result

    async def find_refund(self, refund_id: str, charge_psp_reference: str) -> ChargeResult | None:
        """Stripe cannot search refunds; it lists a charge's refunds, newest first (few per charge)."""
        try:
            page = await self._client.v1.refunds.list_async(
                params={"payment_intent": charge_psp_reference, "limit": SEARCH_LIMIT}
            )
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"listing refunds of {charge_psp_reference}") from error
        mine = [
            refund
            for refund in page.data
            if refund.metadata and "refund_id" in refund.metadata and refund.metadata["refund_id"] == refund_id
        ]
        return result_of_refund(mine[-1]) if mine else None

    async def payout(self, request: PayoutRequest) -> ChargeResult:
        try:
            payout = await self._client.v1.payouts.create_async(
                params={
                    "amount": to_stripe(request.amount_minor, request.currency),
                    "currency": request.currency.lower(),
                    "destination": request.destination,
                    "metadata": {
                        "payout_id": request.payout_id,
                        "seller_id": request.seller_id,
                        "batch_id": request.batch_id,
                    },
                },
                options={"idempotency_key": request.payout_id},
            )
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"payout {request.payout_id}") from error
        result = result_of_payout(payout)
        _logger.info(
            "psp payout %s",
            "paid" if result.succeeded else f"failed: {result.failure_code}",
            extra={"payout_id": request.payout_id, "psp_reference": result.psp_reference},
        )
        return result

    async def find_payout(self, payout_id: str) -> ChargeResult | None:
        # The sandbox's payout search stands in for Stripe's listing (see psp_sandbox/payouts.py).
        try:
            response = await self._client.raw_request_async(
                "get", "/v1/payouts/search", query=_metadata_query("payout_id", payout_id), limit=SEARCH_LIMIT
            )
        except (stripe.StripeError, aiohttp.ClientError, TimeoutError) as error:
            raise translate_error(error, f"search for payout {payout_id}") from error
        found = self._client.deserialize(response, api_mode="V1")
        payouts = sorted(found["data"], key=lambda payout: payout["created"])
        return result_of_payout(payouts[0]) if payouts else None

    async def close(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK


def _metadata_query(key: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{key}']:'{escaped}'"
