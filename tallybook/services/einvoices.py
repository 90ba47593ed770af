"""E-invoices of issued documents: the EN 16931 model built from an issued invoice, credit
note or debit note, its UBL (Peppol BIS 3) and CII (Factur-X) XML, and checking any e-invoice
against the official rules."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tallybook.core.einvoice import (
    CommercialDocument,
    DocumentKind,
    EInvoiceError,
    ElectronicAddress,
    LineFacts,
    Party,
    PaymentAccount,
    PostalAddress,
    PrecedingInvoice,
    build_document,
    unit_code_for,
    vat_identifier,
)
from tallybook.core.references import creditor_reference, display
from tallybook.db.models import (
    CreditNote,
    CreditNoteLine,
    Customer,
    DebitNote,
    Invoice,
    InvoiceLine,
    Organization,
    Product,
)
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    ServiceError,
)

SYNTAXES = ("ubl", "cii")
_CHUNK = 5_000  # ids per IN (...) list
# Countries whose tax ids are VAT numbers a receiver can check (BT-48 carries only those).
VAT_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI "
    "GB NO CH IS LI".split()
)


class ValidatorUnavailable(ServiceError):
    status = 503
    title = "Validator unavailable"
    type_suffix = "validator-unavailable"


@dataclass(frozen=True)
class EInvoiceFile:
    file_name: str
    content: bytes
    media_type: str = "application/xml"


def einvoice_for(
    db: Database, actor: Actor, document_id: str, kind: str = "invoice"
) -> CommercialDocument:
    """The e-invoice model of an issued invoice, credit note or debit note (by id or number).

    Drafts are refused: only issued documents become e-invoices. Another organisation's
    document is simply not found.
    """
    try:
        document_kind = DocumentKind(kind)
    except ValueError:
        raise InvalidInput(
            "kind: must be invoice, credit_note or debit_note", field="kind"
        ) from None
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        try:
            if document_kind is DocumentKind.INVOICE:
                return _invoice(session, actor, org, document_id)
            if document_kind is DocumentKind.CREDIT_NOTE:
                return _credit_note(session, actor, org, document_id)
            return _debit_note(session, actor, org, document_id)
        except EInvoiceError as error:
            raise Conflict(f"the document cannot be an e-invoice: {error}") from None


def einvoice_file(
    db: Database, actor: Actor, document_id: str, kind: str, syntax: str
) -> EInvoiceFile:
    """The XML of an issued document: UBL 2.1 (Peppol BIS 3) or CII (Factur-X EN 16931)."""
    if syntax not in SYNTAXES:
        raise InvalidInput("syntax: must be ubl or cii", field="syntax")
    document = einvoice_for(db, actor, document_id, kind)
    if syntax == "ubl":
        from tallybook.formats.ubl import to_ubl

        content = to_ubl(document)
    else:
        from tallybook.formats.cii import to_cii

        content = to_cii(document)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", document.number)
    return EInvoiceFile(f"{safe}-{syntax}.xml", content)


def export_invoices(
    db: Database, actor: Actor, date_from: date, date_to: date, syntax: str
) -> bytes:
    """Every invoice issued from `date_from` to `date_to` (inclusive) as UBL or CII, one file
    each, in a ZIP (entries in number order, fixed timestamps: the same export, the same bytes)."""
    if syntax not in SYNTAXES:
        raise InvalidInput("syntax: must be ubl or cii", field="syntax")
    if date_to < date_from:
        raise InvalidInput("to: the period ends before it starts", field="to")
    with db.reading() as session:
        ids = list(
            session.scalars(
                select(Invoice.id)
                .where(
                    Invoice.organization_id == actor.organization_id,
                    Invoice.status.not_in(("draft", "void")),
                    Invoice.issue_date >= date_from,
                    Invoice.issue_date <= date_to,
                )
                .order_by(Invoice.number)
            )
        )
    if syntax == "ubl":
        from tallybook.formats.ubl import to_ubl as write
    else:
        from tallybook.formats.cii import to_cii as write
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for document in invoice_einvoices(db, actor, ids):
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", document.number)
            entry = zipfile.ZipInfo(f"{safe}-{syntax}.xml", date_time=(2000, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, write(document))
    return buffer.getvalue()


def validate_einvoice(actor: Actor | None, xml: bytes) -> Any:
    """Check an e-invoice (UBL or CII) against the XSD and the official rule sets.

    Any key may ask (the command line checks a file without one); nothing is read or written.
    Returns a ValidationReport.
    """
    from tallybook.formats.einvoice_validation import ReferenceMissing, validator

    if not xml or not xml.strip():
        raise InvalidInput("body: send the e-invoice XML", field="body")
    try:
        checker = validator()
    except ReferenceMissing as error:
        raise ValidatorUnavailable(str(error)) from None
    return checker.validate(xml)


# -- the parties ----------------------------------------------------------------------------------


def _seller(org: Organization) -> Party:
    if not org.country:
        raise Conflict(
            "country: set the organisation's country (PATCH /v1/organization) before producing "
            "e-invoices; the seller's country is required",
            field="country",
        )
    electronic = (
        ElectronicAddress(org.electronic_address_scheme, org.electronic_address)
        if org.electronic_address and org.electronic_address_scheme
        else None
    )
    return Party(
        name=org.name,
        address=PostalAddress(
            org.address_line1, org.address_line2, org.city, org.postal_code, None, org.country
        ),
        vat_id=org.vat_id,
        legal_registration_id=org.legal_registration_id,
        electronic_address=electronic,
        contact_email=org.contact_email,
    )


def _buyer(snapshot: dict[str, Any], customer: Customer) -> Party:
    address = snapshot.get("address") or {}
    vat_id = None
    for entry in snapshot.get("tax_ids") or []:
        country = str(entry.get("country") or address.get("country") or "").upper()
        if country in VAT_COUNTRIES and entry.get("value"):
            vat_id = vat_identifier(country, str(entry["value"]))
            break
    if "electronic_address" in snapshot:
        frozen = snapshot["electronic_address"]
        electronic = ElectronicAddress(frozen["scheme"], frozen["value"]) if frozen else None
    elif customer.electronic_address and customer.electronic_address_scheme:
        # Invoices issued before snapshots carried the address: the customer's current one.
        electronic = ElectronicAddress(
            customer.electronic_address_scheme, customer.electronic_address
        )
    else:
        electronic = None
    emails = snapshot.get("emails") or []
    return Party(
        name=str(snapshot.get("legal_name") or customer.legal_name),
        address=PostalAddress(
            address.get("line1"),
            address.get("line2"),
            address.get("city"),
            address.get("postal_code"),
            address.get("region"),
            str(address.get("country") or customer.country),
        ),
        vat_id=vat_id,
        electronic_address=electronic,
        contact_email=emails[0] if emails else None,
        identifier=snapshot.get("external_id") or customer.external_id,
    )


def _account(org: Organization) -> PaymentAccount | None:
    return PaymentAccount(org.iban, org.bic, org.name) if org.iban else None


def _buyer_reference(invoice: Invoice, customer: Customer) -> str:
    """BT-10: the buyer's purchase order, else the account the buyer knows us by."""
    return invoice.po_number or customer.external_id or customer.id


# -- the documents --------------------------------------------------------------------------------


def _find(session: Session, model: Any, reference: str, actor: Actor, label: str) -> Any:
    row = session.scalars(
        select(model).where(
            model.organization_id == actor.organization_id,
            or_(model.id == reference, model.number == reference),
        )
    ).first()
    if row is None:
        raise NotFound(f"{label} {reference} not found")
    return row


def _issued_invoice(invoice: Invoice) -> None:
    if invoice.status == "draft":
        raise Conflict(
            f"invoice {invoice.id} is a draft; only issued invoices become e-invoices (issue it "
            "first)"
        )
    if invoice.status == "void":
        raise Conflict(f"invoice {invoice.number} is void; a voided invoice is not sent")


def _products(session: Session, actor: Actor, ids: set[str]) -> dict[str, Product]:
    if not ids:
        return {}
    rows = session.scalars(
        select(Product).where(Product.organization_id == actor.organization_id, Product.id.in_(ids))
    )
    return {row.id: row for row in rows}


def _applied_percent(taxes: list[dict[str, Any]]) -> Decimal | None:
    """The combined rate of the taxes on a line (state + city sales tax: 4 + 4.5); None when
    no tax applies to it at all."""
    if not taxes:
        return None
    return sum((Decimal(str(t["percent"])) for t in taxes), Decimal(0))


def _period(line: InvoiceLine, zone: ZoneInfo) -> tuple[date, date] | None:
    if line.period_start is None or line.period_end is None:
        return None
    if line.period_end <= line.period_start:
        return None
    start = line.period_start.astimezone(zone).date()
    # Periods end at an instant (exclusive); the e-invoice names the last day served.
    end = (line.period_end - timedelta(microseconds=1)).astimezone(zone).date()
    return start, max(start, end)


def _zone(customer: Customer) -> ZoneInfo:
    try:
        return ZoneInfo(customer.timezone or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _line_facts(
    line: InvoiceLine, product: Product | None, zone: ZoneInfo, *, taxes: list[dict[str, Any]]
) -> LineFacts:
    return LineFacts(
        name=line.description,
        quantity=line.quantity,
        net_minor=line.subtotal_minor,
        discount_minor=line.discount_minor,
        tax_minor=line.tax_minor,
        tax_percent=_applied_percent(taxes),
        unit_price=line.unit_price,
        unit_code=unit_code_for(product.unit_label if product else None),
        item_id=product.code if product else None,
        period=_period(line, zone),
    )


def _line_taxes(line: InvoiceLine) -> list[dict[str, Any]]:
    """The taxes applied to a line as its explanation records them (what was charged)."""
    explained = line.explanation.get("taxes") if line.explanation else None
    return list(explained if explained is not None else line.taxes or [])


def _invoice(
    session: Session, actor: Actor, org: Organization, reference: str
) -> CommercialDocument:
    invoice = _find(session, Invoice, reference, actor, "invoice")
    _issued_invoice(invoice)
    seller = _seller(org)  # after the lookup: another organisation's id is simply not found
    customer = session.get(Customer, invoice.customer_id)
    lines = list(
        session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.position)
        )
    )
    products = _products(session, actor, {line.product_id for line in lines if line.product_id})
    return _invoice_document(org, seller, invoice, customer, lines, products)


def invoice_einvoices(
    db: Database, actor: Actor, invoice_ids: list[str]
) -> list[CommercialDocument]:
    """The e-invoice models of many issued invoices (by id), read in a few queries for all of
    them: a month's export. Refused as a whole, naming the invoice, if one is a draft, void,
    or another organisation's."""
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        found: dict[str, Invoice] = {}
        for start in range(0, len(invoice_ids), _CHUNK):
            chunk = invoice_ids[start : start + _CHUNK]
            for invoice in session.scalars(
                select(Invoice).where(
                    Invoice.organization_id == actor.organization_id, Invoice.id.in_(chunk)
                )
            ):
                found[invoice.id] = invoice
        for invoice_id in invoice_ids:
            if invoice_id not in found:
                raise NotFound(f"invoice {invoice_id} not found")
            _issued_invoice(found[invoice_id])
        seller = _seller(org)
        customer_ids = sorted({invoice.customer_id for invoice in found.values()})
        customers_by_id: dict[str, Customer] = {}
        lines_of: dict[str, list[InvoiceLine]] = {invoice_id: [] for invoice_id in found}
        for start in range(0, len(customer_ids), _CHUNK):
            for customer in session.scalars(
                select(Customer).where(Customer.id.in_(customer_ids[start : start + _CHUNK]))
            ):
                customers_by_id[customer.id] = customer
        ids = sorted(found)
        for start in range(0, len(ids), _CHUNK):
            for line in session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id.in_(ids[start : start + _CHUNK]))
                .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
            ):
                lines_of[line.invoice_id].append(line)
        products = _products(
            session,
            actor,
            {line.product_id for lines in lines_of.values() for line in lines if line.product_id},
        )
        try:
            return [
                _invoice_document(
                    org,
                    seller,
                    found[invoice_id],
                    customers_by_id[found[invoice_id].customer_id],
                    lines_of[invoice_id],
                    products,
                )
                for invoice_id in invoice_ids
            ]
        except EInvoiceError as error:
            raise Conflict(f"the document cannot be an e-invoice: {error}") from None


def _invoice_document(
    org: Organization,
    seller: Party,
    invoice: Invoice,
    customer: Customer,
    lines: list[InvoiceLine],
    products: dict[str, Product],
) -> CommercialDocument:
    zone = _zone(customer)
    discount_names = sorted({str(d.get("name") or d.get("key")) for d in invoice.discounts or []})
    days = (invoice.due_date - invoice.issue_date).days if invoice.due_date else None
    terms = None
    if invoice.due_date is not None:
        terms = f"Payment within {days} days, due {invoice.due_date.isoformat()}"
        if invoice.payment_reference:
            terms += f"; please quote {display(invoice.payment_reference)}"
    return build_document(
        kind=DocumentKind.INVOICE,
        number=invoice.number,
        issue_date=invoice.issue_date,
        currency=invoice.currency,
        seller=seller,
        buyer=_buyer(invoice.customer_snapshot or {}, customer),
        lines=[
            _line_facts(line, products.get(line.product_id), zone, taxes=_line_taxes(line))
            for line in lines
        ],
        treatment=invoice.tax_treatment,
        exemption_note=_exemption_note(invoice),
        discount_reason=", ".join(discount_names) or "Discount",
        prepaid_minor=invoice.credit_applied_minor + invoice.paid_minor,
        expected_total_minor=invoice.total_minor,
        due_date=invoice.due_date,
        payment_terms=terms,
        payment_reference=invoice.payment_reference,
        payment_account=_account(org),
        buyer_reference=_buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        note=_note(invoice.notes, invoice.legal_note),
    )


def _credit_note(
    session: Session, actor: Actor, org: Organization, reference: str
) -> CommercialDocument:
    note = _find(session, CreditNote, reference, actor, "credit note")
    seller = _seller(org)
    invoice = session.get(Invoice, note.invoice_id)
    customer = session.get(Customer, note.customer_id)
    credited = list(
        session.scalars(
            select(CreditNoteLine)
            .where(CreditNoteLine.credit_note_id == note.id)
            .order_by(CreditNoteLine.id)
        )
    )
    originals = {
        line.id: line
        for line in session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    }
    # Credit note lines in the order of the invoice lines they credit.
    credited.sort(key=lambda c: (originals[c.invoice_line_id].position, c.id))
    products = _products(
        session, actor, {line.product_id for line in originals.values() if line.product_id}
    )
    zone = _zone(customer)
    facts = []
    for line in credited:
        original = originals[line.invoice_line_id]
        product = products.get(original.product_id) if original.product_id else None
        facts.append(
            LineFacts(
                name=line.description,
                quantity=line.quantity,
                net_minor=line.subtotal_minor,
                tax_minor=line.tax_minor,
                tax_percent=_applied_percent(line.taxes or []),
                unit_price=original.unit_price,
                unit_code=unit_code_for(product.unit_label if product else None),
                item_id=product.code if product else None,
                period=_period(original, zone),
            )
        )
    settlement = (
        f"Added to your customer credit balance (invoice {invoice.number})"
        if note.settlement == "customer_credit"
        else f"Deducted from the amount due on invoice {invoice.number}"
    )
    return build_document(
        kind=DocumentKind.CREDIT_NOTE,
        number=note.number,
        issue_date=note.issue_date,
        currency=note.currency,
        seller=seller,
        buyer=_buyer(invoice.customer_snapshot or {}, customer),
        lines=facts,
        treatment=invoice.tax_treatment,
        exemption_note=_exemption_note(invoice),
        expected_total_minor=note.total_minor,
        payment_terms=settlement,
        buyer_reference=_buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        preceding_invoice=PrecedingInvoice(invoice.number, invoice.issue_date),
        note=_note(note.reason),
    )


def _debit_note(
    session: Session, actor: Actor, org: Organization, reference: str
) -> CommercialDocument:
    note = _find(session, DebitNote, reference, actor, "debit note")
    seller = _seller(org)
    invoice = session.get(Invoice, note.invoice_id)
    customer = session.get(Customer, note.customer_id)
    invoice_lines = list(
        session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    )
    rates = sorted(
        {
            percent
            for line in invoice_lines
            if (percent := _applied_percent(_line_taxes(line))) is not None and percent > 0
        }
    )
    facts = []
    for entry in note.lines or []:
        subtotal, tax = int(entry["subtotal_minor"]), int(entry["tax_minor"])
        facts.append(
            LineFacts(
                name=str(entry["description"]),
                quantity=Decimal(str(entry.get("quantity", "1"))),
                net_minor=subtotal,
                tax_minor=tax,
                tax_percent=_debit_rate(subtotal, tax, rates),
                unit_price=Decimal(str(entry["unit_price"])) if entry.get("unit_price") else None,
            )
        )
    days = (note.due_date - note.issue_date).days
    reference_text = creditor_reference(note.number)
    return build_document(
        kind=DocumentKind.DEBIT_NOTE,
        number=note.number,
        issue_date=note.issue_date,
        currency=note.currency,
        seller=seller,
        buyer=_buyer(invoice.customer_snapshot or {}, customer),
        lines=facts,
        treatment=invoice.tax_treatment,
        exemption_note=_exemption_note(invoice),
        expected_total_minor=note.total_minor,
        due_date=note.due_date,
        payment_terms=(
            f"Payment within {days} days, due {note.due_date.isoformat()}; please quote "
            f"{display(reference_text)}"
        ),
        payment_reference=reference_text,
        payment_account=_account(org),
        buyer_reference=_buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        preceding_invoice=PrecedingInvoice(invoice.number, invoice.issue_date),
        note=_note(note.reason),
    )


def _debit_rate(subtotal_minor: int, tax_minor: int, rates: list[Decimal]) -> Decimal | None:
    """The rate a debit note line was taxed at. Debit note lines keep their tax amount, not
    their rates: the rate of the corrected invoice that gives this tax on this amount (to a
    minor unit, since several taxes round one by one), else the effective rate."""
    if tax_minor == 0:
        return None
    base = Decimal(subtotal_minor)
    for rate in rates:
        if abs(int((base * rate / 100).to_integral_value()) - tax_minor) <= 1:
            return rate
    return (Decimal(tax_minor) * 100 / base).quantize(Decimal("0.01")) if base else None


def _exemption_note(invoice: Invoice) -> str | None:
    return invoice.legal_note if invoice.tax_treatment == "exempt" else None


def _note(*parts: str | None) -> str | None:
    text = "\n".join(part.strip() for part in parts if part and part.strip())
    return text or None
