"""The customer portal over HTTP (SQLite and PostgreSQL): portal links from the API (made by
clerks and managers, 404 for another organisation's customer or link), the pages under /portal
(the customer's documents in its language, lines with their explanations, statements),
downloads, the dispute form (CSRF token, post-redirect-get), the headers, and refusals that
answer with a plain page and never with data; the portal stays out of the OpenAPI document."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from portal_world import TEST_SECRET_KEY, PortalWorld, portal_world

from tallybook.api.app import create_app
from tallybook.db.models import Discrepancy
from tallybook.services import documents, organizations, portal
from tallybook.services.base import Database, utcnow

PUBLIC = "https://billing.northwind.example"


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("TALLYBOOK_PUBLIC_URL", PUBLIC)


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db), follow_redirects=False)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def link_path(client: TestClient, world: PortalWorld, days: int = 30) -> str:
    r = client.post(
        f"/v1/customers/{world.customer.id}/portal-links",
        json={"expires_in_days": days},
        headers=bearer(world.secret),
    )
    assert r.status_code == 201, r.text
    return r.json()["url"].removeprefix(PUBLIC)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


def disputes_of(db: Database, invoice_id: str) -> list[Discrepancy]:
    with db.reading() as session:
        return session.query(Discrepancy).filter_by(invoice_id=invoice_id, source="dispute").all()


def assert_plain_refusal(response, world: PortalWorld, status: int = 403) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"].startswith("no-store")
    for secret_thing in (world.customer.legal_name, world.invoice.number, "Northwind", "€"):
        assert secret_thing not in response.text


# -- links from the API ----------------------------------------------------------------------------


def test_a_clerk_makes_a_link_and_revokes_them(client: TestClient, db: Database) -> None:
    world = portal_world(db)
    clerk = organizations.create_api_key(db, world.actor, "clerk", "billing_clerk").secret
    viewer = organizations.create_api_key(db, world.actor, "viewer", "viewer").secret
    path = f"/v1/customers/{world.customer.id}/portal-links"

    r = client.post(path, headers=bearer(clerk))  # no body: 30 days
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["url"].startswith(f"{PUBLIC}/portal/") and made["status"] == "active"
    assert made["customer_id"] == world.customer.id
    token = made["url"].rsplit("/", 1)[1]
    assert portal.read_token(token).expires_at.isoformat() == made["expires_at"]
    days = portal.read_token(token).expires_at - utcnow()
    assert timedelta(days=29, hours=23) < days <= timedelta(days=30)

    r = client.post(path, json={"expires_in_days": 400}, headers=bearer(clerk))
    assert r.status_code == 422 and r.json()["field"] == "expires_in_days"
    r = client.post(path, json={"expires_in_days": 7}, headers=bearer(viewer))
    assert r.status_code == 403

    listed = client.get(path, headers=bearer(viewer)).json()["data"]
    assert [x["id"] for x in listed] == [made["id"]] and "url" not in listed[0]

    assert client.get(f"/portal/{token}").status_code == 200
    r = client.delete(f"/v1/portal-links/{made['id']}", headers=bearer(clerk))
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert_plain_refusal(client.get(f"/portal/{token}"), world)
    assert "withdrawn" in client.get(f"/portal/{token}").text

    again = link_path(client, world)
    r = client.post(f"{path}/revoke", headers=bearer(clerk))
    assert r.json() == {"customer_id": world.customer.id, "revoked": 1}
    assert_plain_refusal(client.get(again), world)


def test_another_organisations_key_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    world = portal_world(db)
    other = portal_world(db)
    mine = client.post(
        f"/v1/customers/{world.customer.id}/portal-links", headers=bearer(world.secret)
    ).json()
    theirs = bearer(other.secret)
    path = f"/v1/customers/{world.customer.id}/portal-links"
    assert client.post(path, headers=theirs).status_code == 404
    assert client.get(path, headers=theirs).status_code == 404
    assert client.post(f"{path}/revoke", headers=theirs).status_code == 404
    assert client.delete(f"/v1/portal-links/{mine['id']}", headers=theirs).status_code == 404
    assert client.get(mine["url"].removeprefix(PUBLIC)).status_code == 200  # untouched


def test_the_portal_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/portal")]
    assert "/v1/customers/{customer_id}/portal-links" in paths


# -- the pages ------------------------------------------------------------------------------------


def test_the_documents_page_in_the_customers_language(client: TestClient, db: Database) -> None:
    world = portal_world(db, language="de")
    path = link_path(client, world)
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    html = r.text
    assert '<html lang="de">' in html and "Dokumente für Kunde GmbH" in html
    assert world.invoice.number in html and "1.481,39\xa0€" in html and "Offen" in html
    assert world.other_invoice.number not in html  # INV-...-000002, the other customer's
    # Headers: not cached, not framed, no referrer (the token is in the URL), a strict CSP
    # whose style nonce is the page's.
    h = r.headers
    assert h["cache-control"] == "no-store, max-age=0" and h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer" and h["x-content-type-options"] == "nosniff"
    nonce = re.search(r"style-src 'nonce-([^']+)'", h["content-security-policy"]).group(1)
    assert f'<style nonce="{nonce}">' in html
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert "<script" not in html

    french = client.get(f"{path}?lang=fr").text
    assert '<html lang="fr">' in french and "1\u202f481,39\xa0€" in french and "Factures" in french
    assert "?lang=fr" in french  # links keep the chosen language


def test_an_invoice_with_its_lines_explained(client: TestClient, db: Database) -> None:
    world = portal_world(db, language="en")
    path = link_path(client, world)
    html = client.get(f"{path}/invoices/{world.invoice.id}").text
    assert f"Invoice {world.invoice.number}" in html
    assert "Why was I charged this?" in html
    assert "DE VAT 19% on 1200.00 EUR = 228.00 EUR" in html
    assert "DE VAT reduced 7% on 49.90 EUR = 3.49 EUR" in html
    assert "€1,481.39" in html and "RF" in html  # total, payment reference
    assert 'name="csrf"' in html and 'action="/portal/' in html
    # A line's own link preselects it in the dispute form.
    chosen = client.get(f"{path}/invoices/{world.invoice.id}?line=2").text
    assert '<option value="2" selected>' in chosen

    for missing in (world.other_invoice.id, "inv_nothing", world.invoice.number):
        r = client.get(f"{path}/invoices/{missing}")
        assert r.status_code == 404 and world.other_customer.legal_name not in r.text


def test_downloads(client: TestClient, db: Database) -> None:
    world = portal_world(db)
    path = link_path(client, world)
    r = client.get(f"{path}/invoices/{world.invoice.id}/pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="{world.invoice.number}.pdf"'
    )
    assert r.headers["cache-control"].startswith("no-store")
    api_pdf = client.get(f"/v1/invoices/{world.invoice.id}/pdf", headers=bearer(world.secret))
    assert r.content == api_pdf.content
    r = client.get(f"{path}/invoices/{world.invoice.id}/ubl")
    assert r.headers["content-type"].startswith("application/xml") and b"<Invoice" in r.content
    r = client.get(f"{path}/invoices/{world.invoice.id}/facturx")
    api_facturx = client.get(
        f"/v1/invoices/{world.invoice.id}/facturx", headers=bearer(world.secret)
    )
    assert r.content.startswith(b"%PDF") and r.content == api_facturx.content
    r = client.get(f"{path}/statement.pdf?from=2026-03-01&to=2026-03-31")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    for bad in (
        f"{path}/invoices/{world.other_invoice.id}/pdf",
        f"{path}/invoices/{world.invoice.id}/docx",
        f"{path}/orders/{world.invoice.id}/pdf",
        f"{path}/logo",  # no logo yet
    ):
        assert client.get(bad).status_code == 404, bad

    buffer = io.BytesIO()
    Image.new("RGB", (30, 10), (0, 120, 90)).save(buffer, format="PNG")
    documents.update_branding(db, world.actor, brand_color="#00785a", logo=buffer.getvalue())
    r = client.get(f"{path}/logo")
    assert r.status_code == 200 and r.content == buffer.getvalue()
    assert r.headers["content-type"] == "image/png"
    html = client.get(path).text
    assert "--brand: #00785a" in html and f'src="{path}/logo"' in html


def test_the_statement_page(client: TestClient, db: Database) -> None:
    world = portal_world(db, language="en")
    path = link_path(client, world)
    html = client.get(f"{path}/statement?from=2026-03-01&to=2026-03-31").text
    assert "Statement of account" in html
    assert "Opening balance on Mar 1, 2026" in html and "Closing balance on Mar 31, 2026" in html
    assert f"Invoice {world.invoice.number}" in html and "€1,481.39" in html
    assert 'value="2026-03-01"' in html
    assert client.get(f"{path}/statement").status_code == 200  # six months to today
    r = client.get(f"{path}/statement?from=yesterday")
    assert r.status_code == 422 and "from:" in r.text
    r = client.get(f"{path}/statement?from=2026-04-01&to=2026-03-01")
    assert r.status_code == 422


# -- disputes -------------------------------------------------------------------------------------


def test_the_dispute_form(client: TestClient, db: Database) -> None:
    world = portal_world(db, language="en")
    path = link_path(client, world)
    page = client.get(f"{path}/invoices/{world.invoice.id}").text
    form = {"csrf": hidden(page, "csrf"), "submission": hidden(page, "submission")}
    url = f"{path}/invoices/{world.invoice.id}/disputes"

    # Without the page's token, with another link's, or not a form: refused, nothing written.
    other_page = client.get(f"{link_path(client, world)}/invoices/{world.invoice.id}").text
    for fields in (
        {"reason": "No", "line": "2"},
        {"reason": "No", "csrf": hidden(other_page, "csrf")},
    ):
        r = client.post(url, data=fields)
        assert r.status_code == 403 and "reload the page" in r.text
    r = client.post(url, json={"reason": "No", **form})
    assert r.status_code == 422
    r = client.post(url, data={**form, "reason": "   "})
    assert r.status_code == 422 and "reason:" in r.text
    assert disputes_of(db, world.invoice.id) == []

    r = client.post(url, data={**form, "line": "2", "reason": "The handbook never came"})
    assert r.status_code == 303
    confirmation = r.headers["location"]
    assert confirmation.startswith(f"{path}/disputes/dsc_")
    # Sent twice (a double click): one dispute, the same confirmation.
    again = client.post(url, data={**form, "line": "2", "reason": "The handbook never came"})
    assert again.headers["location"] == confirmation
    (dispute,) = disputes_of(db, world.invoice.id)
    assert (dispute.actual, dispute.location["line_position"]) == ("The handbook never came", 2)

    shown = client.get(confirmation)
    assert shown.status_code == 200 and "Dispute received" in shown.text
    assert "line 2" in shown.text and dispute.id in shown.text
    overview = client.get(path).text
    assert "Disputed" in overview

    # Another customer's or organisation's link cannot see it, nor dispute this invoice.
    other = portal_world(db)
    elsewhere = link_path(client, other)
    r = client.get(f"{elsewhere}/disputes/{dispute.id}")
    assert_plain_refusal(r, world, 404)
    foreign = client.get(f"{elsewhere}/invoices/{other.invoice.id}").text
    r = client.post(
        f"{elsewhere}/invoices/{world.invoice.id}/disputes",
        data={"csrf": hidden(foreign, "csrf"), "reason": "Not yours"},
    )
    assert_plain_refusal(r, world, 404)
    assert len(disputes_of(db, world.invoice.id)) == 1


def test_the_chosen_language_survives_the_form(client: TestClient, db: Database) -> None:
    world = portal_world(db, language="en")
    path = link_path(client, world)
    page = client.get(f"{path}/invoices/{world.invoice.id}?lang=de").text
    fields = dict(parse_qsl(f"csrf={hidden(page, 'csrf')}&lang={hidden(page, 'lang')}"))
    r = client.post(
        f"{path}/invoices/{world.invoice.id}/disputes", data={**fields, "reason": "Zu teuer"}
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?lang=de")
    assert "Beanstandung eingegangen" in client.get(r.headers["location"]).text


# -- refusals -------------------------------------------------------------------------------------


def test_expired_forged_and_unknown_links_get_a_plain_page(
    client: TestClient, db: Database
) -> None:
    world = portal_world(db)
    good = link_path(client, world)
    expired = portal.create_portal_link(
        db, world.actor, world.customer.id, 1, now=utcnow() - timedelta(days=3)
    )
    token = good.rsplit("/", 1)[1]
    head, signature = token.rsplit(".", 1)
    forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    cases = {
        f"/portal/{expired.token}": "expired",
        f"/portal/{forged}": "not valid",
        f"/portal/{forged}/invoices/{world.invoice.id}": "not valid",
        f"/portal/{forged}/invoices/{world.invoice.id}/pdf": "not valid",
        f"/portal/{forged}/statement": "not valid",
        "/portal/nothing-at-all": "not valid",
    }
    for url, words in cases.items():
        r = client.get(url, headers={"Accept-Language": "en-GB,en;q=0.8"})
        assert_plain_refusal(r, world)
        assert words in r.text, url
    r = client.get(f"/portal/{forged}", headers={"Accept-Language": "fr-FR"})
    assert "Ce lien n’est pas valide." in r.text
    r = client.post(f"/portal/{forged}/invoices/{world.invoice.id}/disputes", data={"reason": "x"})
    assert_plain_refusal(r, world)
    assert disputes_of(db, world.invoice.id) == []
    for nowhere in (f"{good}/somewhere/else/entirely/deep", "/portal/"):
        r = client.get(nowhere)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    # Without a secret key the portal is unavailable, and says only that.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TALLYBOOK_SECRET_KEY")
        r = client.get(good)
        assert_plain_refusal(r, world, 503)
