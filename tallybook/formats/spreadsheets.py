"""XLSX workbooks from plain tables (reports, exports), written the same way every time.

Money is written from exact Decimals with the currency's decimals as number format, dates as
real Excel dates, totals as values computed here rather than formulas, so the file reads the
same in Excel, LibreOffice and any XLSX library. The same input gives byte-identical output.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from tallybook.core.money import MoneyError, currency_exponent

__all__ = [
    "COLUMN_KINDS",
    "Column",
    "Sheet",
    "SpreadsheetError",
    "number_format",
    "totals_row",
    "write_workbook",
]

COLUMN_KINDS = ("text", "date", "money", "integer", "percent")

# Excel's limits on sheet names.
_TITLE_FORBIDDEN = set("[]:*?/\\")
_TITLE_MAX = 31
_MAX_AUTO_WIDTH = 60


class SpreadsheetError(ValueError):
    """A table that cannot be written as given; the message names the sheet, row and column."""


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"  # text | date | money | integer | percent
    currency: str | None = None  # money: its decimals set the number format (2, 0 for JPY)
    width: float | None = None  # None: fitted to the header and the values


@dataclass(frozen=True)
class Sheet:
    title: str
    columns: tuple[Column, ...]
    rows: list[tuple] = field(default_factory=list)
    totals: tuple | None = None  # one value per column, written bold under the rows


def number_format(column: Column) -> str:
    """The Excel number format of a column's cells."""
    if column.kind == "money":
        places = 2 if column.currency is None else currency_exponent(column.currency)
        return "#,##0" + ("." + "0" * places if places else "")
    if column.kind == "integer":
        return "#,##0"
    if column.kind == "percent":
        return "0.00%"
    if column.kind == "date":
        return "yyyy-mm-dd"
    return "@"


def totals_row(columns: Sequence[Column], rows: Sequence[tuple], label: str = "Total") -> tuple:
    """Exact sums of the money and integer columns, the label in the first text column.

    Computed in Python rather than as formulas: a formula's cached value is only filled in by a
    spreadsheet application, so other readers would see an empty cell.
    """
    totals: list[object] = [None] * len(columns)
    labelled = False
    for index, column in enumerate(columns):
        if column.kind in ("money", "integer"):
            values = [row[index] for row in rows if row[index] is not None]
            totals[index] = sum(values, Decimal(0) if column.kind == "money" else 0)
        elif column.kind == "text" and not labelled:
            totals[index] = label
            labelled = True
    return tuple(totals)


def write_workbook(
    sheets: Sequence[Sheet], *, created: datetime | date, title: str | None = None
) -> bytes:
    """An XLSX file of the sheets: bold frozen header, auto-filter, typed cells, totals row.

    `created` becomes the workbook's created and modified time and the time of every member of
    the zip file (a naive datetime is taken as UTC), which is what makes the output reproducible.
    """
    if not sheets:
        raise SpreadsheetError("a workbook needs at least one sheet")
    stamp = _utc_naive(created)
    if stamp.year < 1980:
        raise SpreadsheetError(
            f"created: {stamp.isoformat()} is before 1980, which zip cannot hold"
        )
    _check_titles(sheets)

    workbook = Workbook()
    workbook.remove(workbook.active)
    for sheet in sheets:
        _write_sheet(workbook, sheet)
    workbook.properties.creator = "Tallybook"
    workbook.properties.lastModifiedBy = "Tallybook"
    workbook.properties.title = title
    workbook.properties.created = stamp
    workbook.properties.modified = stamp

    # ExcelWriter rather than Workbook.save, which stamps `modified` with the current time.
    first = io.BytesIO()
    with zipfile.ZipFile(first, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).save()
    return _with_fixed_zip_times(first.getvalue(), stamp)


def _utc_naive(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time())
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _with_fixed_zip_times(data: bytes, stamp: datetime) -> bytes:
    """Rewrite the zip with one fixed time and platform for every member (zip stores both)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=stamp.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0o600 << 16
            target.writestr(info, source.read(member.filename))
    return out.getvalue()


def _check_titles(sheets: Sequence[Sheet]) -> None:
    seen: set[str] = set()
    for sheet in sheets:
        title = sheet.title
        if not title or len(title) > _TITLE_MAX:
            raise SpreadsheetError(
                f"sheet {title!r}: a sheet name has 1 to {_TITLE_MAX} characters"
            )
        bad = sorted(_TITLE_FORBIDDEN.intersection(title))
        if bad or title.startswith("'") or title.endswith("'"):
            raise SpreadsheetError(
                f"sheet {title!r}: Excel does not allow {' '.join(bad) or 'an apostrophe'} "
                "in a sheet name"
            )
        if title.casefold() in seen:
            raise SpreadsheetError(f"sheet {title!r}: two sheets have this name")
        seen.add(title.casefold())


def _check_columns(sheet: Sheet) -> None:
    if not sheet.columns:
        raise SpreadsheetError(f"sheet {sheet.title!r}: has no columns")
    for column in sheet.columns:
        where = f"sheet {sheet.title!r}, column {column.header!r}"
        if column.kind not in COLUMN_KINDS:
            raise SpreadsheetError(
                f"{where}: kind {column.kind!r} is not one of {', '.join(COLUMN_KINDS)}"
            )
        if column.currency is not None:
            if column.kind != "money":
                raise SpreadsheetError(f"{where}: only a money column has a currency")
            try:
                currency_exponent(column.currency)
            except MoneyError as error:
                raise SpreadsheetError(f"{where}: {error}") from None
        if column.width is not None and not 0 < column.width <= 255:
            raise SpreadsheetError(f"{where}: width {column.width} is not between 0 and 255")


def _cell_value(value: object, column: Column, where: str) -> object:
    """The value to store, refusing what would be written inexactly or as the wrong type."""
    if value is None:
        return None
    kind = column.kind
    if kind == "text":
        if not isinstance(value, str):
            raise SpreadsheetError(f"{where}: expected text, got {value!r}")
        # XML cannot carry these control characters; U+FFFD shows where one was.
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if kind == "date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise SpreadsheetError(f"{where}: expected a date, got {value!r}")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpreadsheetError(f"{where}: expected an integer, got {value!r}")
        return value
    # money and percent: exact numbers only; a float has already lost the exact amount.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise SpreadsheetError(f"{where}: expected a Decimal, got {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise SpreadsheetError(f"{where}: {value} is not a finite number")
    return value


def _display_length(value: object, column: Column) -> int:
    if value is None:
        return 0
    if column.kind == "date":
        return 10
    if column.kind == "integer":
        return len(f"{value:,}")
    if column.kind == "money":
        places = 2 if column.currency is None else currency_exponent(column.currency)
        return len(f"{Decimal(value):,.{places}f}")
    if column.kind == "percent":
        return len(f"{Decimal(value) * 100:.2f}") + 1
    return max((len(part) for part in str(value).splitlines()), default=0)


def _write_sheet(workbook: Workbook, sheet: Sheet) -> None:
    _check_columns(sheet)
    width = len(sheet.columns)
    worksheet = workbook.create_sheet(sheet.title)
    formats = [number_format(column) for column in sheet.columns]
    bold = Font(bold=True)

    for index, column in enumerate(sheet.columns, start=1):
        cell = worksheet.cell(row=1, column=index)
        _set_text(cell, column.header)
        cell.font = bold

    body = list(sheet.rows)
    extra = [sheet.totals] if sheet.totals is not None else []
    for row_number, row in enumerate(body + extra, start=2):
        is_totals = row_number == len(body) + 2 and sheet.totals is not None
        label = "totals" if is_totals else f"row {row_number - 1}"
        if not isinstance(row, tuple | list) or len(row) != width:
            raise SpreadsheetError(
                f"sheet {sheet.title!r}, {label}: expected {width} values, one per column, "
                f"got {row!r}"
            )
        for index, (value, column) in enumerate(zip(row, sheet.columns, strict=True), start=1):
            where = f"sheet {sheet.title!r}, {label}, column {column.header!r}"
            value = _cell_value(value, column, where)
            cell = worksheet.cell(row=row_number, column=index)
            if column.kind == "text" and value is not None:
                _set_text(cell, value)
            else:
                cell.value = value
            cell.number_format = formats[index - 1]
            if is_totals:
                cell.font = bold

    last_column = get_column_letter(width)
    worksheet.freeze_panes = "A2"
    # The filter covers the header and the rows, not the totals, so sorting leaves them last.
    worksheet.auto_filter.ref = f"A1:{last_column}{len(body) + 1}"
    for index, column in enumerate(sheet.columns, start=1):
        if column.width is not None:
            fitted = column.width
        else:
            longest = max(
                [len(column.header) + 3]  # room for the filter button
                + [_display_length(row[index - 1], column) for row in body + extra]
            )
            fitted = min(longest + 2, _MAX_AUTO_WIDTH)
        worksheet.column_dimensions[get_column_letter(index)].width = fitted


def _set_text(cell, text: str) -> None:
    cell.value = text
    # openpyxl turns a string starting with "=" into a formula; a customer named "=HYPERLINK(..)"
    # must stay text.
    cell.data_type = "s"
