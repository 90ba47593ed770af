"""Cash application over HTTP: statement upload, the review queue, the tenancy wall."""

from __future__ import annotations

import json
from datetime import date

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth, build_world

from tallybook.api.app import create_app
from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053
from tallybook.services.base import Database

PAYER_IBAN = "DE44500105175407324931"


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def _statement(reference: str, statement_id: str) -> bytes:
    return write_camt053(
        [
            Movement(date(2026, 1, 20), 35700, "EUR", "Kunde AG", PAYER_IBAN, None, reference),
            Movement(date(2026, 1, 21), 1234, "EUR", "Somebody", None, "donation?"),
        ],
        account="DE02120300000000202051",
        currency="EUR",
        statement_id=statement_id,
        created=date(2026, 1, 22),
    )


def test_upload_review_and_apply_over_http(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = build_world(client, keys["admin"], seats=3)
    h = auth(keys["admin"])
    issued = client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=h).json()
    upload = client.post(
        "/v1/bank-statements",
        params={"file_name": "jan.xml"},
        content=_statement(issued["payment_reference"], "S-1"),
        headers={**h, "Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 201, upload.text
    body = upload.json()
    assert (body["lines_new"], body["applied"], body["review"]) == (2, 1, 1)
    assert body["applied_amounts"] == {"EUR": "357.00"}
    statement_id = body["statement"]["id"]
    again = client.post(
        "/v1/bank-statements",
        params={"file_name": "jan.xml"},
        content=_statement(issued["payment_reference"], "S-1"),
        headers=h,
    )
    assert again.status_code == 201 and again.json()["already_imported"] is True
    shown = client.get(f"/v1/bank-statements/{statement_id}", headers=h).json()
    assert shown["lines_by_status"] == {"applied": 1, "review": 1, "ignored": 0, "outgoing": 0}
    invoice = client.get(f"/v1/invoices/{ids['invoice']}", headers=h).json()
    assert (invoice["status"], invoice["amount_due"]) == ("paid", "0.00")

    queue = client.get("/v1/bank-statement-lines", params={"status": "review"}, headers=h).json()
    assert len(queue["data"]) == 1
    line = queue["data"][0]
    assert (line["amount"], line["payer_name"], line["status"]) == ("12.34", "Somebody", "review")
    assert line["proposal"]["reasons"]
    applied = client.post(
        f"/v1/bank-statement-lines/{line['id']}/apply",
        json={"customer_id": ids["customer"], "note": "a tip, kept as credit"},
        headers=h,
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["payment"]["unapplied"] == "12.34"
    assert applied.json()["line"]["status"] == "applied"
    twice = client.post(f"/v1/bank-statement-lines/{line['id']}/ignore",
                        json={"reason": "x"}, headers=h)
    assert twice.status_code == 409
    assert twice.headers["content-type"].startswith("application/problem+json")


def test_bad_uploads_are_problem_details(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    broken = client.post("/v1/bank-statements", content=b"<Document>nope</Document>", headers=h)
    assert broken.status_code == 422
    assert broken.json()["field"] == "file"
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert "camt.053" in broken.json()["detail"]
    csv = b"Date,Amount\n2026-01-05,10.00\n"
    bad_mapping = client.post(
        "/v1/bank-statements",
        params={"file_name": "x.csv", "mapping": "{not json"},
        content=csv,
        headers=h,
    )
    assert bad_mapping.status_code == 422 and "mapping" in bad_mapping.json()["detail"]
    good = client.post(
        "/v1/bank-statements",
        params={
            "file_name": "x.csv",
            "mapping": json.dumps({"date": "Date", "amount": "Amount", "currency": "EUR"}),
        },
        content=csv,
        headers=h,
    )
    assert good.status_code == 201, good.text
    assert good.json()["review"] == 1
    viewer = client.post(
        "/v1/bank-statements", content=csv, headers=auth(keys["viewer"])
    )
    assert viewer.status_code == 403


def test_another_organisations_key_gets_404(client: TestClient, db: Database) -> None:
    _, keys = _org(db, "Owner")
    _, other = _org(db, "Stranger")
    h, stranger = auth(keys["admin"]), auth(other["admin"])
    ids = build_world(client, keys["admin"])
    upload = client.post(
        "/v1/bank-statements", content=_statement("RF18X", "S-9"), headers=h
    ).json()
    statement_id = upload["statement"]["id"]
    line_id = client.get("/v1/bank-statement-lines", headers=h).json()["data"][0]["id"]
    for method, path, body in [
        ("get", f"/v1/bank-statements/{statement_id}", None),
        ("get", f"/v1/bank-statement-lines/{line_id}", None),
        ("post", f"/v1/bank-statement-lines/{line_id}/confirm", {}),
        ("post", f"/v1/bank-statement-lines/{line_id}/apply", {"customer_id": ids["customer"]}),
        ("post", f"/v1/bank-statement-lines/{line_id}/ignore", {"reason": "x"}),
        ("post", f"/v1/bank-statement-lines/{line_id}/reopen", None),
        ("post", "/v1/bank-statements/rematch", {"statement_id": statement_id}),
    ]:
        answer = client.request(method, path, json=body, headers=stranger)
        assert answer.status_code == 404, (path, answer.text)
    listed = client.get(
        "/v1/bank-statement-lines", params={"statement_id": statement_id}, headers=stranger
    )
    assert listed.status_code == 404
    assert client.get("/v1/bank-statements", headers=stranger).json()["data"] == []
    assert client.get(f"/v1/bank-statement-lines/{line_id}", headers=h).status_code == 200


def test_openapi_documents_the_upload(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/v1/bank-statements"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert "/v1/bank-statement-lines/{line_id}/apply" in schema["paths"]
