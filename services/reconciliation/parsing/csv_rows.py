"""Reading a settlement CSV file as a stream: the header, then each row with its physical line number.

Shared by the Stripe and Adyen parsers. Columns are found by header name (trimmed, case-insensitive,
runs of spaces collapsed), so accounts may reorder, drop or add columns. A row that cannot be read
becomes a `Quarantined`; a file that cannot be read at all (no header, not UTF-8, ending inside a
quoted field) raises `FileRejected`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from types import TracebackType
from typing import BinaryIO

from services.reconciliation.parsing.model import FileRejected, Quarantined

RAW_LIMIT_CHARS = 200  # the offending text kept on a quarantined line: enough to find it, never a whole file
# A physical line longer than this is not a settlement row: refusing it keeps memory bounded even when
# a file has no line breaks at all. csv's own field size limit (131,072) bounds a field spanning lines.
MAX_LINE_CHARS = 1_048_576

# Undecodable bytes become lone surrogates (errors="surrogateescape"), which valid UTF-8 never yields,
# so finding one names the exact physical line instead of the 8 KiB chunk the decoder was working on.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# PSP exports opened and saved again by other tools gain fractional seconds or an ISO "T".
_TOLERANT_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")
MAX_PREAMBLE_ROWS = 20


def column_key(name: str) -> str:
    """How a header name is matched: "  Net Debit  (NC) " and "net debit (nc)" are the same column."""
    return " ".join(name.split()).casefold()


class Columns:
    """The header: where each named column is, and how many fields a row must have."""

    def __init__(self, names: list[str], line: int) -> None:
        self.line = line
        # Trailing empty names come from a trailing delimiter ("...,description,"): not columns.
        width = len(names)
        while width > 0 and not names[width - 1].strip():
            width -= 1
        self.width = width
        self.names = [name.strip() for name in names[:width]]
        self._index: dict[str, int] = {}
        for index, name in enumerate(self.names):
            # The first of two same-named columns wins; an unnamed column in the middle is never looked up.
            if name:
                self._index.setdefault(column_key(name), index)

    def index(self, name: str) -> int | None:
        """The position of column `name`, or None when the file does not have it."""
        return self._index.get(column_key(name))

    def missing(self, *names: str) -> list[str]:
        return [name for name in names if self.index(name) is None]

    def with_prefix(self, prefix: str) -> list[tuple[str, int]]:
        """(name as written, position) of every column whose name starts with `prefix` (any case)."""
        key = column_key(prefix)
        return [(name, index) for index, name in enumerate(self.names) if column_key(name).startswith(key)]


class Row:
    """One record of the file. A plain slotted class: one is made per row, so it is kept cheap."""

    __slots__ = ("_text", "fields", "line")

    def __init__(self, line: int, fields: list[str], text: str) -> None:
        self.line = line  # the physical line the row starts on (a quoted field may span lines)
        self.fields = fields
        self._text = text  # the start of the row's text; cut to RAW_LIMIT_CHARS only when needed

    @property
    def raw(self) -> str:
        return _raw(self._text)

    def cell(self, index: int | None) -> str:
        """The trimmed value at `index`; "" for a column the file does not have."""
        return "" if index is None else self.fields[index].strip()

    def quarantine(self, reason: str) -> Quarantined:
        return Quarantined(self.line, reason, self.raw)


def _raw(text: str) -> str:
    return text[:RAW_LIMIT_CHARS].rstrip("\r\n")


class _Lines:
    """The text lines csv.reader consumes, checked one by one; keeps the start of the current row's text."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self.count = 0
        self.current_raw = ""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.count += 1
        if len(line) > MAX_LINE_CHARS:
            raise FileRejected(f"line {self.count}: longer than {MAX_LINE_CHARS} characters")
        # isascii() is O(1) on CPython strings: most lines skip the search.
        if not line.isascii() and _UNDECODABLE.search(line) is not None:
            raise FileRejected(f"line {self.count}: not valid UTF-8")
        if not self.current_raw:
            self.current_raw = line  # the common one-line row: no copy
        elif len(self.current_raw) < RAW_LIMIT_CHARS:
            self.current_raw = (self.current_raw + line)[:RAW_LIMIT_CHARS]
        return line


class CsvRows:
    """A settlement CSV file read row by row, in constant memory. Use as a context manager.

    `header()` first, then iterate for `Row`s and `Quarantined`s (wrong field count, broken quoting).
    Blank lines are skipped; line numbers stay physical.
    """

    def __init__(self, stream: BinaryIO) -> None:
        # utf-8-sig drops a byte order mark; newline="" hands quoted line breaks to csv untouched.
        self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._lines = _Lines(self._text)
        # strict: without it, csv silently accepts a file that ends inside a quoted field (truncated).
        self._reader = csv.reader(self._lines, strict=True)
        self._columns: Columns | None = None

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # The stream belongs to the caller: detach so that discarding the wrapper does not close it.
        self._text.detach()

    def header(self, anchors: tuple[str, ...] = ()) -> Columns:
        """The header row: the first row, or with `anchors` the first row naming them all within the first
        MAX_PREAMBLE_ROWS rows (exports may open with a title or report parameters). Without such a row the
        first row is the header, so the parser's check names the columns it lacks."""
        first: Columns | None = None
        for item in self._records():
            if isinstance(item, Quarantined):
                if first is None:
                    raise FileRejected(f"line {item.line}: unreadable header ({item.reason})")
                continue
            columns = Columns(item.fields, item.line)
            first = first or columns
            if not columns.missing(*anchors):
                self._columns = columns
                return columns
            if item.line >= first.line + MAX_PREAMBLE_ROWS:
                break
        if first is None:
            raise FileRejected("no header")
        self._columns = first
        return first

    def __iter__(self) -> Iterator[Row | Quarantined]:
        columns = self._columns
        if columns is None:
            raise RuntimeError("read the header first")
        for item in self._records():
            if isinstance(item, Row) and not _fits(item.fields, columns.width):
                yield item.quarantine(f"expected {columns.width} fields, found {len(item.fields)}")
            else:
                yield item

    def _records(self) -> Iterator[Row | Quarantined]:
        while True:
            start = self._reader.line_num + 1
            self._lines.current_raw = ""
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as error:
                raw = _raw(self._lines.current_raw)
                message = str(error)
                if "unexpected end of data" in message:
                    raise FileRejected(f"line {start}: the file ends inside a quoted field (truncated?)") from error
                if "field larger than field limit" in message:
                    # Almost always a stray quote that swallowed the rest of the file: nothing after is reliable.
                    raise FileRejected(f"line {start}: a quoted field never ends ({message})") from error
                yield Quarantined(start, f"malformed quoting: {message}", raw)
                continue
            if fields:  # csv yields [] for a blank line: skipped, its line still counted
                yield Row(start, fields, self._lines.current_raw)


def _fits(fields: list[str], width: int) -> bool:
    # A trailing delimiter on some rows and not on the header (or the reverse) is tolerated; data past the
    # named columns is not.
    if len(fields) < width:
        return False
    return all(not extra for extra in fields[width:])


def parse_timestamp(text: str, zone: tzinfo | None, *, tolerant: bool = False) -> datetime:
    """A `YYYY-MM-DD HH:MM:SS` wall-clock time in `zone` (UTC when None) as an aware UTC datetime;
    `tolerant` also takes fractional seconds and a "T" separator.

    Raises ValueError naming the expected format. An ambiguous wall-clock time (the hour repeated when
    daylight saving ends) is read as its first occurrence (fold=0).
    """
    if (_TOLERANT_TIMESTAMP if tolerant else _TIMESTAMP).match(text) is None:
        raise ValueError(f"{text!r} is not YYYY-MM-DD HH:MM:SS")
    try:
        wall_clock = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and time") from None
    if zone is None:
        return wall_clock.replace(tzinfo=UTC)
    return wall_clock.replace(tzinfo=zone).astimezone(UTC)
