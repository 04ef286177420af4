"""In-memory indexes the stores share: API objects by id and metadata, and audit records by one field."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


class ObjectIndex:
    """API objects in creation order, indexed by metadata so search never scans every object."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._objects: dict[str, JsonObject] = {}
        self._ids_by_metadata: dict[tuple[str, str], list[str]] = {}

    def add(self, obj: JsonObject) -> None:
        object_id = obj["id"]
        if object_id in self._objects:
            raise ValueError(f"{self._kind} {object_id} already exists")
        self._objects[object_id] = obj
        for key, value in obj["metadata"].items():
            self._ids_by_metadata.setdefault((key, value), []).append(object_id)

    def get(self, object_id: str) -> JsonObject | None:
        return self._objects.get(object_id)

    def newest_first(self) -> list[JsonObject]:
        return list(reversed(self._objects.values()))

    def with_metadata_newest_first(self, key: str, value: str) -> list[JsonObject]:
        return [self._objects[object_id] for object_id in reversed(self._ids_by_metadata.get((key, value), []))]

    def clear(self) -> None:
        self._objects.clear()
        self._ids_by_metadata.clear()


class RecordLog:
    """The sandbox's own record of money movements, oldest first, filterable by one field."""

    def __init__(self, filter_field: str) -> None:
        self._filter_field = filter_field
        self._records: list[JsonObject] = []
        self._by_value: dict[str, list[JsonObject]] = {}

    def append(self, record: JsonObject) -> None:
        self._records.append(record)
        value = record.get(self._filter_field)
        if value is not None:
            self._by_value.setdefault(value, []).append(record)

    def records(self, value: str | None = None) -> list[JsonObject]:
        if value is None:
            return list(self._records)
        return list(self._by_value.get(value, []))

    def clear(self) -> None:
        self._records.clear()
        self._by_value.clear()
