"""Accounts receivable reports over HTTP: aging as of any date, DSO for a period and customer
statements, as JSON or as CSV and XLSX files."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from tallybook.api import render
from tallybook.api.deps import Db, Who
from tallybook.formats import receivables_reports as reports
from tallybook.services import receivables

router = APIRouter(prefix="/v1")

ReportFormat = Annotated[
    Literal["json", "csv", "xlsx"], Query(description="json (default), csv or xlsx (a file)")
]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _file(content: str | bytes, name: str, format: str) -> Response:
    media = XLSX if format == "xlsx" else "text/csv; charset=utf-8"
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )


@router.get("/receivables/aging", tags=["receivables"], response_model=None)
def get_aging(
    db: Db,
    who: Who,
    as_of: Annotated[
        date | None, Query(description="the report date; default: today (organisation's zone)")
    ] = None,
    customer_id: str | None = None,
    currency: str | None = None,
    documents: Annotated[
        bool, Query(description="JSON: list the open invoices and debit notes too")
    ] = False,
    format: ReportFormat = "json",
) -> dict | Response:
    """What customers owe by aging bucket (current, 1-30, 31-60, 61-90, 90+ days past due) at
    the end of `as_of`, with totals per currency. A past date shows what was open then."""
    view = receivables.aging_report(db, who, as_of, customer_id=customer_id, currency=currency)
    name = f"aging-{view.report.as_of.isoformat()}"
    if format == "csv":
        return _file(reports.aging_csv(view.report), name, "csv")
    if format == "xlsx":
        return _file(reports.aging_xlsx(view.report, view.documents), name, "xlsx")
    return reports.aging_document(view.report, view.documents if documents else None)


@router.get("/receivables/dso", tags=["receivables"])
def get_dso(
    db: Db,
    who: Who,
    date_from: Annotated[date, Query(alias="from", description="first day of the period")],
    date_to: Annotated[date, Query(alias="to", description="last day of the period")],
) -> dict:
    """Days sales outstanding per currency: receivables open at the end of the period over its
    credit sales (invoices and debit notes less credit notes), times its days."""
    figures = receivables.dso(db, who, date_from, date_to)
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "data": [render.dso_figure(f) for f in figures],
    }


@router.get("/customers/{customer_id}/statement", tags=["receivables"], response_model=None)
def get_statement(
    customer_id: str,
    db: Db,
    who: Who,
    date_from: Annotated[
        date | None, Query(alias="from", description="default: first day of the month of `to`")
    ] = None,
    date_to: Annotated[date | None, Query(alias="to", description="default: today")] = None,
    currency: Annotated[str | None, Query(description="default: the customer's")] = None,
    format: ReportFormat = "json",
) -> dict | Response:
    """The customer's account for the period: opening balance, each invoice, debit note,
    payment, credit note, refund and write-off with the running balance, closing balance."""
    view = receivables.customer_statement(
        db, who, customer_id, date_from, date_to, currency=currency
    )
    s = view.statement
    name = f"statement-{s.customer_id}-{s.period_end.isoformat()}"
    if format == "csv":
        return _file(reports.statement_csv(s), name, "csv")
    if format == "xlsx":
        return _file(reports.statement_xlsx(s), name, "xlsx")
    return reports.statement_document(
        s,
        open_receivables_minor=view.open_receivables_minor,
        unapplied_credit_minor=view.unapplied_credit_minor,
    )
