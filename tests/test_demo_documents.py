"""Acceptance: the demo's invoices and credit notes as PDF, one of each kind of case (currency,
VAT treatment, several rates, discount, language), read back: number, date and total on the
page; Factur-X of issued invoices carries exactly their CII. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re

from babel.dates import format_date
from babel.numbers import format_currency
from pypdf import PdfReader

from tallybook import demo
from tallybook.core.money import from_minor
from tallybook.formats.cii import to_cii
from tallybook.services import credit_notes, documents, einvoices
from tallybook.services.base import Actor, Database, Role


def text_of(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    text = " ".join(page.extract_text() for page in reader.pages)
    return " ".join(re.sub(r"[\u00a0\u202f]", " ", text).split())


def plain(text: str) -> str:
    return " ".join(re.sub(r"[\u00a0\u202f]", " ", text).split())


def test_demo_documents_read_back(db: Database) -> None:
    import facturx

    result = demo.build(db)
    viewer = Actor(result.organization_id, None, Role.VIEWER)
    issued = [i for i in demo._all_invoices(db, viewer) if i.status not in ("draft", "void")]
    picked: dict[tuple, str] = {}
    for invoice in issued:
        model = einvoices.einvoice_for(db, viewer, invoice.id, "invoice")
        case = (
            model.currency,
            tuple(
                sorted({(r.category.code.value, r.category.percent) for r in model.vat_breakdown})
            ),
            bool(model.allowances),
        )
        picked.setdefault(case, invoice.id)
    assert len(picked) >= 6
    notes = credit_notes.list_credit_notes(db, viewer)[:2]
    jobs = [("invoice", i) for i in picked.values()] + [("credit_note", n.id) for n in notes]
    for kind, document_id in jobs:
        sheet = documents.document_sheet(db, viewer, kind, document_id)
        model = sheet.document
        text = text_of(documents.document_pdf(db, viewer, kind, document_id).content)
        total = format_currency(
            from_minor(model.tax_inclusive_minor, model.currency),
            model.currency,
            locale=sheet.language,
        )
        assert model.number in text, (kind, model.number)
        assert plain(total) in text, (model.number, total)
        assert plain(format_date(model.issue_date, "medium", locale=sheet.language)) in text
    for invoice_id in list(picked.values())[:3]:
        rendered = documents.document_facturx(db, viewer, invoice_id)
        _, xml = facturx.get_xml_from_pdf(rendered.content, check_xsd=True)
        assert xml == to_cii(einvoices.einvoice_for(db, viewer, invoice_id, "invoice"))
