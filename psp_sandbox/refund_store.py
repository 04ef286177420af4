"""Refunds, what each charge has had refunded, and the record of refunds for auditors."""

from __future__ import annotations

from typing import Any

from psp_sandbox.indexes import ObjectIndex, RecordLog
from psp_sandbox.journal import Journal

JsonObject = dict[str, Any]

REFUND_RECORD = "refund"


class RefundStore:
    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        self._refunds = ObjectIndex("refund")
        self._by_intent: dict[str, list[JsonObject]] = {}
        self._refunded_by_charge: dict[str, int] = {}
        self._records = RecordLog("payment_order_id")

    def add(self, refund: JsonObject, record: JsonObject) -> None:
        self._index(refund, record)
        if self._journal is not None:
            # One line for both, so a crash cannot keep the refund and lose its record.
            self._journal.append({"kind": REFUND_RECORD, "data": refund, "record": record})

    def restore(self, record: JsonObject) -> bool:
        if record.get("kind") != REFUND_RECORD:
            return False
        self._index(record["data"], record["record"])
        return True

    def refund(self, refund_id: str) -> JsonObject | None:
        return self._refunds.get(refund_id)

    def newest_first(self, payment_intent_id: str | None = None) -> list[JsonObject]:
        if payment_intent_id is None:
            return self._refunds.newest_first()
        return list(reversed(self._by_intent.get(payment_intent_id, [])))

    def refunded_on_charge(self, charge_id: str) -> int:
        return self._refunded_by_charge.get(charge_id, 0)

    def records(self, payment_order_id: str | None = None) -> list[JsonObject]:
        return self._records.records(payment_order_id)

    def reset(self) -> None:
        self._refunds.clear()
        self._by_intent.clear()
        self._refunded_by_charge.clear()
        self._records.clear()

    def _index(self, refund: JsonObject, record: JsonObject) -> None:
        self._refunds.add(refund)
        self._by_intent.setdefault(refund["payment_intent"], []).append(refund)
        charge_id = refund["charge"]
        self._refunded_by_charge[charge_id] = self._refunded_by_charge.get(charge_id, 0) + refund["amount"]
        self._records.append(record)
