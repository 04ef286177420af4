"""ISO 20022 camt.053 bank statements (camt.053.001.02 to .08) as settlement lines, streamed with expat.

What a line means: a statement entry (`Ntry`) is money into (CRDT) or out of (DBIT) the platform's own
bank account, not a PSP object. A credit is usually a PSP payout arriving, a debit a transfer we sent, but
the file does not say which, so every entry is `LineKind.ADJUSTMENT` unless its bank transaction code
says it is the bank's own charge (sub-family CHRG, FEES, COMM or COMT: `LineKind.FEE`). Reconciliation
matches bank credits against PSP payouts by amount, date and reference, never by kind (so, unlike the
hints in `LineKind`, a credit is not called a charge nor a debit a payout here). The format's own
words are kept: `raw_type` is the CdtDbtInd ("CRDT", "DBIT", plus "/RVSL" for a reversal) and
`details["bank_transaction_code"]` the BkTxCd ("PMNT/RCDT/ESCT", or the proprietary code).

Signs: `gross_minor` is +Amt for CRDT and -Amt for DBIT; a reversal keeps its own indicator's sign, as
the bank applies it. The bank's charges are separate entries, so `fee_minor` is 0 and `net_minor` equals
`gross_minor` (charges written inside an entry, `Chrgs`, are only echoed in `details["charges"]`).

References: `psp_reference` is the bank's AcctSvcrRef, which is NOT unique (a camt.054 may share it);
`merchant_reference` is the first EndToEndId that is not "NOTPROVIDED", else the first structured
creditor reference (RmtInf/Strd/CdtrRefInf/Ref), else "". A lump-sum entry with many TxDtls is one
line: its ids are comma-joined in `details`, its count in `details["tx_count"]`. Details that the entry
does not have are left out rather than set to "".

Balance check, per statement and currency: opening (OPBD, else PRCD) + the signed booked (BOOK) entries =
closing (CLBD). Pending and informational entries do not count, quarantined ones cannot; a statement
without an opening or a closing balance gets no check.

Untrusted input: a DOCTYPE or entity declaration is refused before anything is expanded (no external
entities, no "billion laughs"), as are text fields and nesting far beyond what camt.053 allows.
Constant memory: expat is fed 64 KiB at a time, and only the current direct child of a `Stmt` (its Id,
Acct, one Bal or one Ntry) is held as a small tree; each TxDtls is folded into a few strings as it closes,
so only a lump sum's own references grow with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import BinaryIO
from xml.parsers import expat

from services.reconciliation.parsing.amounts import AmountError, currency_of, minor_units
from services.reconciliation.parsing.model import BalanceCheck, FileRejected, LineKind, Quarantined, SettlementLine

CHUNK_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096  # the longest camt.053 text (AddtlNtryInf) is 500 characters
MAX_DEPTH = 64  # camt.053 nests about 12 levels deep
MAX_NAMES_CACHED = 1024  # camt.053.001.08 has a few hundred element names
MAX_REMITTANCE_CHARS = 500
MAX_RAW_CHARS = 200

NOT_PROVIDED = "NOTPROVIDED"  # what banks write where the payer gave no end-to-end id
BOOKED = "BOOK"
OPENING_TYPES = ("OPBD", "PRCD")  # in order of preference: opening booked, else previously closed booked
CLOSING_TYPE = "CLBD"
FEE_SUBFAMILIES = frozenset({"CHRG", "FEES", "COMM", "COMT"})  # ISO bank transaction sub-families
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:\d{2})?$")  # xs:date allows a zone; a day is a day

# Depth of each element the reader cares about: Document / BkToCstmrStmt / Stmt / (Id, Acct, Bal, Ntry).
_STATEMENT_DEPTH = 2
_STATEMENT_CHILD_DEPTH = 3


class Camt053Parser:
    """Reads one camt.053 file; `checks` holds one BalanceCheck per statement and currency once parsed."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        assert chunk_bytes > 0
        self._chunk_bytes = chunk_bytes
        self._checks: list[BalanceCheck] = []

    @property
    def checks(self) -> list[BalanceCheck]:
        return list(self._checks)

    def parse(self, stream: BinaryIO) -> Iterator[SettlementLine | Quarantined]:
        self._checks = []
        reader = _Reader(self._checks)
        while chunk := stream.read(self._chunk_bytes):
            reader.feed(chunk, final=False)
            yield from reader.drain()
        reader.feed(b"", final=True)
        yield from reader.drain()


class _BadData(Exception):
    """One entry or balance cannot be read; the rest of the file can."""

    def __init__(self, reason: str, raw: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw[:MAX_RAW_CHARS]


@dataclass(slots=True)
class _Node:
    """One element of the subtree being read, by local name."""

    name: str
    attributes: dict[str, str]
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def find(self, path: str) -> _Node | None:
        """The first descendant along `path` ("Tp/CdOrPrtry/Cd"), each step taking the first match."""
        node = self
        for name in path.split("/"):
            for child in node.children:
                if child.name == name:
                    node = child
                    break
            else:
                return None
        return node

    def value(self, path: str = "") -> str:
        """The stripped text at `path` (this element's own when empty), "" when absent."""
        node = self.find(path) if path else self
        return node.text.strip() if node is not None else ""

    def all(self, name: str) -> list[_Node]:
        return [child for child in self.children if child.name == name]


@dataclass(frozen=True, slots=True)
class _Transaction:
    """What a line keeps of one TxDtls, so a lump sum of thousands holds strings, not trees."""

    end_to_end_id: str
    tx_id: str
    remittance: tuple[str, ...]
    creditor_reference: str
    return_reason: str


@dataclass(slots=True)
class _Statement:
    line: int
    statement_id: str = ""
    account: str = ""
    balances: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, currency) → signed minor
    booked_minor: dict[str, int] = field(default_factory=dict)  # currency → Σ signed booked entries

    @property
    def scope_id(self) -> str:
        return self.statement_id or f"at line {self.line}"


class _Reader:
    """The expat callbacks: checks the document is a camt.053, reads each Stmt child as it closes."""

    def __init__(self, checks: list[BalanceCheck]) -> None:
        self._parser = expat.ParserCreate(namespace_separator=" ")
        self._parser.buffer_text = True
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartDoctypeDeclHandler = self._refuse_doctype
        self._parser.EntityDeclHandler = self._refuse_entity
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._text
        self._checks = checks
        self._names: list[str] = []  # local names of the open elements above any Stmt child, outermost first
        self._open: list[_Node] = []  # the open elements of the Stmt child being read, outermost first
        self._local_names: dict[str, str] = {}  # qualified → local: the handlers run per element
        self._transactions: list[_Transaction] = []  # of the Ntry being read
        self._statement = _Statement(line=0)
        self._saw_statements = False
        self._output: list[SettlementLine | Quarantined] = []
        self._last_line = 0

    def feed(self, data: bytes, *, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as error:
            message = expat.errors.messages[error.code]
            raise FileRejected(
                f"not well-formed (or truncated) XML at line {error.lineno}, column {error.offset + 1}: {message}"
            ) from None
        if final and not self._saw_statements:
            raise FileRejected("not a camt.053 statement: <Document> holds no <BkToCstmrStmt>")

    def drain(self) -> list[SettlementLine | Quarantined]:
        output, self._output = self._output, []
        return output

    def _refuse_doctype(self, name: str, *_: object) -> None:
        line = self._parser.CurrentLineNumber
        raise FileRejected(f"a DOCTYPE at line {line}: DTDs and entity declarations are not accepted")

    def _refuse_entity(self, name: str, *_: object) -> None:
        line = self._parser.CurrentLineNumber
        raise FileRejected(f"an entity declaration ({name}) at line {line}: entity declarations are not accepted")

    def _start(self, qualified_name: str, attributes: dict[str, str]) -> None:
        name = self._local(qualified_name)
        line = self._parser.CurrentLineNumber
        if len(self._names) + len(self._open) >= MAX_DEPTH:
            raise FileRejected(f"<{name}> at line {line} is nested deeper than {MAX_DEPTH} elements")
        if self._open:  # inside a Stmt child: by far the most frequent case, so handled first
            # Attributes are read only by name (Ccy), never namespaced, so they are kept as given.
            node = _Node(name, attributes, line)
            parent = self._open[-1]
            parent.text = ""  # camt.053 has no mixed content: a parent's text is indentation, and must not add up
            parent.children.append(node)
            self._open.append(node)
            return
        depth = len(self._names)
        if depth == 0 and name != "Document":
            raise FileRejected(f"not a camt.053 statement: the root element is <{name}>, not <Document>")
        if depth == 1:
            if name != "BkToCstmrStmt":
                raise FileRejected(f"not a camt.053 statement: <Document> holds <{name}> (line {line})")
            self._saw_statements = True
        if depth == _STATEMENT_DEPTH and name == "Stmt":
            self._statement = _Statement(line=line)
        elif depth == _STATEMENT_CHILD_DEPTH and self._names[-1] == "Stmt":
            self._open.append(_Node(name, attributes, line))
            self._transactions = []
            return
        self._names.append(name)

    def _end(self, qualified_name: str) -> None:
        if self._open:
            node = self._open.pop()
            if not self._open:
                self._read_statement_child(node)
            elif node.name == "TxDtls" and self._open[0].name == "Ntry":
                # Fold it now: a lump-sum entry may carry thousands of transactions.
                removed = self._open[-1].children.pop()
                assert removed is node
                self._transactions.append(_transaction(node))
            return
        name = self._names.pop()
        if name == "Stmt" and len(self._names) == _STATEMENT_DEPTH:
            self._close_statement()

    def _local(self, qualified_name: str) -> str:
        """ "urn:iso:...:camt.053.001.08 Ntry" → "Ntry": every version is read alike."""
        name = self._local_names.get(qualified_name)
        if name is None:
            name = qualified_name.rpartition(" ")[2]
            if len(self._local_names) < MAX_NAMES_CACHED:  # a hostile file may use endless names
                self._local_names[qualified_name] = name
        return name

    def _text(self, data: str) -> None:
        if not self._open:
            return
        node = self._open[-1]
        if len(node.text) + len(data) > MAX_TEXT_CHARS:
            raise FileRejected(f"<{node.name}> at line {node.line} has more than {MAX_TEXT_CHARS} characters")
        node.text += data

    def _read_statement_child(self, node: _Node) -> None:
        statement = self._statement
        if node.name == "Id":
            statement.statement_id = node.value()
        elif node.name == "Acct":
            statement.account = node.value("Id/IBAN") or node.value("Id/Othr/Id")
        elif node.name == "Bal":
            self._read_balance(node)
        elif node.name == "Ntry":
            self._output.append(self._read_entry(node))

    def _line_of(self, node: _Node) -> int:
        """The line the element starts on, or the next free number when an earlier one started there too:
        minified XML puts every entry on one line, and each stored line needs a number of its own."""
        self._last_line = max(node.line, self._last_line + 1)
        return self._last_line

    def _read_balance(self, node: _Node) -> None:
        balance_type = node.value("Tp/CdOrPrtry/Cd")
        if balance_type not in (*OPENING_TYPES, CLOSING_TYPE):
            return  # available and interim balances (CLAV, FWAV, ITBD) are not part of the check
        try:
            currency, amount_minor, _ = _signed_amount(node)
        except _BadData as bad:
            self._output.append(Quarantined(self._line_of(node), f"Bal {balance_type}: {bad.reason}", bad.raw))
            return
        self._statement.balances.setdefault((balance_type, currency), amount_minor)

    def _read_entry(self, node: _Node) -> SettlementLine | Quarantined:
        try:
            currency, gross_minor, indicator = _signed_amount(node)
            reversal = _boolean(node, "RvslInd")
            status = _status(node)
            occurred_at = _occurred_at(node)
        except _BadData as bad:
            return Quarantined(self._line_of(node), f"Ntry: {bad.reason}", bad.raw)
        statement = self._statement
        if status == BOOKED:
            statement.booked_minor[currency] = statement.booked_minor.get(currency, 0) + gross_minor
        code, proprietary_code, sub_family = _bank_transaction_code(node)
        end_to_end_ids = [t.end_to_end_id for t in self._transactions if t.end_to_end_id not in ("", NOT_PROVIDED)]
        creditor_references = [t.creditor_reference for t in self._transactions if t.creditor_reference]
        details = {
            "acct_svcr_ref": node.value("AcctSvcrRef"),
            "bank_transaction_code": code,
            "bank_transaction_code_proprietary": proprietary_code,
            "end_to_end_ids": ",".join(end_to_end_ids),
            "tx_ids": ",".join(t.tx_id for t in self._transactions if t.tx_id),
            "remittance": " | ".join(u for t in self._transactions for u in t.remittance)[:MAX_REMITTANCE_CHARS],
            "addtl_ntry_inf": node.value("AddtlNtryInf"),
            "statement_id": statement.statement_id,
            "account": statement.account,
            "batch_nb_of_txs": node.value("NtryDtls/Btch/NbOfTxs"),
            "batch_ttl_amt": node.value("NtryDtls/Btch/TtlAmt"),
            "return_reason": ",".join(dict.fromkeys(t.return_reason for t in self._transactions if t.return_reason)),
            "charges": _charges(node),
            "tx_count": str(len(self._transactions)),
        }
        return SettlementLine(
            line=self._line_of(node),
            kind=LineKind.FEE if sub_family in FEE_SUBFAMILIES else LineKind.ADJUSTMENT,
            raw_type=f"{indicator}/RVSL" if reversal else indicator,
            psp_reference=node.value("AcctSvcrRef"),
            merchant_reference=(end_to_end_ids or creditor_references or [""])[0],
            currency=currency,
            gross_minor=gross_minor,
            fee_minor=0,
            net_minor=gross_minor,
            occurred_at=occurred_at,
            batch=statement.statement_id,
            status=status,
            details={key: value for key, value in details.items() if value},
        )

    def _close_statement(self) -> None:
        statement = self._statement
        for (balance_type, currency), closing_minor in statement.balances.items():
            if balance_type != CLOSING_TYPE:
                continue
            openings = [statement.balances.get((kind, currency)) for kind in OPENING_TYPES]
            opening_minor = next((amount for amount in openings if amount is not None), None)
            if opening_minor is None:
                continue
            self._checks.append(
                BalanceCheck(
                    scope=f"statement {statement.scope_id} {currency}",
                    currency=currency,
                    expected_minor=closing_minor,
                    actual_minor=opening_minor + statement.booked_minor.get(currency, 0),
                )
            )


def _signed_amount(node: _Node) -> tuple[str, int, str]:
    """(currency, signed minor units, CdtDbtInd) of an Ntry or Bal: DBIT is negative."""
    amount = node.find("Amt")
    if amount is None:
        raise _BadData("no Amt")
    written = f'<Amt Ccy="{amount.attributes.get("Ccy", "")}">{amount.value()}</Amt>'
    if "Ccy" not in amount.attributes:
        raise _BadData("Amt has no Ccy", written)
    try:
        currency = currency_of(amount.attributes["Ccy"])
        amount_minor = minor_units(amount.value(), currency)
    except AmountError as error:
        raise _BadData(f"Amt {error}", written) from None
    if amount.value().startswith("-"):
        raise _BadData("Amt is negative; camt.053 writes the direction in CdtDbtInd", written)
    indicator = node.value("CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise _BadData(f"CdtDbtInd {indicator!r} is neither CRDT nor DBIT", indicator)
    return currency, amount_minor if indicator == "CRDT" else -amount_minor, indicator


def _boolean(node: _Node, path: str) -> bool:
    text = node.value(path)
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise _BadData(f"{path} {text!r} is not a boolean", text)


def _status(node: _Node) -> str:
    """BOOK, PDNG, INFO, ...: plain text up to .06, `Sts/Cd` (or `Sts/Prtry`) from .07."""
    status = node.find("Sts")
    text = (status.value("Cd") or status.value("Prtry") or status.value()) if status is not None else ""
    if not text:
        raise _BadData("no Sts (entry status)")
    return text


def _occurred_at(node: _Node) -> datetime | None:
    """BookgDt, else ValDt, in UTC: a date is its midnight UTC, a DtTm without an offset is taken as UTC."""
    for path in ("BookgDt", "ValDt"):
        when = node.find(path)
        if when is None:
            continue
        if date_time := when.value("DtTm"):
            try:
                parsed = datetime.fromisoformat(date_time)
            except ValueError:
                raise _BadData(f"{path}/DtTm {date_time!r} is not an ISO 8601 date-time", date_time) from None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        day = when.value("Dt")
        if (midnight := _midnight_utc(day)) is None:
            raise _BadData(f"{path} has no valid Dt or DtTm", day)
        return midnight
    return None


def _midnight_utc(day: str) -> datetime | None:
    """ "2026-11-20" (a zone may follow; a booking day is a day) → 2026-11-20T00:00Z, None if not a date."""
    match = _DATE.match(day)
    try:
        return datetime.combine(date.fromisoformat(match.group(1)), time(), UTC) if match else None
    except ValueError:  # shaped like a date, but not one: 2026-02-30
        return None


def _bank_transaction_code(node: _Node) -> tuple[str, str, str]:
    """(code, proprietary code when both are written, sub-family): "PMNT/RCDT/ESCT" or the Prtry/Cd."""
    code = node.find("BkTxCd")
    if code is None:
        return "", "", ""
    sub_family = code.value("Domn/Fmly/SubFmlyCd")
    domain = "/".join(part for part in (code.value("Domn/Cd"), code.value("Domn/Fmly/Cd"), sub_family) if part)
    proprietary = code.value("Prtry/Cd")
    return (domain, proprietary, sub_family) if domain else (proprietary, "", "")


def _charges(node: _Node) -> str:
    """Charges written in the entry: `Chrgs/Amt` (up to .03) or `Chrgs/Rcrd/Amt` (from .04), as "1.50 EUR"."""
    amounts = [
        amount
        for charges in node.all("Chrgs")
        for holder in (charges, *charges.all("Rcrd"))
        if (amount := holder.find("Amt")) is not None
    ]
    return ", ".join(f"{amount.value()} {amount.attributes.get('Ccy', '')}".strip() for amount in amounts)


def _transaction(node: _Node) -> _Transaction:
    information = node.find("RmtInf")
    if information is None:
        remittance: tuple[str, ...] = ()
        structured: list[_Node] = []
    else:
        remittance = tuple(text for ustrd in information.all("Ustrd") if (text := ustrd.value()))
        structured = information.all("Strd")
    creditor_reference = next((ref for strd in structured if (ref := strd.value("CdtrRefInf/Ref"))), "")
    return _Transaction(
        end_to_end_id=node.value("Refs/EndToEndId"),
        tx_id=node.value("Refs/TxId"),
        remittance=remittance,
        creditor_reference=creditor_reference,
        return_reason=node.value("RtrInf/Rsn/Cd") or node.value("RtrInf/Rsn/Prtry"),
    )
