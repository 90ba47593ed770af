"""`tallybook receivables aging|dso` and `tallybook customers statement`: accounts receivable
reports in the terminal, as JSON, or written as CSV and XLSX files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _day_option,
    _emit_json,
    _fail,
    _group,
    _session,
    _table,
    command,
    customers_app,
)
from tallybook.core.money import format_minor
from tallybook.core.receivables import AGING_BUCKETS
from tallybook.formats import receivables_reports as reports
from tallybook.services import receivables

receivables_app = _group("receivables", "Accounts receivable: aging and days sales outstanding.")

FormatOpt = Annotated[
    str, typer.Option("--format", help="table (default), json, csv or xlsx (needs --output).")
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")
]


def _format(format: str, as_json: bool, output: Path | None) -> str:
    chosen = "json" if as_json else format.strip().lower()
    if chosen not in ("table", *reports.REPORT_FORMATS):
        _fail(f"--format: {format!r} is not one of table, json, csv, xlsx")
    if chosen == "xlsx" and output is None:
        _fail("--output: an XLSX workbook needs a file to go to")
    if chosen == "table" and output is not None:
        _fail("--output: give --format csv, xlsx or json to write a file")
    return chosen


def _write(content: str | bytes, output: Path | None) -> None:
    if output is None:
        typer.echo(content if isinstance(content, str) else "", nl=False)
        return
    if isinstance(content, bytes):
        output.write_bytes(content)
    else:
        output.write_text(content, encoding="utf-8", newline="")
    typer.echo(f"Wrote {output} ({len(content)} bytes)")


@command(receivables_app, "aging")
def receivables_aging(
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD; default today.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="One customer.")] = None,
    currency: Annotated[str | None, typer.Option("--currency", help="One currency.")] = None,
    documents: Annotated[
        bool, typer.Option("--documents", help="List the open documents too.")
    ] = False,
    format: FormatOpt = "table",
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What customers owe by days past due (current, 1-30, 31-60, 61-90, 90+) on a date; a
    past date shows what was open then."""
    chosen = _format(format, as_json, output)
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        view = receivables.aging_report(db, actor, day, customer_id=customer, currency=currency)
    report = view.report
    if chosen == "json":
        document = reports.aging_document(report, view.documents if documents else None)
        if output is None:
            _emit_json(document)
        else:
            _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", output)
        return
    if chosen == "csv":
        _write(reports.aging_csv(report), output)
        return
    if chosen == "xlsx":
        _write(reports.aging_xlsx(report, view.documents), output)
        return
    rows = [
        [
            row.customer_name,
            row.currency,
            *(format_minor(m, row.currency) for m in row.buckets_minor),
            format_minor(row.total_minor, row.currency),
            row.oldest_days_overdue,
        ]
        for row in report.rows
    ] + [
        [
            "Total",
            t.currency,
            *(format_minor(m, t.currency) for m in t.buckets_minor),
            format_minor(t.total_minor, t.currency),
            "",
        ]
        for t in report.totals
    ]
    _table(
        ["Customer", "Currency", *AGING_BUCKETS, "Total", "Oldest days"],
        rows,
        title=f"Aging as of {report.as_of.isoformat()}",
        right=(*AGING_BUCKETS, "Total", "Oldest days"),
    )
    if documents:
        _table(
            ["Document", "Customer", "Issued", "Due", "Open"],
            [
                [
                    d.number,
                    d.customer_name,
                    d.issue_date,
                    d.due_date,
                    format_minor(d.open_minor, d.currency),
                ]
                for d in view.documents
            ],
            right=("Open",),
        )


@command(receivables_app, "dso")
def receivables_dso(
    date_from: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Days sales outstanding per currency over a period."""
    start, end = _day_option(date_from, "--from"), _day_option(date_to, "--to")
    with _session(api_key) as (db, actor):
        figures = receivables.dso(db, actor, start, end)
    if as_json:
        _emit_json([render.dso_figure(f) for f in figures])
        return
    _table(
        ["Currency", "Receivables", "Credit sales", "Days", "DSO"],
        [
            [
                f.currency,
                format_minor(f.receivables_minor, f.currency),
                format_minor(f.credit_sales_minor, f.currency),
                f.days,
                "n/a (no sales)" if f.dso is None else format(f.dso, "f"),
            ]
            for f in figures
        ],
        title=f"DSO {start.isoformat()} to {end.isoformat()}",
        right=("Receivables", "Credit sales", "Days", "DSO"),
    )


@command(customers_app, "statement")
def customers_statement(
    customer_id: Annotated[str, typer.Argument(metavar="CUSTOMER_ID")],
    date_from: Annotated[
        str | None, typer.Option("--from", help="YYYY-MM-DD; default: first of the month.")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD; default: today.")] = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="Default: the customer's.")
    ] = None,
    format: FormatOpt = "table",
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A customer's statement: opening balance, invoices, payments, credit and debit notes,
    refunds and write-offs with the running balance, closing balance. `--format pdf` writes
    the printable statement (to --output, default its own name in this folder)."""
    if format.strip().lower() == "pdf" and not as_json:
        from tallybook.cli.documents import statement_pdf

        statement_pdf(
            customer_id,
            _day_option(date_from, "--from"),
            _day_option(date_to, "--to"),
            currency,
            output,
            api_key,
        )
        return
    chosen = _format(format, as_json, output)
    start, end = _day_option(date_from, "--from"), _day_option(date_to, "--to")
    with _session(api_key) as (db, actor):
        view = receivables.customer_statement(db, actor, customer_id, start, end, currency=currency)
    s = view.statement
    if chosen == "json":
        document = reports.statement_document(
            s,
            open_receivables_minor=view.open_receivables_minor,
            unapplied_credit_minor=view.unapplied_credit_minor,
        )
        if output is None:
            _emit_json(document)
        else:
            _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", output)
        return
    if chosen == "csv":
        _write(reports.statement_csv(s), output)
        return
    if chosen == "xlsx":
        _write(reports.statement_xlsx(s), output)
        return
    cur = s.currency

    def amount(minor: int) -> str:
        return format_minor(minor, cur) if minor else ""

    _table(
        ["Date", "Kind", "Document", "Debit", "Credit", "Balance"],
        [
            [
                s.period_start,
                "opening balance",
                "",
                "",
                "",
                format_minor(s.opening_balance_minor, cur),
            ]
        ]
        + [
            [
                x.date,
                x.kind,
                x.reference,
                amount(x.debit_minor),
                amount(x.credit_minor),
                format_minor(x.balance_minor, cur),
            ]
            for x in s.lines
        ]
        + [
            [
                s.period_end,
                "closing balance",
                "",
                format_minor(s.debits_minor, cur),
                format_minor(s.credits_minor, cur),
                format_minor(s.closing_balance_minor, cur),
            ]
        ],
        title=f"Statement of {s.customer_name} ({s.customer_id}), "
        f"{s.period_start.isoformat()} to {s.period_end.isoformat()}",
        right=("Debit", "Credit", "Balance"),
    )
    if view.unapplied_credit_minor:
        typer.echo(
            f"Open documents {format_minor(view.open_receivables_minor, cur)} less unapplied "
            f"credit {format_minor(view.unapplied_credit_minor, cur)}"
        )
