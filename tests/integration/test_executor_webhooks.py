"""The executor's PSP webhook endpoint over real HTTP on real PostgreSQL: only verified events are used, each
once, and an event with the PSP's definite word completes an execution exactly as recovery would."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from psp_sandbox.webhook_settings import signature_header
from services.common.metrics import ServiceMetrics
from services.executor.adapters import claims_db, db
from services.executor.adapters.claims_db import Claim
from services.executor.adapters.psp.stripe_webhooks import StripeWebhookVerifier
from services.executor.adapters.tables import CHARGES, PAYOUTS, REFUNDS, ExecutionTable
from services.executor.domain import ChargeOrder, ExecutionStatus, Outcome, PayoutOrder, RefundOrder
from services.executor.entrypoints.webhook_http import ROUTE, WebhookServer, create_webhook_app
from services.executor.service.accepting import accept
from services.executor.service.metrics import ExecutorMetrics
from services.executor.service.webhook_metrics import WebhookMetrics
from services.executor.service.webhooks import WebhookProcessor

SECRET = "whsec_integration_0123456789abcdef"
TOLERANCE_S = 300


@dataclass
class Endpoint:
    url: str
    http: aiohttp.ClientSession
    metrics: ServiceMetrics
    wakes: list[None] = field(default_factory=list)

    async def post(self, body: bytes, *, secret: str = SECRET, age_s: int = 0) -> tuple[int, Any]:
        header = signature_header(body, [secret], int(time.time()) - age_s)
        async with self.http.post(self.url, data=body, headers={"Stripe-Signature": header}) as response:
            return response.status, await response.json()

    def counted(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(
            f"settle_executor_{name}_total", {"service": "executor", **labels}
        )
        return value or 0.0


@pytest_asyncio.fixture
async def endpoint(engines: dict[str, AsyncEngine]) -> AsyncIterator[Endpoint]:
    wakes: list[None] = []
    metrics = ServiceMetrics("executor")
    webhook_metrics = WebhookMetrics(metrics, ExecutorMetrics(metrics))
    processor = WebhookProcessor(engines["executor"], on_events=lambda: wakes.append(None), metrics=webhook_metrics)
    app = create_webhook_app(StripeWebhookVerifier(SECRET, TOLERANCE_S), processor, webhook_metrics)
    server = WebhookServer(app, processor, host="127.0.0.1", port=0, retention_s=30 * 86_400)
    port = await server.start()
    task = asyncio.create_task(server.run())
    async with aiohttp.ClientSession() as http:
        yield Endpoint(f"http://127.0.0.1:{port}{ROUTE}", http, metrics, wakes)
    server.stop()
    await asyncio.wait_for(task, timeout=15)


def _charge_order(amount_minor: int = 1250) -> ChargeOrder:
    return ChargeOrder(str(uuid.uuid4()), "pay-1", "seller-1", "buyer-1", amount_minor, "USD", "pm_card_visa")


async def _park(
    engine: AsyncEngine, table: ExecutionTable[Any], order: Any, status: str = "UNKNOWN", **state: str
) -> None:
    """Accepts the order and moves its execution to `status`, as after one PSP call with no clear answer."""
    async with engine.begin() as connection:
        assert await accept(connection, table, [order]) == []
        claimed = status == "EXECUTING"
        await connection.execute(
            text(
                f"UPDATE {table.name} SET status = :status, attempts = 1, budgeted_attempts = 1, "
                "failure_code = :code, psp_reference = :reference, "
                "claimed_by = CASE WHEN :claimed THEN 'worker-a' END, claimed_at = CASE WHEN :claimed THEN now() END "
                f"WHERE {table.key} = CAST(:id AS uuid)"
            ),
            {
                "status": status,
                "code": state.get("failure_code", "psp_outcome_unknown"),
                "reference": state.get("psp_reference", ""),
                "claimed": claimed,
                "id": order.execution_id,
            },
        )


def _event(event_type: str, data_object: dict[str, Any], event_id: str | None = None) -> bytes:
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _intent(order: ChargeOrder, status: str = "succeeded", intent_id: str | None = None) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "id": intent_id or f"pi_{uuid.uuid4().hex[:24]}",
        "object": "payment_intent",
        "amount": order.amount_minor,
        "currency": order.currency.lower(),
        "status": status,
        "last_payment_error": None,
        "metadata": {"payment_order_id": order.payment_order_id},
    }
    if status == "requires_payment_method":
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
    return intent


async def _execution(engine: AsyncEngine, table: ExecutionTable[Any], execution_id: str) -> tuple[str, str, str]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(f"SELECT status, psp_reference, failure_code FROM {table.name} WHERE {table.key} = :id"),
                {"id": uuid.UUID(execution_id)},
            )
        ).one()
    return row.status, row.psp_reference, row.failure_code


async def _outbox(engine: AsyncEngine, key: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT topic FROM outbox WHERE message_key = :key ORDER BY seq"), {"key": key.encode()}
        )
        return [row.topic for row in rows]


async def _recorded(engine: AsyncEngine, event_id: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT disposition FROM webhook_events WHERE event_id = :id"), {"id": event_id}
        )
        return [row.disposition for row in rows]


async def _count_recorded(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM webhook_events")) or 0)


def _event_id(body: bytes) -> str:
    return str(json.loads(body)["id"])


async def test_an_unknown_charge_is_completed_by_the_psps_succeeded_event(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order)
    body = _event("payment_intent.succeeded", _intent(order, intent_id="pi_webhook_1"))

    status, answer = await endpoint.post(body)

    assert (status, answer) == (200, {"received": True, "disposition": "applied"})
    assert await _execution(engine, CHARGES, order.payment_order_id) == ("SUCCEEDED", "pi_webhook_1", "")
    assert await _outbox(engine, order.payment_order_id) == ["payment.order.succeeded"]
    assert await _recorded(engine, _event_id(body)) == ["applied"]
    assert endpoint.wakes, "the outbox relay is woken to publish the outcome at once"
    assert endpoint.counted("outcomes", kind="charge", outcome="SUCCEEDED") == 1


async def test_a_decline_event_fails_an_unknown_charge_with_the_decline_code(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order)
    body = _event("payment_intent.payment_failed", _intent(order, "requires_payment_method", "pi_declined_1"))

    assert (await endpoint.post(body))[0] == 200
    assert await _execution(engine, CHARGES, order.payment_order_id) == (
        "FAILED",
        "pi_declined_1",
        "insufficient_funds",
    )
    assert await _outbox(engine, order.payment_order_id) == ["payment.order.failed"]


async def test_a_replayed_event_is_acknowledged_each_time_and_processed_once(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order)
    body = _event("payment_intent.succeeded", _intent(order))

    # Concurrent redeliveries (each signed afresh, as the PSP does) race on the event id, then a late one.
    answers = await asyncio.gather(*(endpoint.post(body) for _ in range(5)))
    answers.append(await endpoint.post(body, age_s=60))

    assert [status for status, _ in answers] == [200] * 6
    assert sorted(answer["disposition"] for _, answer in answers) == ["applied"] + ["duplicate"] * 5
    assert await _outbox(engine, order.payment_order_id) == ["payment.order.succeeded"]
    assert await _recorded(engine, _event_id(body)) == ["applied"]


async def test_a_forged_signature_is_rejected_and_changes_nothing(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order)
    body = _event("payment_intent.succeeded", _intent(order))

    status, answer = await endpoint.post(body, secret="whsec_forged_by_someone_else")

    assert status == 400
    assert answer["error"]["reason"] == "SIGNATURE_INVALID"
    assert endpoint.counted("webhook_rejections", reason="SIGNATURE_INVALID") == 1
    assert "No signatures found matching" in answer["error"]["message"]
    assert await _execution(engine, CHARGES, order.payment_order_id) == ("UNKNOWN", "", "psp_outcome_unknown")
    assert await _outbox(engine, order.payment_order_id) == []
    assert await _recorded(engine, _event_id(body)) == []


@pytest.mark.parametrize(
    ("age_s", "reason"), [(TOLERANCE_S + 100, "TIMESTAMP_TOO_OLD"), (-(TOLERANCE_S + 100), "TIMESTAMP_IN_FUTURE")]
)
async def test_a_signature_outside_the_tolerance_is_rejected_either_way(
    endpoint: Endpoint, engines: dict[str, AsyncEngine], age_s: int, reason: str
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order)
    body = _event("payment_intent.succeeded", _intent(order))

    status, answer = await endpoint.post(body, age_s=age_s)

    assert (status, answer["error"]["reason"]) == (400, reason)
    assert await _execution(engine, CHARGES, order.payment_order_id) == ("UNKNOWN", "", "psp_outcome_unknown")
    assert await _recorded(engine, _event_id(body)) == []


async def test_malformed_json_with_a_valid_signature_is_rejected_and_recorded_nowhere(
    endpoint: Endpoint, engines: dict[str, AsyncEngine], caplog: pytest.LogCaptureFixture
) -> None:
    engine = engines["executor"]
    recorded_before = await _count_recorded(engine)
    body = b'{"id":"evt_broken","object":"event","data":{"object":{"card":"4242424242424242"'

    with caplog.at_level(logging.WARNING):
        status, answer = await endpoint.post(body)

    assert status == 400
    assert answer["error"]["reason"] == "MALFORMED_BODY"
    assert answer["error"]["message"].startswith("the body is not JSON")
    assert await _count_recorded(engine) == recorded_before
    assert "4242" not in caplog.text and "evt_broken" not in caplog.text, "the body is never logged"
    assert "MALFORMED_BODY" in caplog.text


async def test_an_event_agreeing_with_a_final_execution_is_recorded_and_ignored(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order, "SUCCEEDED", psp_reference="pi_final_1", failure_code="")
    body = _event("payment_intent.succeeded", _intent(order, intent_id="pi_final_1"))

    assert (await endpoint.post(body))[1]["disposition"] == "already_final"
    assert await _outbox(engine, order.payment_order_id) == []
    assert await _recorded(engine, _event_id(body)) == ["already_final"]


@pytest.mark.parametrize("conflict", ["outcome", "amount"])
async def test_an_event_contradicting_the_execution_is_logged_with_ids_and_counted(
    endpoint: Endpoint, engines: dict[str, AsyncEngine], caplog: pytest.LogCaptureFixture, conflict: str
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order, "SUCCEEDED", psp_reference="pi_final_2", failure_code="")
    intent = _intent(order, "succeeded", "pi_final_2")
    if conflict == "outcome":
        intent = _intent(order, "requires_payment_method", "pi_final_2")
    else:
        intent["amount"] = order.amount_minor + 1
    body = _event("payment_intent.updated", intent)

    with caplog.at_level(logging.WARNING, logger="services.executor.service.webhooks"):
        assert (await endpoint.post(body))[1]["disposition"] == "contradicts_recorded"

    assert endpoint.counted("webhook_events", disposition="contradicts_recorded") == 1
    warning = next(record for record in caplog.records if "contradicts" in record.getMessage())
    assert (warning.psp_event_id, warning.execution_id) == (_event_id(body), order.payment_order_id)  # type: ignore[attr-defined]
    assert await _execution(engine, CHARGES, order.payment_order_id) == ("SUCCEEDED", "pi_final_2", "")
    assert await _outbox(engine, order.payment_order_id) == []


async def test_an_executing_charge_completed_by_a_webhook_is_not_recorded_again_by_its_worker(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    order = _charge_order()
    await _park(engine, CHARGES, order, "EXECUTING")
    body = _event("payment_intent.succeeded", _intent(order, intent_id="pi_race_1"))

    assert (await endpoint.post(body))[1]["disposition"] == "applied"
    async with engine.begin() as connection:  # the worker's answer to its call lands afterwards
        recorded = await claims_db.record_outcomes(
            connection,
            CHARGES,
            worker_id="worker-a",
            outcomes=[(Claim(order, 1, 1), Outcome(ExecutionStatus.SUCCEEDED, psp_reference="pi_race_1"))],
        )

    assert recorded == []
    assert await _outbox(engine, order.payment_order_id) == ["payment.order.succeeded"]
    async with engine.connect() as connection:
        execution = await db.get(connection, order.payment_order_id)
    assert execution is not None and execution.status is ExecutionStatus.SUCCEEDED


async def test_an_unknown_refund_and_an_unknown_payout_are_completed_by_their_events(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    refund = RefundOrder(str(uuid.uuid4()), str(uuid.uuid4()), "pay-1", "seller-1", 500, "EUR", "pi_charged_1", "")
    payout = PayoutOrder(str(uuid.uuid4()), "seller-1", 9000, "EUR", "ba_test_account_closed", "")
    await _park(engine, REFUNDS, refund)
    await _park(engine, PAYOUTS, payout)
    refund_object = {
        "id": "re_webhook_1",
        "object": "refund",
        "amount": 500,
        "currency": "eur",
        "payment_intent": "pi_charged_1",
        "status": "succeeded",
        "metadata": {"refund_id": refund.refund_id, "payment_order_id": refund.payment_order_id},
    }
    payout_object = {
        "id": "po_webhook_1",
        "object": "payout",
        "amount": 9000,
        "currency": "eur",
        "status": "failed",
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed.",
        "metadata": {"payout_id": payout.payout_id},
    }

    assert (await endpoint.post(_event("refund.created", refund_object)))[1]["disposition"] == "applied"
    assert (await endpoint.post(_event("payout.failed", payout_object)))[1]["disposition"] == "applied"

    assert await _execution(engine, REFUNDS, refund.refund_id) == ("SUCCEEDED", "re_webhook_1", "")
    assert await _outbox(engine, refund.payment_order_id) == ["payment.refund.succeeded"]
    assert await _execution(engine, PAYOUTS, payout.payout_id) == ("FAILED", "po_webhook_1", "account_closed")
    assert await _outbox(engine, payout.payout_id) == ["payout.failed"]


async def test_events_the_executor_cannot_act_on_are_acknowledged_and_recorded(
    endpoint: Endpoint, engines: dict[str, AsyncEngine]
) -> None:
    engine = engines["executor"]
    stranger = _charge_order()  # no execution has its id: a charge made outside Settle
    pending = _charge_order()
    await _park(engine, CHARGES, pending)
    bodies = {
        "unmatched": _event("payment_intent.succeeded", _intent(stranger)),
        "ignored_type": _event("charge.refunded", {"id": "ch_1", "object": "charge", "amount": 100}),
        "not_final": _event("payment_intent.processing", _intent(pending, "processing")),
    }

    for disposition, body in bodies.items():
        assert await endpoint.post(body) == (200, {"received": True, "disposition": disposition})
        assert await _recorded(engine, _event_id(body)) == [disposition]
    assert await _execution(engine, CHARGES, pending.payment_order_id) == ("UNKNOWN", "", "psp_outcome_unknown")


async def test_events_older_than_the_retention_are_pruned(engines: dict[str, AsyncEngine]) -> None:
    engine = engines["executor"]
    processor = WebhookProcessor(engine)
    old_id = f"evt_old_{uuid.uuid4().hex}"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO webhook_events (event_id, type, event_created_at, received_at) "
                "VALUES (:id, 'payment_intent.succeeded', now(), now() - interval '40 days')"
            ),
            {"id": old_id},
        )

    while await processor.prune(older_than_s=30 * 86_400, limit=1000):
        pass

    assert await _recorded(engine, old_id) == []
