"""XLSX writer: typed cells read back with openpyxl, bold frozen header, reproducible bytes."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.formats.spreadsheets import (
    Column,
    Sheet,
    SpreadsheetError,
    number_format,
    totals_row,
    write_workbook,
)

CREATED = datetime(2024, 5, 1, 9, 30)

INVOICE_COLUMNS = (
    Column("Invoice", "text"),
    Column("Customer", "text", width=30),
    Column("Issued", "date"),
    Column("Net (EUR)", "money", "EUR"),
    Column("Tax rate", "percent"),
    Column("Lines", "integer"),
)
INVOICE_ROWS = [
    ("INV-0001", "Müller & Söhne GmbH", date(2024, 3, 1), Decimal("1234.56"), Decimal("0.19"), 3),
    ("INV-0002", '=HYPERLINK("http://evil")', date(2024, 3, 31), Decimal("-0.01"), None, 1),
    ("INV-0003", 'Acme, "Widgets" Inc.', date(2024, 2, 29), Decimal("1000000.10"), Decimal(0), 12),
]
YEN_COLUMNS = (Column("Customer"), Column("Amount (JPY)", "money", "JPY"))
YEN_ROWS = [("株式会社テスト", Decimal("55000")), ("Tanaka", Decimal("1"))]


def sheets() -> list[Sheet]:
    return [
        Sheet("Invoices", INVOICE_COLUMNS, INVOICE_ROWS, totals_row(INVOICE_COLUMNS, INVOICE_ROWS)),
        Sheet("Yen", YEN_COLUMNS, YEN_ROWS, totals_row(YEN_COLUMNS, YEN_ROWS, label="Sum")),
        Sheet("Empty", (Column("Nothing yet"),), []),
    ]


def read(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def test_values_and_number_formats_read_back():
    workbook = read(write_workbook(sheets(), created=CREATED))
    assert workbook.sheetnames == ["Invoices", "Yen", "Empty"]
    sheet = workbook["Invoices"]
    assert [cell.value for cell in sheet[1]] == [column.header for column in INVOICE_COLUMNS]
    first = sheet[2]
    assert first[0].value == "INV-0001"
    assert first[1].value == "Müller & Söhne GmbH"
    assert first[2].value == datetime(2024, 3, 1)  # a real date, not text
    assert first[2].is_date and first[2].number_format == "yyyy-mm-dd"
    assert Decimal(str(first[3].value)) == Decimal("1234.56")
    assert first[3].data_type == "n" and first[3].number_format == "#,##0.00"
    assert first[4].value == pytest.approx(0.19) and first[4].number_format == "0.00%"
    assert first[5].value == 3 and first[5].number_format == "#,##0"
    assert sheet["C4"].value == datetime(2024, 2, 29)
    assert Decimal(str(sheet["D3"].value)) == Decimal("-0.01")
    assert Decimal(str(sheet["D4"].value)) == Decimal("1000000.10")
    assert sheet["E3"].value is None


def test_text_that_looks_like_a_formula_stays_text():
    sheet = read(write_workbook(sheets(), created=CREATED))["Invoices"]
    assert sheet["B3"].value == '=HYPERLINK("http://evil")'
    assert sheet["B3"].data_type == "s"
    assert sheet["B4"].value == 'Acme, "Widgets" Inc.'


def test_jpy_has_no_decimals():
    sheet = read(write_workbook(sheets(), created=CREATED))["Yen"]
    assert sheet["B2"].value == 55000
    assert sheet["B2"].number_format == "#,##0"
    assert number_format(Column("x", "money", "KWD")) == "#,##0.000"
    assert number_format(Column("x", "money")) == "#,##0.00"


def test_totals_are_values_computed_exactly_and_bold():
    data = write_workbook(sheets(), created=CREATED)
    sheet = read(data)["Invoices"]
    totals = [cell.value for cell in sheet[5]]
    assert totals[0] == "Total"
    assert totals[1] is None and totals[2] is None and totals[4] is None
    assert Decimal(str(totals[3])) == Decimal("1001234.65")
    assert totals[5] == 16
    assert all(cell.font.b for cell in sheet[5])
    assert sheet.max_row == 5
    yen = read(data)["Yen"]
    assert [cell.value for cell in yen[4]] == ["Sum", 55001]
    # No formulas anywhere: every reader sees the same numbers.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name)


def test_totals_row_sums_exactly():
    columns = (Column("What"), Column("Amount", "money", "USD"), Column("Qty", "integer"))
    rows = [("a", Decimal("0.10"), 1)] * 10 + [("b", None, None)]
    assert totals_row(columns, rows) == ("Total", Decimal("1.00"), 10)


def test_header_is_bold_frozen_and_filtered():
    workbook = read(write_workbook(sheets(), created=CREATED))
    sheet = workbook["Invoices"]
    assert all(cell.font.b for cell in sheet[1])
    assert not any(cell.font.b for cell in sheet[2])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:F4"  # header and rows; the totals stay out of sorting
    assert workbook["Empty"].auto_filter.ref == "A1:A1"
    assert workbook["Empty"].freeze_panes == "A2"


def test_column_widths_given_or_fitted():
    sheet = read(write_workbook(sheets(), created=CREATED))["Invoices"]
    assert sheet.column_dimensions["B"].width == 30
    assert sheet.column_dimensions["A"].width >= len("INV-0001")
    assert sheet.column_dimensions["D"].width >= len("1,000,000.10")


def test_same_input_gives_identical_bytes_whatever_the_clock(monkeypatch):
    first = write_workbook(sheets(), created=CREATED)
    # zipfile stamps members with the current time; the writer must not depend on it.
    later = datetime(2031, 1, 2, 3, 4, 5).timestamp()
    monkeypatch.setattr(zipfile.time, "time", lambda: later)
    second = write_workbook(sheets(), created=CREATED)
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2024, 5, 1, 9, 30, 0)}
    properties = read(first).properties
    assert properties.created == CREATED
    assert properties.modified == CREATED
    assert properties.creator == "Tallybook"
    assert write_workbook(sheets(), created=CREATED + timedelta(days=1)) != first


def test_created_accepts_a_date_or_an_aware_datetime():
    plain = write_workbook(sheets(), created=date(2024, 5, 1))
    assert read(plain).properties.created == datetime(2024, 5, 1)
    paris = timezone(timedelta(hours=2))
    aware = write_workbook(sheets(), created=datetime(2024, 5, 1, 11, 30, tzinfo=paris))
    assert aware == write_workbook(sheets(), created=datetime(2024, 5, 1, 9, 30, tzinfo=UTC))
    assert aware == write_workbook(sheets(), created=CREATED)


@pytest.mark.parametrize(
    ("sheet", "message"),
    [
        (Sheet("S", (Column("Amount", "money", "EUR"),), [(1.5,)]), "expected a Decimal"),
        (Sheet("S", (Column("Amount", "money", "EUR"),), [(Decimal("NaN"),)]), "not a finite"),
        (Sheet("S", (Column("When", "date"),), [(datetime(2024, 1, 1),)]), "expected a date"),
        (Sheet("S", (Column("When", "date"),), [("2024-01-01",)]), "expected a date"),
        (Sheet("S", (Column("N", "integer"),), [(True,)]), "expected an integer"),
        (Sheet("S", (Column("Name"),), [(42,)]), "expected text"),
        (Sheet("S", (Column("A"), Column("B")), [("only one",)]), "row 1: expected 2 values"),
        (Sheet("S", (Column("A"),), [], totals=("x", "y")), "totals: expected 1 values"),
        (Sheet("S", (Column("A", "money", "XYZ"),), []), "unknown currency"),
        (Sheet("S", (Column("A", "text", "EUR"),), []), "only a money column"),
        (Sheet("S", (Column("A", "float"),), []), "kind 'float'"),
        (Sheet("S", ()), "has no columns"),
        (Sheet("a/b", (Column("A"),)), "does not allow /"),
        (Sheet("x" * 32, (Column("A"),)), "1 to 31 characters"),
    ],
)
def test_bad_tables_are_refused_naming_the_place(sheet, message):
    with pytest.raises(SpreadsheetError, match="sheet") as error:
        write_workbook([sheet], created=CREATED)
    assert message in str(error.value)


def test_duplicate_titles_and_no_sheets_are_refused():
    with pytest.raises(SpreadsheetError, match="two sheets"):
        write_workbook(
            [Sheet("Aging", (Column("A"),)), Sheet("aging", (Column("A"),))], created=CREATED
        )
    with pytest.raises(SpreadsheetError, match="at least one sheet"):
        write_workbook([], created=CREATED)


def test_control_characters_are_replaced_not_fatal():
    sheet = Sheet("S", (Column("Memo"),), [("bell\x07 and tab\t and newline\n",)])
    value = read(write_workbook([sheet], created=CREATED))["S"]["A2"].value
    assert value == "bell\ufffd and tab\t and newline\n"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=20).map(lambda s: "".join(c for c in s if c not in "\r\x00")),
            st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False),
        ),
        max_size=20,
    )
)
def test_money_round_trips_to_the_cent(rows):
    columns = (Column("Text"), Column("Amount", "money", "USD"))
    data = write_workbook([Sheet("S", columns, rows, totals_row(columns, rows))], created=CREATED)
    sheet = read(data)["S"]
    for index, (_, amount) in enumerate(rows, start=2):
        assert Decimal(str(sheet.cell(index, 2).value)).quantize(Decimal("0.01")) == amount
    total = sheet.cell(len(rows) + 2, 2).value
    assert Decimal(str(total)).quantize(Decimal("0.01")) == sum(a for _, a in rows)
