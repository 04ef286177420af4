"""camt.053 statements: exact lines from .02 to .08, quarantined entries, balance checks, hostile and
broken files refused, and a 200,000-entry statement read in constant memory."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.reconciliation.parsing.camt053 import MAX_TEXT_CHARS, Camt053Parser
from services.reconciliation.parsing.model import (
    BalanceCheck,
    FileRejected,
    LineKind,
    Quarantined,
    SettlementLine,
    SettlementParser,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settlement" / "camt053"
NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"

Parsed = tuple[list[SettlementLine | Quarantined], list[BalanceCheck]]


def parse_bytes(data: bytes, chunk_bytes: int = 64 * 1024) -> Parsed:
    parser = Camt053Parser(chunk_bytes=chunk_bytes)
    items = list(parser.parse(io.BytesIO(data)))
    return items, parser.checks


def parse_fixture(name: str) -> Parsed:
    parser = Camt053Parser()
    with (FIXTURES / name).open("rb") as stream:
        items = list(parser.parse(stream))
    return items, parser.checks


def rejection(data: bytes) -> str:
    with pytest.raises(FileRejected) as rejected:
        parse_bytes(data)
    return str(rejected.value)


def midnight(day: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def test_the_parser_is_a_settlement_parser() -> None:
    parser: SettlementParser = Camt053Parser()
    assert parser.checks == []


# --- camt.053.001.02: Sts as text, dates as Dt ---------------------------------------------------------


def test_v02_statement_entries_are_read_exactly() -> None:
    items, _ = parse_fixture("statement_v02_balanced.xml")
    statement = {"statement_id": "STMT-2026-11-20-EUR", "account": "DE89370400440532013000"}
    assert items == [
        SettlementLine(
            line=75,
            kind=LineKind.ADJUSTMENT,
            raw_type="CRDT",
            psp_reference="2026112000123",
            merchant_reference="po_1QabcDEF2345",
            currency="EUR",
            gross_minor=250_000,
            fee_minor=0,
            net_minor=250_000,
            occurred_at=midnight(20),
            batch="STMT-2026-11-20-EUR",
            status="BOOK",
            details={
                "acct_svcr_ref": "2026112000123",
                "bank_transaction_code": "PMNT/RCDT/ESCT",
                "bank_transaction_code_proprietary": "NTRF+166",
                "end_to_end_ids": "po_1QabcDEF2345",
                "tx_ids": "STRIPE-TX-88123",
                "remittance": "STRIPE PAYOUT | ST-R4X9Y2Z1",
                "addtl_ntry_inf": "SEPA CREDIT TRANSFER STRIPE PAYMENTS EUROPE LTD",
                **statement,
                "tx_count": "1",
            },
        ),
        # EndToEndId NOTPROVIDED: the structured creditor reference is the merchant reference.
        SettlementLine(
            line=125,
            kind=LineKind.ADJUSTMENT,
            raw_type="DBIT",
            psp_reference="2026112000124",
            merchant_reference="RF18539007547034",
            currency="EUR",
            gross_minor=-15_000,
            fee_minor=0,
            net_minor=-15_000,
            occurred_at=midnight(20),
            batch="STMT-2026-11-20-EUR",
            status="BOOK",
            details={
                "acct_svcr_ref": "2026112000124",
                "bank_transaction_code": "PMNT/ICDT/ESCT",
                **statement,
                "charges": "0.50 EUR",
                "tx_count": "1",
            },
        ),
        # The bank's own charge (sub-family CHRG) is a fee, still a signed debit of the account.
        SettlementLine(
            line=171,
            kind=LineKind.FEE,
            raw_type="DBIT",
            psp_reference="2026112000125",
            merchant_reference="",
            currency="EUR",
            gross_minor=-433,
            fee_minor=0,
            net_minor=-433,
            occurred_at=midnight(20),
            batch="STMT-2026-11-20-EUR",
            status="BOOK",
            details={
                "acct_svcr_ref": "2026112000125",
                "bank_transaction_code": "ACMT/MDOP/CHRG",
                "addtl_ntry_inf": "Account maintenance fee November 2026",
                **statement,
                "tx_count": "0",
            },
        ),
    ]


def test_v02_statement_balances_from_opening_and_closing_booked() -> None:
    _, checks = parse_fixture("statement_v02_balanced.xml")
    assert checks == [BalanceCheck("statement STMT-2026-11-20-EUR EUR", "EUR", 1_234_567, 1_234_567)]
    assert checks[0].balanced


# --- camt.053.001.08: Sts/Cd, DtTm, batch, reversal, pending ---------------------------------------------


def v08_lines() -> list[SettlementLine]:
    items, _ = parse_fixture("statement_v08_batch_reversal_pending.xml")
    assert all(isinstance(item, SettlementLine) for item in items)
    return [item for item in items if isinstance(item, SettlementLine)]


def test_v08_batch_entry_is_one_line_with_its_transactions_in_details() -> None:
    assert v08_lines()[0] == SettlementLine(
        line=54,
        kind=LineKind.ADJUSTMENT,
        raw_type="CRDT",
        psp_reference="NL-20261121-0001",
        merchant_reference="pay_7d41e0",  # the first end-to-end id that is not NOTPROVIDED
        currency="EUR",
        gross_minor=120_000,
        fee_minor=0,
        net_minor=120_000,
        occurred_at=datetime(2026, 11, 21, 8, 30, tzinfo=UTC),  # 09:30+01:00
        batch="STMT-20261121-01",
        status="BOOK",
        details={
            "acct_svcr_ref": "NL-20261121-0001",
            "bank_transaction_code": "PMNT/RCDT/ESCT",
            "end_to_end_ids": "pay_7d41e0,pay_7d41e1",
            "tx_ids": "ABNA-TX-0001,ABNA-TX-0002,ABNA-TX-0003",
            "remittance": "Invoice 2026-118 | Order 4411 | Order 4412",
            "addtl_ntry_inf": "SEPA BATCH CREDIT 3 TXS",
            "statement_id": "STMT-20261121-01",
            "account": "NL91ABNA0417164300",
            "batch_nb_of_txs": "3",
            "batch_ttl_amt": "1200.00",
            "tx_count": "3",
        },
    )


def test_v08_reversal_keeps_its_own_indicator_sign_and_return_reason() -> None:
    reversal = v08_lines()[1]
    assert reversal == SettlementLine(
        line=119,
        kind=LineKind.ADJUSTMENT,
        raw_type="DBIT/RVSL",
        psp_reference="NL-20261121-0001",  # the bank reused the batch's AcctSvcrRef: not unique
        merchant_reference="pay_7d41e0",
        currency="EUR",
        gross_minor=-40_000,
        fee_minor=0,
        net_minor=-40_000,
        occurred_at=datetime(2026, 11, 21, 14, 5, 10, tzinfo=UTC),  # DtTm without offset: UTC
        batch="STMT-20261121-01",
        status="BOOK",
        details={
            "acct_svcr_ref": "NL-20261121-0001",
            "bank_transaction_code": "PMNT/RCDT/RRTN",
            "end_to_end_ids": "pay_7d41e0",
            "statement_id": "STMT-20261121-01",
            "account": "NL91ABNA0417164300",
            "return_reason": "AC04",
            "tx_count": "1",
        },
    )


def test_v08_pending_entry_is_yielded_with_value_date_but_not_booked() -> None:
    pending = v08_lines()[2]
    assert (pending.line, pending.status, pending.gross_minor) == (157, "PDNG", 99_999)
    assert pending.occurred_at == midnight(23)  # no BookgDt: the value date


def test_v08_proprietary_code_charges_and_negative_offset() -> None:
    entry = v08_lines()[3]
    assert (entry.line, entry.kind, entry.raw_type, entry.gross_minor) == (178, LineKind.ADJUSTMENT, "DBIT", -4975)
    assert entry.occurred_at == datetime(2026, 11, 22, 4, 30, 0, 250_000, tzinfo=UTC)  # 23:30:00.250-05:00
    assert entry.details["bank_transaction_code"] == "NMSC+808"
    assert entry.details["charges"] == "2.00 EUR, 0.50 EUR"
    assert entry.fee_minor == 0 and entry.net_minor == entry.gross_minor


def test_v08_second_statement_reads_an_othr_account_and_a_bare_entry() -> None:
    assert v08_lines()[4] == SettlementLine(
        line=247,
        kind=LineKind.ADJUSTMENT,
        raw_type="CRDT",
        psp_reference="",
        merchant_reference="",
        currency="EUR",
        gross_minor=7500,
        fee_minor=0,
        net_minor=7500,
        occurred_at=midnight(21),
        batch="STMT-20261121-02",
        status="BOOK",
        details={
            "addtl_ntry_inf": "INTEREST CREDIT",
            "statement_id": "STMT-20261121-02",
            "account": "0012345678",
            "tx_count": "0",
        },
    )


def test_v08_checks_leave_out_pending_and_count_the_reversal() -> None:
    _, checks = parse_fixture("statement_v08_batch_reversal_pending.xml")
    assert checks == [
        BalanceCheck("statement STMT-20261121-01 EUR", "EUR", 575_025, 575_025),  # 5000 + 1200 - 400 - 49.75
        BalanceCheck("statement STMT-20261121-02 EUR", "EUR", 7500, 7500),
    ]


# --- balance checks ----------------------------------------------------------------------------------


def test_unbalanced_statement_is_reported_from_prcd_and_a_debit_opening() -> None:
    items, checks = parse_fixture("statement_unbalanced.xml")
    assert [(item.line, item.gross_minor, item.status) for item in items if isinstance(item, SettlementLine)] == [
        (40, 5000, "BOOK"),
        (49, -2000, "BOOK"),
        (58, 1000, "INFO"),  # yielded, but not part of the balance
    ]
    # PRCD 100.00 DBIT + 50.00 - 20.00 = -70.00, while CLBD says 60.00 DBIT.
    assert checks == [BalanceCheck("statement GB-20261123 GBP", "GBP", -6000, -7000)]
    assert not checks[0].balanced


def test_two_statements_two_currencies_prefixed_namespace_v04() -> None:
    items, checks = parse_fixture("two_statements_two_currencies.xml")
    assert [
        (item.line, item.currency, item.gross_minor, item.batch, item.details["account"], item.occurred_at)
        for item in items
        if isinstance(item, SettlementLine)
    ] == [
        (42, "USD", 25_010, "USD-2026-11-20", "US-000123456789", datetime(2026, 11, 20, 20, 45, tzinfo=UTC)),
        (86, "JPY", 120_000, "JPY-2026-11-20", "JP-000987654321", midnight(20)),
        (95, "JPY", -20_000, "JPY-2026-11-20", "JP-000987654321", midnight(20)),  # "20000.00" in JPY
    ]
    assert checks == [
        BalanceCheck("statement USD-2026-11-20 USD", "USD", 125_010, 125_010),
        BalanceCheck("statement JPY-2026-11-20 JPY", "JPY", 600_000, 600_000),
    ]


def test_statement_without_closing_balance_gets_no_check() -> None:
    _, checks = parse_fixture("bad_entries.xml")
    assert checks == []


# --- quarantine --------------------------------------------------------------------------------------


def test_five_decimals_zeros_accepted_digits_quarantined_and_the_gap_shows() -> None:
    items, checks = parse_fixture("five_decimals.xml")
    accepted, refused = items
    assert isinstance(accepted, SettlementLine)
    assert (accepted.line, accepted.gross_minor, accepted.currency) == (39, 1234, "EUR")  # 12.34000
    assert refused == Quarantined(
        50,
        "Ntry: Amt '10.12345' has more decimals than EUR has minor units (2)",
        '<Amt Ccy="EUR">10.12345</Amt>',
    )
    assert checks == [BalanceCheck("statement DEC-2026-11-20 EUR", "EUR", 12_246, 11_234)]


def test_bad_entries_are_quarantined_and_the_rest_is_read() -> None:
    items, _ = parse_fixture("bad_entries.xml")
    good = [item for item in items if isinstance(item, SettlementLine)]
    assert [(item.line, item.psp_reference, item.gross_minor) for item in good] == [(53, "GOOD-AMONG-BAD", -700)]
    assert [item for item in items if isinstance(item, Quarantined)] == [
        Quarantined(15, "Bal OPBD: Amt '1,00' is not a decimal amount", '<Amt Ccy="EUR">1,00</Amt>'),
        Quarantined(27, "Ntry: no Amt"),
        Quarantined(35, "Ntry: CdtDbtInd 'CRED' is neither CRDT nor DBIT", "CRED"),
        Quarantined(44, "Ntry: Amt 'XYZ' is not a supported ISO 4217 currency", '<Amt Ccy="XYZ">5.00</Amt>'),
        Quarantined(
            62, "Ntry: Amt is negative; camt.053 writes the direction in CdtDbtInd", '<Amt Ccy="EUR">-3.00</Amt>'
        ),
        Quarantined(71, "Ntry: BookgDt has no valid Dt or DtTm", "2026-02-30"),
        Quarantined(80, "Ntry: RvslInd 'yes' is not a boolean", "yes"),
        Quarantined(87, "Ntry: no Sts (entry status)"),
    ]


def test_amount_without_currency_is_quarantined() -> None:
    items, _ = parse_bytes(statement_with("<Amt>1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"))
    assert items == [Quarantined(3, "Ntry: Amt has no Ccy", '<Amt Ccy="">1.00</Amt>')]


def test_lump_sum_of_1000_indented_transactions_is_one_line() -> None:
    transactions = "".join(
        f"\n      <TxDtls>\n        <Refs><EndToEndId>E{n}</EndToEndId><TxId>T{n}</TxId></Refs>\n"
        f"        <RmtInf><Ustrd>{'x' * 100}</Ustrd></RmtInf>\n      </TxDtls>"
        for n in range(1000)
    )
    entry = f'<Amt Ccy="EUR">1</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><NtryDtls>{transactions}\n</NtryDtls>'
    (line,), _ = parse_bytes(statement_with(entry))
    assert isinstance(line, SettlementLine)
    assert (line.line, line.merchant_reference, line.gross_minor) == (3, "E0", 100)
    assert line.details["tx_count"] == "1000"
    assert line.details["end_to_end_ids"] == ",".join(f"E{n}" for n in range(1000))
    assert line.details["tx_ids"] == ",".join(f"T{n}" for n in range(1000))
    assert line.details["remittance"] == " | ".join(["x" * 100] * 5)[:500]  # truncated to 500 characters


def statement_with(entry: str) -> bytes:
    """A one-entry statement whose Ntry starts on line 3."""
    return (
        f'<Document xmlns="{NS}"><BkToCstmrStmt>\n<Stmt><Id>S1</Id>\n<Ntry>{entry}</Ntry>\n'
        "</Stmt></BkToCstmrStmt></Document>\n"
    ).encode()


# --- the stream: chunk boundaries, line endings, BOM ---------------------------------------------------


@pytest.mark.parametrize("name", ["statement_v02_balanced.xml", "statement_v08_batch_reversal_pending.xml"])
def test_chunk_size_line_endings_and_bom_change_nothing(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    expected = parse_fixture(name)
    assert parse_bytes(data, chunk_bytes=1) == expected
    assert parse_bytes(data, chunk_bytes=7) == expected
    assert parse_bytes(data.replace(b"\n", b"\r\n"), chunk_bytes=4096) == expected
    assert parse_bytes(b"\xef\xbb\xbf" + data) == expected


def test_checks_restart_with_each_parse() -> None:
    parser = Camt053Parser()
    data = (FIXTURES / "statement_v02_balanced.xml").read_bytes()
    for _ in range(2):
        list(parser.parse(io.BytesIO(data)))
        assert len(parser.checks) == 1


# --- files refused as a whole ------------------------------------------------------------------------


def test_billion_laughs_is_refused_at_the_doctype() -> None:
    message = rejection((FIXTURES / "billion_laughs.xml").read_bytes())
    assert message == "a DOCTYPE at line 2: DTDs and entity declarations are not accepted"


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE Document SYSTEM "http://attacker.example/camt.dtd">',
        "<!DOCTYPE Document>",
    ],
)
def test_any_doctype_is_refused(doctype: str) -> None:
    data = f'<?xml version="1.0"?>\n{doctype}\n<Document xmlns="{NS}"><BkToCstmrStmt/></Document>'.encode()
    assert rejection(data) == "a DOCTYPE at line 2: DTDs and entity declarations are not accepted"


def test_an_undeclared_entity_is_malformed() -> None:
    data = f'<Document xmlns="{NS}">\n<BkToCstmrStmt>&xxe;</BkToCstmrStmt></Document>'.encode()
    assert rejection(data) == "not well-formed (or truncated) XML at line 2, column 16: undefined entity"


def test_truncated_file_is_refused_naming_line_and_column() -> None:
    assert rejection((FIXTURES / "truncated.xml").read_bytes()) == (
        "not well-formed (or truncated) XML at line 103, column 55: no element found"
    )


def test_mismatched_tag_is_refused_naming_line_and_column() -> None:
    data = f'<Document xmlns="{NS}">\n  <BkToCstmrStmt>\n  </Stmt>\n</Document>'.encode()
    assert rejection(data) == "not well-formed (or truncated) XML at line 3, column 5: mismatched tag"


def test_empty_file_is_refused() -> None:
    assert rejection(b"") == "not well-formed (or truncated) XML at line 1, column 1: no element found"


def test_camt054_is_not_a_statement() -> None:
    assert rejection((FIXTURES / "not_camt053.xml").read_bytes()) == (
        "not a camt.053 statement: <Document> holds <BkToCstmrDbtCdtNtfctn> (line 3)"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<payouts><payout/></payouts>", "not a camt.053 statement: the root element is <payouts>, not <Document>"),
        (f'<Document xmlns="{NS}"/>'.encode(), "not a camt.053 statement: <Document> holds no <BkToCstmrStmt>"),
    ],
)
def test_other_xml_is_not_a_statement(data: bytes, message: str) -> None:
    assert rejection(data) == message


def test_oversized_text_is_refused() -> None:
    entry = f'<Amt Ccy="EUR">1</Amt><AddtlNtryInf>{"y" * (MAX_TEXT_CHARS + 1)}</AddtlNtryInf>'
    assert rejection(statement_with(entry)) == f"<AddtlNtryInf> at line 3 has more than {MAX_TEXT_CHARS} characters"


def test_absurd_nesting_is_refused() -> None:
    data = f'<Document xmlns="{NS}"><BkToCstmrStmt>{"<a>" * 100}{"</a>" * 100}</BkToCstmrStmt></Document>'
    assert rejection(data.encode()) == "<a> at line 1 is nested deeper than 64 elements"


# --- constant memory ---------------------------------------------------------------------------------

ENTRIES = 20_000
ENTRY_LINES = 3
HEADER_LINES = 9  # the first <Ntry> is on line 10


def amount_minor(n: int) -> int:
    return n % 100_000 + 1


def write_large_statement(path: Path) -> int:
    """Writes ENTRIES entries in 1,000-entry slices; returns the booked total in minor units."""
    total_minor = sum(amount_minor(n) if n % 3 else -amount_minor(n) for n in range(ENTRIES))
    closing_minor = 1_000_000_000_00 + total_minor
    with path.open("w", encoding="utf-8") as out:
        out.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{NS}">\n<BkToCstmrStmt>\n<Stmt>\n'
            "<Id>BIG-1</Id>\n<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>\n"
            '<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">1000000000.00</Amt>'
            "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-19</Dt></Dt></Bal>\n"
            f'<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{closing_minor // 100}.'
            f"{closing_minor % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-20</Dt></Dt></Bal>\n"
            "<TxsSummry/>\n"
        )
        for start in range(0, ENTRIES, 1000):
            out.write("".join(large_entry(n) for n in range(start, start + 1000)))
        out.write("</Stmt>\n</BkToCstmrStmt>\n</Document>\n")
    return total_minor


def large_entry(n: int) -> str:
    """A lean entry (a reference, a date, one TxDtls): the test is about the stream, not the fields."""
    amount = amount_minor(n)
    return (
        f'<Ntry><Amt Ccy="EUR">{amount // 100}.{amount % 100:02d}</Amt><CdtDbtInd>{"CRDT" if n % 3 else "DBIT"}'
        "</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\n"
        f"<BookgDt><DtTm>2026-11-20T10:00:00+01:00</DtTm></BookgDt><AcctSvcrRef>REF-{n:06d}</AcctSvcrRef>\n"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>pay_{n:08d}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>\n"
    )


def test_a_200000_entry_statement_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.xml"
    total_minor = write_large_statement(path)
    parser = Camt053Parser()
    count = booked_minor = 0
    last: SettlementLine | Quarantined | None = None
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            for item in parser.parse(stream):
                assert isinstance(item, SettlementLine)
                count += 1
                booked_minor += item.gross_minor
                last = item
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"camt.053 {ENTRIES} entries ({path.stat().st_size // 2**20} MiB): peak {peak_bytes / 2**20:.2f} MiB")
    # Keeping even 100 bytes per entry would already cost 2 MiB; streaming stays far below.
    assert peak_bytes < 2 * 2**20
    assert count == ENTRIES
    assert booked_minor == total_minor
    assert isinstance(last, SettlementLine)
    assert last.line == HEADER_LINES + 1 + (ENTRIES - 1) * ENTRY_LINES
    assert last.merchant_reference == f"pay_{ENTRIES - 1:08d}"
    assert parser.checks == [
        BalanceCheck("statement BIG-1 EUR", "EUR", 1_000_000_000_00 + total_minor, 1_000_000_000_00 + total_minor)
    ]


def test_minified_statement_numbers_each_entry_on_from_its_line() -> None:
    # Banks and converters often write the whole document on one line; each stored line needs its own number.
    pretty = (FIXTURES / "statement_v08_batch_reversal_pending.xml").read_bytes()
    minified = b"".join(part.strip() for part in pretty.splitlines())

    items, checks = parse_bytes(minified)
    pretty_items, pretty_checks = parse_fixture("statement_v08_batch_reversal_pending.xml")

    assert [item.line for item in items] == list(range(1, len(pretty_items) + 1))
    assert [(type(i), getattr(i, "gross_minor", None)) for i in items] == [
        (type(i), getattr(i, "gross_minor", None)) for i in pretty_items
    ]
    assert checks == pretty_checks
