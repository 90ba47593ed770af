"""PDF documents from the database (SQLite and PostgreSQL): invoices, drafts, credit and debit
notes, statements and dunning letters read back as text (number, dates, lines, totals) in
English, German and French; the EPC QR payload; the same bytes every time; Factur-X with its
CII extracted and validated; branding; another organisation's documents not found."""

from __future__ import annotations

import io
import os
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from lxml import etree
from pypdf import PdfReader
from test_einvoices import german_customer, issued_invoice, seller_org

from tallybook.core.references import display
from tallybook.formats import pdf_documents as pdf
from tallybook.formats.cii import to_cii
from tallybook.formats.einvoice_validation import ReferenceMissing, Validator, validator
from tallybook.formats.epc_qr import read_epc_payload
from tallybook.services import (
    credit_notes,
    customers,
    documents,
    dunning,
    einvoices,
    invoices,
    payments,
)
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
)

D = Decimal
GERMAN_SELLER = {
    "country": "DE",
    "address_line1": "Friedrichstraße 10",
    "city": "Berlin",
    "postal_code": "10117",
    "vat_id": "DE136695976",
    "legal_registration_id": "HRB 12345",
    "iban": "DE44 5001 0517 5407 3249 31",
    "bic": "INGDDEFFXXX",
    "contact_email": "billing@northwind.example",
}
TWO_DAYS = {"line": "1", "quantity": "2"}


def png_logo() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 170, 85)).save(buffer, format="PNG")
    return buffer.getvalue()


def text_of(content: bytes) -> str:
    """The text of every page, with the narrow and no-break spaces of de/fr made plain."""
    reader = PdfReader(io.BytesIO(content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # Lines as a table cell wraps them do not matter: one space between words.
    return " ".join(re.sub(r"[\u00a0\u202f\u2009]", " ", text).split())


def qr_codes_of(content: bytes) -> list[str]:
    """The QR codes on the pages, as a phone's banking app reads them from the rendered page."""
    import pypdfium2
    import zxingcpp

    found = []
    for page in pypdfium2.PdfDocument(content):
        image = page.render(scale=3).to_pil()
        found += [code.text for code in zxingcpp.read_barcodes(image)]
    return found


def brand_pixels(content: bytes, color: tuple[int, int, int]) -> int:
    """How many pixels of the first page, drawn, are (nearly) the given colour."""
    import pypdfium2

    image = pypdfium2.PdfDocument(content)[0].render(scale=1).to_pil().convert("RGB")
    return sum(
        count
        for count, pixel in image.getcolors(maxcolors=1 << 20)
        if all(abs(a - b) < 40 for a, b in zip(pixel, color, strict=True))
    )


def images_of(content: bytes) -> int:
    reader = PdfReader(io.BytesIO(content))
    count = 0
    for page in reader.pages:
        objects = page["/Resources"].get("/XObject") or {}
        count += len(objects)
    return count


@pytest.fixture(scope="module")
def checker() -> Validator:
    try:
        return validator()
    except ReferenceMissing as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{error} (CI=true makes this a failure)")
        pytest.skip(f"E-INVOICE REFERENCE FILES MISSING, VALIDATION TESTS SKIPPED: {error}")


def german_world(db: Database):
    actor = seller_org(db)
    from tallybook.services import organizations

    organizations.update_settings(db, actor, GERMAN_SELLER)
    customer = german_customer(db, actor, language="de")
    return actor, customer


def test_an_issued_invoice_reads_back_in_german(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    rendered = documents.document_pdf(db, actor, "invoice", invoice.id)
    assert rendered.media_type == "application/pdf"
    assert rendered.file_name == f"{invoice.number}.pdf"
    text = text_of(rendered.content)

    assert f"Rechnung {invoice.number}" in text
    assert "Rechnungsdatum 02.03.2026" in text and "Fällig am 01.04.2026" in text
    assert "Bestellnummer PO-7781" in text and "Kundennummer crm-77" in text
    # 14.5 days at 135.00 at 19 %, a handbook at 4.90 at 7 %, 20 % off both.
    assert "Workshop" in text and "14,5 d 135,00 € 19 % 1.957,50 €" in text
    assert "Developer handbook" in text and "1 4,90 € 7 % 4,90 €" in text
    assert "Summe der Positionen 1.962,40 €" in text
    assert "Nettobetrag 1.569,92 €" in text
    assert "Umsatzsteuer 297,81 €" in text
    assert "Gesamtbetrag 1.867,73 €" in text
    assert "19 % 1.566,00 € 297,54 €" in text and "7 % 3,92 € 0,27 €" in text
    # Payment: the amount due by the due date, IBAN, BIC and the RF reference, and a QR code.
    assert "Bitte überweisen Sie 1.867,73 € bis zum 01.04.2026" in text
    assert "DE44 5001 0517 5407 3249 31" in text and "INGDDEFFXXX" in text
    assert display(invoice.payment_reference) in text
    assert "Seite 1 von 1" in text
    # The QR code a banking app reads from the page: the amount due, IBAN and reference.
    (payload,) = qr_codes_of(rendered.content)
    transfer = read_epc_payload(payload)
    assert (transfer.iban, transfer.amount, transfer.reference) == (
        "DE44500105175407324931",
        D("1867.73"),
        invoice.payment_reference,
    )


def test_english_and_french_formatting(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    english = text_of(
        documents.document_pdf(db, actor, "invoice", invoice.id, language="en").content
    )
    assert f"Invoice {invoice.number}" in english
    assert "Date of issue Mar 2, 2026" in english and "Due date Apr 1, 2026" in english
    assert "Total €1,867.73" in english and "Page 1 of 1" in english
    assert "Please transfer €1,867.73 by Apr 1, 2026" in english
    french = text_of(
        documents.document_pdf(db, actor, "invoice", invoice.id, language="fr").content
    )
    assert f"Facture {invoice.number}" in french
    assert "Date d'émission 2 mars 2026" in french
    assert "Total TTC 1 867,73 €" in french and "Page 1 sur 1" in french
    with pytest.raises(InvalidInput) as error:
        documents.document_pdf(db, actor, "invoice", invoice.id, language="xx")
    assert error.value.field == "language"


def test_the_qr_code_pays_the_amount_due_with_the_reference(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer, discount=None)
    payments.record_payment(
        db,
        actor,
        {
            "customer_id": customer.id,
            "amount": "100.00",
            "currency": "EUR",
            "received_on": "2026-03-10",
        },
    )
    sheet = documents.document_sheet(db, actor, "invoice", invoice.id)
    transfer = read_epc_payload(pdf.payment_qr_payload(sheet.document))
    assert transfer.iban == "DE44500105175407324931" and transfer.bic == "INGDDEFFXXX"
    assert transfer.name == "Northwind Cloud Ltd"
    # 1,957.50 + VAT 371.93 and 4.90 + VAT 0.34, less 100.00 paid
    assert transfer.amount == D("2234.67") == D(sheet.document.payable_minor) / 100
    assert transfer.reference == invoice.payment_reference
    text = text_of(pdf.render(sheet))
    assert "Bereits bezahlt -100,00 €" in text and "Zu zahlen 2.234,67 €" in text


def test_the_same_invoice_gives_the_same_bytes(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    first = documents.document_pdf(db, actor, "invoice", invoice.id).content
    second = documents.document_pdf(db, actor, "invoice", invoice.number).content
    assert first == second
    # Dated by the document, not the clock; the identifier comes from the document too.
    info = PdfReader(io.BytesIO(first)).metadata
    assert info.creation_date.date() == info.modification_date.date() == date(2026, 3, 2)


def test_the_pdf_shows_the_e_invoice_model(db: Database) -> None:
    """Invoices, credit notes and debit notes on paper are the very model their XML is written
    from: they cannot disagree on an amount."""
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    note = credit_notes.create_credit_note(
        db,
        actor,
        invoice.id,
        {"reason": "Two days not worked", "lines": [{"line": "1", "quantity": "2"}]},
    )
    debit = credit_notes.create_debit_note(
        db,
        actor,
        invoice.id,
        {"reason": "Travel", "lines": [{"description": "Train to Berlin", "unit_price": "89.00"}]},
    )
    for kind, document_id in (
        ("invoice", invoice.id),
        ("credit_note", note.id),
        ("debit_note", debit.id),
    ):
        sheet = documents.document_sheet(db, actor, kind, document_id)
        assert sheet.document == einvoices.einvoice_for(db, actor, document_id, kind), kind


def test_credit_and_debit_notes_name_the_invoice_they_correct(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    note = credit_notes.create_credit_note(
        db,
        actor,
        invoice.id,
        {"reason": "Two days not worked", "lines": [{"line": "1", "quantity": "2"}]},
    )
    text = text_of(documents.document_pdf(db, actor, "credit_note", note.number).content)
    assert f"Gutschrift {note.number}" in text
    assert f"Korrektur zu Rechnung {invoice.number} vom 02.03.2026" in text
    assert "Workshop" in text and "216,00 €" in text
    assert "Gutgeschrieben 257,04 €" in text and "Two days not worked" in text
    assert qr_codes_of(documents.document_pdf(db, actor, "credit_note", note.id).content) == []

    debit = credit_notes.create_debit_note(
        db,
        actor,
        invoice.id,
        {"reason": "Travel", "lines": [{"description": "Train to Berlin", "unit_price": "89.00"}]},
    )
    text = text_of(documents.document_pdf(db, actor, "debit_note", debit.id, language="en").content)
    assert f"Debit note {debit.number}" in text
    assert f"Corrects invoice {invoice.number} of Mar 2, 2026" in text
    assert "Train to Berlin" in text and f"Total €{debit.total_minor / 100:,.2f}" in text


def test_a_draft_is_a_marked_pro_forma_and_never_factur_x(db: Database) -> None:
    actor, customer = german_world(db)
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(
        db, actor, draft.id, {"description": "Seats", "quantity": "3", "unit_price": "10"}
    )
    rendered = documents.document_pdf(db, actor, "invoice", draft.id)
    assert rendered.file_name == f"draft-{draft.id}.pdf"
    text = text_of(rendered.content)
    assert "Proforma-Rechnung" in text and "ENTWURF" in text
    assert "keine gültige Rechnung" in text
    assert "Gesamtbetrag 35,70 €" in text  # 30.00 + 19 % VAT
    assert "Bitte überweisen" not in text and qr_codes_of(rendered.content) == []
    with pytest.raises(Conflict):
        documents.document_facturx(db, actor, draft.id)


def test_line_explanations_on_request(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    plain = text_of(documents.document_pdf(db, actor, "invoice", invoice.id).content)
    explained = text_of(
        documents.document_pdf(
            db, actor, "invoice", invoice.id, explain=True, language="en"
        ).content
    )
    assert "How this was calculated" not in plain
    assert "How this was calculated" in explained
    _, sentence, _ = invoices.explain_invoice_line(db, actor, invoice.id, "1")
    assert sentence.split(".")[0] in explained.replace("\n", " ")


def test_factur_x_embeds_the_cii_and_declares_pdf_a_3(db: Database, checker) -> None:
    import facturx

    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    rendered = documents.document_facturx(db, actor, invoice.id)
    assert rendered.file_name == f"{invoice.number}-facturx.pdf"
    name, xml = facturx.get_xml_from_pdf(rendered.content, check_xsd=True)
    assert name == "factur-x.xml"
    assert xml == to_cii(einvoices.einvoice_for(db, actor, invoice.id, "invoice"))
    report = checker.validate(xml)
    assert report.valid and report.fatal == () or report.fatal == []
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"

    reader = PdfReader(io.BytesIO(rendered.content))
    metadata = reader.xmp_metadata
    xmp = metadata.rdf_root.toxml()
    assert 'pdfaid:part="3"' in xmp or "<pdfaid:part>3</pdfaid:part>" in xmp
    assert "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in xmp
    assert "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>" in xmp
    catalog = reader.trailer["/Root"]
    (spec,) = [item.get_object() for item in catalog["/AF"]]
    assert spec["/AFRelationship"] == "/Alternative" and spec["/F"] == "factur-x.xml"
    assert f"Rechnung {invoice.number}" in text_of(rendered.content)
    assert rendered.content == documents.document_facturx(db, actor, invoice.id).content


def test_a_statement_with_opening_balance_running_balance_and_closing(db: Database) -> None:
    actor, customer = german_world(db)
    first = issued_invoice(db, actor, customer, discount=None)  # 2,334.67 on 2026-03-02
    payments.record_payment(
        db,
        actor,
        {
            "customer_id": customer.id,
            "amount": "1000.00",
            "currency": "EUR",
            "received_on": "2026-03-20",
        },
    )
    rendered = documents.document_pdf(
        db,
        actor,
        "statement",
        customer.id,
        date_from=date(2026, 3, 10),
        date_to=date(2026, 3, 31),
    )
    assert rendered.file_name == "statement-crm-77-2026-03-10-2026-03-31.pdf"
    text = text_of(rendered.content)
    assert "Kontoauszug" in text and "Zeitraum 10.03.2026 – 31.03.2026" in text
    assert "Anfangssaldo 2.334,67 €" in text  # the invoice, before the period
    assert "20.03.2026 Zahlung" in text and "1.000,00 €" in text
    assert "Endsaldo" in text and "1.334,67 €" in text
    assert "Offener Saldo am 31.03.2026: 1.334,67 €." in text
    assert first.total_minor == 233467


def test_a_dunning_letter_shows_level_overdue_invoices_fee_and_what_to_do(db: Database) -> None:
    actor, customer = german_world(db)
    dunning.create_policy(
        db,
        actor,
        {
            "name": "standard",
            "steps": [
                {"offset_days": 7, "level": 1, "name": "first reminder"},
                {"offset_days": 14, "level": 2, "name": "second reminder", "late_fee": True},
            ],
            "late_fee": {"kind": "fixed", "fixed": {"EUR": "5.00"}},
        },
    )
    invoice = issued_invoice(db, actor, customer, discount=None)  # due 2026-04-01
    dunning.run_dunning(db, actor, date(2026, 4, 8))
    run = dunning.run_dunning(db, actor, date(2026, 4, 15))
    (reminder,) = run.reminders
    assert reminder.level == 2 and reminder.fee_minor == 500
    rendered = documents.document_pdf(db, actor, "dunning_letter", reminder.reminder_id)
    assert rendered.file_name == f"{invoice.number}-reminder-2.pdf"
    text = text_of(rendered.content)
    assert "Zweite Mahnung" in text and "Mahnstufe 2" in text and "Datum 15.04.2026" in text
    assert f"{invoice.number} 02.03.2026 01.04.2026 14 2.334,67 €" in text
    assert f"Mahngebühr ({reminder.debit_note_number}) 5,00 €" in text
    assert "Zu zahlen 2.339,67 €" in text
    assert "Bitte zahlen Sie 2.339,67 € spätestens bis zum 22.04.2026." in text
    assert "billing@northwind.example" in text
    english = text_of(
        documents.document_pdf(
            db, actor, "dunning_letter", reminder.reminder_id, language="en"
        ).content
    )
    assert "Second payment reminder" in english and "Total to pay €2,339.67" in english


def test_branding_colour_and_logo(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    view = documents.update_branding(
        db, actor, brand_color="#0A5", logo=png_logo(), logo_media_type="image/png"
    )
    assert (view.brand_color, view.logo_media_type, view.logo_bytes) == (
        "#00aa55",
        "image/png",
        len(png_logo()),
    )
    sheet = documents.document_sheet(db, actor, "invoice", invoice.id)
    assert sheet.branding.color == "#00aa55" and sheet.branding.logo == png_logo()
    assert "data:image/png;base64," in pdf.document_html(sheet)
    rendered = pdf.render(sheet)
    assert images_of(rendered) == 2  # the logo and the QR code
    assert brand_pixels(rendered, (0, 170, 85)) > 200  # the heading in the brand colour

    with pytest.raises(InvalidInput) as error:
        documents.update_branding(db, actor, brand_color="blue")
    assert error.value.field == "brand_color"
    for bad in (
        b"GIF89a....",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="http://evil.example/x.png"/></svg>',
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
        b"\x89PNG\r\n\x1a\n" + b"\0" * (documents.MAX_LOGO_BYTES + 1),
    ):
        with pytest.raises(InvalidInput) as error:
            documents.update_branding(db, actor, logo=bad)
        assert error.value.field == "logo"
    viewer = Actor(actor.organization_id, None, Role.VIEWER)
    with pytest.raises(Forbidden):
        documents.update_branding(db, viewer, brand_color="#000000")
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
        b'<rect width="10" height="5"/></svg>'
    )
    assert documents.update_branding(db, actor, logo=svg).logo_media_type == "image/svg+xml"
    cleared = documents.update_branding(db, actor, logo=None, brand_color=None)
    assert (cleared.logo_bytes, cleared.brand_color) == (0, pdf.DEFAULT_COLOR)


def test_another_organisations_documents_are_not_found(db: Database) -> None:
    actor, customer = german_world(db)
    invoice = issued_invoice(db, actor, customer)
    note = credit_notes.create_credit_note(
        db, actor, invoice.id, {"reason": "Goodwill", "lines": [{"line": "2", "quantity": "1"}]}
    )
    other, _ = german_world(db)
    for kind, document_id in (
        ("invoice", invoice.id),
        ("invoice", invoice.number),
        ("credit_note", note.id),
        ("statement", customer.id),
        ("dunning_letter", "drem_missing"),
    ):
        with pytest.raises(NotFound):
            documents.document_pdf(db, other, kind, document_id)
    with pytest.raises(NotFound):
        documents.document_facturx(db, other, invoice.id)
    with pytest.raises(InvalidInput):
        documents.document_pdf(db, actor, "receipt", invoice.id)


def test_an_organisation_without_country_or_bank_details_still_gets_pdfs(db: Database) -> None:
    from conftest import make_org

    actor = make_org(db)
    customer = customers.create_customer(
        db, actor, {"legal_name": "Plain Customer LLC", "country": "US", "currency": "USD"}
    )
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Consulting", "unit_price": "1234.5"})
    invoice = invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 1, 15))
    text = text_of(documents.document_pdf(db, actor, "invoice", invoice.id).content)
    assert f"Invoice {invoice.number}" in text and "Total $1,234.50" in text
    assert "Due date Feb 14, 2026" in text and "IBAN" not in text
    with pytest.raises(Conflict):
        documents.document_facturx(db, actor, invoice.id)  # e-invoices need the country
    assert invoice.due_date == date(2026, 1, 15) + timedelta(days=30)
