"""Consumer lag per partition (settle_consumer_lag_messages): highwater minus position, read from the
Kafka client's own fetch state, so measuring it costs no request to the broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.common.metrics import ServiceMetrics

DEFAULT_INTERVAL_S = 1.0
_POSITION_TIMEOUT_S = 0.5


class PartitionLag:
    def __init__(
        self, kafka: AIOKafkaConsumer, metrics: ServiceMetrics, group_id: str, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self._group_id = group_id
        self._interval_s = interval_s
        self._next_report_s = 0.0
        self._series: set[tuple[str, str, str, str]] = set()

    async def report(self) -> None:
        """Sets the lag of each assigned partition whose highwater the client knows (it learns it from its
        fetches), at most once per interval; drops the series of partitions this member no longer holds.
        Call it between batches, when the positions are those of the records processed."""
        now = asyncio.get_running_loop().time()
        if now < self._next_report_s:
            return
        self._next_report_s = now + self._interval_s
        # Highwaters first, with no await in between, while the assignment cannot change under us.
        highwaters = {tp: hw for tp in self._kafka.assignment() if (hw := self._kafka.highwater(tp)) is not None}
        series: set[tuple[str, str, str, str]] = set()
        for tp, highwater in highwaters.items():
            try:
                position = await asyncio.wait_for(self._kafka.position(tp), timeout=_POSITION_TIMEOUT_S)
            except (KafkaError, TimeoutError):
                continue  # revoked meanwhile, or its position is being reset: next time
            labels = (self._metrics.service, self._group_id, tp.topic, str(tp.partition))
            self._metrics.consumer_lag.labels(*labels).set(max(highwater - position, 0))
            series.add(labels)
        for labels in self._series - series:
            self._metrics.consumer_lag.remove(*labels)
        self._series = series
