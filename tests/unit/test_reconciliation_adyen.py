"""AdyenSettlementParser against hand-written Settlement details reports shaped like Adyen's real exports."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.reconciliation.parsing.adyen import AdyenSettlementParser
from services.reconciliation.parsing.model import (
    BalanceCheck,
    FileRejected,
    LineKind,
    Quarantined,
    SettlementLine,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settlement" / "adyen"
BATCH_42 = "settlement_detail_report_batch_42.csv"
BATCH_43 = "settlement_detail_report_batch_43_reordered.csv"


def parse_file(name: str, parser: AdyenSettlementParser | None = None) -> list[SettlementLine | Quarantined]:
    parser = parser or AdyenSettlementParser()
    with (FIXTURES / name).open("rb") as stream:
        return list(parser.parse(stream))


def parse_bytes(data: bytes, parser: AdyenSettlementParser | None = None) -> list[SettlementLine | Quarantined]:
    return list((parser or AdyenSettlementParser()).parse(io.BytesIO(data)))


def lines_of(items: list[SettlementLine | Quarantined]) -> list[SettlementLine]:
    assert all(isinstance(item, SettlementLine) for item in items), items
    return [item for item in items if isinstance(item, SettlementLine)]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_standard_report_settled_line_in_full() -> None:
    lines = lines_of(parse_file(BATCH_42))

    assert lines[0] == SettlementLine(
        line=2,
        kind=LineKind.CHARGE,
        raw_type="Settled",
        psp_reference="8815740123450001",
        merchant_reference="po_01HY00000001",
        currency="EUR",
        gross_minor=10000,  # net + fees, in the net currency
        fee_minor=234,  # Markup 1.2 + Scheme Fees .91 + Interchange .23
        net_minor=9766,
        occurred_at=utc("2026-03-02 09:15:00"),  # 10:15 CET
        batch="42",
        details={
            "Modification Reference": "8825740123450011",
            "Merchant Reference": "po_01HY00000001",
            "Company Account": "SettleBV",
            "Merchant Account": "SettleEU_ECOM",
            "Payment Method": "visa",
            "Payment Method Variant": "visaclassic",
            "Gross Currency": "EUR",
            "Gross Credit (GC)": "100",
            "Exchange Rate": "1",
        },
    )


def test_standard_report_every_type_sign_and_amount() -> None:
    lines = lines_of(parse_file(BATCH_42))

    summary = [
        (line.line, line.kind, line.raw_type, line.currency, line.gross_minor, line.fee_minor, line.net_minor)
        for line in lines
    ]
    assert summary == [
        (2, LineKind.CHARGE, "Settled", "EUR", 10000, 234, 9766),
        (3, LineKind.CHARGE, "settled", "EUR", 7500, 150, 7350),  # "75", "73.5", empty cells written ""
        (4, LineKind.REFUND, "Refunded", "EUR", -2620, 10, -2630),  # "26.2" back to the buyer, ".1" fee
        (5, LineKind.DISPUTE, "CHARGEBACK", "EUR", -2000, 0, -2000),
        (6, LineKind.FEE, "Fee", "EUR", -25, 0, -25),  # ".25"
        (7, LineKind.OTHER, "ReserveAdjustment", "EUR", -100, 0, -100),  # unknown type: kept
        (8, LineKind.PAYOUT, "MERCHANTPAYOUT", "EUR", -12361, 0, -12361),
        (9, LineKind.CHARGE, "Settled", "USD", 4000, 60, 3940),
        (10, LineKind.CHARGE, "Settled", "USD", 2531, 50, 2481),  # GBP 20 at 1.265432109876543
        (11, LineKind.ADJUSTMENT, "Balancetransfer", "USD", -1421, 0, -1421),
        (12, LineKind.PAYOUT, "MerchantPayout", "USD", -5000, 0, -5000),
    ]


def test_references_quoted_commas_and_metadata_json() -> None:
    lines = lines_of(parse_file(BATCH_42))
    refund, fee, payout, usd_charge, converted = lines[2], lines[4], lines[6], lines[7], lines[8]

    # A modification carries our refund id; the payment's Psp Reference stays the reference.
    assert (refund.psp_reference, refund.merchant_reference) == ("8815740123450001", "rf_01HY00000021")
    assert refund.details["Modification Reference"] == "8835740123450021"
    assert refund.details["Merchant Reference"] == "po_01HY00000001"
    assert (fee.psp_reference, fee.merchant_reference) == ("", "")  # written as ""
    assert payout.details["Modification Reference"] == "Payout of week 10, 2026"
    assert payout.occurred_at == utc("2026-03-06 07:00:00")
    assert usd_charge.details["Metadata"] == '{"orderChannel":"web","note":"gift, wrapped"}'  # not parsed
    assert usd_charge.occurred_at == utc("2026-03-02 14:00:00")  # 06:00 PST
    assert (converted.details["Gross Currency"], converted.details["Exchange Rate"]) == ("GBP", "1.265432109876543")


def test_multi_currency_batch_balances_per_currency() -> None:
    parser = AdyenSettlementParser()
    parse_file(BATCH_42, parser)

    assert parser.checks == [
        BalanceCheck("batch 42 EUR", "EUR", 0, 0),
        BalanceCheck("batch 42 USD", "USD", 0, 0),
    ]


def test_reordered_and_dropped_columns_with_quarantines_and_unbalanced_batch() -> None:
    parser = AdyenSettlementParser()
    items = parse_file(BATCH_43, parser)

    settled, second_chargeback, unknown_zone, too_precise, payout, short = items
    assert settled == SettlementLine(
        line=2,
        kind=LineKind.CHARGE,
        raw_type="Settled",
        psp_reference="8815740123460001",
        merchant_reference="po_01HZ00000001",
        currency="EUR",
        gross_minor=5000,
        fee_minor=150,
        net_minor=4850,
        occurred_at=utc("2026-03-31 08:00:00"),  # CEST
        batch="43",
        details={
            "Modification Reference": "8825740123460011",
            "Merchant Reference": "po_01HZ00000001",
            "Merchant Account": "SettleEU_ECOM",
            "Payment Method": "visa",
        },
    )
    assert isinstance(second_chargeback, SettlementLine)
    assert (second_chargeback.kind, second_chargeback.net_minor) == (LineKind.DISPUTE, -1000)
    assert second_chargeback.occurred_at == utc("2026-04-01 10:00:00")  # IANA name in TimeZone
    assert unknown_zone == Quarantined(
        4,
        "unknown TimeZone 'IST' (configure timezone= with an IANA name)",
        "43,Settled,8815740123460003,8825740123460013,2026-04-01 09:00:00,IST,EUR,20,,,,,po_01HZ00000003,,SettleEU_ECOM,,,upi",
    )
    assert too_precise == Quarantined(
        5,
        "Net Credit (NC): '12.345' has more decimals than EUR has minor units (2)",
        "43,Settled,8815740123460004,8825740123460014,2026-04-01 10:00:00,CEST,EUR,12.345,,,,,po_01HZ00000004,,SettleEU_ECOM,,,visa",
    )
    assert isinstance(payout, SettlementLine) and payout.net_minor == -6000
    assert short == Quarantined(
        7, "expected 18 fields, found 8", "43,Settled,8815740123460005,8825740123460015,2026-04-02 10:00:00,CEST,EUR,5"
    )
    # Quarantined rows are not in the sum: the batch does not balance, and says by how much.
    assert parser.checks == [BalanceCheck("batch 43 EUR", "EUR", 0, -2150)]


def test_configured_timezone_applies_to_every_row() -> None:
    parser = AdyenSettlementParser(timezone="Europe/Amsterdam")
    items = parse_file(BATCH_43, parser)

    ist_row = items[2]
    assert isinstance(ist_row, SettlementLine)
    assert (ist_row.line, ist_row.occurred_at, ist_row.net_minor) == (4, utc("2026-04-01 07:00:00"), 2000)
    assert [item.line for item in items if isinstance(item, Quarantined)] == [5, 7]
    assert parser.checks == [BalanceCheck("batch 43 EUR", "EUR", 0, -150)]
    # Configured, it also overrides a row's own abbreviation: PST rows are read as Amsterdam time.
    usd = lines_of(parse_file(BATCH_42, AdyenSettlementParser(timezone="Europe/Amsterdam")))[7]
    assert usd.occurred_at == utc("2026-03-02 05:00:00")


def test_missing_psp_reference_column_rejects_the_file() -> None:
    with pytest.raises(FileRejected, match=r"^missing required column\(s\): Psp Reference$"):
        parse_file("settlement_detail_report_missing_psp_reference.csv")


def test_both_net_amount_columns_missing_rejects_naming_them() -> None:
    with pytest.raises(FileRejected, match=r"^missing required column\(s\): Net Debit \(NC\) or Net Credit \(NC\)$"):
        parse_bytes(b"Psp Reference,Type,Net Currency,Gross Credit (GC)\n1,Settled,EUR,10\n")


def test_one_net_column_is_enough_and_blank_dates_are_none() -> None:
    items = parse_bytes(b"Psp Reference,Type,Net Currency,Net Debit (NC),Creation Date\n1,PaidOut,eur,5,\n")

    (line,) = lines_of(items)
    assert (line.kind, line.currency, line.net_minor, line.occurred_at, line.batch) == (
        LineKind.PAYOUT,
        "EUR",
        -500,
        None,
        "",
    )


def test_kinds_match_case_insensitively() -> None:
    types = ["refundedreversed", "SecondChargeback", "chargebackreversed", "MiscCosts", "invoicededuction",
             "PaymentCost", "paidoutreversed", "DepositCorrection", "manualcorrected", "BalanceTransfer", "Other"]  # fmt: skip
    header = b"Psp Reference,Type,Net Currency,Net Debit (NC),Net Credit (NC)\n"
    lines = lines_of(parse_bytes(header + b"".join(f"1,{t},EUR,,1\n".encode() for t in types)))

    assert [line.kind for line in lines] == [
        LineKind.REFUND,
        LineKind.DISPUTE,
        LineKind.DISPUTE,
        LineKind.FEE,
        LineKind.FEE,
        LineKind.FEE,
        LineKind.PAYOUT,
        LineKind.ADJUSTMENT,
        LineKind.ADJUSTMENT,
        LineKind.ADJUSTMENT,
        LineKind.OTHER,
    ]
    assert [line.raw_type for line in lines] == types


def test_rows_without_a_batch_number_are_still_checked_and_bad_dates_quarantined() -> None:
    header = b"Psp Reference,Type,Net Currency,Net Debit (NC),Net Credit (NC),Creation Date,TimeZone\n"
    parser = AdyenSettlementParser()
    items = parse_bytes(
        header
        + b"1,Settled,EUR,,10,2026-03-02 10:00:00,\n"  # a date with no zone: cannot be placed in time
        + b"2,Settled,EUR,,10,02/03/2026 10:00,CET\n"
        + b"3,Settled,EUR,,10,2026-03-02 10:00:00,Etc/GMT-3\n",
        parser,
    )

    assert [(item.line, item.reason) for item in items if isinstance(item, Quarantined)] == [
        (2, "Creation Date '2026-03-02 10:00:00' has no TimeZone (configure timezone=)"),
        (3, "Creation Date: '02/03/2026 10:00' is not YYYY-MM-DD HH:MM:SS"),
    ]
    last = items[2]
    assert isinstance(last, SettlementLine) and last.occurred_at == utc("2026-03-02 07:00:00")
    assert parser.checks == [BalanceCheck("file EUR", "EUR", 0, 1000)]


def test_empty_file_header_only_and_truncation() -> None:
    header = b"Psp Reference,Type,Net Currency,Net Debit (NC),Net Credit (NC),Modification Reference\n"
    with pytest.raises(FileRejected, match=r"^no header$"):
        parse_bytes(b"")
    assert parse_bytes(header) == []
    with pytest.raises(FileRejected, match=r"^line 3: the file ends inside a quoted field"):
        parse_bytes(header + b'1,Settled,EUR,,10,x\n,MerchantPayout,EUR,10,,"Payout of week 10,')


def test_constructor_refuses_an_unknown_zone() -> None:
    with pytest.raises(ValueError, match="PST"):
        AdyenSettlementParser(timezone="PST")


def test_a_20000_row_report_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "settlement_detail_report_batch_99.csv"
    rows = 20_000
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(
            "Company Account,Merchant Account,Psp Reference,Merchant Reference,Creation Date,TimeZone,Type,"
            "Modification Reference,Net Currency,Net Debit (NC),Net Credit (NC),Commission (NC),"
            "Interchange (NC),Batch Number,Metadata\n"
        )
        for n in range(rows):
            out.write(
                f"SettleBV,SettleEU_ECOM,{8815740000000000 + n},po_{n:012d},2026-03-02 10:00:00,CET,Settled,"
                f'{8825740000000000 + n},EUR,,9.7,.1,.2,99,"{{""orderChannel"":""web"",""n"":{n}}}"\n'
            )
        payout = f"{rows * 97 // 10}"  # 9.70 per row
        out.write(f',,,,2026-03-06 08:00:00,CET,MerchantPayout,"Payout of week 10, 2026",EUR,{payout},,,,99,\n')

    parser = AdyenSettlementParser()
    tracemalloc.start()
    try:
        count = 0
        with path.open("rb") as stream:
            for item in parser.parse(stream):
                assert isinstance(item, SettlementLine)
                count += 1
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"adyen: {path.stat().st_size / 1e6:.1f} MB file, tracemalloc peak {peak_bytes / 1e6:.2f} MB")
    assert count == rows + 1
    assert peak_bytes < 2_000_000  # the file is 3.4 MB: reading it whole could not fit
    assert parser.checks == [BalanceCheck("batch 99 EUR", "EUR", 0, 0)]


def test_report_parameters_before_the_header_journal_type_and_milliseconds() -> None:
    items = parse_file("settlement_detail_report_batch_44_preamble_journal_type.csv")

    settled, payout = lines_of(items)
    assert (settled.line, settled.kind, settled.raw_type, settled.net_minor, settled.fee_minor) == (
        5, LineKind.CHARGE, "Settled", 1_950, 50,
    )  # fmt: skip
    assert settled.merchant_reference == "4f1c2a9e-3b7d-4c55-9a10-2b8e6f0d1c01"
    assert settled.occurred_at == datetime(2026, 3, 2, 9, 15, 0, 663_000, tzinfo=UTC)  # CET in March: +1
    assert (payout.kind, payout.net_minor, payout.batch) == (LineKind.PAYOUT, -1_950, "44")
