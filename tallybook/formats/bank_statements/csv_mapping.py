"""Bank statements exported as CSV, read through a column mapping the clerk sets up once per bank.

Every bank lays out its CSV export differently (German banks: semicolons, decimal commas,
DD.MM.YYYY; US banks: separate debit and credit columns), so nothing is guessed: the mapping says
which column holds what and how numbers and dates are written.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from .model import (
    Statement,
    StatementError,
    StatementFormat,
    StatementLine,
    clean,
    compact_account,
    find_creditor_reference,
    finish_statement,
    parse_amount,
)

FORMAT = StatementFormat.CSV
Column = str | int
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class CsvMapping:
    """Which column holds what. Columns are header names, or 0-based positions without a header.

    Give either `amount` (signed, positive = money in) or `debit` and/or `credit` (money out and
    money in; a debit column may show the amount with or without a minus sign). `reference` may
    name several columns (e.g. "Verwendungszweck 1", "Verwendungszweck 2"); they are joined.
    Give the currency as a fixed `currency`, or as a `currency_column`.
    """

    date: Column
    amount: Column | None = None
    debit: Column | None = None
    credit: Column | None = None
    value_date: Column | None = None
    payer: Column | None = None
    payer_account: Column | None = None
    reference: Column | tuple[Column, ...] | None = None
    bank_reference: Column | None = None
    currency_column: Column | None = None
    currency: str | None = None
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."
    thousands_separator: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    has_header: bool = True
    skip_rows: int = 0
    account: str = ""
    statement_id: str | None = None

    def __post_init__(self) -> None:
        if self.amount is None and self.debit is None and self.credit is None:
            raise StatementError(
                "the column mapping names no amount column (give amount, or debit and credit)",
                format=FORMAT,
            )
        if self.amount is not None and (self.debit is not None or self.credit is not None):
            raise StatementError(
                "the column mapping names both an amount column and debit/credit columns; "
                "give one or the other",
                format=FORMAT,
            )
        if self.decimal_separator not in (".", ","):
            raise StatementError(
                f"the decimal separator must be '.' or ',', not {self.decimal_separator!r}",
                format=FORMAT,
            )
        if self.thousands_separator == self.decimal_separator:
            raise StatementError(
                "the thousands separator cannot be the decimal separator", format=FORMAT
            )
        if self.currency is None and self.currency_column is None:
            raise StatementError(
                "the column mapping gives no currency (a fixed currency or a currency column)",
                format=FORMAT,
            )
        if self.currency is not None and not _CURRENCY.fullmatch(self.currency):
            raise StatementError(
                f"the currency {self.currency!r} is not a three-letter code such as EUR",
                format=FORMAT,
            )

    @property
    def reference_columns(self) -> tuple[Column, ...]:
        if self.reference is None:
            return ()
        return self.reference if isinstance(self.reference, tuple) else (self.reference,)


class _Row:
    """One CSV record and its line number, with cells looked up through the mapping."""

    def __init__(self, cells: list[str], line: int, index: dict[Column, int]) -> None:
        self.cells = cells
        self.line = line
        self.index = index

    def get(self, column: Column | None) -> str | None:
        if column is None:
            return None
        position = self.index[column]
        if position >= len(self.cells):
            raise StatementError(
                f"the row has {len(self.cells)} columns, too few to hold column {column!r}",
                format=FORMAT,
                line=self.line,
            )
        value = self.cells[position].strip()
        return value or None


def _column_index(header: Sequence[str] | None, mapping: CsvMapping, line: int) -> dict:
    columns = [
        mapping.date,
        mapping.amount,
        mapping.debit,
        mapping.credit,
        mapping.value_date,
        mapping.payer,
        mapping.payer_account,
        mapping.bank_reference,
        mapping.currency_column,
        *mapping.reference_columns,
    ]
    index: dict[Column, int] = {}
    names = [name.strip() for name in header] if header is not None else None
    for column in columns:
        if column is None:
            continue
        if isinstance(column, int):
            index[column] = column
            continue
        if names is None:
            raise StatementError(
                f"column {column!r} is named, but the mapping says the file has no header row",
                format=FORMAT,
            )
        if column in names:
            index[column] = names.index(column)
            continue
        folded = [name.casefold() for name in names]
        if column.casefold() in folded:
            index[column] = folded.index(column.casefold())
            continue
        raise StatementError(
            f"the header row has no column {column!r} (it has: {', '.join(names)})",
            format=FORMAT,
            line=line,
        )
    return index


def _date(row: _Row, column: Column, mapping: CsvMapping, what: str) -> date | None:
    value = row.get(column)
    if value is None:
        return None
    try:
        return datetime.strptime(value, mapping.date_format).date()
    except ValueError:
        raise StatementError(
            f"the {what} {value!r} does not match the date format {mapping.date_format!r}",
            format=FORMAT,
            line=row.line,
            element=f"column {column!r}",
        ) from None


def _amount(row: _Row, column: Column, mapping: CsvMapping) -> Decimal | None:
    value = row.get(column)
    if value is None:
        return None
    return parse_amount(
        value,
        decimal_separator=mapping.decimal_separator,
        thousands_separator=mapping.thousands_separator,
        format=FORMAT,
        line=row.line,
        element=f"column {column!r}",
    )


def _signed_amount(row: _Row, mapping: CsvMapping) -> Decimal:
    if mapping.amount is not None:
        amount = _amount(row, mapping.amount, mapping)
        if amount is None:
            raise StatementError(
                "the amount is empty",
                format=FORMAT,
                line=row.line,
                element=f"column {mapping.amount!r}",
            )
        return amount
    debit = _amount(row, mapping.debit, mapping) if mapping.debit is not None else None
    credit = _amount(row, mapping.credit, mapping) if mapping.credit is not None else None
    # Some banks print zero in the unused column; only a non-zero figure counts as filled in.
    debit = debit if debit else None
    credit = credit if credit else None
    if debit is not None and credit is not None:
        raise StatementError(
            f"both the debit ({debit}) and the credit ({credit}) column are filled in; "
            "a line is either money in or money out",
            format=FORMAT,
            line=row.line,
        )
    if debit is not None:
        return -abs(debit)
    if credit is not None:
        return credit
    raise StatementError(
        "neither the debit nor the credit column has an amount", format=FORMAT, line=row.line
    )


def parse_csv(data: bytes, mapping: CsvMapping | None) -> tuple[Statement, ...]:
    if mapping is None:
        raise StatementError(
            "a CSV statement needs a column mapping (which column is the date, the amount, ...)",
            format=FORMAT,
        )
    try:
        text = data.decode(mapping.encoding)
    except (UnicodeDecodeError, LookupError):
        raise StatementError(
            f"the file is not {mapping.encoding} text; set the encoding in the column mapping "
            "(e.g. cp1252 for older Windows exports)",
            format=FORMAT,
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True)
    lines: list[StatementLine] = []
    index: dict[Column, int] | None = None
    try:
        for number, cells in enumerate(reader):
            if number < mapping.skip_rows:
                continue
            line_number = reader.line_num
            if index is None:
                if mapping.has_header:
                    index = _column_index(cells, mapping, line_number)
                    continue
                index = _column_index(None, mapping, line_number)
            if not any(cell.strip() for cell in cells):
                continue
            lines.append(_line(_Row(cells, line_number, index), mapping))
    except csv.Error as error:
        raise StatementError(
            f"the file is not well-formed CSV ({error})", format=FORMAT, line=reader.line_num
        ) from None

    currency = mapping.currency or (lines[0].currency if lines else None)
    if currency is None:
        raise StatementError("the file holds no lines to take the currency from", format=FORMAT)
    statement = Statement(
        format=FORMAT,
        account=compact_account(mapping.account) or "",
        currency=currency,
        statement_id=mapping.statement_id,
        statement_date=max((line.booking_date for line in lines), default=None),
        lines=tuple(lines),
    )
    return (finish_statement(statement),)


def _line(row: _Row, mapping: CsvMapping) -> StatementLine:
    booking_date = _date(row, mapping.date, mapping, "booking date")
    if booking_date is None:
        raise StatementError(
            "the booking date is empty",
            format=FORMAT,
            line=row.line,
            element=f"column {mapping.date!r}",
        )
    currency = mapping.currency
    if mapping.currency_column is not None:
        given = (row.get(mapping.currency_column) or "").upper()
        if not _CURRENCY.fullmatch(given):
            raise StatementError(
                f"the currency {given!r} is not a three-letter code such as EUR",
                format=FORMAT,
                line=row.line,
                element=f"column {mapping.currency_column!r}",
            )
        currency = given
    assert currency is not None  # the mapping guarantees a fixed currency or a column
    parts = [clean(row.get(column)) for column in mapping.reference_columns]
    text = " ".join(part for part in parts if part)
    return StatementLine(
        position=0,
        booking_date=booking_date,
        value_date=_date(row, mapping.value_date, mapping, "value date")
        if mapping.value_date is not None
        else None,
        amount=_signed_amount(row, mapping),
        currency=currency,
        payer_name=clean(row.get(mapping.payer)),
        payer_account=compact_account(row.get(mapping.payer_account)),
        remittance_text=text,
        creditor_reference=find_creditor_reference(text),
        bank_reference=clean(row.get(mapping.bank_reference)),
    )
