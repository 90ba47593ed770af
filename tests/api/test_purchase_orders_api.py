"""Purchase orders and contract terms over HTTP: record, import, consumption by issued
invoices, close/cancel, price versions and discounts; the tenancy wall on every id."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services.base import Database

SAMPLES = Path(__file__).resolve().parents[1] / "formats" / "samples" / "purchase_orders"


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def setup(client: TestClient, key: str) -> dict[str, str]:
    h = auth(key)
    r = client.post(
        "/v1/tax-rates",
        json={"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    ids = {
        "product": client.post(
            "/v1/products", json={"code": "consulting", "name": "Consulting hour"}, headers=h
        ).json()["id"]
    }
    customer = client.post(
        "/v1/customers",
        json={
            "legal_name": "Kunde AG",
            "country": "DE",
            "currency": "EUR",
            "external_id": "K-100",
            "tax_ids": ["DE136695976"],
        },
        headers=h,
    )
    assert customer.status_code == 201, customer.text
    ids["customer"] = customer.json()["id"]
    contract = client.post(
        "/v1/contracts",
        json={
            "customer_id": ids["customer"],
            "reference": "MSA-1",
            "name": "Framework",
            "start_date": "2026-01-01",
        },
        headers=h,
    )
    assert contract.status_code == 201, contract.text
    ids["contract"] = contract.json()["id"]
    order = client.post(
        "/v1/purchase-orders",
        json={
            "customer_id": ids["customer"],
            "number": "4500012345",
            "valid_from": "2026-01-01",
            "ceiling": "10000.00",
            "contract": "MSA-1",
            "lines": [
                {"product": "consulting", "quantity": "80", "unit_price": "95.00"},
                {"description": "Travel", "quantity": 1, "unit_price": "500"},
            ],
        },
        headers={**h, "Idempotency-Key": "po-1"},
    )
    assert order.status_code == 201, order.text
    ids["order"] = order.json()["id"]
    return ids


def issue(client: TestClient, h: dict[str, str], ids: dict[str, str], hours: str) -> dict:
    draft = client.post(
        "/v1/invoices", json={"customer_id": ids["customer"], "po_number": "4500012345"}, headers=h
    ).json()
    line = client.post(
        f"/v1/invoices/{draft['id']}/lines",
        json={
            "description": "Consulting",
            "product_id": ids["product"],
            "quantity": hours,
            "unit_price": "95.00",
        },
        headers=h,
    )
    assert line.status_code == 201, line.text
    issued = client.post(f"/v1/invoices/{draft['id']}/issue", headers=h)
    assert issued.status_code == 200, issued.text
    return issued.json()


def test_record_consume_credit_and_close(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    ids = setup(client, keys["admin"])
    shown = client.get(f"/v1/purchase-orders/{ids['order']}", headers=h).json()
    assert (shown["ceiling"], shown["remaining"], shown["contract_id"]) == (
        "10000.00",
        "10000.00",
        ids["contract"],
    )
    assert [(x["position"], x["ordered"], x["remaining_quantity"]) for x in shown["lines"]] == [
        (1, "7600.00", "80"),
        (2, "500.00", "1"),
    ]
    # A clean draft goes through verification, and issuing it consumes the PO: 8 h x 95.00,
    # matched to the PO's consulting line by product, net of VAT.
    invoice = issue(client, h, ids, "8")
    assert invoice["total"] == "904.40"
    shown = client.get(f"/v1/purchase-orders/{ids['order']}", headers=h).json()
    assert (shown["consumed"], shown["remaining"]) == ("760.00", "9240.00")
    assert [c["kind"] for c in shown["consumptions"]] == ["invoice_issued"]
    first = shown["lines"][0]
    assert (first["consumed_quantity"], first["remaining_quantity"], first["remaining"]) == (
        "8",
        "72",
        "6840.00",
    )
    credit = client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "2 h not worked", "lines": [{"line_id": "1", "quantity": "2"}]},
        headers=h,
    )
    assert credit.status_code == 201, credit.text
    shown = client.get("/v1/purchase-orders/4500012345", headers=h).json()
    assert (shown["consumed"], shown["remaining"]) == ("570.00", "9430.00")
    assert shown["lines"][0]["remaining_quantity"] == "74"
    listed = client.get(f"/v1/purchase-orders?customer_id={ids['customer']}", headers=h).json()
    assert [o["number"] for o in listed["data"]] == ["4500012345"]
    refused = client.post(
        f"/v1/purchase-orders/{ids['order']}/cancel", json={"reason": "x"}, headers=h
    )
    assert refused.status_code == 409
    closed = client.post(f"/v1/purchase-orders/{ids['order']}/close", headers=h)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert client.get("/v1/purchase-orders?status=open", headers=h).json()["data"] == []


def test_bad_orders_are_problem_details_naming_the_field(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    ids = setup(client, keys["admin"])
    again = client.post(
        "/v1/purchase-orders",
        json={"customer_id": ids["customer"], "number": "4500012345", "ceiling": "1"},
        headers=h,
    )
    assert again.status_code == 409 and again.json()["field"] == "number"
    bad = client.post(
        "/v1/purchase-orders",
        json={"customer_id": ids["customer"], "number": "X", "ceiling": "1.001"},
        headers=h,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "ceiling"
    assert "more than 2 decimal places" in bad.json()["detail"]
    float_price = client.post(
        "/v1/purchase-orders",
        json={
            "customer_id": ids["customer"],
            "number": "Y",
            "lines": [{"description": "x", "quantity": 1, "unit_price": 9.99}],
        },
        headers=h,
    )
    assert float_price.status_code == 422
    viewer = client.post(
        "/v1/purchase-orders",
        json={"customer_id": ids["customer"], "number": "Z", "ceiling": "1"},
        headers=auth(keys["viewer"]),
    )
    assert viewer.status_code == 403


def test_import_csv_and_ubl(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["billing_clerk"])
    ids = setup(client, keys["admin"])
    csv = (
        b"po_number,customer,currency,valid_from,ceiling,product,quantity,unit_price\n"
        b"PO-7,K-100,EUR,2026-02-01,2000,consulting,20,95.00\n"
    )
    created = client.post(
        "/v1/purchase-orders/import",
        params={"file_name": "po.csv"},
        content=csv,
        headers={**h, "Content-Type": "text/csv"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["format"] == "csv" and [o["number"] for o in body["created"]] == ["PO-7"]
    assert body["created"][0]["lines"][0]["ordered"] == "1900.00"
    same = client.post("/v1/purchase-orders/import", content=csv, headers=h).json()
    assert same["created"] == [] and [o["number"] for o in same["unchanged"]] == ["PO-7"]
    changed = client.post(
        "/v1/purchase-orders/import", content=csv.replace(b",2000,", b",2500,"), headers=h
    )
    assert changed.status_code == 409 and "another ceiling" in changed.json()["detail"]
    broken = client.post(
        "/v1/purchase-orders/import", content=csv.replace(b",20,", b",twenty,"), headers=h
    )
    assert broken.status_code == 422
    assert broken.json()["detail"] == "row 2, quantity: 'twenty' is not a number"
    ubl = client.post(
        "/v1/purchase-orders/import",
        params={"customer_id": ids["customer"], "file_name": "order.xml"},
        content=(SAMPLES / "ubl-order-consulting.xml").read_bytes(),
        headers=h,
    )
    assert ubl.status_code == 201, ubl.text
    [order] = ubl.json()["created"]
    assert (order["number"], order["customer_id"], order["ceiling"], order["source"]) == (
        "PO-2026-0042",
        ids["customer"],
        "12900.00",
        "ubl",
    )
    assert [(x["product_id"], x["unit_price"]) for x in order["lines"]] == [
        (ids["product"], "95.00"),
        (None, "375.00"),
    ]


def test_contract_prices_and_discounts(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    ids = setup(client, keys["admin"])
    first = client.post(
        f"/v1/contracts/{ids['contract']}/prices",
        json={"product_id": ids["product"], "unit_price": "95.00"},
        headers=h,
    )
    assert first.status_code == 201, first.text
    second = client.post(
        f"/v1/contracts/{ids['contract']}/prices",
        json={"product_id": ids["product"], "unit_price": "99.50", "valid_from": "2026-07-01"},
        headers=h,
    )
    assert second.status_code == 201
    prices = client.get(f"/v1/contracts/{ids['contract']}/prices", headers=h).json()["data"]
    assert [(p["unit_price"], p["valid_from"], p["valid_to"]) for p in prices] == [
        ("95.00", "2026-01-01", "2026-06-30"),
        ("99.50", "2026-07-01", None),
    ]
    overlap = client.post(
        f"/v1/contracts/{ids['contract']}/prices",
        json={"product_id": ids["product"], "unit_price": "1", "valid_from": "2026-07-01"},
        headers=h,
    )
    assert overlap.status_code == 409
    patched = client.patch(
        f"/v1/contracts/{ids['contract']}/discounts",
        json={"discount_percent_max": "7.5"},
        headers=h,
    )
    assert patched.status_code == 200 and patched.json()["discount_percent_max"] == "7.5"
    cleared = client.patch(
        f"/v1/contracts/{ids['contract']}/discounts", json={"discount_percent_max": None}, headers=h
    ).json()
    assert cleared["discount_percent_max"] is None
    contract = client.get("/v1/contracts/MSA-1", headers=h).json()
    assert len(contract["prices"]) == 2 and contract["milestones"] == []
    assert [c["reference"] for c in client.get("/v1/contracts", headers=h).json()["data"]] == [
        "MSA-1"
    ]


def test_another_organisation_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = setup(client, keys["admin"])
    _, other = _org(db, "Other")
    h = auth(other["admin"])
    calls = [
        ("get", f"/v1/purchase-orders/{ids['order']}", None),
        ("post", f"/v1/purchase-orders/{ids['order']}/close", {}),
        ("post", f"/v1/purchase-orders/{ids['order']}/cancel", {"reason": "x"}),
        (
            "post",
            "/v1/purchase-orders",
            {"customer_id": ids["customer"], "number": "N", "ceiling": "1"},
        ),
        ("get", f"/v1/contracts/{ids['contract']}", None),
        ("get", f"/v1/contracts/{ids['contract']}/prices", None),
        (
            "post",
            f"/v1/contracts/{ids['contract']}/prices",
            {"product_id": ids["product"], "unit_price": "1"},
        ),
        ("patch", f"/v1/contracts/{ids['contract']}/discounts", {"discount_percent_max": "50"}),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=h)
        assert response.status_code == 404, (path, response.status_code, response.text)
    imported = client.post(
        "/v1/purchase-orders/import",
        params={"customer_id": ids["customer"]},
        content=b"po_number,ceiling\nP,1\n",
        headers=h,
    )
    assert imported.status_code == 404
    assert client.get("/v1/purchase-orders", headers=h).json()["data"] == []
    # The owner still sees an open, untouched PO.
    mine = client.get(f"/v1/purchase-orders/{ids['order']}", headers=auth(keys["admin"])).json()
    assert mine["status"] == "open"
