"""SandboxSettlementParser against hand-built files and files the sandbox's generator writes."""

from __future__ import annotations

import calendar
import io
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from psp_sandbox.settlement import (
    SettlementOptions,
    SettlementQueryError,
    options_from_query,
    processing_fee_minor,
    settlement_day,
    write_settlement_file,
)
from psp_sandbox.state import SandboxState
from services.reconciliation.parsing.model import FileRejected, LineKind, Quarantined, SettlementLine
from services.reconciliation.parsing.sandbox import SandboxSettlementParser

DAY = date(2026, 3, 2)
HEADER = (
    "record_type,settlement_date,psp_reference,merchant_reference,type,currency,gross_minor,fee_minor,"
    "net_minor,created_utc,source_reference,line_count\r\n"
)


def row(
    ref: str,
    kind: str,
    gross: int | str,
    fee: int | str = 0,
    net: int | str | None = None,
    *,
    currency: str = "USD",
    merchant: str = "",
    created: str = "2026-03-02 10:00:00",
    source: str = "",
    settlement_date: str = "2026-03-02",
) -> str:
    if net is None:
        net = int(gross) - int(fee)
    return f"L,{settlement_date},{ref},{merchant},{kind},{currency},{gross},{fee},{net},{created},{source},\r\n"


def trailer(count: int, gross: int | str, fee: int | str, net: int | str, settlement_date: str = "2026-03-02") -> str:
    return f"T,{settlement_date},TRAILER,,,,{gross},{fee},{net},,,{count}\r\n"


def parse(data: str | bytes) -> list[SettlementLine | Quarantined]:
    raw = data.encode() if isinstance(data, str) else data
    return list(SandboxSettlementParser().parse(io.BytesIO(raw)))


def stream(data: str) -> Iterator[SettlementLine | Quarantined]:
    return SandboxSettlementParser().parse(io.BytesIO(data.encode()))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_clean_file_yields_every_line_with_references_amounts_and_times() -> None:
    data = (
        HEADER
        + row("pi_1", "charge", 1000, 59, merchant="order-1", source="ch_1")
        + row("re_1", "refund", -300, merchant="refund-1", source="pi_1", created="2026-03-02 11:00:00")
        + row("po_1", "payout", -500, merchant="payout-1", source="ba_test_success")
        + row("fee_20260302_1", "fee", -500)
        + trailer(4, -300, 59, -359)
    )
    parser = SandboxSettlementParser()
    items = [item for item in parser.parse(io.BytesIO(data.encode())) if isinstance(item, SettlementLine)]

    assert len(items) == 4
    assert items[0] == SettlementLine(
        line=2,
        kind=LineKind.CHARGE,
        raw_type="charge",
        psp_reference="pi_1",
        merchant_reference="order-1",
        currency="USD",
        gross_minor=1000,
        fee_minor=59,
        net_minor=941,
        occurred_at=utc("2026-03-02 10:00:00"),
        batch="2026-03-02",
        details={"source_reference": "ch_1"},
    )
    summary = [(i.kind, i.psp_reference, i.merchant_reference, i.gross_minor, i.net_minor) for i in items]
    assert summary == [
        (LineKind.CHARGE, "pi_1", "order-1", 1000, 941),
        (LineKind.REFUND, "re_1", "refund-1", -300, -300),
        (LineKind.PAYOUT, "po_1", "payout-1", -500, -500),
        (LineKind.FEE, "fee_20260302_1", "", -500, -500),
    ]
    assert parser.checks == []


def test_bom_reordered_columns_lower_case_currency_unknown_type_and_inconsistent_net_are_kept() -> None:
    header = "line_count,type,gross_minor,net_minor,fee_minor,currency,psp_reference,record_type,settlement_date\n"
    data = (
        "\ufeff"
        + header
        + ",charge,1000,900,59,usd,pi_1,L,2026-03-02\n"  # net is not gross - fee: yielded as is, to be reported
        + ",Dispute,-70,-70,0,eur,du_1,l,2026-03-02\n"
        + "2,,930,830,59,,TRAILER,T,2026-03-02\n"
    )
    first, second = parse(data)

    assert isinstance(first, SettlementLine) and isinstance(second, SettlementLine)
    assert (first.currency, first.gross_minor, first.fee_minor, first.net_minor) == ("USD", 1000, 59, 900)
    assert (first.merchant_reference, first.occurred_at, first.details) == ("", None, {})
    assert (second.kind, second.raw_type, second.currency) == (LineKind.OTHER, "Dispute", "EUR")


def test_unreadable_rows_are_quarantined_and_still_counted_by_the_trailer() -> None:
    data = (
        HEADER
        + row("pi_1", "charge", 1000)
        + row("pi_2", "charge", 200, currency="XYZ")  # unknown currency
        + row("pi_3", "charge", 300, created="2026-03-02T10:00:00")  # not the timestamp format
        + row("", "charge", 400)  # no reference
        + row("pi_5", "charge", 500, settlement_date="02/03/2026")
        + "X,2026-03-02,pi_6,,charge,USD,600,0,600,2026-03-02 10:00:00,,\r\n"  # unknown record type
        + trailer(6, 3000, 0, 3000)
    )
    items = parse(data)

    assert isinstance(items[0], SettlementLine)
    quarantined = [(item.line, item.reason.split(":")[0]) for item in items if isinstance(item, Quarantined)]
    assert quarantined == [
        (3, "currency"),
        (4, "created_utc"),
        (5, "psp_reference is empty"),
        (6, "settlement_date"),
        (7, "record_type"),
    ]
    assert isinstance(items[1], Quarantined) and items[1].raw.startswith("L,2026-03-02,pi_2,")


@pytest.mark.parametrize("bad", ["12.50", "1_000", " 1 2", "abc", "", "+5", "٣"])
def test_a_non_integer_amount_is_quarantined_and_leaves_the_sums_unverifiable(bad: str) -> None:
    data = HEADER + row("pi_1", "charge", 1000) + row("pi_2", "charge", bad, 0, 5) + trailer(2, 1005, 0, 1005)
    items = stream(data)

    assert isinstance(next(items), SettlementLine)
    quarantined = next(items)
    assert isinstance(quarantined, Quarantined) and quarantined.line == 3
    assert quarantined.reason.startswith("gross_minor:") and "not an integer" in quarantined.reason
    with pytest.raises(FileRejected, match=r"gross_minor 1005 != 1000 summed .*1 row\(s\) .* first at line 3"):
        next(items)


def test_a_row_with_the_wrong_field_count_is_quarantined_and_counted() -> None:
    data = HEADER + row("pi_1", "charge", 1000) + "L,2026-03-02,pi_2,,charge\r\n" + trailer(2, 1000, 0, 1000)
    items = parse(data)

    assert isinstance(items[1], Quarantined) and items[1].reason == "expected 12 fields, found 5"


def test_a_file_without_a_trailer_is_rejected_at_the_end_after_its_lines() -> None:
    items = stream(HEADER + row("pi_1", "charge", 1000) + row("pi_2", "charge", 2000))

    assert [item.line for item in [next(items), next(items)]] == [2, 3]
    with pytest.raises(FileRejected, match=r"^truncated: no trailer after line 3$"):
        next(items)
    with pytest.raises(FileRejected, match=r"^truncated: no trailer after line 1$"):
        parse(HEADER)
    with pytest.raises(FileRejected, match=r"^no header$"):
        parse("")


@pytest.mark.parametrize(
    ("trailer_row", "message"),
    [
        (trailer(3, 3000, 0, 3000), r"^line 4: trailer counts 3 lines but the file has 2 \(truncated or corrupt\)$"),
        (trailer(1, 3000, 0, 3000), r"counts 1 lines but the file has 2"),
        (trailer(2, 3001, 0, 3000), r"^line 4: trailer gross_minor 3001 != 3000 summed over the lines$"),
        (trailer(2, 3000, 7, 3000), r"trailer fee_minor 7 != 0"),
        (trailer(2, 3000, 0, 2999), r"trailer net_minor 2999 != 3000"),
        (trailer(2, "3000.00", 0, 3000), r"trailer gross_minor '3000.00' is not an integer"),
        (trailer(2, 3000, 0, 3000, "2026-03-03"), r"trailer is dated '2026-03-03' but line 2 is dated '2026-03-02'"),
        ("T,2026-03-02,TOTAL,,,,3000,0,3000,,,2\r\n", r"trailer psp_reference is 'TOTAL', not 'TRAILER'"),
    ],
)
def test_a_trailer_that_disagrees_with_the_lines_rejects_the_file(trailer_row: str, message: str) -> None:
    data = HEADER + row("pi_1", "charge", 1000) + row("pi_2", "charge", 2000) + trailer_row

    with pytest.raises(FileRejected, match=message):
        parse(data)


def test_lines_dated_unlike_each_other_reject_the_file() -> None:
    data = HEADER + row("pi_1", "charge", 1) + row("pi_2", "charge", 2, settlement_date="2026-03-03")
    with pytest.raises(FileRejected, match=r"line 3 is dated '2026-03-03'"):
        parse(data + trailer(2, 3, 0, 3))


def test_rows_after_the_trailer_reject_the_file_and_trailing_blank_lines_do_not() -> None:
    body = HEADER + row("pi_1", "charge", 1000) + trailer(1, 1000, 0, 1000)

    assert len(parse(body + "\r\n\r\n")) == 1
    with pytest.raises(FileRejected, match=r"^line 4: a row after the trailer \(line 3\)$"):
        parse(body + row("pi_2", "charge", 5))
    with pytest.raises(FileRejected, match=r"^line 4: a row after the trailer"):
        parse(body + trailer(1, 1000, 0, 1000))


def test_missing_required_columns_reject_the_file_naming_them() -> None:
    with pytest.raises(FileRejected, match=r"^missing required column\(s\): fee_minor, line_count$"):
        parse("record_type,settlement_date,psp_reference,type,currency,gross_minor,net_minor\r\n")


def test_undecodable_bytes_reject_the_file_naming_the_line() -> None:
    data = (HEADER + row("pi_1", "charge", 1)).encode() + b"L,2026-03-02,pi_2,caf\xe9,charge,USD,1,0,1,,,\r\n"
    with pytest.raises(FileRejected, match=r"^line 3: not valid UTF-8$"):
        parse(data)


def _sandbox_with(charges: int, refunds: int, payouts: int) -> SandboxState:
    """A sandbox holding the given numbers of records on DAY, built without HTTP (which is tested elsewhere)."""
    state = SandboxState()
    start_s = calendar.timegm(DAY.timetuple())
    for n in range(charges):
        state.store.add_charge(
            {
                "payment_intent_id": f"pi_{n:08d}",
                "charge_id": f"ch_{n:08d}",
                "amount": 1000 + n % 997,
                "currency": "usd" if n % 3 else "eur",
                "payment_order_id": f"order-{n}",
                "metadata": {"payment_order_id": f"order-{n}"},
                "created": start_s + n % 86_400,
                "idempotency_key": None,
            }
        )
    for n in range(refunds):
        refund: dict[str, Any] = {"stripe_refund_id": f"re_{n:08d}", "payment_intent_id": f"pi_{n:08d}"}
        refund |= {"charge_id": f"ch_{n:08d}", "amount": 100, "currency": "usd", "created": start_s + (n * 7) % 86_400}
        refund["metadata"] = {"refund_id": f"refund-{n}"}
        api_object = {"id": refund["stripe_refund_id"], "payment_intent": refund["payment_intent_id"]}
        state.refunds.add(api_object | {"charge": refund["charge_id"], "amount": 100, "metadata": {}}, refund)
    for n in range(payouts):
        payout: dict[str, Any] = {"stripe_payout_id": f"po_{n:08d}", "payout_id": f"payout-{n}", "amount": 5000}
        payout |= {"currency": "usd", "destination": "ba_test_success", "created": start_s + n}
        payout["metadata"] = {"payout_id": f"payout-{n}"}
        state.payouts.add({"id": payout["stripe_payout_id"], "metadata": {}}, payout)
    return state


def test_the_generated_file_parses_back_into_the_sandbox_items() -> None:
    state = _sandbox_with(charges=3, refunds=1, payouts=1)
    out = io.StringIO(newline="")
    options = SettlementOptions(fees=True, unknown_charges=1, extra_fee_lines=1)

    assert write_settlement_file(state, DAY, options, out) == 7
    items = parse(out.getvalue())

    assert all(isinstance(item, SettlementLine) for item in items)
    lines = [item for item in items if isinstance(item, SettlementLine)]
    refs = [(line.psp_reference, line.merchant_reference, line.gross_minor, line.fee_minor) for line in lines]
    assert refs == [  # by created time, then reference
        ("pi_00000000", "order-0", 1000, processing_fee_minor(1000)),
        ("po_00000000", "payout-0", -5000, 0),
        ("re_00000000", "refund-0", -100, 0),
        ("pi_00000001", "order-1", 1001, processing_fee_minor(1001)),
        ("pi_00000002", "order-2", 1002, processing_fee_minor(1002)),
        ("fee_20260302_1", "", -500, 0),
        ("pi_unknown_20260302_1", "", 1234, processing_fee_minor(1234)),
    ]
    assert (lines[0].currency, lines[1].details) == ("EUR", {"source_reference": "ba_test_success"})
    out_again = io.StringIO(newline="")
    write_settlement_file(state, DAY, options, out_again)
    assert out_again.getvalue() == out.getvalue()  # deterministic


def test_the_processing_fee_is_2_9_percent_plus_30_rounded_half_up() -> None:
    assert [processing_fee_minor(amount) for amount in (0, 1000, 1234, 50, 17, 100_000)] == [30, 59, 66, 31, 30, 2930]
    assert processing_fee_minor(500) == 45  # 14.5 rounds up to 15
    assert processing_fee_minor(1500) == 74  # 43.5 rounds up to 44


def test_switches_from_query_parameters_and_their_errors() -> None:
    options = options_from_query(
        [("drop", "pi_1,pi_2"), ("change_amount", "pi_3:-100,pi_4:+5"), ("change_currency", "pi_4:eur"),
         ("fees", "true"), ("unknown_charges", "2"), ("truncate", "1")]
    )  # fmt: skip
    assert options == SettlementOptions(
        drop=frozenset({"pi_1", "pi_2"}),
        change_amount={"pi_3": -100, "pi_4": 5},
        change_currency={"pi_4": "EUR"},
        fees=True,
        unknown_charges=2,
        truncate=True,
    )
    for params, param in [
        ([("nope", "1")], "nope"),
        ([("drop", "pi_1"), ("drop", "pi_2")], "drop"),
        ([("drop", "pi_1,,pi_2")], "drop"),
        ([("change_amount", "pi_3")], "change_amount"),
        ([("change_amount", "pi_3:1.5")], "change_amount"),
        ([("change_currency", "pi_3:EURO")], "change_currency"),
        ([("unknown_charges", "-1")], "unknown_charges"),
        ([("extra_fee_lines", "100001")], "extra_fee_lines"),
        ([("fees", "yes")], "fees"),
    ]:
        with pytest.raises(SettlementQueryError) as raised:
            options_from_query(params)
        assert raised.value.param == param
    assert settlement_day("2026-03-02") == DAY
    for text in ("2026-02-30", "20260302", "2026-3-2"):
        with pytest.raises(SettlementQueryError, match=r"^date: "):
            settlement_day(text)


def test_a_20000_line_file_streams_in_constant_memory(tmp_path: Path) -> None:
    state = _sandbox_with(charges=13_000, refunds=4_000, payouts=1_000)
    path = tmp_path / "settlement_2026-03-02.csv"
    options = SettlementOptions(fees=True, unknown_charges=1_000, extra_fee_lines=1_000)
    with path.open("w", encoding="utf-8", newline="") as out:
        assert write_settlement_file(state, DAY, options, out) == 20_000
    del state

    parser = SandboxSettlementParser()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        count = 0
        with path.open("rb") as file:
            for item in parser.parse(file):
                assert isinstance(item, SettlementLine)
                count += 1
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed_s = time.perf_counter() - started

    print(
        f"sandbox: {path.stat().st_size / 1e6:.1f} MB file, {count / elapsed_s:,.0f} lines/s under tracemalloc, "
        f"tracemalloc peak {peak_bytes / 1e6:.2f} MB"
    )
    assert count == 20_000
    # Holding the lines would take several MB (the file alone is ~2 MB): streaming stays far below.
    assert peak_bytes < 2_000_000
