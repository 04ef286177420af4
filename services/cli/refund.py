"""`settle refund ORDER_ID [--amount N]`: an operator refunds a payment order through the payment API.

The amount is in the order's minor units (its currency is read from the order). Without
`--idempotency-key` a fresh key is made, and printed, so that a retry after a lost answer can reuse it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

import grpc
from google.protobuf.json_format import MessageToDict
from settle.common.v1.money_pb2 import Money
from settle.payment.v1 import payment_pb2

from services.cli.endpoints import Endpoints, default_data_dir
from services.common import clients


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    refund = commands.add_parser("refund", parents=parents, help="refund a payment order, in full or in part")
    refund.add_argument("payment_order_id")
    refund.add_argument("--amount", type=int, default=None, help="minor units (default: everything not refunded)")
    refund.add_argument("--reason", default="", help="why, e.g. requested_by_customer")
    refund.add_argument("--idempotency-key", default=None, help="reuse to retry a refund safely (default: new)")
    refund.add_argument("--json", action="store_true", help="print one JSON object")
    refund.set_defaults(handler=cmd_refund)


async def _refund(
    endpoints: Endpoints, options: argparse.Namespace, key: str
) -> payment_pb2.RefundPaymentOrderResponse:
    async with endpoints.channel("payment", "checkout") as channel:
        stub = clients.payment_stub(channel)
        request = payment_pb2.RefundPaymentOrderRequest(
            payment_order_id=options.payment_order_id, idempotency_key=key, reason=options.reason
        )
        if options.amount is not None:
            order = await stub.GetPaymentOrder(
                payment_pb2.GetPaymentOrderRequest(payment_order_id=options.payment_order_id), timeout=10
            )
            request.amount.CopyFrom(Money(amount_minor=options.amount, currency=order.payment_order.amount.currency))
        response: payment_pb2.RefundPaymentOrderResponse = await stub.RefundPaymentOrder(request, timeout=10)
        return response


def cmd_refund(options: argparse.Namespace) -> int:
    endpoints = Endpoints.load(options.data_dir or default_data_dir())
    if endpoints is None:
        print("settle refund: no running Settle found; start one with `settle up`", file=sys.stderr)
        return 2
    key = options.idempotency_key or f"cli-refund-{uuid.uuid4()}"
    try:
        response = asyncio.run(_refund(endpoints, options, key))
    except grpc.aio.AioRpcError as error:
        print(f"settle refund: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    refund = response.refund
    if options.json:
        print(json.dumps({"idempotency_key": key, "replayed": response.replayed, "refund": MessageToDict(refund)}))
    else:
        print(
            f"refund {refund.refund_id} of {refund.amount.amount_minor} {refund.amount.currency} (minor units) "
            f"for order {refund.payment_order_id}: {payment_pb2.RefundStatus.Name(refund.status)}"
            f"{' (replayed)' if response.replayed else ''}; idempotency key {key}"
        )
    return 0
