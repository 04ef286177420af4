"""Payout CSV reports: amounts at each currency's exponent, metadata columns, grouping, formula defusing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from settle.common.v1.money_pb2 import Money
from settle.wallet.v1 import wallet_pb2

from services.cli.payout_reports import (
    major_units,
    metadata_keys_of,
    status_name,
    write_grouped_csv,
    write_items_csv,
)

REQUESTED = wallet_pb2.PAYOUT_STATUS_REQUESTED
PAID = wallet_pb2.PAYOUT_STATUS_PAID
FAILED = wallet_pb2.PAYOUT_STATUS_FAILED


def payout(
    amount_minor: int = 1234,
    currency: str = "USD",
    *,
    seller_id: str = "seller-1",
    status: wallet_pb2.PayoutStatus.ValueType = PAID,
    line: int = 2,
    **metadata: str,
) -> wallet_pb2.Payout:
    return wallet_pb2.Payout(
        payout_id=f"00000000-0000-4000-8000-{line:012d}",
        seller_id=seller_id,
        amount=Money(amount_minor=amount_minor, currency=currency),
        destination="ba_main_1",
        status=status,
        origin=wallet_pb2.PAYOUT_ORIGIN_BATCH,
        batch_id="batch-1",
        batch_line=line,
        metadata=metadata,
    )


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def items_report(payouts: list[wallet_pb2.Payout], metadata_keys: list[str]) -> tuple[int, str]:
    out = io.StringIO(newline="")
    written = write_items_csv(payouts, out, metadata_keys)
    return written, out.getvalue()


def grouped_report(payouts: list[wallet_pb2.Payout], group_by: str) -> tuple[int, list[list[str]]]:
    out = io.StringIO(newline="")
    written = write_grouped_csv(iter(payouts), out, group_by)
    return written, list(csv.reader(io.StringIO(out.getvalue(), newline="")))


@pytest.mark.parametrize(
    ("amount_minor", "currency", "amount"),
    [
        (1234, "USD", "12.34"),
        (5, "USD", "0.05"),
        (500, "JPY", "500"),
        (1234, "KWD", "1.234"),
        (7, "KWD", "0.007"),
        (0, "EUR", "0.00"),
        (-1234, "USD", "-12.34"),
        (99_999_999, "USD", "999999.99"),
    ],
)
def test_major_units_use_each_currencys_exponent(amount_minor: int, currency: str, amount: str) -> None:
    assert major_units(amount_minor, currency) == amount


def test_major_units_refuse_an_unknown_currency() -> None:
    with pytest.raises(ValueError, match="'XXX' is not a supported currency"):
        major_units(1, "XXX")


def test_status_names_are_lower_case_without_the_prefix() -> None:
    assert [status_name(status) for status in (REQUESTED, PAID, FAILED)] == ["requested", "paid", "failed"]


def test_the_items_report_has_one_row_per_payout_with_metadata_columns() -> None:
    failed = payout(500, "JPY", status=FAILED, line=3, branch="south")
    failed.failure_code, failed.failure_message = "account_closed", "The bank account is closed"
    paid = payout(1234, "KWD", line=2, branch="north", source="import")
    paid.psp_reference = "po_123"

    written, text = items_report([paid, failed], ["branch", "source"])

    assert written == 2
    assert text.splitlines()[0] == (
        "line,payout_id,seller_id,amount_minor,currency,amount,destination,status,psp_reference,failure_code,"
        "failure_message,branch,source"
    )
    assert rows_of(text) == [
        {
            "line": "2", "payout_id": "00000000-0000-4000-8000-000000000002", "seller_id": "seller-1",
            "amount_minor": "1234", "currency": "KWD", "amount": "1.234", "destination": "ba_main_1",
            "status": "paid", "psp_reference": "po_123", "failure_code": "", "failure_message": "",
            "branch": "north", "source": "import",
        },
        {
            "line": "3", "payout_id": "00000000-0000-4000-8000-000000000003", "seller_id": "seller-1",
            "amount_minor": "500", "currency": "JPY", "amount": "500", "destination": "ba_main_1",
            "status": "failed", "psp_reference": "", "failure_code": "account_closed",
            "failure_message": "The bank account is closed", "branch": "south", "source": "",
        },
    ]  # fmt: skip


def test_rows_end_in_crlf_and_an_empty_report_has_only_the_header() -> None:
    written, text = items_report([], [])

    assert written == 0
    assert text.endswith("failure_message\r\n")
    assert text.count("\n") == 1


def test_metadata_keys_are_the_sorted_union() -> None:
    payouts = [payout(branch="n", source="s"), payout(region="eu"), payout()]

    assert metadata_keys_of(payouts) == ["branch", "region", "source"]


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_text_cells_that_a_spreadsheet_would_run_get_a_leading_apostrophe(dangerous: str) -> None:
    unsafe = payout(seller_id=dangerous, branch=dangerous)
    unsafe.failure_message = dangerous

    _, text = items_report([unsafe], ["branch"])

    row = rows_of(text)[0]
    assert row["seller_id"] == row["failure_message"] == row["branch"] == "'" + dangerous


def test_numeric_cells_and_harmless_text_are_left_as_they_are() -> None:
    _, text = items_report([payout(-1234, seller_id="a=b", branch="north-east")], ["branch"])

    row = rows_of(text)[0]
    assert (row["amount_minor"], row["amount"]) == ("-1234", "-12.34")
    assert (row["seller_id"], row["branch"]) == ("a=b", "north-east")


def test_a_metadata_key_used_as_a_header_is_defused_too() -> None:
    keyed = payout()
    keyed.metadata["-k"] = "v"

    _, text = items_report([keyed], ["-k"])

    assert text.splitlines()[0].endswith(",'-k")


def payouts_of_two_branches() -> list[wallet_pb2.Payout]:
    return [
        payout(1000, "USD", seller_id="seller-2", status=PAID, branch="south"),
        payout(250, "USD", seller_id="seller-1", status=FAILED, branch="north"),
        payout(750, "USD", seller_id="seller-1", status=PAID, branch="north"),
        payout(100, "EUR", seller_id="seller-1", status=REQUESTED, branch="north"),
        payout(300, "JPY", seller_id="seller-2", status=REQUESTED),
    ]


def test_grouping_by_a_metadata_key_sums_per_group_currency_and_status() -> None:
    written, rows = grouped_report(payouts_of_two_branches(), "branch")

    assert written == 4
    assert rows == [
        ["branch", "currency", "items", "amount_minor", "amount", "requested_items", "requested_minor",
         "paid_items", "paid_minor", "failed_items", "failed_minor"],
        ["", "JPY", "1", "300", "300", "1", "300", "0", "0", "0", "0"],
        ["north", "EUR", "1", "100", "1.00", "1", "100", "0", "0", "0", "0"],
        ["north", "USD", "2", "1000", "10.00", "0", "0", "1", "750", "1", "250"],
        ["south", "USD", "1", "1000", "10.00", "0", "0", "1", "1000", "0", "0"],
    ]  # fmt: skip


def test_grouping_by_a_key_no_payout_has_puts_everything_under_the_empty_group() -> None:
    _, rows = grouped_report(payouts_of_two_branches(), "region")

    assert [row[:4] for row in rows[1:]] == [["", "EUR", "1", "100"], ["", "JPY", "1", "300"], ["", "USD", "3", "2000"]]


def test_grouping_by_seller_id_and_by_status_uses_the_built_in_fields() -> None:
    _, by_seller = grouped_report(payouts_of_two_branches(), "seller_id")
    _, by_status = grouped_report(payouts_of_two_branches(), "status")

    assert [row[:4] for row in by_seller] == [
        ["seller_id", "currency", "items", "amount_minor"],
        ["seller-1", "EUR", "1", "100"],
        ["seller-1", "USD", "2", "1000"],
        ["seller-2", "JPY", "1", "300"],
        ["seller-2", "USD", "1", "1000"],
    ]
    assert [row[:4] for row in by_status[1:]] == [
        ["failed", "USD", "1", "250"],
        ["paid", "USD", "2", "1750"],
        ["requested", "EUR", "1", "100"],
        ["requested", "JPY", "1", "300"],
    ]


def test_grouping_by_destination_reads_a_one_pass_generator() -> None:
    def once() -> Iterator[wallet_pb2.Payout]:
        yield from payouts_of_two_branches()

    out = io.StringIO(newline="")

    assert write_grouped_csv(once(), out, "destination") == 3


def test_group_values_are_defused() -> None:
    _, rows = grouped_report([payout(branch="=cmd()")], "branch")

    assert rows[1][0] == "'=cmd()"
