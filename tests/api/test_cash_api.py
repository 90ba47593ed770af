"""Payments, refunds and the ledger through the REST API, including the tenancy wall."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth, build_world

from tallybook.api.app import create_app
from tallybook.services.base import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def test_payment_refund_and_ledger_over_http(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = build_world(client, keys["admin"], seats=3)
    h = auth(keys["admin"])
    issued = client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=h).json()
    assert issued["payment_reference"].startswith("RF")
    assert issued["total"] == "357.00"
    paid = client.post(
        "/v1/payments",
        json={
            "customer_id": ids["customer"],
            "amount": "400.00",
            "currency": "EUR",
            "method": "bank_transfer",
            "received_on": "2026-01-20",
        },
        headers=h,
    )
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert body["allocations"] == [
        {
            "invoice_id": ids["invoice"],
            "amount_minor": 35700,
            "undone_minor": 0,
            "amount": "357.00",
            "undone": "0.00",
        }
    ]
    assert body["unapplied"] == "43.00"
    invoice = client.get(f"/v1/invoices/{ids['invoice']}", headers=h).json()
    assert (invoice["status"], invoice["amount_due"]) == ("paid", "0.00")
    refund = client.post(
        f"/v1/customers/{ids['customer']}/credit-refunds",
        json={"reason": "over-paid", "amount": "43.00"},
        headers=h,
    )
    assert refund.status_code == 201, refund.text
    assert (refund.json()["from_credit"], refund.json()["amount"]) == ("43.00", "43.00")
    trial = client.get("/v1/ledger/trial-balance", params={"as_of": "2100-01-01"}, headers=h)
    assert trial.status_code == 200
    balances = {a["code"]: a["balance"] for a in trial.json()["accounts"]}
    assert balances["1000"] == "357.00"  # bank: 400.00 in, 43.00 back
    assert balances["1100"] == "0.00"
    assert balances["2100"] == "-57.00"
    assert trial.json()["totals"]["EUR"]["debit"] == trial.json()["totals"]["EUR"]["credit"]
    journal = client.get("/v1/ledger/journal", params={"from": "2026-01-01"}, headers=h).json()
    kinds = [e["kind"] for e in journal["data"]]
    assert kinds.count("invoice_issued") == 1 and "payment_received" in kinds
    assert "refund" in kinds


def test_bad_payments_get_problem_details(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = build_world(client, keys["admin"])
    h = auth(keys["admin"])
    client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=h)
    wrong = client.post(
        "/v1/payments",
        json={"customer_id": ids["customer"], "amount": "10.00", "currency": "USD"},
        headers=h,
    )
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["field"] == "currency"
    negative = client.post(
        "/v1/payments",
        json={"customer_id": ids["customer"], "amount": "-1", "currency": "EUR"},
        headers=h,
    )
    assert negative.status_code == 422 and negative.json()["field"] == "amount"
    viewer = client.post(
        "/v1/payments",
        json={"customer_id": ids["customer"], "amount": "1.00", "currency": "EUR"},
        headers=auth(keys["viewer"]),
    )
    assert viewer.status_code == 403


def test_another_organisations_key_sees_no_payment(client: TestClient, db: Database) -> None:
    _, keys = _org(db, "Owner")
    _, other = _org(db, "Intruder")
    ids = build_world(client, keys["admin"])
    h = auth(keys["admin"])
    client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=h)
    payment = client.post(
        "/v1/payments",
        json={"customer_id": ids["customer"], "amount": "10.00", "currency": "EUR"},
        headers=h,
    ).json()
    x = auth(other["admin"])
    for method, path, body in (
        ("get", f"/v1/payments/{payment['id']}", None),
        ("post", f"/v1/payments/{payment['id']}/reverse", {"reason": "mine"}),
        ("post", f"/v1/payments/{payment['id']}/refunds", {"reason": "mine"}),
        ("post", f"/v1/customers/{ids['customer']}/credit-refunds", {"reason": "mine"}),
        (
            "post",
            "/v1/payments",
            {"customer_id": ids["customer"], "amount": "1.00", "currency": "EUR"},
        ),
        (
            "post",
            "/v1/payments",
            {
                "amount": "1.00",
                "currency": "EUR",
                "allocations": [{"invoice_id": ids["invoice"], "amount": "1.00"}],
            },
        ),
    ):
        answer = client.request(method, path, json=body, headers=x)
        assert answer.status_code == 404, (path, answer.text)
    assert client.get("/v1/payments", headers=x).json()["data"] == []
    assert client.get("/v1/ledger/journal", headers=x).json()["data"] == []
