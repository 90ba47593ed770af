"""Documents over HTTP: invoices (drafts as marked pro-formas), credit notes, debit notes,
customer statements and dunning letters as PDF, issued invoices as Factur-X, and the
organisation's branding (colour and logo) they are printed with."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from tallybook.api.deps import Db, Who
from tallybook.services import documents
from tallybook.services.base import InvalidInput

router = APIRouter(prefix="/v1", tags=["documents"])

PDF_RESPONSE = {200: {"content": {"application/pdf": {}}, "description": "the PDF document"}}
Language = Annotated[
    str | None,
    Query(description="en, de or fr; default: the customer's language (else English)"),
]


def _file(rendered: documents.RenderedDocument) -> Response:
    return Response(
        rendered.content,
        media_type=rendered.media_type,
        headers={"Content-Disposition": f'attachment; filename="{rendered.file_name}"'},
    )


@router.get("/invoices/{invoice_id}/pdf", responses=PDF_RESPONSE)
def get_invoice_pdf(
    invoice_id: str,
    db: Db,
    who: Who,
    language: Language = None,
    explain: Annotated[bool, Query(description="add how each line was computed under it")] = False,
) -> Response:
    """The invoice (by id or number) as PDF; a draft comes as a pro-forma marked DRAFT."""
    return _file(
        documents.document_pdf(db, who, "invoice", invoice_id, language=language, explain=explain)
    )


@router.get("/invoices/{invoice_id}/facturx", responses=PDF_RESPONSE)
def get_invoice_facturx(invoice_id: str, db: Db, who: Who) -> Response:
    """The issued invoice as Factur-X / ZUGFeRD (EN 16931): PDF/A-3 with its CII XML."""
    return _file(documents.document_facturx(db, who, invoice_id))


@router.get("/credit-notes/{credit_note_id}/pdf", responses=PDF_RESPONSE)
def get_credit_note_pdf(
    credit_note_id: str, db: Db, who: Who, language: Language = None
) -> Response:
    """The credit note as PDF, naming the invoice it corrects."""
    return _file(documents.document_pdf(db, who, "credit_note", credit_note_id, language=language))


@router.get("/debit-notes/{debit_note_id}/pdf", responses=PDF_RESPONSE)
def get_debit_note_pdf(debit_note_id: str, db: Db, who: Who, language: Language = None) -> Response:
    """The debit note as PDF, naming the invoice it adds to."""
    return _file(documents.document_pdf(db, who, "debit_note", debit_note_id, language=language))


@router.get("/customers/{customer_id}/statement.pdf", responses=PDF_RESPONSE)
def get_statement_pdf(
    customer_id: str,
    db: Db,
    who: Who,
    date_from: Annotated[
        date | None, Query(alias="from", description="default: first day of the month of `to`")
    ] = None,
    date_to: Annotated[date | None, Query(alias="to", description="default: today")] = None,
    currency: Annotated[str | None, Query(description="default: the customer's")] = None,
    language: Language = None,
) -> Response:
    """The customer's statement as PDF: opening balance, movements with the running balance,
    closing balance and how to pay it."""
    return _file(
        documents.document_pdf(
            db,
            who,
            "statement",
            customer_id,
            language=language,
            date_from=date_from,
            date_to=date_to,
            currency=currency,
        )
    )


@router.get("/dunning/reminders/{reminder_id}/letter.pdf", responses=PDF_RESPONSE)
def get_dunning_letter_pdf(
    reminder_id: str, db: Db, who: Who, language: Language = None
) -> Response:
    """The letter of a dunning reminder: its level, the customer's overdue invoices, the late
    fee and what to do."""
    return _file(documents.document_pdf(db, who, "dunning_letter", reminder_id, language=language))


# -- branding ------------------------------------------------------------------------------------


class BrandingPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    brand_color: str | None = None
    logo: str | None = None  # a data URI: data:image/png;base64,...


def _branding_json(view: documents.BrandingView) -> dict:
    return {
        "brand_color": view.brand_color,
        "logo": (
            {
                "media_type": view.logo_media_type,
                "bytes": view.logo_bytes,
                "sha256": view.logo_sha256,
            }
            if view.logo_bytes
            else None
        ),
    }


@router.get("/organization/branding", tags=["organization"])
def get_branding(db: Db, who: Who) -> dict:
    """The colour and logo documents are printed with."""
    return _branding_json(documents.get_branding(db, who))


@router.patch("/organization/branding", tags=["organization"])
def patch_branding(body: BrandingPatch, db: Db, who: Who) -> dict:
    """Set the primary colour (#rrggbb; null: the default) and/or the logo as a data URI
    (PNG, JPEG or SVG, at most 256 KB; null removes it). Admins only."""
    given = body.model_fields_set
    options: dict = {}
    if "brand_color" in given:
        options["brand_color"] = body.brand_color
    if "logo" in given:
        options["logo"], options["logo_media_type"] = _data_uri(body.logo)
    if not options:
        raise InvalidInput("give brand_color or logo", field="brand_color")
    return _branding_json(documents.update_branding(db, who, **options))


def _data_uri(value: str | None) -> tuple[bytes | None, str | None]:
    if value is None or not value.strip():
        return None, None
    match = re.fullmatch(r"data:([\w.+/-]+)?(;charset=[\w-]+)?;base64,(.*)", value.strip(), re.S)
    if match is None:
        raise InvalidInput(
            "logo: send the image as a data URI, data:image/png;base64,...", field="logo"
        )
    try:
        content = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("logo: the data URI is not valid base64", field="logo") from None
    return content, match.group(1)


@router.put("/organization/logo", tags=["organization"])
async def put_logo(request: Request, db: Db, who: Who) -> dict:
    """Upload the logo as the request body (Content-Type image/png, image/jpeg or
    image/svg+xml; at most 256 KB). Admins only."""
    from fastapi.concurrency import run_in_threadpool

    content = await request.body()
    if len(content) > documents.MAX_LOGO_BYTES:
        raise InvalidInput("logo: at most 256 KB", field="logo")
    if not content:
        raise InvalidInput("logo: send the image as the request body", field="logo")
    view = await run_in_threadpool(
        documents.update_branding,
        db,
        who,
        logo=content,
        logo_media_type=request.headers.get("content-type"),
    )
    return _branding_json(view)


@router.get(
    "/organization/logo",
    tags=["organization"],
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/svg+xml": {}}}},
)
def get_logo(db: Db, who: Who) -> Response:
    """The logo as stored (404 when there is none)."""
    from tallybook.services.base import NotFound

    view = documents.get_branding(db, who, with_logo=True)
    if not view.logo:
        raise NotFound("the organisation has no logo")
    return Response(
        view.logo,
        media_type=view.logo_media_type,
        # An SVG opened directly is a page of its own: it may run nothing.
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@router.delete("/organization/logo", tags=["organization"])
def delete_logo(db: Db, who: Who) -> dict:
    """Remove the logo. Admins only."""
    return _branding_json(documents.update_branding(db, who, logo=None))
