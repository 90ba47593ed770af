"""`tallybook time` and `tallybook service-reports`: enter or import, approve or reject, list,
and bill approved work as charges for the customer's next invoice."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.api.routes.time_sheets import import_json, service_report_json, time_entry_json
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _compact,
    _dec,
    _emit_json,
    _fail,
    _fields,
    _group,
    _session,
    _table,
    command,
)
from tallybook.services import time_sheets

time_app = _group("time", "Time entries: hours worked, approved, billed through charges.")
reports_app = _group("service-reports", "Service reports: services delivered, the proof billed.")

CustomerOpt = Annotated[str | None, typer.Option("--customer", help="Customer id.")]
ContractOpt = Annotated[str | None, typer.Option("--contract", help="Contract id or reference.")]
FromOpt = Annotated[str | None, typer.Option("--from", help="From this day (YYYY-MM-DD).")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Up to this day (YYYY-MM-DD).")]
StatusOpt = Annotated[str | None, typer.Option("--status", help="draft, approved or rejected.")]
BilledOpt = Annotated[
    bool | None,
    typer.Option("--billed/--unbilled", help="Only billed (on an issued invoice) or unbilled."),
]
LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many.")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv or xlsx (default: detected).")]
ThroughOpt = Annotated[
    str | None, typer.Option("--through", help="Only work up to this day (YYYY-MM-DD).")
]
RateOpt = Annotated[
    str | None,
    typer.Option("--rate", help="Unit price where no contract or per-unit catalog price applies."),
]


def _filters(
    customer: str | None,
    contract: str | None,
    date_from: str | None,
    date_to: str | None,
    status: str | None,
    billed: bool | None,
) -> dict[str, Any]:
    return _compact(
        {
            "customer_id": customer,
            "contract_id": contract,
            "date_from": date_from,
            "date_to": date_to,
            "status": status,
            "billed": billed,
        }
    )


def _read(file: Path) -> bytes:
    if not file.is_file():
        _fail(f"no file {file}")
    return file.read_bytes()


def _billed(charges: list[Any], as_json: bool, label: str) -> None:
    if as_json:
        _emit_json([render.charge(c) for c in charges])
        return
    for charge in charges:
        typer.echo(
            f"Charge {charge.id}: {charge.description}, {_dec(charge.quantity)} x "
            f"{_dec(charge.unit_price)} {charge.currency} ({charge.details.get('price_source')})"
        )
    typer.echo(f"{len(charges)} charges for the next invoice from approved {label}")


# -- time entries ------------------------------------------------------------------------------


@command(time_app, "add")
def time_add(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    worker: Annotated[str, typer.Option("--worker", help="Who worked.")],
    work_date: Annotated[str, typer.Option("--date", help="YYYY-MM-DD.")],
    hours: Annotated[str, typer.Option("--hours", help="Exact decimal: 7.5.")],
    contract: ContractOpt = None,
    product: Annotated[str | None, typer.Option("--product", help="Product id or code.")] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="Service code, when there is no product.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Ticket, matter or task.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enter hours worked (a draft until another manager approves them)."""
    values = _compact(
        {
            "customer_id": customer,
            "worker": worker,
            "work_date": work_date,
            "hours": hours,
            "contract_id": contract,
            "product_id": product,
            "service_code": service,
            "description": description,
            "reference": reference,
        }
    )
    with _session(api_key) as (db, actor):
        entry = time_sheets.create_time_entry(db, actor, values)
    if as_json:
        _emit_json(time_entry_json(entry))
        return
    typer.echo(f"Time entry {entry.id}: {_dec(entry.hours)} h on {entry.work_date} (draft)")


@command(time_app, "import")
def time_import(
    file: Annotated[Path, typer.Argument(help="CSV or XLSX time sheet.")],
    format: FormatOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a time sheet, every row or none. Columns: worker, date, hours, customer (id or
    external id), contract, product, service, description, reference, approved (yes/no)."""
    data = _read(file)
    with _session(api_key) as (db, actor):
        result = time_sheets.import_time_entries(
            db, actor, data, file_name=file.name, format=format
        )
    if as_json:
        _emit_json(import_json(result, time_entry_json))
        return
    hours = sum((e.hours for e in result.created), start=Decimal(0))
    typer.echo(
        f"Imported {file.name} ({result.format}): {len(result.created)} time entries, "
        f"{_dec(hours)} h, {result.approved} approved"
    )


@command(time_app, "list")
def time_list(
    customer: CustomerOpt = None,
    contract: ContractOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    status: StatusOpt = None,
    billed: BilledOpt = None,
    limit: LimitOpt = 200,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Time entries by customer, contract, period and status."""
    filters = _filters(customer, contract, date_from, date_to, status, billed)
    with _session(api_key) as (db, actor):
        if filters.get("contract_id"):
            from tallybook.services import contracts

            filters["contract_id"] = contracts.get_contract(db, actor, filters["contract_id"]).id
        rows, _ = time_sheets.list_time_entries(db, actor, **filters, limit=limit)
    if as_json:
        _emit_json([time_entry_json(e) for e in rows])
        return
    _table(
        ["ID", "Date", "Worker", "Hours", "Customer", "Product/service", "Status", "Invoice"],
        [
            [
                e.id,
                e.work_date,
                e.worker,
                e.hours,
                e.customer_id,
                e.product_id or e.service_code,
                e.status,
                e.billed_invoice_id,
            ]
            for e in rows
        ],
        right=("Hours",),
    )


@command(time_app, "show")
def time_show(entry: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One time entry."""
    with _session(api_key) as (db, actor):
        row = time_sheets.get_time_entry(db, actor, entry)
    if as_json:
        _emit_json(time_entry_json(row))
        return
    _fields(
        [
            (name.replace("_", " ").capitalize(), value)
            for name, value in time_entry_json(row).items()
        ]
    )


@command(time_app, "approve")
def time_approve(
    entries: Annotated[list[str], typer.Argument(help="Time entry ids.")],
    note: Annotated[str | None, typer.Option("--note")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve draft time entries, all or none (a manager other than who entered them)."""
    with _session(api_key) as (db, actor):
        rows = time_sheets.approve_time_entries(db, actor, entries, note)
    if as_json:
        _emit_json([time_entry_json(e) for e in rows])
        return
    typer.echo(f"{len(rows)} time entries approved")


@command(time_app, "reject")
def time_reject(
    entries: Annotated[list[str], typer.Argument(help="Time entry ids.")],
    reason: Annotated[str, typer.Option("--reason", help="Why they are not billable.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject draft time entries, all or none."""
    with _session(api_key) as (db, actor):
        rows = time_sheets.reject_time_entries(db, actor, entries, reason)
    if as_json:
        _emit_json([time_entry_json(e) for e in rows])
        return
    typer.echo(f"{len(rows)} time entries rejected")


@command(time_app, "bill")
def time_bill(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    through: ThroughOpt = None,
    rate: RateOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn the customer's approved, unbilled time into charges for the next invoice: at the
    contracted price on the work day, else the product's per-unit price, else --rate."""
    with _session(api_key) as (db, actor):
        charges = time_sheets.bill_time(db, actor, customer, through=through, rate=rate)
    _billed(charges, as_json, "time entries")


# -- service reports ---------------------------------------------------------------------------


@command(reports_app, "add")
def report_add(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    product: Annotated[str, typer.Option("--product", help="Product id or code.")],
    service_date: Annotated[str, typer.Option("--date", help="YYYY-MM-DD.")],
    quantity: Annotated[str, typer.Option("--quantity", help="Default 1.")] = "1",
    contract: ContractOpt = None,
    reference: Annotated[str | None, typer.Option("--reference")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    performed_by: Annotated[str | None, typer.Option("--performed-by")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a service delivered (a draft until another manager approves it)."""
    values = _compact(
        {
            "customer_id": customer,
            "product_id": product,
            "service_date": service_date,
            "quantity": quantity,
            "contract_id": contract,
            "reference": reference,
            "description": description,
            "performed_by": performed_by,
        }
    )
    with _session(api_key) as (db, actor):
        report = time_sheets.create_service_report(db, actor, values)
    if as_json:
        _emit_json(service_report_json(report))
        return
    typer.echo(
        f"Service report {report.id}: {_dec(report.quantity)} on {report.service_date} (draft)"
    )


@command(reports_app, "import")
def report_import(
    file: Annotated[Path, typer.Argument(help="CSV or XLSX service reports.")],
    format: FormatOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import service reports, every row or none. Columns: date, quantity, product, customer,
    contract, reference, description, performed_by, approved (yes/no)."""
    data = _read(file)
    with _session(api_key) as (db, actor):
        result = time_sheets.import_service_reports(
            db, actor, data, file_name=file.name, format=format
        )
    if as_json:
        _emit_json(import_json(result, service_report_json))
        return
    typer.echo(
        f"Imported {file.name} ({result.format}): {len(result.created)} service reports, "
        f"{result.approved} approved"
    )


@command(reports_app, "list")
def report_list(
    customer: CustomerOpt = None,
    contract: ContractOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    status: StatusOpt = None,
    billed: BilledOpt = None,
    limit: LimitOpt = 200,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Service reports by customer, contract, period and status."""
    filters = _filters(customer, contract, date_from, date_to, status, billed)
    with _session(api_key) as (db, actor):
        if filters.get("contract_id"):
            from tallybook.services import contracts

            filters["contract_id"] = contracts.get_contract(db, actor, filters["contract_id"]).id
        rows, _ = time_sheets.list_service_reports(db, actor, **filters, limit=limit)
    if as_json:
        _emit_json([service_report_json(r) for r in rows])
        return
    _table(
        ["ID", "Date", "Product", "Quantity", "Customer", "Reference", "Status", "Invoice"],
        [
            [
                r.id,
                r.service_date,
                r.product_id,
                r.quantity,
                r.customer_id,
                r.reference,
                r.status,
                r.billed_invoice_id,
            ]
            for r in rows
        ],
        right=("Quantity",),
    )


@command(reports_app, "show")
def report_show(report: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One service report."""
    with _session(api_key) as (db, actor):
        row = time_sheets.get_service_report(db, actor, report)
    if as_json:
        _emit_json(service_report_json(row))
        return
    _fields(
        [
            (name.replace("_", " ").capitalize(), value)
            for name, value in service_report_json(row).items()
        ]
    )


@command(reports_app, "approve")
def report_approve(
    reports: Annotated[list[str], typer.Argument(help="Service report ids.")],
    note: Annotated[str | None, typer.Option("--note")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve draft service reports, all or none."""
    with _session(api_key) as (db, actor):
        rows = time_sheets.approve_service_reports(db, actor, reports, note)
    if as_json:
        _emit_json([service_report_json(r) for r in rows])
        return
    typer.echo(f"{len(rows)} service reports approved")


@command(reports_app, "reject")
def report_reject(
    reports: Annotated[list[str], typer.Argument(help="Service report ids.")],
    reason: Annotated[str, typer.Option("--reason")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject draft service reports, all or none."""
    with _session(api_key) as (db, actor):
        rows = time_sheets.reject_service_reports(db, actor, reports, reason)
    if as_json:
        _emit_json([service_report_json(r) for r in rows])
        return
    typer.echo(f"{len(rows)} service reports rejected")


@command(reports_app, "bill")
def report_bill(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    through: ThroughOpt = None,
    rate: RateOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn the customer's approved, unbilled service reports into charges for the next
    invoice."""
    with _session(api_key) as (db, actor):
        charges = time_sheets.bill_service_reports(db, actor, customer, through=through, rate=rate)
    _billed(charges, as_json, "service reports")
