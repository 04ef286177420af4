"""Payment intents and the charge record, indexed by metadata for search."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psp_sandbox.journal import Journal

JsonObject = dict[str, Any]

INTENT_RECORD = "payment_intent"
CHARGE_RECORD = "charge"


class Store:
    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        self._intents: dict[str, JsonObject] = {}
        self._intent_ids_by_metadata: dict[tuple[str, str], list[str]] = {}
        self._charges: list[JsonObject] = []
        self._charges_by_order: dict[str, list[JsonObject]] = {}

    def add_intent(self, intent: JsonObject) -> None:
        self._index_intent(intent)
        if self._journal is not None:
            self._journal.append({"kind": INTENT_RECORD, "data": intent})

    def add_charge(self, charge: JsonObject) -> None:
        self._index_charge(charge)
        if self._journal is not None:
            self._journal.append({"kind": CHARGE_RECORD, "data": charge})

    def restore(self, record: JsonObject) -> bool:
        """Re-applies a journal record; returns False if the record is not this store's."""
        if record.get("kind") == INTENT_RECORD:
            self._index_intent(record["data"])
            return True
        if record.get("kind") == CHARGE_RECORD:
            self._index_charge(record["data"])
            return True
        return False

    def intent(self, intent_id: str) -> JsonObject | None:
        return self._intents.get(intent_id)

    def intents_newest_first(self) -> Iterable[JsonObject]:
        return reversed(self._intents.values())

    def intents_with_metadata_newest_first(self, key: str, value: str) -> Iterable[JsonObject]:
        intent_ids = self._intent_ids_by_metadata.get((key, value), [])
        return [self._intents[intent_id] for intent_id in reversed(intent_ids)]

    def charges(self, payment_order_id: str | None = None) -> list[JsonObject]:
        if payment_order_id is None:
            return list(self._charges)
        return list(self._charges_by_order.get(payment_order_id, []))

    def reset(self) -> None:
        self._intents.clear()
        self._intent_ids_by_metadata.clear()
        self._charges.clear()
        self._charges_by_order.clear()

    def _index_intent(self, intent: JsonObject) -> None:
        intent_id = intent["id"]
        if intent_id in self._intents:
            raise ValueError(f"payment intent {intent_id} already exists")
        self._intents[intent_id] = intent
        for key, value in intent["metadata"].items():
            self._intent_ids_by_metadata.setdefault((key, value), []).append(intent_id)

    def _index_charge(self, charge: JsonObject) -> None:
        self._charges.append(charge)
        order_id = charge.get("payment_order_id")
        if order_id is not None:
            self._charges_by_order.setdefault(order_id, []).append(charge)
