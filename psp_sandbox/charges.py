"""The Charge object behind a PaymentIntent's `latest_charge`, for `expand[]=latest_charge`.

The sandbox keeps no charge objects: a charge is whatever its intent's confirmation made of it (paid, or
failed with the decline), plus what has been refunded from it since.
"""

from __future__ import annotations

from psp_sandbox.errors import JsonObject


def charge_object(intent: JsonObject, amount_refunded: int) -> JsonObject:
    succeeded = intent["status"] == "succeeded"
    failure = intent["last_payment_error"] or {}
    amount = intent["amount"]
    return {
        "id": intent["latest_charge"],
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": amount_refunded,
        "captured": succeeded,
        "created": intent["created"],
        "currency": intent["currency"],
        "description": intent["description"],
        "failure_code": failure.get("code"),
        "failure_message": failure.get("message"),
        "livemode": False,
        "metadata": intent["metadata"],
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "refunded": succeeded and amount_refunded == amount,
        "status": "succeeded" if succeeded else "failed",
    }
