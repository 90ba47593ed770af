"""The PDF renderer on its own (no database): amounts and dates as each language writes them,
every amount of any rated invoice on the page, legal mentions, page numbers over several
pages, escaping, fonts for other scripts, and the same bytes for the same document."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from babel.numbers import format_currency
from hypothesis import given, settings
from pypdf import PdfReader

from tallybook.core.einvoice import (
    DocumentKind,
    LineFacts,
    Party,
    PaymentAccount,
    PostalAddress,
    build_document,
)
from tallybook.core.money import from_minor
from tallybook.core.references import creditor_reference
from tallybook.formats import pdf_documents as pdf

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))
from test_einvoice import issued  # noqa: E402

D = Decimal
SELLER = Party(
    "Northwind Cloud GmbH",
    PostalAddress("Friedrichstraße 10", None, "Berlin", "10117", None, "DE"),
    vat_id="DE136695976",
)
BUYER = Party(
    "Kunde GmbH",
    PostalAddress("Hauptstr. 1", None, "Berlin", "10115", None, "DE"),
    identifier="c-1",
)
ACCOUNT = PaymentAccount("DE44500105175407324931", "INGDDEFFXXX", "Northwind Cloud GmbH")


def invoice(lines, *, buyer=BUYER, currency="EUR", **options):
    total = sum(line.net_minor + line.tax_minor for line in lines)
    return build_document(
        kind=options.pop("kind", DocumentKind.INVOICE),
        number="INV-2026-000042",
        issue_date=date(2026, 3, 2),
        currency=currency,
        seller=SELLER,
        buyer=buyer,
        lines=lines,
        expected_total_minor=total,
        due_date=date(2026, 4, 1),
        payment_reference=creditor_reference("INV-2026-000042"),
        payment_account=ACCOUNT,
        **options,
    )


def text_of(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    text = " ".join(page.extract_text() for page in reader.pages)
    return " ".join(re.sub(r"[\u00a0\u202f]", " ", text).split())


ONE_LINE = [LineFacts("Consulting", D(1), 123456, tax_minor=23457, tax_percent=D(19))]


@pytest.mark.parametrize(
    ("language", "total", "day"),
    [
        ("de", "1.469,13 €", "02.03.2026"),
        ("en", "€1,469.13", "Mar 2, 2026"),
        ("fr", "1 469,13 €", "2 mars 2026"),
    ],
)
def test_amounts_and_dates_in_each_language(language: str, total: str, day: str) -> None:
    text = text_of(pdf.render(pdf.CommercialSheet(invoice(ONE_LINE), language)))
    assert total in text and day in text


def test_yen_have_no_decimals() -> None:
    lines = [LineFacts("Seats", D(20), 24000)]
    text = text_of(pdf.render(pdf.CommercialSheet(invoice(lines, currency="JPY"), "en")))
    assert "¥24,000" in text and "¥24,000.00" not in text
    # no QR code: the EPC code is for euros only
    assert pdf.payment_qr_payload(invoice(lines, currency="JPY")) is None


def test_reverse_charge_and_exemption_are_mentioned() -> None:
    lines = [LineFacts("Audit", D(1), 50000)]
    reverse = invoice(lines, treatment="reverse_charge")
    assert "Reverse charge: VAT is to be accounted for by the recipient" in text_of(
        pdf.render(pdf.CommercialSheet(reverse, "en"))
    )
    exempt = invoice(lines, treatment="exempt", exemption_note="§ 4 Nr. 21 UStG")
    german = text_of(pdf.render(pdf.CommercialSheet(exempt, "de")))
    assert "Steuerfrei: § 4 Nr. 21 UStG." in german


def test_many_lines_run_over_pages_with_their_numbers() -> None:
    lines = [
        LineFacts(f"Usage item {n}", D(n), 1000 * n, tax_minor=190 * n, tax_percent=D(19))
        for n in range(1, 61)
    ]
    content = pdf.render(pdf.CommercialSheet(invoice(lines), "en"))
    reader = PdfReader(io.BytesIO(content))
    pages = len(reader.pages)
    assert pages >= 3
    for number, page in enumerate(reader.pages, start=1):
        page_text = " ".join(page.extract_text().split())
        assert f"Page {number} of {pages}" in page_text
        assert "Description" in page_text  # the lines' header repeats on every page


def test_markup_in_names_is_printed_not_obeyed() -> None:
    buyer = Party(
        "<b>Evil</b> & Co", PostalAddress("<script>x</script>", None, None, None, None, "DE")
    )
    html = pdf.document_html(pdf.CommercialSheet(invoice(ONE_LINE, buyer=buyer), "en"))
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in html and "<script>" not in html


def test_other_scripts_fall_back_to_a_system_font_and_stay_deterministic() -> None:
    buyer = Party("Ελληνική Εταιρεία ΑΕ", PostalAddress("Οδός 1", None, "Αθήνα", None, None, "GR"))
    sheet = pdf.CommercialSheet(invoice(ONE_LINE, buyer=buyer), "en")
    first, second = pdf.render(sheet), pdf.render(sheet)
    assert first == second
    assert "Ελληνική Εταιρεία ΑΕ" in text_of(first)


def _statement_and_letter() -> list[pdf.Sheet]:
    from tallybook.core.receivables import CustomerStatement, StatementLine

    lines = (
        StatementLine(date(2026, 3, 2), "invoice", "INV-1", "Invoice", 11900, 0, 11900),
        StatementLine(date(2026, 3, 9), "payment", "PAY-1", "Bank & <co>", 0, 5000, 6900),
    )
    statement = CustomerStatement(
        "c-1", "Kunde GmbH", "EUR", date(2026, 3, 1), date(2026, 3, 31), 0, lines, 6900,
        11900, 5000, 11900, 5000, 0, 0, 0,
    )  # fmt: skip
    overdue = pdf.OverdueDocument("INV-1", date(2026, 3, 2), date(2026, 4, 1), 6900, 12)
    return [
        pdf.StatementSheet(SELLER, BUYER, statement, 6900, 0, "de", payment_account=ACCOUNT),
        pdf.StatementSheet(SELLER, BUYER, replace(statement, lines=()), 6900, 0, "en"),
        pdf.DunningLetterSheet(
            SELLER, BUYER, "EUR", date(2026, 4, 13), 2, "second", "INV-1", (overdue,),
            date(2026, 4, 20), fee_minor=500, fee_document="DN-1", payment_account=ACCOUNT,
            language="fr",
        ),
    ]  # fmt: skip


def test_the_html_parses_as_xml_to_the_tree_an_html_parser_reads() -> None:
    """Documents are parsed with the XML parser (pdf._Engine.parse): every template must
    write XHTML that reads as the very tree WeasyPrint's HTML5 parser would build."""
    from xml.etree import ElementTree

    import tinyhtml5

    def nodes(root: ElementTree.Element) -> list[tuple]:
        return [(e.tag, sorted(e.attrib.items()), e.text, e.tail) for e in root.iter()]

    logo = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    lines = [
        LineFacts("Seats", D(3), 3000, tax_minor=570, tax_percent=D(19), period=(
            date(2026, 3, 1), date(2026, 3, 31))),
        LineFacts("Support & <care>", D(1), 5000, tax_minor=950, tax_percent=D(19)),
    ]  # fmt: skip
    sheets: list[pdf.Sheet] = [
        pdf.CommercialSheet(invoice(lines), "de", explanations=("3 seats x 10.00", None)),
        pdf.CommercialSheet(
            invoice(lines), "en", pdf.Branding("#aa0000", logo, "image/svg+xml"), draft=True
        ),
        pdf.CommercialSheet(invoice(lines, kind=DocumentKind.CREDIT_NOTE), "fr", void=True),
        *_statement_and_letter(),
    ]
    for sheet in sheets:
        html = pdf.document_html(sheet)
        parsed = ElementTree.fromstring(html)
        assert nodes(parsed) == nodes(tinyhtml5.parse(html, namespace_html_elements=False))
    # What XML cannot carry (a control character) is still printed, read by the HTML parser.
    odd = Party("Kunde\x0c GmbH", BUYER.address)
    sheet = pdf.CommercialSheet(invoice(lines, buyer=odd), "en")
    content = pdf.render(sheet)
    assert "Support & <care>" in text_of(content) and content == pdf.render(sheet)


def test_remembered_compression_gives_what_zlib_gives() -> None:
    import zlib

    remembering = pdf._RememberingZlib()
    for data in (b"", b"tallybook " * 1000, bytes(range(256)) * 300, b"tallybook " * 1000):
        for level in (-1, 9):
            compressor = remembering.compressobj(level=level)
            whole = compressor.compress(data[:10]) + compressor.compress(data[10:])
            whole += compressor.flush()
            assert whole == zlib.compress(data, level) == remembering.compress(data, level)
    assert len(remembering._done) <= remembering.KEEP
    assert all(len(data) <= remembering.LARGEST for _, data in remembering._done)


def test_a_draft_is_never_factur_x() -> None:
    with pytest.raises(ValueError):
        pdf.render_facturx(pdf.CommercialSheet(invoice(ONE_LINE), draft=True), b"<x/>")


@settings(max_examples=60, deadline=None)
@given(issued(max_lines=8))
def test_every_amount_of_any_rated_invoice_is_on_the_page(case) -> None:
    """The page shows each line's amount, the VAT breakdown and every total of the model, in
    the language's own notation (checked on the HTML the PDF is set from)."""
    currency, treatment, facts, totals, _ = case
    document = build_document(
        kind=DocumentKind.INVOICE,
        number="INV-1",
        issue_date=date(2026, 3, 2),
        currency=currency,
        seller=SELLER,
        buyer=BUYER,
        lines=facts,
        treatment=treatment.value,
        expected_total_minor=totals.total_minor,
    )
    for language in ("de", "en", "fr"):
        html = pdf.document_html(pdf.CommercialSheet(document, language))

        def shown(minor: int, language: str = language) -> str:
            return format_currency(from_minor(minor, currency), currency, locale=language)

        for line in document.lines:
            assert shown(line.net_minor) in html
        for row in document.vat_breakdown:
            assert shown(row.taxable_minor) in html and shown(row.tax_minor) in html
        for minor in (
            document.line_total_minor,
            document.tax_exclusive_minor,
            document.tax_minor,
            document.tax_inclusive_minor,
        ):
            assert shown(minor) in html


def test_documents_load_nothing_but_their_own_fonts_and_data() -> None:
    fetcher = pdf._LocalOnly()
    root = pdf.TEMPLATES.as_uri()
    assert fetcher.fetch(root + "/fonts/TallybookSans.ttf") is not None
    assert fetcher.fetch("data:image/png;base64,iVBORw0KGgo=") is not None
    for url in (
        root + "/../../../../../../etc/passwd",
        "file:///etc/passwd",
        "http://example.com/logo.png",
        "https://example.com/font.woff",
    ):
        with pytest.raises(ValueError):
            fetcher.fetch(url)


def test_many_documents_across_processes_come_back_in_order_and_identical() -> None:
    sheets = [
        pdf.CommercialSheet(invoice([LineFacts(f"Item {n}", D(1), 1000 + n)]), "en")
        for n in range(20)
    ]
    usage: dict[str, float] = {}
    rendered = pdf.render_many(sheets, workers=2, chunk=4, usage=usage)
    assert rendered == [pdf.render(sheet) for sheet in sheets]
    assert usage["render_cpu_seconds"] > 0
