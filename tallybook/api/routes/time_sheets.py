"""Time sheets and service reports over HTTP: enter, import (CSV, XLSX), approve or reject,
list by customer, contract, period and status, and bill as charges for the next invoice."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.render import charge, row
from tallybook.services import time_sheets

router = APIRouter(prefix="/v1", tags=["time sheets and service reports"])

TIME_ENTRY = (
    "id",
    "customer_id",
    "contract_id",
    "worker",
    "work_date",
    "hours",
    "product_id",
    "service_code",
    "description",
    "reference",
    "status",
    "entered_by",
    "approved_by",
    "approved_at",
    "review_note",
    "charge_id",
    "billed_invoice_id",
    "source",
    "created_at",
)
SERVICE_REPORT = (
    "id",
    "customer_id",
    "contract_id",
    "product_id",
    "service_date",
    "quantity",
    "reference",
    "description",
    "performed_by",
    "status",
    "entered_by",
    "approved_by",
    "approved_at",
    "review_note",
    "charge_id",
    "billed_invoice_id",
    "source",
    "created_at",
)


def time_entry_json(entry: Any) -> dict[str, Any]:
    return row(entry, TIME_ENTRY)


def service_report_json(report: Any) -> dict[str, Any]:
    return row(report, SERVICE_REPORT)


def import_json(result: time_sheets.SheetImport, render: Any) -> dict[str, Any]:
    return {
        "format": result.format,
        "file_sha256": result.file_sha256,
        "created": len(result.created),
        "approved": result.approved,
        "data": [render(r) for r in result.created],
    }


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeEntryIn(Body):
    customer_id: str
    worker: str = Field(description="who worked")
    work_date: date
    hours: str | int = Field(description='exact decimal: "7.5"')
    contract_id: str | None = Field(default=None, description="contract id or reference")
    product_id: str | None = Field(default=None, description="product id or code")
    service_code: str | None = Field(default=None, description="when there is no product")
    description: str | None = None
    reference: str | None = Field(default=None, description="ticket, matter or task reference")


class ServiceReportIn(Body):
    customer_id: str
    product_id: str = Field(description="product id or code")
    service_date: date
    quantity: str | int = "1"
    contract_id: str | None = Field(default=None, description="contract id or reference")
    reference: str | None = None
    description: str | None = None
    performed_by: str | None = None


class ReviewIn(Body):
    ids: list[str] = Field(min_length=1)
    note: str | None = None


class RejectIn(Body):
    ids: list[str] = Field(min_length=1)
    reason: str


class NoteIn(Body):
    note: str | None = None


class ReasonIn(Body):
    reason: str


class BillIn(Body):
    through: date | None = Field(default=None, description="only work up to this day")
    rate: str | int | None = Field(
        default=None, description="unit price where no contract or catalog price applies"
    )


def _filters(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


OCTET_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
FileName = Annotated[str, Query(description="the file's name, for the record")]
Format = Annotated[str | None, Query(description="csv or xlsx; default: read from the content")]


# -- time entries ------------------------------------------------------------------------------


@router.post("/time-entries", status_code=201)
def post_time_entry(body: TimeEntryIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Hours worked; a draft until a manager other than who entered it approves it."""
    return time_entry_json(
        time_sheets.create_time_entry(db, who, body.model_dump(exclude_none=True))
    )


@router.post("/time-entries/import", status_code=201, openapi_extra=OCTET_BODY)
async def post_time_entries_import(
    request: Request,
    db: Db,
    who: Who,
    file_name: FileName = "time-sheet",
    format: Format = None,
    idem: Idem = None,
) -> dict:
    """Import a time sheet sent as the body: every row or none (columns: worker, date, hours,
    customer, contract, product, service, description, reference, approved)."""
    from fastapi.concurrency import run_in_threadpool

    data = await request.body()
    result = await run_in_threadpool(
        time_sheets.import_time_entries, db, who, data, file_name=file_name, format=format
    )
    return import_json(result, time_entry_json)


@router.get("/time-entries")
def get_time_entries(
    db: Db,
    who: Who,
    customer_id: str | None = None,
    contract_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    status: Annotated[str | None, Query(description="draft, approved or rejected")] = None,
    billed: bool | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = time_sheets.list_time_entries(
        db,
        who,
        **_filters(
            customer_id=customer_id,
            contract_id=contract_id,
            date_from=date_from,
            date_to=date_to,
            status=status,
            billed=billed,
        ),
        limit=limit,
        after=cursor,
    )
    return {"data": [time_entry_json(e) for e in rows], "next_cursor": next_cursor}


@router.get("/time-entries/{entry_id}")
def get_time_entry(entry_id: str, db: Db, who: Who) -> dict:
    return time_entry_json(time_sheets.get_time_entry(db, who, entry_id))


@router.post("/time-entries/approve")
def post_time_entries_approve(body: ReviewIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Approve drafts, all or none."""
    rows = time_sheets.approve_time_entries(db, who, body.ids, body.note)
    return {"data": [time_entry_json(e) for e in rows]}


@router.post("/time-entries/reject")
def post_time_entries_reject(body: RejectIn, db: Db, who: Who, idem: Idem = None) -> dict:
    rows = time_sheets.reject_time_entries(db, who, body.ids, body.reason)
    return {"data": [time_entry_json(e) for e in rows]}


@router.post("/time-entries/{entry_id}/approve")
def post_time_entry_approve(
    entry_id: str, db: Db, who: Who, body: NoteIn | None = None, idem: Idem = None
) -> dict:
    [entry] = time_sheets.approve_time_entries(db, who, [entry_id], body.note if body else None)
    return time_entry_json(entry)


@router.post("/time-entries/{entry_id}/reject")
def post_time_entry_reject(
    entry_id: str, body: ReasonIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    [entry] = time_sheets.reject_time_entries(db, who, [entry_id], body.reason)
    return time_entry_json(entry)


@router.post("/customers/{customer_id}/bill-time", status_code=201)
def post_bill_time(
    customer_id: str, db: Db, who: Who, body: BillIn | None = None, idem: Idem = None
) -> dict:
    """The customer's approved, unbilled time as charges for the next invoice: at the contract
    price on the work day, else the product's per-unit catalog price, else `rate`."""
    body = body or BillIn()
    charges = time_sheets.bill_time(db, who, customer_id, through=body.through, rate=body.rate)
    return {"data": [charge(c) for c in charges]}


# -- service reports ---------------------------------------------------------------------------


@router.post("/service-reports", status_code=201)
def post_service_report(body: ServiceReportIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """A service delivered; a draft until a manager other than who entered it approves it."""
    values = body.model_dump(exclude_none=True)
    return service_report_json(time_sheets.create_service_report(db, who, values))


@router.post("/service-reports/import", status_code=201, openapi_extra=OCTET_BODY)
async def post_service_reports_import(
    request: Request,
    db: Db,
    who: Who,
    file_name: FileName = "service-reports",
    format: Format = None,
    idem: Idem = None,
) -> dict:
    """Import service reports sent as the body: every row or none (columns: date, quantity,
    product, customer, contract, reference, description, performed_by, approved)."""
    from fastapi.concurrency import run_in_threadpool

    data = await request.body()
    result = await run_in_threadpool(
        time_sheets.import_service_reports, db, who, data, file_name=file_name, format=format
    )
    return import_json(result, service_report_json)


@router.get("/service-reports")
def get_service_reports(
    db: Db,
    who: Who,
    customer_id: str | None = None,
    contract_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    status: Annotated[str | None, Query(description="draft, approved or rejected")] = None,
    billed: bool | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = time_sheets.list_service_reports(
        db,
        who,
        **_filters(
            customer_id=customer_id,
            contract_id=contract_id,
            date_from=date_from,
            date_to=date_to,
            status=status,
            billed=billed,
        ),
        limit=limit,
        after=cursor,
    )
    return {"data": [service_report_json(r) for r in rows], "next_cursor": next_cursor}


@router.get("/service-reports/{report_id}")
def get_service_report(report_id: str, db: Db, who: Who) -> dict:
    return service_report_json(time_sheets.get_service_report(db, who, report_id))


@router.post("/service-reports/approve")
def post_service_reports_approve(body: ReviewIn, db: Db, who: Who, idem: Idem = None) -> dict:
    rows = time_sheets.approve_service_reports(db, who, body.ids, body.note)
    return {"data": [service_report_json(r) for r in rows]}


@router.post("/service-reports/reject")
def post_service_reports_reject(body: RejectIn, db: Db, who: Who, idem: Idem = None) -> dict:
    rows = time_sheets.reject_service_reports(db, who, body.ids, body.reason)
    return {"data": [service_report_json(r) for r in rows]}


@router.post("/service-reports/{report_id}/approve")
def post_service_report_approve(
    report_id: str, db: Db, who: Who, body: NoteIn | None = None, idem: Idem = None
) -> dict:
    [report] = time_sheets.approve_service_reports(
        db, who, [report_id], body.note if body else None
    )
    return service_report_json(report)


@router.post("/service-reports/{report_id}/reject")
def post_service_report_reject(
    report_id: str, body: ReasonIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    [report] = time_sheets.reject_service_reports(db, who, [report_id], body.reason)
    return service_report_json(report)


@router.post("/customers/{customer_id}/bill-service-reports", status_code=201)
def post_bill_service_reports(
    customer_id: str, db: Db, who: Who, body: BillIn | None = None, idem: Idem = None
) -> dict:
    """The customer's approved, unbilled service reports as charges for the next invoice."""
    body = body or BillIn()
    charges = time_sheets.bill_service_reports(
        db, who, customer_id, through=body.through, rate=body.rate
    )
    return {"data": [charge(c) for c in charges]}
