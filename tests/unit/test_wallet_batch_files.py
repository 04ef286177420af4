"""Payout batch files: valid CSV and XML, every field rule, all bad lines reported, hostile XML refused."""

from __future__ import annotations

import time

import pytest

from services.common.money import MAX_AMOUNT_MINOR, Money
from services.wallet.batch_files import (
    MAX_PAYOUTS,
    MAX_VIOLATIONS,
    BatchInvalid,
    BatchLine,
    PayoutFormat,
    content_sha256,
    parse_batch,
)

CSV = PayoutFormat.CSV
XML = PayoutFormat.XML
HEADER = "seller_id,amount_minor,currency,destination,branch\n"


def violations(content: bytes | str, file_format: PayoutFormat = CSV) -> list[tuple[str, str]]:
    raw = content.encode() if isinstance(content, str) else content
    with pytest.raises(BatchInvalid) as refused:
        parse_batch(raw, file_format)
    return [(violation.field, violation.description) for violation in refused.value.violations]


def only_violation(content: bytes | str, file_format: PayoutFormat = CSV) -> tuple[str, str]:
    found = violations(content, file_format)
    assert len(found) == 1, found
    return found[0]


def csv_row(**fields: str) -> str:
    row = {"seller_id": "seller-1", "amount_minor": "1234", "currency": "USD", "destination": "", "branch": "north"}
    row.update(fields)
    return HEADER + ",".join(row.values()) + "\n"


def xml_payout(attributes: str, children: str = "") -> str:
    return f"<payouts>\n<payout {attributes}>{children}</payout>\n</payouts>\n"


def test_a_valid_csv_with_metadata_becomes_lines_in_file_order() -> None:
    content = HEADER + "seller-1,1234,USD,ba_main_1,north\nseller-2,500,JPY,,south\n"

    assert parse_batch(content.encode(), CSV) == [
        BatchLine(2, "seller-1", Money(1234, "USD"), "ba_main_1", {"branch": "north"}),
        BatchLine(3, "seller-2", Money(500, "JPY"), "", {"branch": "south"}),
    ]


def test_csv_header_names_are_trimmed_and_destination_is_optional() -> None:
    content = " seller_id , amount_minor,currency , source\nseller-1,1,KWD,import\n"

    assert parse_batch(content.encode(), CSV) == [BatchLine(2, "seller-1", Money(1, "KWD"), "", {"source": "import"})]


def test_an_empty_metadata_cell_is_no_value() -> None:
    assert parse_batch(csv_row(branch="").encode(), CSV)[0].metadata == {}


def test_quoted_csv_fields_may_hold_commas() -> None:
    content = HEADER + 'seller-1,1,USD,,"north, east"\n'

    assert parse_batch(content.encode(), CSV)[0].metadata == {"branch": "north, east"}


def test_a_bom_is_accepted_and_not_part_of_the_first_column() -> None:
    content = b"\xef\xbb\xbf" + csv_row().encode()

    assert parse_batch(content, CSV)[0].seller_id == "seller-1"


def test_blank_lines_are_skipped_and_lines_keep_their_physical_numbers() -> None:
    content = "\n" + HEADER + "\nseller-1,1,USD,,a\r\n   \nseller-2,2,USD,,b\n\n"

    assert [line.line for line in parse_batch(content.encode(), CSV)] == [4, 6]
    assert violations("\n" + HEADER + "\n\nseller-1,0,USD,,a\n") == [
        ("line 5: amount_minor", "must be from 1 to 99999999 (got '0')")
    ]


def test_a_valid_xml_with_metadata_gives_the_line_of_each_payout_tag() -> None:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<payouts>\n"
        '  <payout seller_id="seller-1" amount_minor="1234" currency="USD" destination="ba_main_1">\n'
        '    <metadata key="branch">north</metadata>\n'
        '    <metadata key="source">import &amp; sync</metadata>\n'
        "  </payout>\n"
        "  <!-- a comment -->\n"
        '  <payout seller_id="seller-2" amount_minor="500" currency="JPY"/>\n'
        "</payouts>\n"
    )

    assert parse_batch(content.encode(), XML) == [
        BatchLine(3, "seller-1", Money(1234, "USD"), "ba_main_1", {"branch": "north", "source": "import & sync"}),
        BatchLine(8, "seller-2", Money(500, "JPY"), "", {}),
    ]


def test_xml_is_read_as_utf8_with_or_without_a_bom_whatever_it_declares() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + xml_payout(
        'seller_id="seller-1" amount_minor="1" currency="EUR"', '<metadata key="city">Zürich</metadata>'
    )

    assert parse_batch(body.encode(), XML)[0].metadata == {"city": "Zürich"}
    assert parse_batch(b"\xef\xbb\xbf" + body.encode(), XML)[0].line == 3


def test_the_sha256_is_the_hex_digest_of_the_bytes() -> None:
    assert content_sha256(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"seller_id": ""}, "line 2: seller_id", "is required"),
        ({"seller_id": "s" * 65}, "line 2: seller_id", "at most 64 characters"),
        ({"seller_id": "seller\x01"}, "line 2: seller_id", "control characters"),
        ({"seller_id": " seller-1"}, "line 2: seller_id", "surrounding spaces"),
        ({"amount_minor": ""}, "line 2: amount_minor", "is required"),
        ({"amount_minor": "-5"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": "+5"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": "12.34"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": "1e3"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": " 12"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": "١٢"}, "line 2: amount_minor", "digits 0-9 only"),
        ({"amount_minor": "0"}, "line 2: amount_minor", "must be from 1 to 99999999"),
        ({"amount_minor": str(MAX_AMOUNT_MINOR + 1)}, "line 2: amount_minor", "must be from 1 to 99999999"),
        ({"amount_minor": "9" * 5000}, "line 2: amount_minor", "must be from 1 to 99999999"),
        ({"currency": ""}, "line 2: currency", "is required"),
        ({"currency": "usd"}, "line 2: currency", "'usd' is not a supported ISO 4217 code"),
        ({"currency": "XXX"}, "line 2: currency", "'XXX' is not a supported ISO 4217 code"),
        ({"destination": "acct_1"}, "line 2: destination", "'ba_' followed by 1 to 200"),
        ({"destination": "ba_"}, "line 2: destination", "'ba_' followed by 1 to 200"),
        ({"destination": "ba_a-b"}, "line 2: destination", "'ba_' followed by 1 to 200"),
        ({"destination": "ba_" + "a" * 201}, "line 2: destination", "'ba_' followed by 1 to 200"),
        ({"branch": "n" * 501}, "line 2: branch", "at most 500 characters"),
        ({"branch": "north\x7f"}, "line 2: branch", "control characters"),
    ],
)
def test_each_csv_field_rule_names_the_line_and_column(fields: dict[str, str], field: str, fragment: str) -> None:
    found_field, description = only_violation(csv_row(**fields))

    assert found_field == field
    assert fragment in description


def test_the_largest_amount_and_longest_values_are_accepted() -> None:
    row = csv_row(
        seller_id="s" * 64, amount_minor=str(MAX_AMOUNT_MINOR), destination="ba_" + "a" * 200, branch="n" * 500
    )

    assert parse_batch(row.encode(), CSV)[0].amount == Money(MAX_AMOUNT_MINOR, "USD")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("seller_id,amount_minor,currency,,branch", "column 4 has no name"),
        ("seller_id,amount_minor,currency,branch,branch ", "column 'branch' appears twice"),
        ("seller_id,amount_minor,currency,branch office", "metadata key 'branch office' must be 1 to 40"),
        ("seller_id,amount_minor,currency," + "k" * 41, "must be 1 to 40 characters"),
        ("seller_id,amount_minor,currency,status", "metadata key 'status' is reserved"),
        ("seller_id,amount_minor,branch", "the required column 'currency' is missing"),
        ("seller_id,amount_minor,currency," + ",".join(f"k{i}" for i in range(21)), "21 metadata columns"),
    ],
)
def test_header_problems_are_file_violations(header: str, fragment: str) -> None:
    field, description = only_violation(header + "\nseller-1,1,USD,x\n")

    assert field == "file"
    assert fragment in description
    assert "(line 1)" in description


def test_twenty_metadata_columns_are_allowed() -> None:
    header = "seller_id,amount_minor,currency," + ",".join(f"k{i}" for i in range(20))

    assert len(parse_batch(f"{header}\nseller-1,1,USD{',v' * 20}\n".encode(), CSV)[0].metadata) == 20


def test_a_row_with_a_wrong_number_of_fields_is_a_line_violation() -> None:
    content = HEADER + "seller-1,1,USD,,north,extra\nseller-2,1,USD\n"

    assert violations(content) == [
        ("line 2", "has 6 fields; the header has 5"),
        ("line 3", "has 3 fields; the header has 5"),
    ]


def test_a_quoted_field_may_not_span_lines() -> None:
    content = HEADER + 'seller-1,1,USD,,"north\nend"\nseller-2,1,USD,,south\n'

    found = violations(content)

    assert found[0] == ("line 2", "is not valid CSV: a quoted field is not closed (fields may not contain line breaks)")
    assert found[1][0] == "line 3"  # the rest of that field is read as a line of its own


def test_every_bad_line_is_reported_not_only_the_first() -> None:
    content = HEADER + "seller-1,1,USD,,a\n,0,usd,x,b\nseller-3,1,USD,,c\nseller-4,1.5,USD,,d\n"

    assert [field for field, _ in violations(content)] == [
        "line 3: seller_id",
        "line 3: amount_minor",
        "line 3: currency",
        "line 3: destination",
        "line 5: amount_minor",
    ]


def test_violations_are_capped_with_a_last_one_counting_the_rest() -> None:
    content = "seller_id,amount_minor,currency\n" + "seller-1,0,USD\n" * 1500

    found = violations(content)

    assert len(found) == MAX_VIOLATIONS
    assert found[0] == ("line 2: amount_minor", "must be from 1 to 99999999 (got '0')")
    assert found[-2][0] == f"line {MAX_VIOLATIONS}: amount_minor"
    assert found[-1] == ("file", f"{1500 - (MAX_VIOLATIONS - 1)} more violations were left out")


@pytest.mark.parametrize(("content", "fragment"), [(b"", "is empty"), (b" \n\n", "is empty")])
@pytest.mark.parametrize("file_format", [CSV, XML])
def test_an_empty_file_is_refused(content: bytes, fragment: str, file_format: PayoutFormat) -> None:
    assert only_violation(content, file_format) == ("file", "is empty; it must contain at least one payout")


def test_a_file_without_payouts_is_refused() -> None:
    expected = ("file", "contains no payouts; at least one is required")
    assert only_violation("seller_id,amount_minor,currency\n\n") == expected
    assert only_violation("<payouts>\n</payouts>", XML) == expected


def test_more_than_the_maximum_number_of_payouts_is_refused_first_of_all() -> None:
    content = "seller_id,amount_minor,currency\nseller-1,0,USD\n" + "seller-1,1,USD\n" * MAX_PAYOUTS

    assert violations(content) == [
        ("file", "contains 100001 payouts; at most 100000 are allowed"),
        ("line 2: amount_minor", "must be from 1 to 99999999 (got '0')"),
    ]


def test_the_maximum_number_of_payouts_is_accepted() -> None:
    content = "seller_id,amount_minor,currency\n" + "seller-1,1,USD\n" * MAX_PAYOUTS

    assert len(parse_batch(content.encode(), CSV)) == MAX_PAYOUTS


def test_a_file_over_16_mib_is_refused_before_parsing() -> None:
    content = b"x" * (16 * 1024 * 1024 + 1)

    assert only_violation(content) == ("file", "is 16777217 bytes; at most 16777216 allowed")


def test_invalid_utf8_is_refused_naming_the_line() -> None:
    content = HEADER.encode() + b"seller-1,1,USD,,Z\xfcrich\n"

    assert only_violation(content) == ("file", "is not valid UTF-8 (line 2, byte 68)")


@pytest.mark.parametrize(
    ("attributes", "field", "fragment"),
    [
        ('amount_minor="1" currency="USD"', "line 2: seller_id", "is required"),
        ('seller_id="seller-1" currency="USD"', "line 2: amount_minor", "is required"),
        ('seller_id="seller-1" amount_minor="1"', "line 2: currency", "is required"),
        ('seller_id="seller-1" amount_minor="-1" currency="USD"', "line 2: amount_minor", "digits 0-9 only"),
        ('seller_id="seller-1" amount_minor="1" currency="EURO"', "line 2: currency", "not a supported"),
        ('seller_id="s&#9;1" amount_minor="1" currency="USD"', "line 2: seller_id", "control characters"),
        ('seller_id="seller-1" amount_minor="1" currency="USD" destination="x"', "line 2: destination", "'ba_'"),
        ('seller_id="seller-1" amount_minor="1" currency="USD" amount="1"', "line 2: amount", "not an attribute"),
    ],
)
def test_each_xml_attribute_rule_names_the_payout_line(attributes: str, field: str, fragment: str) -> None:
    found_field, description = only_violation(xml_payout(attributes), XML)

    assert found_field == field
    assert fragment in description


VALID = 'seller_id="seller-1" amount_minor="1" currency="USD"'


@pytest.mark.parametrize(
    ("children", "field", "fragment"),
    [
        ("<metadata>x</metadata>", "line 2: metadata", "needs a key attribute"),
        ('<metadata key="a b">x</metadata>', "line 2: metadata", "'a b' must be 1 to 40 characters"),
        ('<metadata key="currency">x</metadata>', "line 2: metadata", "'currency' is reserved"),
        ('<metadata key="b">x</metadata>\n<metadata key="b">y</metadata>', "line 2: metadata", "'b' appears twice"),
        ('<metadata key="b" lang="en">x</metadata>', "line 2: lang", "is not an attribute of <metadata>"),
        (f'<metadata key="b">{"v" * 501}</metadata>', "line 2: b", "at most 500 characters"),
        ('<metadata key="b">two\nlines</metadata>', "line 2: b", "control characters"),
        ("".join(f'<metadata key="k{i}">v</metadata>' for i in range(21)), "line 2: metadata", "21 keys"),
        ("\n<amount>1</amount>", "line 3", "unexpected element <amount> inside <payout>"),
        ('<metadata key="b"><i>x</i></metadata>', "line 2", "unexpected element <i> inside <metadata>"),
        ("\nloose text", "line 3", "unexpected text inside <payout>"),
    ],
)
def test_each_xml_metadata_and_structure_rule(children: str, field: str, fragment: str) -> None:
    found_field, description = only_violation(xml_payout(VALID, children), XML)

    assert found_field == field
    assert fragment in description


def test_unknown_elements_beside_payouts_are_line_violations_once() -> None:
    content = f"<payouts>\n<payout {VALID}/>\n<note><deep><deeper/></deep></note>\n</payouts>"

    assert only_violation(content, XML) == ("line 3", "unexpected element <note> inside <payouts>")


def test_an_attribute_of_the_root_is_a_line_violation() -> None:
    content = f'<payouts version="2">\n<payout {VALID}/>\n</payouts>'

    assert only_violation(content, XML) == ("line 1: version", "is not an attribute of <payouts>")


def test_too_many_metadata_keys_do_not_hide_the_other_problems_of_the_payout() -> None:
    children = "".join(f'<metadata key="k{i}">v</metadata>' for i in range(21))
    content = xml_payout('seller_id="seller-1" amount_minor="0" currency="USD"', children)

    assert [field for field, _ in violations(content, XML)] == ["line 2: metadata", "line 2: amount_minor"]


def test_every_bad_xml_payout_is_reported() -> None:
    content = (
        f"<payouts>\n<payout {VALID}/>\n"
        '<payout seller_id="" amount_minor="0" currency="USD"/>\n'
        '<payout seller_id="seller-3" amount_minor="1" currency="usd"/>\n</payouts>'
    )

    assert [field for field, _ in violations(content, XML)] == [
        "line 3: seller_id",
        "line 3: amount_minor",
        "line 4: currency",
    ]


def test_a_wrong_root_element_is_a_file_violation() -> None:
    assert only_violation(f"<batch><payout {VALID}/></batch>", XML) == (
        "file",
        "the root element must be <payouts>, not <batch> (line 1)",
    )


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (
            '<?xml version="1.0"?>\n<!DOCTYPE payouts [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n<payouts/>',
            2,
        ),
        ('<!DOCTYPE payouts SYSTEM "file:///etc/passwd">\n<payouts/>', 1),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE payouts [<!ENTITY x SYSTEM "file:///etc/passwd">]><payouts>&x;</payouts>',
            2,
        ),
    ],
)
def test_a_doctype_is_refused_so_no_entity_is_ever_expanded(content: str, line: int) -> None:
    assert only_violation(content, XML) == (
        "file",
        f"has a DOCTYPE (line {line}); DTDs and entity declarations are not accepted",
    )


def test_an_undeclared_entity_is_malformed_xml() -> None:
    assert only_violation(xml_payout('seller_id="&x;" amount_minor="1" currency="USD"'), XML) == (
        "file",
        "is not well-formed XML: undefined entity (line 2, column 1)",
    )


def test_malformed_xml_names_the_line() -> None:
    content = f"<payouts>\n<payout {VALID}>\n</payouts>"

    assert only_violation(content, XML) == ("file", "is not well-formed XML: mismatched tag (line 3, column 3)")


def test_parsing_is_linear_enough_for_large_files() -> None:
    """Not a timing assertion: prints the time of 50,000 lines for a human to look at (-s)."""
    content = "seller_id,amount_minor,currency,destination,branch\n" + "".join(
        f"seller-{index},{index + 1},USD,ba_main_{index},north\n" for index in range(50_000)
    )
    started = time.perf_counter()

    lines = parse_batch(content.encode(), CSV)

    print(f"parsed 50,000 CSV lines in {time.perf_counter() - started:.3f} s")
    assert len(lines) == 50_000
    assert lines[-1].line == 50_001
