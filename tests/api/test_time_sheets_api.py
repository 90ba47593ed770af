"""Time sheets and service reports over HTTP: entry, import, approval by another manager,
billing through charges to the issued invoice; the tenancy wall on every id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services.base import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def setup(client: TestClient, key: str) -> dict[str, str]:
    h = auth(key)
    client.post(
        "/v1/tax-rates",
        json={"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"},
        headers=h,
    )
    ids = {
        code: client.post("/v1/products", json={"code": code, "name": name}, headers=h).json()["id"]
        for code, name in (("consulting", "Consulting"), ("repair", "Repair visit"))
    }
    customer = client.post(
        "/v1/customers",
        json={"legal_name": "Kunde AG", "country": "DE", "currency": "EUR", "external_id": "K-1"},
        headers=h,
    )
    ids["customer"] = customer.json()["id"]
    contract = client.post(
        "/v1/contracts",
        json={
            "customer_id": ids["customer"],
            "reference": "SOW-1",
            "name": "Rollout",
            "start_date": "2026-01-01",
        },
        headers=h,
    ).json()
    ids["contract"] = contract["id"]
    price = client.post(
        f"/v1/contracts/{contract['id']}/prices",
        json={"product_id": ids["consulting"], "unit_price": "95.00"},
        headers=h,
    )
    assert price.status_code == 201, price.text
    return ids


def test_enter_approve_bill_and_issue(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = setup(client, keys["admin"])
    clerk, manager = auth(keys["billing_clerk"]), auth(keys["billing_manager"])
    entry = client.post(
        "/v1/time-entries",
        json={
            "customer_id": ids["customer"],
            "contract_id": "SOW-1",
            "worker": "Jana Novak",
            "work_date": "2026-01-05",
            "hours": "4",
            "product_id": "consulting",
            "reference": "T-1",
        },
        headers={**clerk, "Idempotency-Key": "te-1"},
    )
    assert entry.status_code == 201, entry.text
    entry_id = entry.json()["id"]
    assert (entry.json()["status"], entry.json()["hours"]) == ("draft", "4")
    assert client.post(f"/v1/time-entries/{entry_id}/approve", headers=clerk).status_code == 403
    approved = client.post(
        f"/v1/time-entries/{entry_id}/approve", json={"note": "ok"}, headers=manager
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    sheet = (
        b"worker,date,hours,customer,contract,product,reference,approved\n"
        b"Jana Novak,2026-01-06,3.5,K-1,SOW-1,consulting,T-2,no\n"
    )
    imported = client.post(
        "/v1/time-entries/import", params={"file_name": "jan.csv"}, content=sheet, headers=clerk
    )
    assert imported.status_code == 201, imported.text
    [second] = imported.json()["data"]
    again = client.post("/v1/time-entries/import", content=sheet, headers=clerk)
    assert again.status_code == 409
    bulk = client.post("/v1/time-entries/approve", json={"ids": [second["id"]]}, headers=manager)
    assert bulk.status_code == 200
    listed = client.get(
        "/v1/time-entries",
        params={"customer_id": ids["customer"], "date_from": "2026-01-01", "status": "approved"},
        headers=clerk,
    ).json()["data"]
    assert sorted(e["hours"] for e in listed) == ["3.5", "4"]

    billed = client.post(
        f"/v1/customers/{ids['customer']}/bill-time", json={"through": "2026-01-31"}, headers=clerk
    )
    assert billed.status_code == 201, billed.text
    [charge] = billed.json()["data"]
    assert (charge["quantity"], charge["unit_price"], charge["contract_id"]) == (
        "7.5",
        "95.00",
        ids["contract"],
    )
    as_of = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    run = client.post("/v1/billing-runs", json={"as_of": as_of}, headers=clerk).json()
    [invoice_id] = run["invoice_ids"]
    issued = client.post(f"/v1/invoices/{invoice_id}/issue", headers=manager)
    assert issued.status_code == 200, issued.text
    assert issued.json()["total"] == "847.88"  # 7.5 h x 95.00 = 712.50 + 19% VAT
    shown = client.get(f"/v1/time-entries/{entry_id}", headers=clerk).json()
    assert (shown["billed_invoice_id"], shown["charge_id"]) == (invoice_id, charge["id"])
    unbilled = client.get("/v1/time-entries", params={"billed": "false"}, headers=clerk).json()
    assert unbilled["data"] == []


def test_service_reports_and_mistakes(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = setup(client, keys["admin"])
    clerk, manager = auth(keys["billing_clerk"]), auth(keys["billing_manager"])
    report = client.post(
        "/v1/service-reports",
        json={
            "customer_id": ids["customer"],
            "product_id": ids["repair"],
            "service_date": "2026-01-09",
            "quantity": "2",
            "reference": "SR-1",
        },
        headers=clerk,
    )
    assert report.status_code == 201, report.text
    report_id = report.json()["id"]
    rejected = client.post(
        f"/v1/service-reports/{report_id}/reject", json={"reason": "duplicate"}, headers=manager
    )
    assert rejected.json()["status"] == "rejected"
    assert (
        client.post(f"/v1/service-reports/{report_id}/approve", headers=manager).status_code == 409
    )
    nothing = client.post(f"/v1/customers/{ids['customer']}/bill-service-reports", headers=clerk)
    assert nothing.status_code == 409
    bad = client.post(
        "/v1/service-reports/import",
        content=b"date,product,customer\n2026-01-09,repair,K-1\n2026-01-10,repair,\n",
        headers=clerk,
    )
    assert bad.status_code == 422 and bad.json()["detail"] == "row 3, customer: is required"
    float_hours = client.post(
        "/v1/time-entries",
        json={
            "customer_id": ids["customer"],
            "worker": "x",
            "work_date": "2026-01-05",
            "hours": 7.5,
        },
        headers=clerk,
    )
    assert float_hours.status_code == 422
    listed = client.get("/v1/service-reports", params={"status": "rejected"}, headers=clerk)
    assert [r["id"] for r in listed.json()["data"]] == [report_id]


def test_another_organisation_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = setup(client, keys["admin"])
    h = auth(keys["billing_clerk"])
    entry = client.post(
        "/v1/time-entries",
        json={"customer_id": ids["customer"], "worker": "x", "work_date": "2026-01-05", "hours": 1},
        headers=h,
    ).json()
    report = client.post(
        "/v1/service-reports",
        json={"customer_id": ids["customer"], "product_id": "repair", "service_date": "2026-01-05"},
        headers=h,
    ).json()
    _, other = _org(db, "Other")
    o = auth(other["admin"])
    calls = [
        ("get", f"/v1/time-entries/{entry['id']}", None),
        ("post", f"/v1/time-entries/{entry['id']}/approve", {}),
        ("post", f"/v1/time-entries/{entry['id']}/reject", {"reason": "x"}),
        ("post", "/v1/time-entries/approve", {"ids": [entry["id"]]}),
        ("post", "/v1/time-entries/reject", {"ids": [entry["id"]], "reason": "x"}),
        (
            "post",
            "/v1/time-entries",
            {"customer_id": ids["customer"], "worker": "x", "work_date": "2026-01-05", "hours": 1},
        ),
        ("post", f"/v1/customers/{ids['customer']}/bill-time", {}),
        ("get", f"/v1/service-reports/{report['id']}", None),
        ("post", f"/v1/service-reports/{report['id']}/approve", {}),
        ("post", f"/v1/service-reports/{report['id']}/reject", {"reason": "x"}),
        ("post", "/v1/service-reports/approve", {"ids": [report["id"]]}),
        ("post", "/v1/service-reports/reject", {"ids": [report["id"]], "reason": "x"}),
        (
            "post",
            "/v1/service-reports",
            {"customer_id": ids["customer"], "product_id": "repair", "service_date": "2026-01-05"},
        ),
        ("post", f"/v1/customers/{ids['customer']}/bill-service-reports", {}),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=o)
        assert response.status_code == 404, (path, response.status_code, response.text)
    assert client.get("/v1/time-entries", headers=o).json()["data"] == []
    assert client.get("/v1/service-reports", headers=o).json()["data"] == []
    assert client.get(f"/v1/time-entries/{entry['id']}", headers=h).json()["status"] == "draft"
