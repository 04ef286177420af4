"""The PSP webhook endpoint's metrics, in the process's registry (services/common/metrics.py).

- `settle_executor_webhook_events_total{disposition}`: verified events by what was made of them;
  `contradicts_recorded` is the one to alert on (a reconciliation matter).
- `settle_executor_webhook_rejections_total{reason}`: requests answered 400 (forgeries, clock skew,
  PSP bugs). Executions a webhook completes are also counted in `settle_executor_outcomes_total`.
"""

from __future__ import annotations

from typing import Any

from services.common.metrics import ServiceMetrics
from services.executor.adapters.tables import ExecutionTable
from services.executor.domain import Execution
from services.executor.service.metrics import ExecutorMetrics


class WebhookMetrics:
    def __init__(self, metrics: ServiceMetrics, executor_metrics: ExecutorMetrics | None = None) -> None:
        self._service = metrics.service
        self._executor_metrics = executor_metrics
        self._events = metrics.counter(
            "settle_executor_webhook_events",
            "Verified PSP webhook events, by what the executor made of them.",
            ["disposition"],
        )
        self._rejections = metrics.counter(
            "settle_executor_webhook_rejections", "PSP webhook requests answered 400, by reason.", ["reason"]
        )

    def processed(self, disposition: str) -> None:
        self._events.labels(self._service, disposition).inc()

    def rejected(self, reason: str) -> None:
        self._rejections.labels(self._service, reason).inc()

    def completed(self, table: ExecutionTable[Any], execution: Execution[Any]) -> None:
        if self._executor_metrics is not None:
            self._executor_metrics.recorded(table, [execution])
