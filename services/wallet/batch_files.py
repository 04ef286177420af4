"""Payout batch files (CSV or XML), parsed and validated in full before any payout of them is accepted.

A batch is all or nothing, so the caller learns every bad line of a file at once (the first
MAX_VIOLATIONS of them), each named `line <n>: <column>`, `line <n>` or `file`. Pure: bytes in, lines or
BatchInvalid out.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from xml.parsers import expat

from services.common.errors import FieldViolation
from services.common.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, Money
from services.common.succeeded_orders import SELLER_ID_MAX_LENGTH

MAX_CONTENT_BYTES = 16 * 1024 * 1024
MAX_PAYOUTS = 100_000
MAX_VIOLATIONS = 1000  # including the last one that says how many more were left out
MAX_METADATA_KEYS = 20
METADATA_VALUE_MAX_LENGTH = 500
REQUIRED_COLUMNS = ("seller_id", "amount_minor", "currency")
COLUMNS = (*REQUIRED_COLUMNS, "destination")
# Reports print metadata beside these columns and group by some of them, so no metadata key may take
# one of their names.
RESERVED_KEYS = frozenset(
    (*COLUMNS, "line", "payout_id", "amount", "status", "psp_reference", "failure_code", "failure_message")
)

# Compiled once: a file has up to MAX_PAYOUTS lines and each is checked against these.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit: that also accepts '²' and Arabic-Indic digits
_DESTINATION = re.compile(r"ba_[A-Za-z0-9_]{1,200}")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_KEY_RULE = "must be 1 to 40 characters of A-Z, a-z, 0-9, '_', '.' and '-'"
_AMOUNT_MAX_DIGITS = len(str(MAX_AMOUNT_MINOR))


class PayoutFormat(StrEnum):
    CSV = "csv"
    XML = "xml"


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One valid payout of a batch file."""

    line: int  # 1-based physical line: the CSV row (the header is line 1) or the XML <payout> start tag
    seller_id: str
    amount: Money
    destination: str  # "" = the seller's registered destination
    metadata: dict[str, str]


class BatchInvalid(Exception):
    """The file is refused as a whole; `violations` lists its problems in file order, file-wide first."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(f"{first.field}: {first.description}{more}")
        self.violations = violations


class _Violations:
    """Collects a file's violations; keeps only the first MAX_VIOLATIONS so a response stays bounded."""

    def __init__(self) -> None:
        self.kept: list[FieldViolation] = []
        self.total = 0

    def add(self, field: str, description: str) -> None:
        self.total += 1
        if len(self.kept) < MAX_VIOLATIONS:
            self.kept.append(FieldViolation(field, description))

    def add_first(self, field: str, description: str) -> None:
        """For file-wide problems found only at the end (the payout count): they matter most."""
        self.total += 1
        self.kept.insert(0, FieldViolation(field, description))
        del self.kept[MAX_VIOLATIONS:]

    def raise_if_any(self) -> None:
        if self.total > MAX_VIOLATIONS:
            shown = self.kept[: MAX_VIOLATIONS - 1]
            left_out = self.total - len(shown)
            shown.append(FieldViolation("file", f"{left_out} more violations were left out"))
            raise BatchInvalid(shown)
        if self.kept:
            raise BatchInvalid(list(self.kept))


def content_sha256(content: bytes) -> str:
    """The SHA-256 of a batch file, hex: what tells a resubmitted file from a different one."""
    return hashlib.sha256(content).hexdigest()


def parse_batch(content: bytes, file_format: PayoutFormat) -> list[BatchLine]:
    """The payouts of a batch file in file order; raises BatchInvalid listing every problem found."""
    if len(content) > MAX_CONTENT_BYTES:
        raise BatchInvalid([FieldViolation("file", f"is {len(content)} bytes; at most {MAX_CONTENT_BYTES} allowed")])
    try:
        text = content.decode("utf-8-sig")  # Excel writes a BOM in front of UTF-8
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise BatchInvalid([FieldViolation("file", f"is not valid UTF-8 (line {line}, byte {error.start})")]) from None
    if not text.strip():
        raise BatchInvalid([FieldViolation("file", "is empty; it must contain at least one payout")])
    violations = _Violations()
    if file_format == PayoutFormat.CSV:
        lines, count = _parse_csv(text, violations)
    elif file_format == PayoutFormat.XML:
        lines, count = _XmlBatch(violations).parse(text)
    else:
        raise ValueError(f"unknown payout batch format {file_format!r}")
    if count == 0 and not violations.total:
        violations.add("file", "contains no payouts; at least one is required")
    elif count > MAX_PAYOUTS:
        violations.add_first("file", f"contains {count} payouts; at most {MAX_PAYOUTS} are allowed")
    violations.raise_if_any()
    return lines


def _shown(value: str) -> str:
    """`value` quoted for an error message, cut short: a violation echoes the file, not all of it."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"


def _payout(line: int, fields: dict[str, str], metadata: dict[str, str], violations: _Violations) -> BatchLine | None:
    """The payout of one line if its fields are valid; otherwise records each bad field and says None."""
    before = violations.total
    seller_id = fields.get("seller_id", "")
    if not seller_id:
        violations.add(f"line {line}: seller_id", "is required")
    elif len(seller_id) > SELLER_ID_MAX_LENGTH:
        violations.add(f"line {line}: seller_id", f"must be at most {SELLER_ID_MAX_LENGTH} characters")
    elif _CONTROL_CHARACTER.search(seller_id) or seller_id != seller_id.strip():
        violations.add(f"line {line}: seller_id", "must not contain control characters or surrounding spaces")
    amount_minor = _amount_minor(line, fields.get("amount_minor", ""), violations)
    currency = fields.get("currency", "")
    if not currency:
        violations.add(f"line {line}: currency", "is required")
    elif currency not in CURRENCY_EXPONENTS:
        violations.add(f"line {line}: currency", f"{_shown(currency)} is not a supported ISO 4217 code (e.g. 'USD')")
    destination = fields.get("destination", "")
    if destination and not _DESTINATION.fullmatch(destination):
        violations.add(
            f"line {line}: destination",
            f"{_shown(destination)} must be empty (the seller's registered destination) or 'ba_' followed by"
            " 1 to 200 of A-Z, a-z, 0-9 and '_'",
        )
    for key, value in metadata.items():
        if len(value) > METADATA_VALUE_MAX_LENGTH:
            violations.add(f"line {line}: {key}", f"must be at most {METADATA_VALUE_MAX_LENGTH} characters")
        elif _CONTROL_CHARACTER.search(value):
            violations.add(f"line {line}: {key}", "must not contain control characters")
    if violations.total != before or amount_minor is None:
        return None
    return BatchLine(line, seller_id, Money(amount_minor, currency), destination, metadata)


def _amount_minor(line: int, value: str, violations: _Violations) -> int | None:
    field = f"line {line}: amount_minor"
    if not value:
        violations.add(field, "is required")
    elif not _DIGITS.fullmatch(value):
        violations.add(
            field, f"{_shown(value)} must be a whole number of minor units: digits 0-9 only, no sign, point or spaces"
        )
    elif len(value.lstrip("0")) > _AMOUNT_MAX_DIGITS or not 1 <= int(value) <= MAX_AMOUNT_MINOR:
        violations.add(field, f"must be from 1 to {MAX_AMOUNT_MINOR} (got {_shown(value)})")
    else:
        return int(value)
    return None


def _metadata_key_problem(key: str) -> str | None:
    if not _METADATA_KEY.fullmatch(key):
        return f"metadata key {_shown(key)} {_KEY_RULE}"
    if key in RESERVED_KEYS:
        return f"metadata key {key!r} is reserved (a column of the batch or of its reports)"
    return None


# --- CSV -----------------------------------------------------------------------------------------------


def _non_blank_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each non-blank physical line with its 1-based number. One line is one record: a quoted field may
    not contain a line break, which keeps every reported line number the one an editor shows."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line.removesuffix("\r")


def _csv_fields(line: str) -> list[str]:
    try:
        return next(csv.reader((line,), strict=True))
    except csv.Error as error:
        if str(error) == "unexpected end of data":
            raise csv.Error("a quoted field is not closed (fields may not contain line breaks)") from None
        raise csv.Error(str(error).split(" - ")[0]) from None  # drop csv's hint about opening files


def _parse_csv(text: str, violations: _Violations) -> tuple[list[BatchLine], int]:
    lines = _non_blank_lines(text)
    header_number, header_line = next(lines)  # parse_batch refused a blank file
    try:
        names = [name.strip() for name in _csv_fields(header_line)]
    except csv.Error as error:
        violations.add("file", f"the header (line {header_number}) is not valid CSV: {error}")
        return [], 0
    if not _header_valid(names, header_number, violations):
        return [], 0  # rows cannot be read without knowing their columns
    column_of = {name: index for index, name in enumerate(names)}
    metadata_columns = [(index, name) for index, name in enumerate(names) if name not in COLUMNS]
    payouts: list[BatchLine] = []
    count = 0
    for number, line in lines:
        count += 1
        try:
            cells = _csv_fields(line)
        except csv.Error as error:
            violations.add(f"line {number}", f"is not valid CSV: {error}")
            continue
        if len(cells) != len(names):
            violations.add(f"line {number}", f"has {len(cells)} fields; the header has {len(names)}")
            continue
        fields = {name: cells[column_of[name]] for name in COLUMNS if name in column_of}
        # An empty cell is no value: CSV cannot tell it from an absent one, and XML omits absent ones.
        metadata = {name: cells[index] for index, name in metadata_columns if cells[index]}
        payout = _payout(number, fields, metadata, violations)
        if payout is not None:
            payouts.append(payout)
    return payouts, count


def _header_valid(names: list[str], line: int, violations: _Violations) -> bool:
    before = violations.total
    header = f"the header (line {line})"
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            violations.add("file", f"{header}: column {position} has no name")
        elif name in seen:
            violations.add("file", f"{header}: column {name!r} appears twice")
        elif name not in COLUMNS and (problem := _metadata_key_problem(name)):
            violations.add("file", f"{header}: column {position}: {problem}")
        seen.add(name)
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            violations.add("file", f"{header}: the required column {name!r} is missing")
    metadata_count = len(seen - set(COLUMNS) - {""})
    if metadata_count > MAX_METADATA_KEYS:
        violations.add("file", f"{header}: {metadata_count} metadata columns; at most {MAX_METADATA_KEYS} allowed")
    return violations.total == before


# --- XML -----------------------------------------------------------------------------------------------


class _Refused(Exception):
    """Stops the XML parser: the rest of the file cannot be read safely or meaningfully."""


class _XmlBatch:
    """Reads <payouts><payout ...><metadata key="..">value</metadata></payout></payouts> with expat,
    which gives the line of each start tag. Untrusted input: a DOCTYPE (the door to entity expansion
    and external entities) is refused, so only XML's five predefined entities are ever expanded."""

    def __init__(self, violations: _Violations) -> None:
        self.violations = violations
        self.parser = expat.ParserCreate(encoding="UTF-8")  # the text is already decoded UTF-8
        self.parser.buffer_text = True
        self.parser.StartDoctypeDeclHandler = self._doctype
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.open: list[str] = []  # "payouts", "payout", "metadata" or "ignored", outermost first
        self.payouts: list[BatchLine] = []
        self.count = 0
        self.payout_line = 0
        self.fields: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        self.metadata_key: str | None = None
        self.metadata_text: list[str] = []

    def parse(self, text: str) -> tuple[list[BatchLine], int]:
        try:
            self.parser.Parse(text, True)
        except expat.ExpatError as error:
            message = expat.errors.messages[error.code]
            self.violations.add(
                "file", f"is not well-formed XML: {message} (line {error.lineno}, column {error.offset + 1})"
            )
        except _Refused:
            pass
        return self.payouts, self.count

    def _doctype(self, name: str, *_: object) -> None:
        line = self.parser.CurrentLineNumber
        self.violations.add("file", f"has a DOCTYPE (line {line}); DTDs and entity declarations are not accepted")
        raise _Refused

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        line = self.parser.CurrentLineNumber
        parent = self.open[-1] if self.open else None
        kind = {None: "payouts", "payouts": "payout", "payout": "metadata"}.get(parent)
        if parent is None and name != kind:
            self.violations.add("file", f"the root element must be <payouts>, not <{name}> (line {line})")
            raise _Refused
        if kind is None or name != kind:
            if parent != "ignored":  # one violation per unknown element, not one per descendant
                self.violations.add(f"line {line}", f"unexpected element <{name}> inside <{parent}>")
            self.open.append("ignored")
            return
        self.open.append(kind)
        if kind == "payouts":
            for attribute in attributes:
                self.violations.add(f"line {line}: {attribute}", "is not an attribute of <payouts>")
        elif kind == "payout":
            self.count += 1
            self.payout_line, self.fields, self.metadata = line, {}, {}
            for attribute, value in attributes.items():
                if attribute in COLUMNS:
                    self.fields[attribute] = value
                else:
                    self.violations.add(f"line {line}: {attribute}", "is not an attribute of <payout>")
        elif kind == "metadata":
            # Problems of a payout's values name the payout's line, the line its report row shows.
            self.metadata_key, self.metadata_text = attributes.get("key"), []
            for attribute in attributes.keys() - {"key"}:
                self.violations.add(f"line {self.payout_line}: {attribute}", "is not an attribute of <metadata>")

    def _text(self, data: str) -> None:
        kind = self.open[-1] if self.open else None
        if kind == "metadata":
            self.metadata_text.append(data)
        elif kind in {"payouts", "payout"} and data.strip():
            self.violations.add(f"line {self.parser.CurrentLineNumber}", f"unexpected text inside <{kind}>")

    def _end(self, name: str) -> None:
        kind = self.open.pop()
        if kind == "metadata":
            self._end_metadata()
        elif kind == "payout":
            line = self.payout_line
            if len(self.metadata) > MAX_METADATA_KEYS:
                self.violations.add(
                    f"line {line}: metadata", f"has {len(self.metadata)} keys; at most {MAX_METADATA_KEYS} allowed"
                )
            # Checked even after a violation so that every problem is listed; any one refuses the file.
            if (payout := _payout(line, self.fields, self.metadata, self.violations)) is not None:
                self.payouts.append(payout)

    def _end_metadata(self) -> None:
        field, key, value = f"line {self.payout_line}: metadata", self.metadata_key, "".join(self.metadata_text)
        if key is None:
            self.violations.add(field, "needs a key attribute")
        elif problem := _metadata_key_problem(key):
            self.violations.add(field, problem)
        elif key in self.metadata:
            self.violations.add(field, f"key {key!r} appears twice in this payout")
        elif value:  # like an empty CSV cell: no value
            self.metadata[key] = value
