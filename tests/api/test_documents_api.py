"""Documents over HTTP: PDFs of invoices, drafts, credit and debit notes, statements and
dunning letters read back; Factur-X with its CII; branding (colour, logo upload, data URI);
another organisation's key gets 404 for every id."""

from __future__ import annotations

import base64
import io
import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from tallybook.api.app import create_app
from tallybook.services.base import Database
from tallybook.services.organizations import create_organization

SELLER = {
    "country": "DE",
    "address_line1": "Friedrichstraße 10",
    "city": "Berlin",
    "postal_code": "10117",
    "vat_id": "DE136695976",
    "iban": "DE44500105175407324931",
    "bic": "INGDDEFFXXX",
    "contact_email": "billing@northwind.example",
}


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def key_of(db: Database) -> dict[str, str]:
    _, key = create_organization(db, "Northwind Cloud GmbH", "EUR", timezone="Europe/Berlin")
    return {"Authorization": f"Bearer {key.secret}"}


def text_of(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    text = " ".join(page.extract_text() for page in reader.pages)
    return " ".join(re.sub(r"[\u00a0\u202f]", " ", text).split())


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (30, 10), (10, 95, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def world(client: TestClient, h: dict[str, str]) -> dict[str, str]:
    """A German seller, a customer in French, an issued invoice paid late with a reminder, a
    credit note, a debit note and a draft."""
    assert client.patch("/v1/organization", json=SELLER, headers=h).status_code == 200
    r = client.post(
        "/v1/tax-rates",
        json={"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    customer = client.post(
        "/v1/customers",
        json={
            "legal_name": "Maison Dupont SARL",
            "country": "DE",
            "currency": "EUR",
            "city": "Berlin",
            "postal_code": "10115",
            "address_line1": "Hauptstr. 1",
            "language": "fr",
            "payment_terms_days": 14,
        },
        headers=h,
    ).json()
    draft = client.post("/v1/invoices", json={"customer_id": customer["id"]}, headers=h).json()
    r = client.post(
        f"/v1/invoices/{draft['id']}/lines",
        json={"description": "Conseil", "quantity": "10", "unit_price": "150.00"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    line_id = r.json()["lines"][0]["id"]
    invoice = client.post(f"/v1/invoices/{draft['id']}/issue", headers=h)
    assert invoice.status_code == 200, invoice.text
    invoice = invoice.json()
    note = client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "Une journée offerte", "lines": [{"line_id": line_id, "quantity": "1"}]},
        headers=h,
    )
    assert note.status_code == 201, note.text
    debit = client.post(
        f"/v1/invoices/{invoice['id']}/debit-notes",
        json={"reason": "Frais", "lines": [{"description": "Déplacement", "unit_price": "80.00"}]},
        headers=h,
    )
    assert debit.status_code == 201, debit.text
    other_draft = client.post(
        "/v1/invoices", json={"customer_id": customer["id"]}, headers=h
    ).json()
    client.post(
        f"/v1/invoices/{other_draft['id']}/lines",
        json={"description": "Brouillon", "unit_price": "10.00"},
        headers=h,
    )
    r = client.post(
        "/v1/dunning-policies",
        json={"name": "standard", "steps": [{"offset_days": 3, "level": 1, "name": "rappel"}]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    after_due = date.fromisoformat(invoice["due_date"]) + timedelta(days=3)
    run = client.post("/v1/dunning-runs", json={"as_of": after_due.isoformat()}, headers=h)
    assert run.status_code == 200, run.text
    (reminder,) = run.json()["reminders"]
    return {
        "customer": customer["id"],
        "invoice": invoice["id"],
        "number": invoice["number"],
        "credit_note": note.json()["id"],
        "debit_note": debit.json()["id"],
        "draft": other_draft["id"],
        "reminder": reminder["reminder_id"],
    }


def test_every_document_as_pdf(client: TestClient, db: Database) -> None:
    h = key_of(db)
    ids = world(client, h)
    r = client.get(f"/v1/invoices/{ids['invoice']}/pdf", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{ids["number"]}.pdf"'
    text = text_of(r.content)
    assert f"Facture {ids['number']}" in text  # the customer's language
    assert "Date d'émission" in text and "Total TTC 1 785,00 €" in text
    english = client.get(f"/v1/invoices/{ids['number']}/pdf?language=en&explain=true", headers=h)
    assert "Total €1,785.00" in text_of(english.content)
    bad = client.get(f"/v1/invoices/{ids['invoice']}/pdf?language=klingon", headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "language"

    assert "Avoir" in text_of(
        client.get(f"/v1/credit-notes/{ids['credit_note']}/pdf", headers=h).content
    )
    assert "Note de débit" in text_of(
        client.get(f"/v1/debit-notes/{ids['debit_note']}/pdf", headers=h).content
    )
    draft = client.get(f"/v1/invoices/{ids['draft']}/pdf?language=en", headers=h)
    assert "Pro-forma invoice" in text_of(draft.content) and "DRAFT" in text_of(draft.content)
    assert client.get(f"/v1/invoices/{ids['draft']}/facturx", headers=h).status_code == 409

    statement = client.get(
        f"/v1/customers/{ids['customer']}/statement.pdf?language=de",
        headers=h,
    )
    assert statement.status_code == 200, statement.text
    assert "Kontoauszug" in text_of(statement.content)
    letter = client.get(f"/v1/dunning/reminders/{ids['reminder']}/letter.pdf", headers=h)
    assert letter.status_code == 200, letter.text
    assert "Rappel de paiement" in text_of(letter.content)


def test_factur_x_download(client: TestClient, db: Database) -> None:
    import facturx

    h = key_of(db)
    ids = world(client, h)
    r = client.get(f"/v1/invoices/{ids['invoice']}/facturx", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith(f'filename="{ids["number"]}-facturx.pdf"')
    name, xml = facturx.get_xml_from_pdf(r.content, check_xsd=True)
    cii = client.get(f"/v1/invoices/{ids['invoice']}/cii", headers=h)
    assert name == "factur-x.xml" and xml == cii.content


def test_branding_through_the_api(client: TestClient, db: Database) -> None:
    h = key_of(db)
    ids = world(client, h)
    assert client.get("/v1/organization/branding", headers=h).json() == {
        "brand_color": "#1f4e79",
        "logo": None,
    }
    logo = png()
    r = client.put(
        "/v1/organization/logo", content=logo, headers={**h, "Content-Type": "image/png"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["logo"]["media_type"] == "image/png" and r.json()["logo"]["bytes"] == len(logo)
    assert client.get("/v1/organization/logo", headers=h).content == logo
    r = client.patch("/v1/organization/branding", json={"brand_color": "#0a5fff"}, headers=h)
    assert r.json()["brand_color"] == "#0a5fff" and r.json()["logo"]["bytes"] == len(logo)
    pdf = client.get(f"/v1/invoices/{ids['invoice']}/pdf", headers=h).content
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages[0]["/Resources"]["/XObject"]) == 2  # the logo and the QR code

    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4">'
        b'<rect width="4" height="4"/></svg>'
    )
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    r = client.patch("/v1/organization/branding", json={"logo": uri}, headers=h)
    assert r.status_code == 200 and r.json()["logo"]["media_type"] == "image/svg+xml"
    for body, field in (
        ({"brand_color": "red"}, "brand_color"),
        ({"logo": "http://example.com/logo.png"}, "logo"),
        ({"logo": "data:image/png;base64,!!!"}, "logo"),
    ):
        r = client.patch("/v1/organization/branding", json=body, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = client.put(
        "/v1/organization/logo", content=b"GIF89a", headers={**h, "Content-Type": "image/gif"}
    )
    assert r.status_code == 422
    assert client.delete("/v1/organization/logo", headers=h).json()["logo"] is None
    assert client.get("/v1/organization/logo", headers=h).status_code == 404


def test_another_organisations_key_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    h = key_of(db)
    ids = world(client, h)
    other = key_of(db)
    for path in (
        f"/v1/invoices/{ids['invoice']}/pdf",
        f"/v1/invoices/{ids['number']}/pdf",
        f"/v1/invoices/{ids['draft']}/pdf",
        f"/v1/invoices/{ids['invoice']}/facturx",
        f"/v1/credit-notes/{ids['credit_note']}/pdf",
        f"/v1/debit-notes/{ids['debit_note']}/pdf",
        f"/v1/customers/{ids['customer']}/statement.pdf",
        f"/v1/dunning/reminders/{ids['reminder']}/letter.pdf",
    ):
        r = client.get(path, headers=other)
        assert r.status_code == 404, (path, r.status_code, r.text)
    assert client.get(f"/v1/invoices/{ids['invoice']}/pdf").status_code == 401
