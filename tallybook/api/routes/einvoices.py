"""E-invoices over HTTP: issued invoices, credit notes and debit notes as UBL 2.1 (Peppol
BIS Billing 3.0) or CII (Factur-X / ZUGFeRD EN 16931) XML, and checking any e-invoice against
the official rules."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tallybook.api.deps import Db, Who
from tallybook.services import einvoices
from tallybook.services.base import InvalidInput

router = APIRouter(prefix="/v1", tags=["e-invoices"])

MAX_BODY = 20 * 1024 * 1024  # an e-invoice with thousands of lines is a few megabytes
XML_RESPONSE = {200: {"content": {"application/xml": {}}, "description": "the e-invoice"}}


def _xml(file: einvoices.EInvoiceFile) -> Response:
    return Response(
        file.content,
        media_type=f"{file.media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{file.file_name}"'},
    )


@router.get("/invoices/{invoice_id}/ubl", responses=XML_RESPONSE)
def get_invoice_ubl(invoice_id: str, db: Db, who: Who) -> Response:
    """The issued invoice as UBL 2.1, Peppol BIS Billing 3.0."""
    return _xml(einvoices.einvoice_file(db, who, invoice_id, "invoice", "ubl"))


@router.get("/invoices/{invoice_id}/cii", responses=XML_RESPONSE)
def get_invoice_cii(invoice_id: str, db: Db, who: Who) -> Response:
    """The issued invoice as CII (Factur-X / ZUGFeRD, EN 16931 profile)."""
    return _xml(einvoices.einvoice_file(db, who, invoice_id, "invoice", "cii"))


@router.get("/credit-notes/{credit_note_id}/ubl", responses=XML_RESPONSE)
def get_credit_note_ubl(credit_note_id: str, db: Db, who: Who) -> Response:
    """The credit note as a UBL 2.1 CreditNote, Peppol BIS Billing 3.0."""
    return _xml(einvoices.einvoice_file(db, who, credit_note_id, "credit_note", "ubl"))


@router.get("/credit-notes/{credit_note_id}/cii", responses=XML_RESPONSE)
def get_credit_note_cii(credit_note_id: str, db: Db, who: Who) -> Response:
    """The credit note as CII (type code 381)."""
    return _xml(einvoices.einvoice_file(db, who, credit_note_id, "credit_note", "cii"))


@router.get("/debit-notes/{debit_note_id}/ubl", responses=XML_RESPONSE)
def get_debit_note_ubl(debit_note_id: str, db: Db, who: Who) -> Response:
    """The debit note as a UBL 2.1 Invoice with type code 383."""
    return _xml(einvoices.einvoice_file(db, who, debit_note_id, "debit_note", "ubl"))


@router.get("/debit-notes/{debit_note_id}/cii", responses=XML_RESPONSE)
def get_debit_note_cii(debit_note_id: str, db: Db, who: Who) -> Response:
    """The debit note as CII (type code 383)."""
    return _xml(einvoices.einvoice_file(db, who, debit_note_id, "debit_note", "cii"))


def report_json(report: Any) -> dict[str, Any]:
    """A validation report: schema errors and rule failures with their ids, flags, messages."""
    return {
        "valid": report.valid,
        "syntax": report.syntax,
        "document_type": report.document_type,
        "schema": report.schema,
        "schema_errors": list(report.schema_errors),
        "rule_sets": list(report.rule_sets),
        "fatal_count": len(report.fatal),
        "warning_count": len(report.warnings),
        "failures": [
            {
                "rule_set": f.rule_set,
                "id": f.rule_id,
                "flag": f.flag,
                "message": f.message,
                "location": f.location,
            }
            for f in report.failures
        ],
    }


@router.post(
    "/einvoices/validate",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/xml": {"schema": {"type": "string"}}},
        }
    },
)
async def post_einvoice_validation(request: Request, who: Who) -> dict:
    """Check an e-invoice sent as the request body (UBL Invoice / CreditNote or CII): the UBL
    2.1 schema, the EN 16931 rules and, for UBL, the Peppol BIS 3 rules. The answer lists
    every failure; `valid` is false when the schema fails or any rule is fatal."""
    from fastapi.concurrency import run_in_threadpool

    data = await request.body()
    if len(data) > MAX_BODY:
        raise InvalidInput("body: an e-invoice of more than 20 MB is refused", field="body")
    report = await run_in_threadpool(einvoices.validate_einvoice, who, data)
    return report_json(report)


@router.get(
    "/einvoices/export",
    responses={200: {"content": {"application/zip": {}}, "description": "a ZIP of XML files"}},
)
def get_einvoice_export(
    db: Db,
    who: Who,
    date_from: Annotated[date, Query(alias="from", description="first issue date")],
    date_to: Annotated[date, Query(alias="to", description="last issue date")],
    syntax: Annotated[str, Query(description="ubl or cii")] = "ubl",
) -> Response:
    """Every invoice issued in the period as e-invoices, one XML file each, in a ZIP."""
    content = einvoices.export_invoices(db, who, date_from, date_to, syntax)
    name = f"einvoices-{syntax}-{date_from.isoformat()}-{date_to.isoformat()}.zip"
    return Response(
        content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
