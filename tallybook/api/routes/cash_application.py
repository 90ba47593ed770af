"""Cash application over HTTP: upload a bank statement, work the review queue."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.render import money, row, with_amounts
from tallybook.services import cash_application as cash
from tallybook.services.base import InvalidInput

router = APIRouter(prefix="/v1", tags=["cash application"])

STATEMENT = (
    "id",
    "format",
    "file_name",
    "file_sha256",
    "account",
    "statement_ref",
    "lines_total",
    "lines_new",
    "imported_at",
)
LINE = (
    "id",
    "statement_id",
    "position",
    "booking_date",
    "amount_minor",
    "currency",
    "payer_name",
    "payer_account",
    "remittance_text",
    "creditor_reference",
    "referred_documents",
    "bank_reference",
    "status",
    "confidence",
    "method",
    "customer_id",
    "payment_id",
    "resolved_at",
    "resolution_note",
)


def statement_json(statement: Any, counts: dict[str, int] | None = None) -> dict[str, Any]:
    data = row(statement, STATEMENT)
    if counts is not None:
        data["lines_by_status"] = {status: counts.get(status, 0) for status in cash.STATUSES}
    return data


def line_json(line: Any) -> dict[str, Any]:
    data = with_amounts(row(line, LINE), line.currency)
    proposal = dict(line.proposal or {})
    if proposal:
        proposal["allocations"] = [
            {**a, "amount": money(a["amount_minor"], line.currency)}
            for a in proposal.get("allocations", [])
        ]
        if "unapplied_minor" in proposal:
            proposal["unapplied"] = money(proposal["unapplied_minor"], line.currency)
    data["proposal"] = proposal
    return data


def import_json(result: cash.StatementImport) -> dict[str, Any]:
    return {
        "statement": statement_json(result.statement),
        "already_imported": result.already_imported,
        "lines_in_file": result.lines_in_file,
        "lines_new": result.lines_new,
        "lines_known": result.lines_known,
        "applied": result.applied,
        "review": result.review,
        "outgoing": result.outgoing,
        "ignored": result.ignored,
        "applied_amounts": {cur: money(v, cur) for cur, v in sorted(result.applied_minor.items())},
    }


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllocationIn(Body):
    invoice_id: str
    amount: str = Field(description="in the line's currency, e.g. '119.00'")


class ApplyLineIn(Body):
    customer_id: str
    allocations: list[AllocationIn] | None = Field(
        default=None, description="split over these invoices; none: oldest first"
    )
    note: str | None = None
    remember_account: bool = Field(
        default=True, description="add the payer's account to the customer's bank accounts"
    )


class NoteIn(Body):
    note: str | None = None


class ReasonIn(Body):
    reason: str


class RematchIn(Body):
    statement_id: str | None = None


@router.post(
    "/bank-statements",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def post_bank_statement(
    request: Request,
    db: Db,
    who: Who,
    file_name: Annotated[str, Query(description="the file's name, for the record")] = "statement",
    format: Annotated[
        str | None,
        Query(description="camt.053, mt940, bai2, ofx or csv; default: read from the content"),
    ] = None,
    mapping: Annotated[
        str | None,
        Query(description='CSV column mapping as JSON, e.g. {"date": "Date", "amount": '
              '"Amount", "currency": "EUR"}'),
    ] = None,
    idem: Idem = None,
) -> dict:
    """Import a statement file sent as the request body. Sure matches post as payments; the
    rest wait in the review queue. The same file or lines again create nothing new."""
    from fastapi.concurrency import run_in_threadpool

    data = await request.body()
    parsed: dict[str, Any] | None = None
    if mapping:
        try:
            parsed = orjson.loads(mapping)
        except orjson.JSONDecodeError:
            raise InvalidInput("mapping: is not JSON", field="mapping") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("mapping: must be a JSON object", field="mapping")
    result = await run_in_threadpool(
        cash.import_statement, db, who, data, file_name=file_name, format=format, mapping=parsed
    )
    return import_json(result)


@router.get("/bank-statements")
def get_bank_statements(db: Db, who: Who, limit: Limit = 100, cursor: Cursor = None) -> dict:
    rows, next_cursor = cash.list_statements(db, who, limit=limit, after=cursor)
    return {"data": [statement_json(s) for s in rows], "next_cursor": next_cursor}


@router.get("/bank-statements/{statement_id}")
def get_bank_statement(statement_id: str, db: Db, who: Who) -> dict:
    view = cash.get_statement(db, who, statement_id)
    return statement_json(view.statement, view.counts)


@router.post("/bank-statements/rematch")
def post_rematch(body: RematchIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Match the review queue again (after invoices were issued or accounts added)."""
    run = cash.rematch(db, who, body.statement_id)
    return {
        "examined": run.examined,
        "applied": run.applied,
        "review": run.review,
        "applied_amounts": {cur: money(v, cur) for cur, v in sorted(run.applied_minor.items())},
    }


@router.get("/bank-statement-lines")
def get_bank_statement_lines(
    db: Db,
    who: Who,
    status: Annotated[str | None, Query(description=", ".join(cash.STATUSES))] = None,
    statement_id: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = cash.list_lines(
        db, who, status=status, statement_id=statement_id, limit=limit, after=cursor
    )
    return {"data": [line_json(x) for x in rows], "next_cursor": next_cursor}


@router.get("/bank-statement-lines/{line_id}")
def get_bank_statement_line(line_id: str, db: Db, who: Who) -> dict:
    return line_json(cash.get_line(db, who, line_id))


def _applied(db: Any, who: Any, line_id: str, payment: Any) -> dict:
    from tallybook.api.render import payment as render_payment
    from tallybook.services import payments

    view = payments.get_payment(db, who, payment.id)
    return {
        "line": line_json(cash.get_line(db, who, line_id)),
        "payment": render_payment(view.payment, view.allocations),
    }


@router.post("/bank-statement-lines/{line_id}/confirm")
def post_confirm_line(line_id: str, body: NoteIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Post the line as proposed."""
    payment = cash.confirm_line(db, who, line_id, body.note)
    return _applied(db, who, line_id, payment)


@router.post("/bank-statement-lines/{line_id}/apply")
def post_apply_line(
    line_id: str, body: ApplyLineIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """Assign the line to a customer, split over invoices or oldest first."""
    allocations = (
        [a.model_dump() for a in body.allocations] if body.allocations is not None else None
    )
    payment = cash.apply_line(
        db,
        who,
        line_id,
        body.customer_id,
        allocations,
        note=body.note,
        remember_account=body.remember_account,
    )
    return _applied(db, who, line_id, payment)


@router.post("/bank-statement-lines/{line_id}/ignore")
def post_ignore_line(line_id: str, body: ReasonIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Set the line aside: not a customer's payment."""
    return line_json(cash.ignore_line(db, who, line_id, body.reason))


@router.post("/bank-statement-lines/{line_id}/reopen")
def post_reopen_line(line_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    return line_json(cash.reopen_line(db, who, line_id))
