"""Payment intents and the charge record, indexed by metadata for search."""

from __future__ import annotations

from typing import Any

from psp_sandbox.indexes import ObjectIndex, RecordLog
from psp_sandbox.journal import Journal

JsonObject = dict[str, Any]

INTENT_RECORD = "payment_intent"
CHARGE_RECORD = "charge"


class Store:
    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        self.intents = ObjectIndex("payment intent")
        self._charges = RecordLog("payment_order_id")

    def add_intent(self, intent: JsonObject) -> None:
        self.intents.add(intent)
        if self._journal is not None:
            self._journal.append({"kind": INTENT_RECORD, "data": intent})

    def add_charge(self, charge: JsonObject) -> None:
        self._charges.append(charge)
        if self._journal is not None:
            self._journal.append({"kind": CHARGE_RECORD, "data": charge})

    def restore(self, record: JsonObject) -> bool:
        """Re-applies a journal record; returns False if the record is not this store's."""
        if record.get("kind") == INTENT_RECORD:
            self.intents.add(record["data"])
            return True
        if record.get("kind") == CHARGE_RECORD:
            self._charges.append(record["data"])
            return True
        return False

    def intent(self, intent_id: str) -> JsonObject | None:
        return self.intents.get(intent_id)

    def charges(self, payment_order_id: str | None = None) -> list[JsonObject]:
        return self._charges.records(payment_order_id)

    def reset(self) -> None:
        self.intents.clear()
        self._charges.clear()
