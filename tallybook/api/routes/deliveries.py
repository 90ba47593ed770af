"""Sending documents over HTTP: e-mail any issued document (it goes through the outbox and is
sent after the commit), the delivery log with retries, customers' delivery preferences and the
organisation's sender address."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.schemas import Body
from tallybook.services import customers, organizations, outbox

router = APIRouter(prefix="/v1")

EInvoiceChoice = Literal["none", "ubl", "cii", "facturx"]


class SendIn(Body):
    to: list[str] | None = Field(
        default=None, description="addresses to send to; default: the customer's e-mails"
    )
    einvoice: EInvoiceChoice | None = Field(
        default=None,
        description="the e-invoice to go along (default: the customer's preference): ubl or "
        "cii attach the XML, facturx sends the Factur-X PDF",
    )


class StatementSendIn(SendIn):
    date_from: date | None = Field(default=None, alias="from", description="default: the 1st")
    date_to: date | None = Field(default=None, alias="until", description="default: today")


class DeliveryPreferencesIn(Body):
    clearable: ClassVar[frozenset[str]] = frozenset({"einvoice_attachment"})
    delivery_channel: Literal["email", "portal"] | None = Field(
        default=None, description="email: documents are e-mailed; portal: never e-mailed"
    )
    einvoice_attachment: Literal["none", "ubl", "cii", "facturx"] | None = None


class DeliverySettingsIn(Body):
    clearable: ClassVar[frozenset[str]] = frozenset({"email_from"})
    email_from: str | None = Field(
        default=None, description='who e-mails come from: "Billing <billing@example.com>"'
    )
    scheduled_runs: list[Literal["collection", "dunning"]] | None = Field(
        default=None, description="daily runs the job worker starts for the organisation"
    )


def _send(db: Db, who: Who, kind: str, ref: str, body: SendIn | None) -> dict:
    values = body.values() if body else {}
    extra = {}
    if "einvoice" in values:
        extra["einvoice"] = values["einvoice"]
    delivery = outbox.send_document(db, who, kind, ref, to=values.get("to"), **extra)
    return render.delivery(delivery)


@router.post("/invoices/{invoice_id}/send", status_code=202, tags=["deliveries"])
def post_invoice_send(
    invoice_id: str, db: Db, who: Who, body: SendIn | None = None, idem: Idem = None
) -> dict:
    """E-mail an issued invoice (PDF, and the e-invoice the customer wants); queued now, sent
    by the job worker after the commit."""
    return _send(db, who, "invoice", invoice_id, body)


@router.post("/credit-notes/{credit_note_id}/send", status_code=202, tags=["deliveries"])
def post_credit_note_send(
    credit_note_id: str, db: Db, who: Who, body: SendIn | None = None, idem: Idem = None
) -> dict:
    return _send(db, who, "credit_note", credit_note_id, body)


@router.post("/debit-notes/{debit_note_id}/send", status_code=202, tags=["deliveries"])
def post_debit_note_send(
    debit_note_id: str, db: Db, who: Who, body: SendIn | None = None, idem: Idem = None
) -> dict:
    return _send(db, who, "debit_note", debit_note_id, body)


@router.post("/dunning/reminders/{reminder_id}/send", status_code=202, tags=["deliveries"])
def post_reminder_send(
    reminder_id: str, db: Db, who: Who, body: SendIn | None = None, idem: Idem = None
) -> dict:
    """E-mail a dunning reminder again (with the invoice and any late fee's debit note)."""
    return _send(db, who, "dunning_reminder", reminder_id, body)


@router.post("/customers/{customer_id}/statement/send", status_code=202, tags=["deliveries"])
def post_statement_send(
    customer_id: str, db: Db, who: Who, body: StatementSendIn | None = None, idem: Idem = None
) -> dict:
    """E-mail the customer's statement of account for a period (default: the month to date)."""
    values = body.model_dump(exclude_unset=True) if body else {}
    delivery = outbox.send_document(
        db,
        who,
        "statement",
        customer_id,
        to=values.get("to"),
        date_from=values.get("date_from"),
        date_to=values.get("date_to"),
    )
    return render.delivery(delivery)


@router.get("/deliveries", tags=["deliveries"])
def get_deliveries(
    db: Db,
    who: Who,
    document: str | None = Query(default=None, description="a document's id or number"),
    status: str | None = Query(
        default=None, description="queued, sending, sent, failed, unknown; several: failed,unknown"
    ),
    channel: Literal["email", "webhook"] | None = None,
    customer_id: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict:
    """The delivery log: every e-mail and webhook in the outbox with its state."""
    rows, next_cursor = outbox.list_deliveries(
        db,
        who,
        channel=channel,
        status=status,
        document=document,
        customer_id=customer_id,
        limit=limit,
        after=cursor,
    )
    return {"data": [render.delivery(d) for d in rows], "next_cursor": next_cursor}


@router.get("/deliveries/{delivery_id}", tags=["deliveries"])
def get_delivery(delivery_id: str, db: Db, who: Who) -> dict:
    """One delivery with each attempt and what the server answered."""
    return render.delivery_view(outbox.get_delivery(db, who, delivery_id))


@router.post("/deliveries/{delivery_id}/retry", tags=["deliveries"])
def post_delivery_retry(delivery_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    """Put a failed delivery, or one whose fate is unknown (after checking it did not arrive),
    back in the queue."""
    return render.delivery(outbox.retry_delivery(db, who, delivery_id))


@router.get("/customers/{customer_id}/delivery-preferences", tags=["deliveries"])
def get_delivery_preferences(customer_id: str, db: Db, who: Who) -> dict:
    return render.delivery_preferences(customers.get_customer(db, who, customer_id))


@router.put("/customers/{customer_id}/delivery-preferences", tags=["deliveries"])
def put_delivery_preferences(
    customer_id: str, body: DeliveryPreferencesIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """E-mail or portal only, and the e-invoice that goes along (none, ubl, cii, facturx)."""
    customer = customers.update_customer(db, who, customer_id, body.values())
    return render.delivery_preferences(customer)


@router.get("/organization/delivery-settings", tags=["deliveries"])
def get_delivery_settings(db: Db, who: Who) -> dict:
    org = organizations.get_organization(db, who)
    return {"email_from": org.email_from, "scheduled_runs": list(org.scheduled_runs or [])}


@router.put("/organization/delivery-settings", tags=["deliveries"])
def put_delivery_settings(body: DeliverySettingsIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Who e-mails come from, and the daily runs (collection, dunning) the worker starts."""
    org = organizations.update_settings(db, who, body.values())
    return {"email_from": org.email_from, "scheduled_runs": list(org.scheduled_runs or [])}
