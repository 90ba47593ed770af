"""Reading the tables specialists import (CSV or XLSX: purchase orders, time sheets, service
reports) into rows of exact values, each mistake named by row and column.

Cells come back as text, exact `Decimal`s, dates or None. An XLSX number cell is a binary
double in the file itself; it is read through its shortest decimal form (what Excel shows) and
refused when that form is float noise such as 0.30000000000000004.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

FORMATS = ("csv", "xlsx")
# An XLSX is a zip: refuse archives that unpack to more than this (zip bombs).
MAX_XLSX_UNPACKED = 200 * 1024 * 1024
# More places than this in an XLSX number is float noise, not what anyone typed.
MAX_XLSX_PLACES = 10
MAX_MAGNITUDE = Decimal(10) ** 15

_TRUE = {"yes", "y", "true", "1", "approved", "x"}
_FALSE = {"no", "n", "false", "0", "", "draft", "pending", "not approved"}


class ImportFileError(ValueError):
    """A file that cannot be imported; says where (row, column or element) and why."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(field)
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.row = row
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class Row:
    """One data row: its number as a spreadsheet shows it (the header is row 1) and its cells
    by normalised column name."""

    number: int
    cells: dict[str, Any]

    def text(self, column: str, *, required: bool = False) -> str | None:
        value = self.cells.get(column)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise ImportFileError("is required", row=self.number, field=column)
            return None
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, date):
            return value.isoformat()
        return str(value).strip()

    def decimal(self, column: str, *, required: bool = False) -> Decimal | None:
        value = self.cells.get(column)
        if isinstance(value, Decimal):
            result = value
        else:
            text = self.text(column, required=required)
            if text is None:
                return None
            if re.fullmatch(r"-?\d+,\d+", text):
                raise ImportFileError(
                    f"{text!r}: write decimals with a point ({text.replace(',', '.')})",
                    row=self.number,
                    field=column,
                )
            try:
                result = Decimal(text)
            except InvalidOperation:
                raise ImportFileError(
                    f"{text!r} is not a number", row=self.number, field=column
                ) from None
        if not result.is_finite() or abs(result) >= MAX_MAGNITUDE:
            raise ImportFileError(f"{result} is out of range", row=self.number, field=column)
        return result

    def date(self, column: str, *, required: bool = False) -> date | None:
        value = self.cells.get(column)
        if isinstance(value, date):
            return value
        text = self.text(column, required=required)
        if text is None:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ImportFileError(
                f"{text!r} is not a date; write it as YYYY-MM-DD", row=self.number, field=column
            ) from None

    def flag(self, column: str) -> bool:
        value = self.cells.get(column)
        if isinstance(value, bool):
            return value
        text = (self.text(column) or "").casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ImportFileError(f"{text!r}: write yes or no", row=self.number, field=column)


def normalise_header(name: Any) -> str:
    """'PO Number' -> 'po_number': headers match however they are capitalised or spaced."""
    text = "" if name is None else str(name)
    return re.sub(r"[^0-9a-z]+", "_", text.strip().casefold()).strip("_")


def detect_format(data: bytes, file_name: str | None = None) -> str:
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if file_name and file_name.lower().endswith(".xlsx"):
        return "xlsx"
    return "csv"


def read_table(
    data: bytes,
    *,
    format: str | None,
    columns: Sequence[str],
    aliases: dict[str, str] | None = None,
    file_name: str | None = None,
) -> list[Row]:
    """The data rows of a CSV or XLSX file whose header names only known `columns` (or their
    `aliases`). Blank rows are skipped; an unknown or repeated column is refused."""
    format = (format or detect_format(data, file_name)).lower()
    if format not in FORMATS:
        raise ImportFileError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
    if not data.strip():
        raise ImportFileError("the file is empty")
    raw = _csv_rows(data) if format == "csv" else _xlsx_rows(data)
    try:
        header = next(raw)
    except StopIteration:
        raise ImportFileError("the file is empty") from None
    names = _header(header, columns, aliases or {})
    rows = []
    for number, values in raw:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        if len(values) > len(names) and any(v not in (None, "") for v in values[len(names) :]):
            raise ImportFileError(
                f"has {len(values)} cells but the header names {len(names)} columns", row=number
            )
        cells = {name: value for name, value in zip(names, values, strict=False) if name}
        rows.append(Row(number, cells))
    if not rows:
        raise ImportFileError("the file has a header but no rows")
    return rows


def _header(
    header: tuple[int, list[Any]], columns: Sequence[str], aliases: dict[str, str]
) -> list[str]:
    _, values = header
    names = []
    for value in values:
        name = normalise_header(value)
        name = aliases.get(name, name)
        if name and name not in columns:
            raise ImportFileError(
                f"unknown column {str(value).strip()!r}; the columns are: {', '.join(columns)}",
                row=1,
            )
        if name and name in names:
            raise ImportFileError(f"column {name!r} appears twice", row=1)
        names.append(name)
    if not any(names):
        raise ImportFileError("the first row must name the columns", row=1)
    return names


def _csv_rows(data: bytes) -> Iterable[tuple[int, list[Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"the file is not UTF-8 text (byte {error.start}); save it as CSV UTF-8"
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for values in reader:
            yield reader.line_num, [v for v in values]
    except csv.Error as error:
        raise ImportFileError(f"not valid CSV ({error})", row=reader.line_num) from None


def _xlsx_rows(data: bytes) -> Iterable[tuple[int, list[Any]]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise ImportFileError("the file is not an XLSX workbook (not a zip archive)") from None
    if unpacked > MAX_XLSX_UNPACKED:
        raise ImportFileError("the workbook unpacks to more than 200 MB; split it")
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise ImportFileError(f"the workbook cannot be read ({error.__class__.__name__})") from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_xlsx_cell(value, number) for value in values]
    finally:
        workbook.close()


def _xlsx_cell(value: Any, row: int) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # The file holds a double; its shortest decimal form is what the user typed and saw.
        exact = Decimal(repr(value))
        if -int(exact.as_tuple().exponent) > MAX_XLSX_PLACES:
            raise ImportFileError(
                f"the number {value!r} carries float noise; round it in the sheet or type it "
                "as text",
                row=row,
            )
        return exact
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            return value.isoformat()
        return value.date()
    if isinstance(value, date):
        return value
    return str(value)
