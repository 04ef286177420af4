"""Payouts, indexed by metadata for search, and the record of paid payouts for auditors."""

from __future__ import annotations

from typing import Any

from psp_sandbox.indexes import ObjectIndex, RecordLog
from psp_sandbox.journal import Journal

JsonObject = dict[str, Any]

PAYOUT_RECORD = "payout"


class PayoutStore:
    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        self.index = ObjectIndex("payout")
        self._records = RecordLog("payout_id")

    def add(self, payout: JsonObject, record: JsonObject | None) -> None:
        """`record` is None for a failed payout: it moved no money, so auditors have nothing to see."""
        self._index(payout, record)
        if self._journal is not None:
            self._journal.append({"kind": PAYOUT_RECORD, "data": payout, "record": record})

    def restore(self, record: JsonObject) -> bool:
        if record.get("kind") != PAYOUT_RECORD:
            return False
        self._index(record["data"], record["record"])
        return True

    def records(self, payout_id: str | None = None) -> list[JsonObject]:
        return self._records.records(payout_id)

    def reset(self) -> None:
        self.index.clear()
        self._records.clear()

    def _index(self, payout: JsonObject, record: JsonObject | None) -> None:
        self.index.add(payout)
        if record is not None:
            self._records.append(record)
