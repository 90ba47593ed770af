"""Accounts receivable reports as files: the aging report and customer statements as JSON
documents, CSV (RFC 4180) and XLSX. No database: they take the core's report values.

The three forms carry the same figures: JSON has minor units and decimal strings, CSV the
decimal strings, XLSX exact numbers formatted with the currency's decimals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from tallybook.core.money import from_minor
from tallybook.core.receivables import (
    AGING_BUCKETS,
    AgingReport,
    CustomerStatement,
    ReceivableItem,
    aging_bucket,
    days_overdue,
)
from tallybook.formats.spreadsheets import Column, Sheet, write_workbook

__all__ = [
    "BUCKET_KEYS",
    "REPORT_FORMATS",
    "aging_csv",
    "aging_document",
    "aging_xlsx",
    "statement_csv",
    "statement_document",
    "statement_xlsx",
]

REPORT_FORMATS = ("json", "csv", "xlsx")
# JSON keys of the aging buckets, aligned with AGING_BUCKETS.
BUCKET_KEYS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_over_90")
# A spreadsheet application runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _money(minor: int, currency: str) -> str:
    return format(from_minor(minor, currency), "f")


def _amounts(minor: int, currency: str, key: str) -> dict[str, Any]:
    return {f"{key}_minor": minor, key: _money(minor, currency)}


def _buckets(buckets_minor: Sequence[int], currency: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, minor in zip(BUCKET_KEYS, buckets_minor, strict=True):
        data.update(_amounts(minor, currency, key))
    return data


def _csv(rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


def _text(value: str) -> str:
    """Text for a CSV cell that a spreadsheet will not run as a formula (OWASP's advice)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


# -- aging ---------------------------------------------------------------------------------------


def aging_document(
    report: AgingReport, documents: Sequence[ReceivableItem] | None = None
) -> dict[str, Any]:
    """The aging report as JSON: customer rows, totals per currency, maybe the documents."""
    data: dict[str, Any] = {
        "as_of": report.as_of.isoformat(),
        "buckets": dict(zip(BUCKET_KEYS, AGING_BUCKETS, strict=True)),
        "rows": [
            {
                "customer_id": row.customer_id,
                "customer_name": row.customer_name,
                "currency": row.currency,
                **_buckets(row.buckets_minor, row.currency),
                **_amounts(row.total_minor, row.currency, "total"),
                "oldest_days_overdue": row.oldest_days_overdue,
                "document_count": row.document_count,
            }
            for row in report.rows
        ],
        "totals": [
            {
                "currency": total.currency,
                **_buckets(total.buckets_minor, total.currency),
                **_amounts(total.total_minor, total.currency, "total"),
                "document_count": total.document_count,
            }
            for total in report.totals
        ],
    }
    if documents is not None:
        data["documents"] = [_document(item, report.as_of) for item in documents]
    return data


def _document(item: ReceivableItem, as_of: date) -> dict[str, Any]:
    days = days_overdue(item, as_of)
    return {
        "document_id": item.document_id,
        "number": item.number,
        "customer_id": item.customer_id,
        "customer_name": item.customer_name,
        "currency": item.currency,
        "issue_date": item.issue_date.isoformat(),
        "due_date": item.due_date.isoformat(),
        "days_overdue": days,
        "bucket": aging_bucket(days),
        **_amounts(item.open_minor, item.currency, "open"),
    }


AGING_CSV_HEADER = (
    "row_type",
    "currency",
    "customer_id",
    "customer",
    *AGING_BUCKETS,
    "total",
    "oldest_days_overdue",
    "documents",
)


def aging_csv(report: AgingReport) -> str:
    """One line per customer and currency, then one total line per currency."""
    rows: list[Sequence[object]] = [AGING_CSV_HEADER]
    for row in report.rows:
        rows.append(
            (
                "customer",
                row.currency,
                row.customer_id,
                _text(row.customer_name),
                *(_money(m, row.currency) for m in row.buckets_minor),
                _money(row.total_minor, row.currency),
                row.oldest_days_overdue,
                row.document_count,
            )
        )
    for total in report.totals:
        rows.append(
            (
                "total",
                total.currency,
                "",
                "Total",
                *(_money(m, total.currency) for m in total.buckets_minor),
                _money(total.total_minor, total.currency),
                "",
                total.document_count,
            )
        )
    return _csv(rows)


def aging_xlsx(report: AgingReport, documents: Sequence[ReceivableItem] = ()) -> bytes:
    """A workbook with an aging sheet per currency (customer rows, totals) and, when the
    documents are given, a sheet of the open documents per currency."""
    sheets = []
    for total in report.totals:
        currency = total.currency
        money = tuple(Column(b, "money", currency) for b in AGING_BUCKETS)
        columns = (
            Column("Customer"),
            Column("Customer ID"),
            *money,
            Column("Total", "money", currency),
            Column("Oldest days overdue", "integer"),
            Column("Documents", "integer"),
        )
        sheets.append(
            Sheet(
                title=f"Aging {currency}",
                columns=columns,
                rows=[
                    (
                        row.customer_name,
                        row.customer_id,
                        *(from_minor(m, currency) for m in row.buckets_minor),
                        from_minor(row.total_minor, currency),
                        row.oldest_days_overdue,
                        row.document_count,
                    )
                    for row in report.rows
                    if row.currency == currency
                ],
                totals=(
                    "Total",
                    None,
                    *(from_minor(m, currency) for m in total.buckets_minor),
                    from_minor(total.total_minor, currency),
                    None,
                    total.document_count,
                ),
            )
        )
        listed = [d for d in documents if d.currency == currency]
        if listed:
            sheets.append(_documents_sheet(currency, listed, report.as_of))
    if not sheets:
        sheets.append(
            Sheet(
                title="Aging",
                columns=(
                    Column("Customer"),
                    Column("Customer ID"),
                    *(Column(b, "money") for b in AGING_BUCKETS),
                    Column("Total", "money"),
                ),
            )
        )
    return write_workbook(
        sheets, created=report.as_of, title=f"Aging as of {report.as_of.isoformat()}"
    )


def _documents_sheet(currency: str, documents: Sequence[ReceivableItem], as_of: date) -> Sheet:
    rows = []
    for item in documents:
        days = days_overdue(item, as_of)
        rows.append(
            (
                item.number,
                item.customer_name,
                item.issue_date,
                item.due_date,
                days,
                aging_bucket(days),
                from_minor(item.open_minor, currency),
            )
        )
    return Sheet(
        title=f"Documents {currency}",
        columns=(
            Column("Document"),
            Column("Customer"),
            Column("Issue date", "date"),
            Column("Due date", "date"),
            Column("Days overdue", "integer"),
            Column("Bucket"),
            Column("Open", "money", currency),
        ),
        rows=rows,
        totals=(
            "Total",
            None,
            None,
            None,
            None,
            None,
            sum((r[6] for r in rows), Decimal(0)),
        ),
    )


# -- customer statements -------------------------------------------------------------------------


def statement_document(
    statement: CustomerStatement,
    *,
    open_receivables_minor: int | None = None,
    unapplied_credit_minor: int | None = None,
) -> dict[str, Any]:
    """The statement as JSON: opening balance, lines with running balance, period totals and
    the closing balance (split into open documents less unapplied credit when given)."""
    currency = statement.currency
    data: dict[str, Any] = {
        "customer_id": statement.customer_id,
        "customer_name": statement.customer_name,
        "currency": currency,
        "from": statement.period_start.isoformat(),
        "to": statement.period_end.isoformat(),
        **_amounts(statement.opening_balance_minor, currency, "opening_balance"),
        "lines": [
            {
                "date": line.date.isoformat(),
                "kind": line.kind,
                "document": line.reference,
                "description": line.description,
                **_amounts(line.debit_minor - line.credit_minor, currency, "amount"),
                **_amounts(line.debit_minor, currency, "debit"),
                **_amounts(line.credit_minor, currency, "credit"),
                **_amounts(line.balance_minor, currency, "balance"),
            }
            for line in statement.lines
        ],
        **_amounts(statement.debits_minor, currency, "debits"),
        **_amounts(statement.credits_minor, currency, "credits"),
        **_amounts(statement.invoiced_minor, currency, "invoiced"),
        **_amounts(statement.paid_minor, currency, "paid"),
        **_amounts(statement.credited_minor, currency, "credited"),
        **_amounts(statement.written_off_minor, currency, "written_off"),
        **_amounts(statement.other_minor, currency, "other"),
        **_amounts(statement.closing_balance_minor, currency, "closing_balance"),
    }
    if open_receivables_minor is not None:
        data.update(_amounts(open_receivables_minor, currency, "open_receivables"))
    if unapplied_credit_minor is not None:
        data.update(_amounts(unapplied_credit_minor, currency, "unapplied_credit"))
    return data


STATEMENT_CSV_HEADER = ("date", "kind", "document", "description", "debit", "credit", "balance")


def statement_csv(statement: CustomerStatement) -> str:
    """Opening balance, one line per movement with the running balance, closing balance."""
    currency = statement.currency
    rows: list[Sequence[object]] = [STATEMENT_CSV_HEADER]
    rows.append(
        (
            statement.period_start.isoformat(),
            "opening_balance",
            "",
            "Opening balance",
            "",
            "",
            _money(statement.opening_balance_minor, currency),
        )
    )
    for line in statement.lines:
        rows.append(
            (
                line.date.isoformat(),
                line.kind,
                _text(line.reference),
                _text(line.description),
                _money(line.debit_minor, currency) if line.debit_minor else "",
                _money(line.credit_minor, currency) if line.credit_minor else "",
                _money(line.balance_minor, currency),
            )
        )
    rows.append(
        (
            statement.period_end.isoformat(),
            "closing_balance",
            "",
            "Closing balance",
            _money(statement.debits_minor, currency),
            _money(statement.credits_minor, currency),
            _money(statement.closing_balance_minor, currency),
        )
    )
    return _csv(rows)


def statement_xlsx(statement: CustomerStatement) -> bytes:
    """A workbook with the statement's lines and a summary sheet."""
    currency = statement.currency

    def amount(minor: int) -> Decimal:
        return from_minor(minor, currency)

    lines = Sheet(
        title="Statement",
        columns=(
            Column("Date", "date"),
            Column("Kind"),
            Column("Document"),
            Column("Description"),
            Column("Debit", "money", currency),
            Column("Credit", "money", currency),
            Column("Balance", "money", currency),
        ),
        rows=[
            (
                statement.period_start,
                "opening_balance",
                None,
                "Opening balance",
                None,
                None,
                amount(statement.opening_balance_minor),
            )
        ]
        + [
            (
                line.date,
                line.kind,
                line.reference,
                line.description,
                amount(line.debit_minor) if line.debit_minor else None,
                amount(line.credit_minor) if line.credit_minor else None,
                amount(line.balance_minor),
            )
            for line in statement.lines
        ],
        totals=(
            statement.period_end,
            "closing_balance",
            None,
            "Closing balance",
            amount(statement.debits_minor),
            amount(statement.credits_minor),
            amount(statement.closing_balance_minor),
        ),
    )
    summary = Sheet(
        title="Summary",
        columns=(Column("Item"), Column("Value"), Column("Amount", "money", currency)),
        rows=[
            ("Customer", statement.customer_name, None),
            ("Customer ID", statement.customer_id, None),
            ("Currency", currency, None),
            (
                "Period",
                f"{statement.period_start.isoformat()} to {statement.period_end.isoformat()}",
                None,
            ),
            ("Opening balance", None, amount(statement.opening_balance_minor)),
            ("Invoiced", None, amount(statement.invoiced_minor)),
            ("Paid", None, amount(statement.paid_minor)),
            ("Credited", None, amount(statement.credited_minor)),
            ("Written off", None, amount(statement.written_off_minor)),
            ("Other", None, amount(statement.other_minor)),
            ("Closing balance", None, amount(statement.closing_balance_minor)),
        ],
    )
    return write_workbook(
        [lines, summary],
        created=statement.period_end,
        title=f"Statement {statement.customer_name} {statement.period_end.isoformat()}",
    )
