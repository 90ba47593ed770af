"""Documents as files: invoices, credit notes, debit notes, customer statements and dunning
letters as PDF, issued invoices as Factur-X; and the organisation's branding they carry.

What the e-mail outbox attaches and the customer portal downloads. Invoices, credit notes and
debit notes are drawn from the same e-invoice model as their UBL and CII XML (built from the
same rows by `core.einvoice.build_document`), so a PDF and its XML never disagree on an amount.
A draft renders as a clearly marked pro-forma for review, never as Factur-X.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core.einvoice import (
    DocumentKind,
    EInvoiceError,
    ElectronicAddress,
    LineFacts,
    Party,
    PostalAddress,
    PrecedingInvoice,
    build_document,
    unit_code_for,
)
from tallybook.core.explain import explain_line
from tallybook.core.references import creditor_reference, display
from tallybook.db.models import (
    CreditNote,
    CreditNoteLine,
    Customer,
    DebitNote,
    DunningReminder,
    Invoice,
    InvoiceLine,
    Organization,
)
from tallybook.formats import pdf_documents as pdf
from tallybook.services import einvoices
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    InvalidInput,
    Role,
    audit,
    get_owned,
)
from tallybook.services.customers import billing_snapshot

__all__ = [
    "KINDS",
    "MAX_LOGO_BYTES",
    "BrandingView",
    "RenderedDocument",
    "document_facturx",
    "document_pdf",
    "document_sheet",
    "facturx_job",
    "get_branding",
    "render_documents",
    "update_branding",
]

KINDS = ("invoice", "credit_note", "debit_note", "statement", "dunning_letter")
PDF = "application/pdf"
MAX_LOGO_BYTES = 256 * 1024
LOGO_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
PAY_WITHIN_DAYS = 7  # what a dunning letter gives the customer to pay


@dataclass(frozen=True)
class RenderedDocument:
    file_name: str
    media_type: str
    content: bytes


# -- rendering ----------------------------------------------------------------------------------


def document_pdf(
    db: Database,
    actor: Actor,
    kind: str,
    document_id: str,
    *,
    language: str | None = None,
    explain: bool = False,
    date_from: date | None = None,
    date_to: date | None = None,
    currency: str | None = None,
) -> RenderedDocument:
    """The PDF of an invoice (a draft as a marked pro-forma), credit note, debit note, customer
    statement (`document_id` is the customer, for `date_from`..`date_to`) or dunning letter
    (`document_id` is the reminder). In the customer's language unless `language` says;
    `explain` adds how each invoice line was computed. Another organisation's id: not found."""
    sheet, name = _sheet(
        db,
        actor,
        kind,
        document_id,
        language=language,
        explain=explain,
        date_from=date_from,
        date_to=date_to,
        currency=currency,
    )
    return RenderedDocument(name, PDF, pdf.render(sheet))


def document_sheet(
    db: Database,
    actor: Actor,
    kind: str,
    document_id: str,
    *,
    language: str | None = None,
    explain: bool = False,
    date_from: date | None = None,
    date_to: date | None = None,
    currency: str | None = None,
) -> pdf.Sheet:
    """What `document_pdf` would print, not yet rendered: for `render_documents`, which sets
    many at once across processes."""
    return _sheet(
        db,
        actor,
        kind,
        document_id,
        language=language,
        explain=explain,
        date_from=date_from,
        date_to=date_to,
        currency=currency,
    )[0]


def document_facturx(db: Database, actor: Actor, invoice_id: str) -> RenderedDocument:
    """An issued invoice as Factur-X / ZUGFeRD (EN 16931): its PDF as PDF/A-3b with the CII XML
    embedded as factur-x.xml. Drafts and void invoices are refused, as for the XML."""
    sheet, xml, number = _facturx(db, actor, invoice_id)
    return RenderedDocument(
        pdf.file_name(number, "facturx"), PDF, pdf.render_facturx(sheet, xml)
    )


def facturx_job(db: Database, actor: Actor, invoice_id: str) -> tuple[pdf.CommercialSheet, bytes]:
    """A Factur-X invoice ready for `render_documents`: the sheet and its CII XML."""
    sheet, xml, _ = _facturx(db, actor, invoice_id)
    return sheet, xml


def render_documents(
    jobs: Iterable[Any], *, workers: int | None = None, usage: dict[str, float] | None = None
) -> list[bytes]:
    """Render sheets (and Factur-X jobs) in order, across processes: batch rendering for the
    benchmark, bulk e-mail and exports. Reads nothing itself: give it sheets, or a generator
    that loads them (it keeps loading while the first ones render)."""
    return pdf.render_many(jobs, workers=workers, usage=usage)


def _facturx(
    db: Database, actor: Actor, invoice_id: str
) -> tuple[pdf.CommercialSheet, bytes, str]:
    from tallybook.formats.cii import to_cii

    # The model the CII is written from is the one the page shows: the very same object.
    model = einvoices.einvoice_for(db, actor, invoice_id, "invoice")
    with db.reading() as session:
        invoice = einvoices._find(session, Invoice, invoice_id, actor, "invoice")
        customer = session.get(Customer, invoice.customer_id)
        branding = _branding(session, actor)
        language = _language(None, customer)
    sheet = pdf.CommercialSheet(model, language, branding)
    return sheet, to_cii(model), model.number


def _sheet(
    db: Database,
    actor: Actor,
    kind: str,
    document_id: str,
    *,
    language: str | None,
    explain: bool,
    date_from: date | None,
    date_to: date | None,
    currency: str | None,
) -> tuple[pdf.Sheet, str]:
    if kind not in KINDS:
        raise InvalidInput(f"kind: must be one of {', '.join(KINDS)}", field="kind")
    requested = _requested_language(language)
    if kind == "statement":
        return _statement(db, actor, document_id, requested, date_from, date_to, currency)
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        try:
            if kind == "invoice":
                return _invoice(session, actor, org, document_id, requested, explain)
            if kind == "credit_note":
                return _credit_note(session, actor, org, document_id, requested)
            if kind == "debit_note":
                return _debit_note(session, actor, org, document_id, requested)
            return _dunning_letter(session, actor, org, document_id, requested)
        except EInvoiceError as error:
            raise Conflict(f"the document cannot be shown: {error}") from None


# -- language and branding -----------------------------------------------------------------------


def _requested_language(value: str | None) -> str | None:
    if value is None or not str(value).strip():
        return None
    code = re.split(r"[-_]", str(value).strip().lower())[0]
    if code not in pdf.LANGUAGES:
        raise InvalidInput(
            f"language: {value!r} is not one of {', '.join(pdf.LANGUAGES)}", field="language"
        )
    return code


def _language(requested: str | None, customer: Customer | None) -> str:
    """The language asked for, else the customer's where documents exist in it, else English."""
    if requested:
        return requested
    code = re.split(r"[-_]", (customer.language if customer else None) or "en")[0].lower()
    return code if code in pdf.LANGUAGES else "en"


def _branding(session: Session, actor: Actor) -> pdf.Branding:
    logo, media_type, color = session.execute(
        select(Organization.logo, Organization.logo_media_type, Organization.brand_color).where(
            Organization.id == actor.organization_id
        )
    ).one()
    return pdf.Branding(color or pdf.DEFAULT_COLOR, logo, media_type if logo else None)


# -- the parties ---------------------------------------------------------------------------------


def _seller(org: Organization) -> Party:
    """The organisation as the e-invoices name it; a PDF can be made before its country is set
    (an e-invoice cannot)."""
    electronic = (
        ElectronicAddress(org.electronic_address_scheme, org.electronic_address)
        if org.electronic_address and org.electronic_address_scheme
        else None
    )
    return Party(
        name=org.name,
        address=PostalAddress(
            org.address_line1, org.address_line2, org.city, org.postal_code, None, org.country or ""
        ),
        vat_id=org.vat_id,
        legal_registration_id=org.legal_registration_id,
        electronic_address=electronic,
        contact_email=org.contact_email,
    )


def _customer_party(customer: Customer) -> Party:
    return einvoices._buyer(billing_snapshot(customer), customer)


# -- invoices, credit notes, debit notes ---------------------------------------------------------


def _invoice(
    session: Session,
    actor: Actor,
    org: Organization,
    reference: str,
    language: str | None,
    explain: bool,
) -> tuple[pdf.CommercialSheet, str]:
    invoice = einvoices._find(session, Invoice, reference, actor, "invoice")
    customer = session.get(Customer, invoice.customer_id)
    draft = invoice.status == "draft"
    lines = list(
        session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.position)
        )
    )
    if not lines:
        raise Conflict(f"invoice {reference} has no lines to show; add a line first")
    products = einvoices._products(
        session, actor, {line.product_id for line in lines if line.product_id}
    )
    zone = einvoices._zone(customer)
    discount_names = sorted({str(d.get("name") or d.get("key")) for d in invoice.discounts or []})
    # As einvoices._invoice words it, so an issued invoice's model is the e-invoice's model.
    issue_date = invoice.issue_date or invoice.billing_date
    due_date = invoice.due_date
    terms = None
    if draft:
        due_date = issue_date + timedelta(days=customer.payment_terms_days)
    elif invoice.due_date is not None:
        days = (invoice.due_date - invoice.issue_date).days
        terms = f"Payment within {days} days, due {invoice.due_date.isoformat()}"
        if invoice.payment_reference:
            terms += f"; please quote {display(invoice.payment_reference)}"
    snapshot = invoice.customer_snapshot or billing_snapshot(customer)
    document = build_document(
        kind=DocumentKind.INVOICE,
        number=invoice.number or invoice.id,
        issue_date=issue_date,
        currency=invoice.currency,
        seller=_seller(org),
        buyer=einvoices._buyer(snapshot, customer),
        lines=[
            einvoices._line_facts(
                line, products.get(line.product_id), zone, taxes=einvoices._line_taxes(line)
            )
            for line in lines
        ],
        treatment=invoice.tax_treatment,
        exemption_note=einvoices._exemption_note(invoice),
        discount_reason=", ".join(discount_names) or "Discount",
        prepaid_minor=invoice.credit_applied_minor + invoice.paid_minor,
        expected_total_minor=invoice.total_minor,
        due_date=due_date,
        payment_terms=terms,
        payment_reference=invoice.payment_reference,
        payment_account=einvoices._account(org),
        buyer_reference=einvoices._buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        note=einvoices._note(invoice.notes, invoice.legal_note),
    )
    explanations: tuple[str | None, ...] = ()
    if explain:
        explanations = tuple(
            explain_line(line.explanation, invoice.currency) if line.explanation else None
            for line in lines
        )
    sheet = pdf.CommercialSheet(
        document,
        _language(language, customer),
        _branding(session, actor),
        draft=draft,
        void=invoice.status == "void",
        explanations=explanations,
    )
    name = pdf.file_name("draft", invoice.id) if draft else pdf.file_name(invoice.number)
    return sheet, name


def _credit_note(
    session: Session, actor: Actor, org: Organization, reference: str, language: str | None
) -> tuple[pdf.CommercialSheet, str]:
    note = einvoices._find(session, CreditNote, reference, actor, "credit note")
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
    credited.sort(key=lambda c: (originals[c.invoice_line_id].position, c.id))
    products = einvoices._products(
        session, actor, {line.product_id for line in originals.values() if line.product_id}
    )
    zone = einvoices._zone(customer)
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
                tax_percent=einvoices._applied_percent(line.taxes or []),
                unit_price=original.unit_price,
                unit_code=unit_code_for(product.unit_label if product else None),
                item_id=product.code if product else None,
                period=einvoices._period(original, zone),
            )
        )
    settlement = (
        f"Added to your customer credit balance (invoice {invoice.number})"
        if note.settlement == "customer_credit"
        else f"Deducted from the amount due on invoice {invoice.number}"
    )
    document = build_document(
        kind=DocumentKind.CREDIT_NOTE,
        number=note.number,
        issue_date=note.issue_date,
        currency=note.currency,
        seller=_seller(org),
        buyer=einvoices._buyer(invoice.customer_snapshot or {}, customer),
        lines=facts,
        treatment=invoice.tax_treatment,
        exemption_note=einvoices._exemption_note(invoice),
        expected_total_minor=note.total_minor,
        payment_terms=settlement,
        buyer_reference=einvoices._buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        preceding_invoice=PrecedingInvoice(invoice.number, invoice.issue_date),
        note=einvoices._note(note.reason),
    )
    sheet = pdf.CommercialSheet(
        document,
        _language(language, customer),
        _branding(session, actor),
        settlement=note.settlement,
    )
    return sheet, pdf.file_name(note.number)


def _debit_note(
    session: Session, actor: Actor, org: Organization, reference: str, language: str | None
) -> tuple[pdf.CommercialSheet, str]:
    note = einvoices._find(session, DebitNote, reference, actor, "debit note")
    invoice = session.get(Invoice, note.invoice_id)
    customer = session.get(Customer, note.customer_id)
    invoice_lines = list(
        session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
    )
    rates = sorted(
        {
            percent
            for line in invoice_lines
            if (percent := einvoices._applied_percent(einvoices._line_taxes(line))) is not None
            and percent > 0
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
                tax_percent=einvoices._debit_rate(subtotal, tax, rates),
                unit_price=Decimal(str(entry["unit_price"])) if entry.get("unit_price") else None,
            )
        )
    days = (note.due_date - note.issue_date).days
    reference_text = creditor_reference(note.number)
    document = build_document(
        kind=DocumentKind.DEBIT_NOTE,
        number=note.number,
        issue_date=note.issue_date,
        currency=note.currency,
        seller=_seller(org),
        buyer=einvoices._buyer(invoice.customer_snapshot or {}, customer),
        lines=facts,
        treatment=invoice.tax_treatment,
        exemption_note=einvoices._exemption_note(invoice),
        expected_total_minor=note.total_minor,
        due_date=note.due_date,
        payment_terms=(
            f"Payment within {days} days, due {note.due_date.isoformat()}; please quote "
            f"{display(reference_text)}"
        ),
        payment_reference=reference_text,
        payment_account=einvoices._account(org),
        buyer_reference=einvoices._buyer_reference(invoice, customer),
        order_reference=invoice.po_number,
        preceding_invoice=PrecedingInvoice(invoice.number, invoice.issue_date),
        note=einvoices._note(note.reason),
    )
    sheet = pdf.CommercialSheet(
        document, _language(language, customer), _branding(session, actor)
    )
    return sheet, pdf.file_name(note.number)


# -- statements and dunning letters --------------------------------------------------------------


def _statement(
    db: Database,
    actor: Actor,
    customer_id: str,
    language: str | None,
    date_from: date | None,
    date_to: date | None,
    currency: str | None,
) -> tuple[pdf.StatementSheet, str]:
    from tallybook.services import receivables

    view = receivables.customer_statement(
        db, actor, customer_id, date_from, date_to, currency=currency
    )
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        customer = get_owned(session, Customer, customer_id, actor, label="customer")
        sheet = pdf.StatementSheet(
            seller=_seller(org),
            customer=_customer_party(customer),
            statement=view.statement,
            open_receivables_minor=view.open_receivables_minor,
            unapplied_credit_minor=view.unapplied_credit_minor,
            language=_language(language, customer),
            branding=_branding(session, actor),
            payment_account=einvoices._account(org),
            customer_number=customer.external_id,
        )
    s = view.statement
    name = pdf.file_name(
        "statement",
        customer.external_id or customer.id,
        s.period_start.isoformat(),
        s.period_end.isoformat(),
    )
    return sheet, name


def _dunning_letter(
    session: Session, actor: Actor, org: Organization, reminder_id: str, language: str | None
) -> tuple[pdf.DunningLetterSheet, str]:
    from tallybook.services.receivables import open_documents

    reminder = get_owned(session, DunningReminder, reminder_id, actor, label="dunning reminder")
    if reminder.status != "recorded":
        raise Conflict(
            f"dunning reminder {reminder_id} was skipped (a later step went out instead); "
            "no letter was sent for it"
        )
    invoice = session.get(Invoice, reminder.invoice_id)
    customer = session.get(Customer, reminder.customer_id)
    day = reminder.recorded_on
    fee_note = session.get(DebitNote, reminder.debit_note_id) if reminder.debit_note_id else None
    overdue = [
        pdf.OverdueDocument(
            number=item.number,
            issue_date=item.issue_date,
            due_date=item.due_date,
            open_minor=item.open_minor,
            days_overdue=(day - item.due_date).days,
        )
        for item in open_documents(
            session, actor.organization_id, day, customer_id=customer.id, currency=reminder.currency
        )
        if item.due_date < day and (fee_note is None or item.document_id != fee_note.id)
    ]
    if not any(d.number == invoice.number for d in overdue) and reminder.open_minor > 0:
        # The reminder's own invoice, as it stood when the reminder went out.
        overdue.append(
            pdf.OverdueDocument(
                number=invoice.number or invoice.id,
                issue_date=invoice.issue_date or invoice.billing_date,
                due_date=invoice.due_date or day,
                open_minor=reminder.open_minor,
                days_overdue=(day - (invoice.due_date or day)).days,
            )
        )
    overdue.sort(key=lambda d: (d.due_date, d.number))
    sheet = pdf.DunningLetterSheet(
        seller=_seller(org),
        customer=_customer_party(customer),
        currency=reminder.currency,
        letter_date=day,
        level=reminder.level,
        step_name=reminder.name,
        reference_number=invoice.number or invoice.id,
        documents=tuple(overdue),
        pay_by=day + timedelta(days=PAY_WITHIN_DAYS),
        fee_minor=reminder.fee_minor,
        fee_document=fee_note.number if fee_note else None,
        payment_reference=invoice.payment_reference,
        payment_account=einvoices._account(org),
        language=_language(language, customer),
        branding=_branding(session, actor),
        customer_number=customer.external_id,
    )
    return sheet, pdf.file_name(invoice.number or invoice.id, f"reminder-{reminder.level}")


# -- branding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrandingView:
    brand_color: str
    logo_media_type: str | None
    logo_bytes: int
    logo_sha256: str | None
    logo: bytes | None = None


def get_branding(db: Database, actor: Actor, *, with_logo: bool = False) -> BrandingView:
    """The organisation's colour and logo (its type, size and digest; the bytes if asked)."""
    with db.reading() as session:
        branding = _branding(session, actor)
    return _view(branding, with_logo)


def _view(branding: pdf.Branding, with_logo: bool) -> BrandingView:
    logo = branding.logo
    return BrandingView(
        brand_color=branding.color,
        logo_media_type=branding.logo_media_type,
        logo_bytes=len(logo) if logo else 0,
        logo_sha256=hashlib.sha256(logo).hexdigest() if logo else None,
        logo=logo if with_logo else None,
    )


_UNSET: Any = object()


def update_branding(
    db: Database,
    actor: Actor,
    *,
    brand_color: str | None = _UNSET,
    logo: bytes | None = _UNSET,
    logo_media_type: str | None = None,
) -> BrandingView:
    """Set the primary colour (#rrggbb; None: the default) and/or the logo (PNG, JPEG or SVG of
    at most 256 KB; None removes it). Admins only; audited with the logo's digest, not its
    bytes."""
    actor.require(Role.ADMIN, action="change the organisation's branding")
    changes: dict[str, Any] = {}
    if brand_color is not _UNSET:
        changes["brand_color"] = check_brand_color(brand_color)
    if logo is not _UNSET:
        if logo is None or len(logo) == 0:
            changes["logo"], changes["logo_media_type"] = None, None
        else:
            changes["logo"] = logo
            changes["logo_media_type"] = check_logo(logo, logo_media_type)
    if not changes:
        raise InvalidInput("give brand_color or logo to change", field="brand_color")
    with db.transaction() as session:
        org = session.get(Organization, actor.organization_id, with_for_update=True)
        assert org is not None
        before = _view(_branding(session, actor), False)
        for key, value in changes.items():
            setattr(org, key, value)
        session.flush()
        after = _view(_branding(session, actor), False)
        audit(
            session,
            actor,
            "organization.branding_changed",
            "organization",
            org.id,
            {
                "before": _audited(before),
                "after": _audited(after),
            },
        )
    return after


def _audited(view: BrandingView) -> dict[str, Any]:
    return {
        "brand_color": view.brand_color,
        "logo_media_type": view.logo_media_type,
        "logo_bytes": view.logo_bytes,
        "logo_sha256": view.logo_sha256,
    }


def check_brand_color(value: Any) -> str | None:
    """A colour as #rrggbb (lower case); #rgb is widened; None or '' means the default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().lower()
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        text = "#" + "".join(c * 2 for c in text[1:])
    if not re.fullmatch(r"#[0-9a-f]{6}", text):
        raise InvalidInput(
            f"brand_color: {value!r} is not a hex colour such as #1f4e79", field="brand_color"
        )
    return text


_SVG_NS = "{http://www.w3.org/2000/svg}svg"


def check_logo(content: bytes, declared: str | None = None) -> str:
    """The media type of a logo image, read from its bytes (PNG, JPEG or SVG), or InvalidInput:
    too large, another format, not what it says it is, or an SVG with scripts or links out."""
    if len(content) > MAX_LOGO_BYTES:
        raise InvalidInput(
            f"logo: {len(content)} bytes; at most {MAX_LOGO_BYTES // 1024} KB", field="logo"
        )
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        found = "image/png"
    elif content.startswith(b"\xff\xd8\xff"):
        found = "image/jpeg"
    elif b"<svg" in content[:4096]:
        found = "image/svg+xml"
    else:
        raise InvalidInput("logo: not a PNG, JPEG or SVG image", field="logo")
    wanted = (declared or "").split(";")[0].strip().lower()
    if wanted and wanted not in ("application/octet-stream", found):
        raise InvalidInput(f"logo: the file is {found}, not {wanted}", field="logo")
    if found == "image/svg+xml":
        _check_svg(content)
    else:
        _check_bitmap(content)
    return found


def _check_bitmap(content: bytes) -> None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput("logo: the image is damaged or incomplete", field="logo") from None
    if width > 4000 or height > 4000:
        raise InvalidInput(
            f"logo: {width} x {height} pixels; at most 4000 x 4000", field="logo"
        )


def _check_svg(content: bytes) -> None:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError:
        raise InvalidInput("logo: the SVG is not well-formed XML", field="logo") from None
    if root.tag != _SVG_NS:
        raise InvalidInput("logo: an SVG image has an <svg> root element", field="logo")
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        local = tag.rsplit("}", 1)[-1].lower()
        if local in ("script", "foreignobject"):
            raise InvalidInput(f"logo: an SVG logo may not contain <{local}>", field="logo")
        for name, value in element.attrib.items():
            attribute = name.rsplit("}", 1)[-1].lower()
            if attribute.startswith("on"):
                raise InvalidInput(
                    f"logo: an SVG logo may not carry event handlers ({attribute})",
                    field="logo",
                )
            if attribute == "href" and not value.strip().startswith(("#", "data:image/")):
                raise InvalidInput(
                    "logo: an SVG logo may not link to other files or sites", field="logo"
                )
