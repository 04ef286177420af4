"""StripeItemizedParser against hand-written reports shaped like Stripe's real exports."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.reconciliation.parsing.model import (
    BalanceCheck,
    FileRejected,
    LineKind,
    Quarantined,
    SettlementLine,
)
from services.reconciliation.parsing.stripe import StripeItemizedParser

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settlement" / "stripe"


def parse_file(name: str, parser: StripeItemizedParser | None = None) -> list[SettlementLine | Quarantined]:
    parser = parser or StripeItemizedParser()
    with (FIXTURES / name).open("rb") as stream:
        return list(parser.parse(stream))


def parse_bytes(data: bytes, parser: StripeItemizedParser | None = None) -> list[SettlementLine | Quarantined]:
    return list((parser or StripeItemizedParser()).parse(io.BytesIO(data)))


def lines_of(items: list[SettlementLine | Quarantined]) -> list[SettlementLine]:
    assert all(isinstance(item, SettlementLine) for item in items), items
    return [item for item in items if isinstance(item, SettlementLine)]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_dashboard_download_with_bom_quotes_trailing_field_and_multiline_description() -> None:
    lines = lines_of(parse_file("balance_change_dashboard.csv"))

    assert [line.line for line in lines] == [2, 3, 4, 5, 6, 7, 9, 10]  # row 7 spans lines 7-8
    assert lines[0] == SettlementLine(
        line=2,
        kind=LineKind.CHARGE,
        raw_type="charge",
        psp_reference="txn_3PaAbC2eZvKYlo2C0x1Ch001",  # no source/charge/intent columns: the transaction
        merchant_reference="",
        currency="USD",
        gross_minor=2500,
        fee_minor=103,
        net_minor=2397,
        occurred_at=utc("2026-03-02 14:03:11"),
        details={"balance_transaction_id": "txn_3PaAbC2eZvKYlo2C0x1Ch001", "description": "Order 1001"},
    )
    summary = [(line.kind, line.raw_type, line.gross_minor, line.fee_minor, line.net_minor) for line in lines]
    assert summary == [
        (LineKind.CHARGE, "charge", 2500, 103, 2397),
        (LineKind.REFUND, "refund", -1000, 0, -1000),
        (LineKind.DISPUTE, "dispute", -3000, 1500, -4500),
        (LineKind.FEE, "fee", -200, 0, -200),
        (LineKind.OTHER, "climate_order_purchase", -50, 0, -50),  # a category we do not know: kept
        (LineKind.CHARGE, "charge", 1250, 66, 1184),
        (LineKind.PAYOUT, "payout", -10000, 0, -10000),
        (LineKind.CHARGE, "charge", 500, 45, 455),
    ]
    assert lines[4].details["description"] == 'Stripe Climate, "carbon removal"'
    assert lines[5].details["description"] == "Order 1002\r\ngift wrap: yes"
    # A formula-looking description is data: kept exactly, escaped only when a report renders it.
    assert lines[7].details["description"] == '=HYPERLINK("http://evil.example","click")'


def test_reordered_columns_mixed_case_currency_jpy_and_settle_metadata() -> None:
    lines = lines_of(parse_file("balance_change_reordered.csv"))

    charge, refund, jpy, refund_failure, transfer = lines
    assert charge == SettlementLine(
        line=2,
        kind=LineKind.CHARGE,
        raw_type="charge",
        psp_reference="pi_3PbAaC2eZvKYlo2C1e2f3g4h",
        merchant_reference="po_01HV6Z3K8QW4",
        currency="USD",
        gross_minor=2500,
        fee_minor=103,
        net_minor=2397,
        occurred_at=utc("2026-03-02 15:03:11"),  # unsuffixed `created`, no timezone given: UTC
        details={
            "balance_transaction_id": "txn_3PbAaC2eZvKYlo2C1a2b3c4d",
            "source_id": "ch_3PbAaC2eZvKYlo2C1a2b3c4d",
            "charge_id": "ch_3PbAaC2eZvKYlo2C1a2b3c4d",
            "payment_intent_id": "pi_3PbAaC2eZvKYlo2C1e2f3g4h",
            "payment_metadata[payment_order_id]": "po_01HV6Z3K8QW4",
            "description": "Order 1001",
        },
    )
    # A refund's row also carries the refunded payment's ids and metadata; its own ids are its reference.
    assert (refund.kind, refund.currency, refund.net_minor) == (LineKind.REFUND, "USD", -2500)
    assert (refund.psp_reference, refund.merchant_reference) == ("re_3PbReC2eZvKYlo2C5a6b7c8d", "rf_01HV70ABCD12")
    assert refund.details["payment_metadata[payment_order_id]"] == "po_01HV6Z3K8QW4"
    # Zero-decimal currency: "1500" JPY is 1500 minor units; no intent, so the charge id is the reference.
    assert (jpy.currency, jpy.gross_minor, jpy.fee_minor, jpy.net_minor) == ("JPY", 1500, 45, 1455)
    assert (jpy.psp_reference, jpy.merchant_reference) == ("ch_3PbJpC2eZvKYlo2C9a8b7c6d", "po_01HV71JPYX01")
    # Money coming back from a failed refund: still about a refund, the word kept.
    assert (refund_failure.kind, refund_failure.raw_type) == (LineKind.REFUND, "refund_failure")
    assert (refund_failure.currency, refund_failure.gross_minor) == ("EUR", 750)
    assert (refund_failure.psp_reference, refund_failure.merchant_reference) == (
        "re_3PbRfC2eZvKYlo2Cabcdef12",
        "rf_01HV72XXYZ34",
    )
    assert (transfer.kind, transfer.psp_reference, transfer.merchant_reference) == (
        LineKind.ADJUSTMENT,
        "tr_1PbTrC2eZvKYlo2C34567890",
        "",
    )


def test_unsuffixed_timestamps_follow_the_report_timezone_across_a_dst_change() -> None:
    lines = lines_of(parse_file("balance_change_reordered.csv", StripeItemizedParser(timezone="Europe/Berlin")))

    assert lines[0].occurred_at == utc("2026-03-02 14:03:11")  # CET, +1
    assert lines[2].occurred_at == utc("2026-03-30 07:00:00")  # CEST from 2026-03-29, +2


def test_payout_whose_rows_add_up_balances() -> None:
    parser = StripeItemizedParser()
    lines = lines_of(parse_file("payout_reconciliation_balanced.csv", parser))

    assert [line.batch for line in lines] == ["po_1PcBalC2eZvKYlo2CAAAA"] * 4 + [""]
    payout = lines[4]
    assert (payout.kind, payout.psp_reference, payout.merchant_reference) == (
        LineKind.PAYOUT,
        "po_1PcBalC2eZvKYlo2CAAAA",
        "po_01HWPAYOUT01",  # transfer_metadata[payout_id]
    )
    assert (payout.currency, payout.gross_minor, payout.net_minor) == ("EUR", -12305, -12305)
    assert lines[3].psp_reference == "txn_1PcF1C2eZvKYlo2C00000004"  # a standalone fee has no source
    assert parser.checks == [BalanceCheck("payout po_1PcBalC2eZvKYlo2CAAAA", "EUR", 12305, 12305)]
    assert parser.checks[0].balanced


def test_payout_whose_rows_do_not_add_up_is_reported_and_inconsistent_rows_are_kept() -> None:
    parser = StripeItemizedParser()
    lines = lines_of(parse_file("payout_reconciliation_unbalanced.csv", parser))

    # 10 - 0.30 is not 9.80: yielded as written, for reconciliation to report.
    assert (lines[1].gross_minor, lines[1].fee_minor, lines[1].net_minor) == (1000, 30, 980)
    dispute = lines[2]
    assert (dispute.kind, dispute.gross_minor, dispute.fee_minor, dispute.net_minor) == (
        LineKind.DISPUTE,
        -3000,
        1500,
        -4500,
    )
    assert (dispute.currency, dispute.merchant_reference) == ("GBP", "po_01HX00000011")
    # po_1PdOth... has a row but no payout row in this file: no check for it.
    assert parser.checks == [BalanceCheck("payout po_1PdUnbC2eZvKYlo2CBBBB", "GBP", 4208, 4218)]
    assert not parser.checks[0].balanced


def test_payout_rows_in_another_currency_are_checked_against_zero() -> None:
    header = b"automatic_payout_id,balance_transaction_id,currency,gross,fee,net,reporting_category,source_id\n"
    data = header + (
        b"po_X,txn_1,eur,10,0,10,charge,ch_1\npo_X,txn_2,usd,5,0,5,charge,ch_2\n,txn_3,eur,-10,0,-10,payout,po_X\n"
    )
    parser = StripeItemizedParser()
    parse_bytes(data, parser)

    assert parser.checks == [
        BalanceCheck("payout po_X", "EUR", 1000, 1000),
        BalanceCheck("payout po_X", "USD", 0, 500),
    ]


def test_comma_decimal_separator_and_a_thousands_point_is_refused() -> None:
    items = parse_file("balance_change_comma_decimal.csv", StripeItemizedParser(decimal_separator=","))

    charge, fee, thousands = items
    assert isinstance(charge, SettlementLine) and isinstance(fee, SettlementLine)
    assert (charge.gross_minor, charge.fee_minor, charge.net_minor) == (2500, 103, 2397)
    assert (fee.kind, fee.gross_minor, fee.details["description"]) == (LineKind.FEE, -50, "Gebühr")
    assert thousands == Quarantined(
        line=4,
        reason="gross: '1.250,00' contains '.' but the decimal separator is ','",
        raw='"txn_3PeAbC2eZvKYlo2C00000023","2026-03-02 12:00:00","eur","1.250,00","0","1.250,00","charge","Tausendertrennzeichen"',
    )


def test_bad_rows_are_quarantined_with_their_line_and_reason_and_parsing_continues() -> None:
    items = parse_file("balance_change_bad_rows.csv")

    first = items[0]
    assert isinstance(first, SettlementLine) and first.line == 2
    quarantined = [(item.line, item.reason) for item in items if isinstance(item, Quarantined)]
    assert quarantined == [
        (3, "gross: '12.3.4' is not a decimal amount"),
        (4, "currency: 'usdx' is not a supported ISO 4217 currency"),
        (5, "gross: '1.005' has more decimals than USD has minor units (2)"),
        (6, "expected 7 fields, found 4"),
        (7, "created_utc: '2026-02-30 10:09:00' is not a valid date and time"),
        (8, "balance_transaction_id is empty"),
        (9, "malformed quoting: ',' expected after '\"'"),
        (10, "fee: '' is not a decimal amount"),  # an empty amount is not zero
    ]
    assert items[1] == Quarantined(
        3,
        "gross: '12.3.4' is not a decimal amount",
        "txn_bad_amount,2026-03-02 10:05:00,usd,12.3.4,0.30,12.00,charge",
    )
    last = items[-1]
    assert isinstance(last, SettlementLine)
    assert (last.line, last.psp_reference, last.net_minor) == (12, "txn_ok2", 164)  # after a blank line 11


def test_quarantined_raw_text_is_cut_to_200_characters() -> None:
    header = b"balance_transaction_id,currency,gross,fee,net,reporting_category,description\n"
    (item,) = parse_bytes(header + b'txn_1,usd,ten,0,10,charge,"' + b"=cmd|' /C calc'!A0 " * 40 + b'"\n')

    assert isinstance(item, Quarantined)
    assert (item.line, item.reason) == (2, "gross: 'ten' is not a decimal amount")
    assert len(item.raw) == 200 and item.raw.startswith('txn_1,usd,ten,0,10,charge,"=cmd|')


def test_missing_required_column_rejects_the_file_naming_it() -> None:
    with pytest.raises(FileRejected, match=r"^missing required column\(s\): net$"):
        parse_file("balance_change_missing_net.csv")


def test_missing_id_column_rejects_the_file() -> None:
    with pytest.raises(FileRejected, match=r"balance_transaction_id, reporting_category"):
        parse_bytes(b"currency,gross,fee,net\nusd,1,0,1\n")


def test_truncated_file_is_rejected_after_the_rows_before_it() -> None:
    stream = (FIXTURES / "balance_change_truncated.csv").open("rb")
    with stream:
        items = StripeItemizedParser().parse(stream)
        first = next(items)
        assert isinstance(first, SettlementLine) and first.line == 2
        with pytest.raises(FileRejected, match=r"^line 3: the file ends inside a quoted field"):
            next(items)
        assert not stream.closed  # the caller's stream is left to the caller


def test_empty_file_is_rejected_and_a_header_alone_is_an_empty_report() -> None:
    with pytest.raises(FileRejected, match=r"^no header$"):
        parse_bytes(b"")
    with pytest.raises(FileRejected, match=r"^no header$"):
        parse_bytes(b"\xef\xbb\xbf\r\n\r\n")
    parser = StripeItemizedParser()
    assert parse_bytes(b"balance_transaction_id,currency,gross,fee,net,reporting_category,\r\n", parser) == []
    assert parser.checks == []


def test_undecodable_bytes_reject_the_file_naming_the_line() -> None:
    data = b"balance_transaction_id,currency,gross,fee,net,reporting_category,description\n"
    data += b"txn_1,usd,1,0,1,charge,ok\n" * 5000  # past the decoder's first chunk
    data += b"txn_2,usd,1,0,1,charge,caf\xe9\n"  # Latin-1, not UTF-8
    with pytest.raises(FileRejected, match=r"^line 5002: not valid UTF-8$"):
        parse_bytes(data)


def test_unknown_categories_and_platform_earnings() -> None:
    header = b"balance_transaction_id,currency,gross,fee,net,reporting_category\n"
    rows = b"".join(
        f"txn_{n},usd,1,0,1,{category}\n".encode()
        for n, category in enumerate(["platform_earning_refund", "Charge_Failure", "PAYOUT_REVERSAL", "topup"])
    )
    lines = lines_of(parse_bytes(header + rows))

    assert [(line.kind, line.raw_type) for line in lines] == [
        (LineKind.ADJUSTMENT, "platform_earning_refund"),
        (LineKind.OTHER, "Charge_Failure"),
        (LineKind.PAYOUT, "PAYOUT_REVERSAL"),
        (LineKind.ADJUSTMENT, "topup"),
    ]


def test_constructor_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="decimal_separator"):
        StripeItemizedParser(decimal_separator=";")
    with pytest.raises(ValueError, match="Mars/Olympus"):
        StripeItemizedParser(timezone="Mars/Olympus")


def test_a_20000_row_report_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "payout_reconciliation.itemized.5.csv"
    rows = 20_000
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(
            "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,"
            "source_id,payment_intent_id,payment_metadata[payment_order_id],description,\r\n"
        )
        for n in range(rows):
            out.write(
                f'"po_{n % 50}","txn_{n:012d}","2026-03-02 10:00:00","usd","25.00","1.03","23.97","charge",'
                f'"ch_{n:012d}","pi_{n:012d}","po_01HV{n:010d}","Order {n}, gift wrap",\r\n'
            )
        per_payout = f"{rows // 50 * 2397 // 100}.{rows // 50 * 2397 % 100:02d}"  # 23.97 per row
        for payout in range(50):
            out.write(
                f',"txn_p{payout}","2026-03-03 00:00:00","usd","-{per_payout}","0","-{per_payout}","payout","po_{payout}",,,,\r\n'
            )

    parser = StripeItemizedParser()
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

    print(f"stripe: {path.stat().st_size / 1e6:.1f} MB file, tracemalloc peak {peak_bytes / 1e6:.2f} MB")
    assert count == rows + 50
    assert peak_bytes < 2_000_000  # the file is 3.4 MB: reading it whole could not fit
    assert len(parser.checks) == 50 and all(check.balanced for check in parser.checks)


def test_a_title_line_before_the_header_and_iso_timestamps_with_fractions() -> None:
    with (FIXTURES / "balance_change_title_line.csv").open("rb") as stream:
        items = list(StripeItemizedParser().parse(stream))

    assert len(items) == 1 and isinstance(items[0], SettlementLine)
    line = items[0]
    assert (line.line, line.currency, line.gross_minor, line.fee_minor, line.net_minor) == (3, "USD", 2_500, 103, 2_397)
    assert line.occurred_at == datetime(2026, 3, 2, 10, 15, 0, 250_000, tzinfo=UTC)


def test_a_payouts_report_names_its_payout_payout_id_and_its_time_effective_at_utc() -> None:
    report = (
        b"payout_id,effective_at_utc,balance_transaction_id,currency,gross,fee,net,reporting_category,description\n"
        b"po_1QxYz,2026-03-02 18:00:00,txn_po_1QxYz,usd,-80.00,0.00,-80.00,payout,Seller payout\n"
    )

    (line,) = StripeItemizedParser().parse(io.BytesIO(report))

    assert isinstance(line, SettlementLine)
    assert (line.kind, line.psp_reference, line.gross_minor) == (LineKind.PAYOUT, "po_1QxYz", -8_000)
    assert line.occurred_at == datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
