"""Verification, overrides, disputes, discrepancies and billing health over HTTP, with the
tenancy wall: another organisation's key gets 404 for every id."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services import catalog, customers, purchase_orders
from tallybook.services.base import Actor, Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def setup(db: Database) -> tuple[Actor, dict[str, str], dict[str, str]]:
    """An organisation with keys of every role, a customer with PO 4711 (licences at 250.00)."""
    admin, keys = _org(db)
    licence = catalog.create_product(db, admin, {"code": "licence", "name": "Licence"})
    customer = customers.create_customer(
        db, admin, {"legal_name": "Kunde AG", "country": "DE", "currency": "EUR"}
    )
    purchase_orders.create_purchase_order(
        db,
        admin,
        {
            "customer_id": customer.id,
            "number": "4711",
            "valid_from": "2020-01-01",
            "lines": [{"product": licence.id, "quantity": "10", "unit_price": "250.00"}],
        },
    )
    return admin, keys, {"customer": customer.id, "licence": licence.id}


def draft(client: TestClient, key: str, ids: dict[str, str], price: str, qty: str = "2") -> str:
    h = auth(key)
    created = client.post(
        "/v1/invoices", json={"customer_id": ids["customer"], "po_number": "4711"}, headers=h
    )
    assert created.status_code == 201, created.text
    invoice_id = created.json()["id"]
    line = client.post(
        f"/v1/invoices/{invoice_id}/lines",
        json={
            "description": "Licence",
            "product_id": ids["licence"],
            "quantity": qty,
            "unit_price": price,
        },
        headers=h,
    )
    assert line.status_code == 201, line.text
    return invoice_id


def test_verify_refuse_override_approve_issue(client: TestClient, db: Database) -> None:
    _, keys, ids = setup(db)
    clerk, manager = auth(keys["billing_clerk"]), auth(keys["billing_manager"])
    invoice_id = draft(client, keys["billing_clerk"], ids, "260.00")
    verified = client.post(f"/v1/invoices/{invoice_id}/verify", headers=clerk)
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert (body["status"], body["blocking"], body["warnings"]) == ("blocked", 1, 0)
    [finding] = body["findings"]
    assert finding["check"] == "po_price" and finding["severity"] == "blocking"
    assert finding["what"] == "line 1 (Licence) is priced 260.00 but PO 4711 line 1 says 250.00"
    assert finding["where"]["purchase_order_number"] == "4711"
    assert finding["discrepancy_id"].startswith("dsc_")

    refused = client.post(f"/v1/invoices/{invoice_id}/issue", headers=clerk)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "[po_price] line 1 (Licence) is priced 260.00" in refused.json()["detail"]

    asked = client.post(
        f"/v1/invoices/{invoice_id}/override",
        json={"reason": "price agreed by mail"},
        headers=clerk,
    )
    assert asked.status_code == 200, asked.text
    [request] = asked.json()["requests"]
    assert request["finding"]["check"] == "po_price"
    still = client.post(f"/v1/invoices/{invoice_id}/issue", headers=clerk)
    assert still.status_code == 409 and "waiting for a billing manager" in still.json()["detail"]
    approved = client.post(
        f"/v1/approvals/{request['approval_id']}/approve",
        json={"reason": "mail on file"},
        headers=manager,
    )
    assert approved.status_code == 200, approved.text
    issued = client.post(f"/v1/invoices/{invoice_id}/issue", headers=clerk)
    assert issued.status_code == 200, issued.text
    shown = client.get(f"/v1/discrepancies/{request['discrepancy_id']}", headers=clerk).json()
    assert (shown["status"], shown["resolution"]) == ("waived", "waive")


def test_verification_runs_and_billing_health(client: TestClient, db: Database) -> None:
    _, keys, ids = setup(db)
    clerk = auth(keys["billing_clerk"])
    good = draft(client, keys["billing_clerk"], ids, "250.00")
    bad = draft(client, keys["billing_clerk"], ids, "250.00", qty="11")
    run = client.post("/v1/verification-runs", json={}, headers=clerk)
    assert run.status_code == 200, run.text
    body = run.json()
    assert (body["invoices"], body["failing_invoices"], body["blocking"]) == (2, 1, 1)
    assert [r["invoice_id"] for r in body["results"]] == [bad]
    assert body["results"][0]["findings"][0]["check"] == "po_quantity"
    one = client.post(
        "/v1/verification-runs", json={"invoice_ids": [good], "include_passed": True}, headers=clerk
    ).json()
    assert [(r["invoice_id"], r["status"]) for r in one["results"]] == [(good, "passed")]
    unknown = client.post("/v1/verification-runs", json={"invoice_ids": ["inv_x"]}, headers=clerk)
    assert unknown.status_code == 404 and unknown.json()["field"] == "invoice_ids"
    health = client.get("/v1/billing-health", headers=auth(keys["viewer"]))
    assert health.status_code == 200, health.text
    data = health.json()
    assert [f["invoice_id"] for f in data["failing_verification"]] == [bad]
    assert data["failing_verification"][0]["checks"] == ["po_quantity"]
    assert data["open_discrepancies_by_age"]["0-7 days"] == {"blocking": 1, "warning": 0}
    assert set(data) == {
        "as_of",
        "unbilled",
        "waiting_for_approval",
        "open_discrepancies_by_age",
        "failing_verification",
    }
    listed = client.get(
        "/v1/discrepancies", params={"status": "open", "severity": "blocking"}, headers=clerk
    ).json()
    assert [d["invoice_id"] for d in listed["data"]] == [bad]
    forbidden = client.post(f"/v1/invoices/{good}/verify", headers=auth(keys["viewer"]))
    assert forbidden.status_code == 403


def test_a_dispute_on_a_line_worked_to_a_credit_note(client: TestClient, db: Database) -> None:
    _, keys, ids = setup(db)
    clerk, manager = auth(keys["billing_clerk"]), auth(keys["billing_manager"])
    invoice_id = draft(client, keys["billing_clerk"], ids, "250.00")
    issued = client.post(f"/v1/invoices/{invoice_id}/issue", headers=clerk).json()
    opened = client.post(
        f"/v1/invoices/{invoice_id}/disputes",
        json={"reason": "only one licence was delivered", "line": "1"},
        headers=clerk,
    )
    assert opened.status_code == 201, opened.text
    dispute = opened.json()
    assert (dispute["source"], dispute["status"], dispute["location"]["line_position"]) == (
        "dispute",
        "open",
        1,
    )
    assert client.get(f"/v1/invoices/{invoice_id}", headers=clerk).json()["disputed_at"]
    d = dispute["id"]
    assigned = client.post(
        f"/v1/discrepancies/{d}/assign", json={"assignee": "billing_manager"}, headers=clerk
    )
    assert assigned.status_code == 200, assigned.text
    comment = client.post(
        f"/v1/discrepancies/{d}/comments", json={"body": "delivery note says 1"}, headers=clerk
    )
    assert comment.status_code == 201
    assert client.post(f"/v1/discrepancies/{d}/investigate", headers=manager).json()["status"] == (
        "investigating"
    )
    bad = client.post(
        f"/v1/discrepancies/{d}/resolve",
        json={"resolution": "refund", "note": "x"},
        headers=manager,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "resolution"
    resolved = client.post(
        f"/v1/discrepancies/{d}/resolve",
        json={
            "resolution": "credit_note",
            "note": "one licence was not delivered",
            "lines": [{"line_id": "1", "quantity": "1"}],
        },
        headers=manager,
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["status"] == "resolved" and body["credit_note_id"].startswith("cn")
    assert body["customer_message"].startswith(
        f"We reviewed your query about invoice {issued['number']} (line 1). One licence was not "
        "delivered. We have issued credit note"
    )
    assert [c["body"] for c in body["comments"]] == ["delivery note says 1"]
    invoice = client.get(f"/v1/invoices/{invoice_id}", headers=clerk).json()
    assert invoice["disputed_at"] is None
    assert invoice["amount_due"] == "250.00"  # 2 x 250.00, one credited


def test_another_organisations_key_gets_404(client: TestClient, db: Database) -> None:
    _, keys, ids = setup(db)
    _, strangers = _org(db, "Stranger")
    invoice_id = draft(client, keys["billing_clerk"], ids, "260.00")
    verified = client.post(f"/v1/invoices/{invoice_id}/verify", headers=auth(keys["admin"])).json()
    d = verified["findings"][0]["discrepancy_id"]
    other = auth(strangers["admin"])
    calls = [
        ("post", f"/v1/invoices/{invoice_id}/verify", None),
        ("post", f"/v1/invoices/{invoice_id}/override", {"reason": "x"}),
        ("post", f"/v1/invoices/{invoice_id}/disputes", {"reason": "x"}),
        ("post", "/v1/verification-runs", {"invoice_ids": [invoice_id]}),
        ("get", f"/v1/discrepancies/{d}", None),
        ("post", f"/v1/discrepancies/{d}/assign", {"assignee": None}),
        ("post", f"/v1/discrepancies/{d}/comments", {"body": "x"}),
        ("post", f"/v1/discrepancies/{d}/investigate", None),
        ("post", f"/v1/discrepancies/{d}/resolve", {"resolution": "adjust_draft", "note": "x"}),
        ("post", f"/v1/discrepancies/{d}/waive", {"reason": "x"}),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, headers=other, **({"json": body} if body else {}))
        assert response.status_code == 404, (path, response.text)
    assert client.get("/v1/discrepancies", headers=other).json()["data"] == []
    assert (
        client.get(
            "/v1/discrepancies", params={"invoice_id": invoice_id}, headers=other
        ).status_code
        == 404
    )
