"""Append-only JSON-lines file that lets the sandbox's record of money movements survive a restart."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

JsonObject = dict[str, Any]

JOURNAL_FILE_NAME = "psp_sandbox.jsonl"
_logger = logging.getLogger(__name__)


class Journal:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / JOURNAL_FILE_NAME
        self._file: IO[str] | None = None

    def read(self) -> Iterator[JsonObject]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    # A crash mid-append leaves a torn last line; everything before it is intact.
                    _logger.warning("skipping unreadable journal line %d in %s", line_number, self.path)
                    continue
                if isinstance(record, dict):
                    yield record

    def append(self, record: JsonObject) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        # Flushed per record so a killed process loses at most the record being written.
        self._file.flush()

    def truncate(self) -> None:
        self.close()
        self.path.write_text("", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
