"""Every service of a running Settle serves Prometheus metrics at the URL `settle up` recorded."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from settle.payment.v1 import payment_pb2

from services.cli.endpoints import SERVICES, Endpoints
from services.cli.stack import Stack
from services.common import clients

# Beyond what every service has: the gauges of each service's own periodic queries.
_OWN_GAUGES = {
    "executor": "settle_executor_executions",
    "reconciliation": "settle_reconciliation_open_mismatches",
}


def _samples(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]


async def _scrape_all(endpoints: Endpoints) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        scraped = {}
        for service in SERVICES:
            async with http.get(endpoints.metrics[service]) as response:
                assert response.status == 200, service
                scraped[service] = _samples(await response.text())
        return scraped


async def _unknown_payment(endpoints: Endpoints) -> None:
    async with endpoints.channel("payment", "checkout") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await clients.payment_stub(channel).GetPayment(payment_pb2.GetPaymentRequest(payment_id=str(uuid.uuid4())))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_every_service_serves_its_metrics(stack: Stack) -> None:
    assert set(stack.endpoints.metrics) == set(SERVICES)
    asyncio.run(_unknown_payment(stack.endpoints))
    scraped = asyncio.run(_scrape_all(stack.endpoints))
    for service, samples in scraped.items():
        names = {name for name, _, _ in samples}
        assert {"settle_outbox_backlog_events", "settle_outbox_oldest_unpublished_age_seconds"} <= names, service
        up = {labels["dependency"]: value for name, labels, value in samples if name == "settle_dependency_up"}
        assert up == {"postgres": 1, "kafka": 1}, service
        assert all(labels["service"] == service for name, labels, _ in samples if name.startswith("settle_")), service
        assert "process_resident_memory_bytes" in names, service
        if service in _OWN_GAUGES:
            assert _OWN_GAUGES[service] in names, service
    not_found = [
        value
        for name, labels, value in scraped["payment"]
        if name == "settle_rpc_requests_total"
        and labels["method"] == "settle.payment.v1.PaymentService/GetPayment"
        and labels["code"] == "NOT_FOUND"
    ]
    assert not_found and not_found[0] >= 1
