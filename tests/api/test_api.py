"""The REST API: problem details, roles, tenancy walls, idempotency, the invoice lifecycle."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app
from tallybook.services.base import Actor, Database, Role
from tallybook.services.organizations import create_api_key, create_organization


def _org(db: Database, name: str = "Org") -> tuple[Actor, dict[str, str]]:
    org, key = create_organization(
        db, name, "EUR", timezone="Europe/Berlin", settings={"approval_thresholds": {"EUR": "1000"}}
    )
    admin = Actor(org.id, key.id, Role.ADMIN)
    keys = {"admin": key.secret}
    for role in ("billing_manager", "billing_clerk", "viewer"):
        keys[role] = create_api_key(db, admin, role, role).secret
    return admin, keys


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def build_world(client: TestClient, key: str, seats: int = 3) -> dict[str, str]:
    """Catalog, customer, subscription, contract, issued invoice and credit note via the API."""
    h = auth(key)
    ids: dict[str, str] = {}
    r = client.post(
        "/v1/tax-rates",
        json={"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    product = client.post("/v1/products", json={"code": "seat", "name": "Seat"}, headers=h).json()
    ids["product"] = product["id"]
    price = client.post(
        "/v1/prices",
        json={
            "code": "seat-m",
            "product_id": product["id"],
            "currency": "EUR",
            "terms": {"model": "per_unit", "amount": "100.00"},
            "effective_from": "2020-01-01T00:00:00+00:00",
        },
        headers=h,
    )
    assert price.status_code == 201, price.text
    ids["price"] = price.json()["id"]
    plan = client.post(
        "/v1/plans",
        json={"code": "team", "name": "Team", "currency": "EUR", "price_codes": ["seat-m"]},
        headers=h,
    )
    assert plan.status_code == 201, plan.text
    ids["plan"] = plan.json()["id"]
    customer = client.post(
        "/v1/customers",
        json={
            "legal_name": "Kunde AG",
            "country": "DE",
            "currency": "EUR",
            "timezone": "Europe/Berlin",
            "tax_ids": ["DE136695976"],
        },
        headers=h,
    )
    assert customer.status_code == 201, customer.text
    ids["customer"] = customer.json()["id"]
    sub = client.post(
        "/v1/subscriptions",
        json={
            "customer_id": ids["customer"],
            "plan_id": ids["plan"],
            "quantity": seats,
            "start_at": "2026-01-01T00:00:00+01:00",
            "anchor": "calendar",
        },
        headers=h,
    )
    assert sub.status_code == 201, sub.text
    ids["subscription"] = sub.json()["id"]
    contract = client.post(
        "/v1/contracts",
        json={
            "customer_id": ids["customer"],
            "reference": "C-1",
            "name": "Rollout",
            "start_date": "2026-01-01",
            "milestones": [{"name": "Kick-off", "amount": "500.00"}],
        },
        headers=h,
    )
    assert contract.status_code == 201, contract.text
    ids["contract"] = contract.json()["id"]
    ids["milestone"] = contract.json()["milestones"][0]["id"]
    run = client.post("/v1/billing-runs", json={"as_of": "2026-01-01T00:00:01+01:00"}, headers=h)
    assert run.status_code == 200, run.text
    ids["invoice"] = run.json()["invoice_ids"][0]
    invoice = client.get(f"/v1/invoices/{ids['invoice']}", headers=h).json()
    ids["line"] = invoice["lines"][0]["id"]
    return ids


def test_invoice_lifecycle_and_explanation(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = build_world(client, keys["admin"], seats=3)
    h = auth(keys["admin"])
    invoice = client.get(f"/v1/invoices/{ids['invoice']}", headers=h).json()
    # 3 seats x 100.00 = 300.00; VAT 19 % = 57.00; total 357.00
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("300.00", "57.00", "357.00")
    issued = client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=h)
    assert issued.status_code == 200, issued.text
    assert issued.json()["number"] == "INV-2026-000001"
    assert issued.json()["customer_snapshot"]["legal_name"] == "Kunde AG"
    explanation = client.get(f"/v1/invoices/{ids['invoice']}/lines/1/explanation", headers=h)
    assert explanation.status_code == 200
    text = explanation.json()["text"]
    assert "seat-m version 1" in text and "357.00 EUR" in text
    # An issued invoice cannot be edited: 409 with a clear message.
    edit = client.post(
        f"/v1/invoices/{ids['invoice']}/lines",
        json={"description": "extra", "unit_price": "1.00"},
        headers=h,
    )
    assert edit.status_code == 409
    assert edit.headers["content-type"].startswith("application/problem+json")
    assert "cannot be changed" in edit.json()["detail"]
    credit = client.post(
        f"/v1/invoices/{ids['invoice']}/credit-notes",
        json={"reason": "goodwill", "lines": [{"line_id": "1", "quantity": "1"}]},
        headers=h,
    )
    assert credit.status_code == 201, credit.text
    # 1 of 3 seats: 100.00 net + 19.00 VAT
    assert (credit.json()["subtotal"], credit.json()["tax"], credit.json()["total"]) == (
        "100.00",
        "19.00",
        "119.00",
    )
    assert credit.json()["number"] == "CN-2026-000001"
    after = client.get(f"/v1/invoices/{ids['invoice']}", headers=h).json()
    assert after["amount_due"] == "238.00"


def test_every_id_endpoint_answers_404_to_another_organization(
    client: TestClient, db: Database
) -> None:
    _, keys = _org(db, "Owner")
    ids = build_world(client, keys["admin"])
    credit = client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=auth(keys["admin"]))
    assert credit.status_code == 200
    note = client.post(
        f"/v1/invoices/{ids['invoice']}/credit-notes",
        json={"reason": "r"},
        headers=auth(keys["admin"]),
    ).json()
    before = client.get(f"/v1/invoices/{ids['invoice']}", headers=auth(keys["admin"])).json()
    _, other = _org(db, "Intruder")
    h = auth(other["admin"])
    inv, line = ids["invoice"], ids["line"]
    calls = [
        ("get", f"/v1/customers/{ids['customer']}", None),
        ("patch", f"/v1/customers/{ids['customer']}", {"legal_name": "x"}),
        ("delete", f"/v1/customers/{ids['customer']}", None),
        ("post", f"/v1/customers/{ids['customer']}/coupons", {"coupon": "X"}),
        ("get", f"/v1/prices/{ids['price']}", None),
        ("post", "/v1/prices/seat-m/versions", {"terms": {"model": "flat", "amount": "1"}}),
        ("get", f"/v1/plans/{ids['plan']}", None),
        ("get", f"/v1/subscriptions/{ids['subscription']}", None),
        ("get", f"/v1/subscriptions/{ids['subscription']}/changes", None),
        ("post", f"/v1/subscriptions/{ids['subscription']}/changes", {"quantity": 9}),
        ("post", f"/v1/subscriptions/{ids['subscription']}/cancel", {}),
        ("post", f"/v1/subscriptions/{ids['subscription']}/pause", {}),
        ("post", f"/v1/subscriptions/{ids['subscription']}/resume", {}),
        ("get", f"/v1/customers/{ids['customer']}/current-usage", None),
        ("get", f"/v1/contracts/{ids['contract']}/milestones", None),
        ("post", f"/v1/milestones/{ids['milestone']}/complete", {}),
        (
            "post",
            "/v1/charges",
            {"customer_id": ids["customer"], "description": "x", "unit_price": "1"},
        ),
        ("post", "/v1/subscriptions", {"customer_id": ids["customer"], "plan_id": ids["plan"]}),
        ("post", "/v1/invoices", {"customer_id": ids["customer"]}),
        ("get", f"/v1/invoices/{inv}", None),
        ("patch", f"/v1/invoices/{inv}", {"notes": "x"}),
        ("post", f"/v1/invoices/{inv}/lines", {"description": "x", "unit_price": "1"}),
        ("delete", f"/v1/invoices/{inv}/lines/{line}", None),
        ("post", f"/v1/invoices/{inv}/approve", None),
        ("post", f"/v1/invoices/{inv}/issue", None),
        ("post", f"/v1/invoices/{inv}/void", {"reason": "x"}),
        ("post", f"/v1/invoices/{inv}/uncollectible", {"reason": "x"}),
        ("get", f"/v1/invoices/{inv}/lines/1/explanation", None),
        ("post", f"/v1/invoices/{inv}/credit-notes", {"reason": "x"}),
        (
            "post",
            f"/v1/invoices/{inv}/debit-notes",
            {"reason": "x", "lines": [{"description": "x", "unit_price": "1"}]},
        ),
        ("get", f"/v1/credit-notes/{note['id']}", None),
        ("delete", f"/v1/api-keys/{ids['invoice']}", None),
    ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=h)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert response.json()["status"] == 404
    # The owner's data is untouched.
    owner = client.get(f"/v1/invoices/{inv}", headers=auth(keys["admin"])).json()
    assert owner == before


def test_roles(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = build_world(client, keys["admin"], seats=20)  # 20 x 100 = 2000 + VAT > 1000 limit
    viewer = client.post(
        "/v1/customers",
        json={"legal_name": "x", "country": "DE", "currency": "EUR"},
        headers=auth(keys["viewer"]),
    )
    assert viewer.status_code == 403 and "viewer" in viewer.json()["detail"]
    assert client.get("/v1/customers", headers=auth(keys["viewer"])).status_code == 200
    invoice = client.get(f"/v1/invoices/{ids['invoice']}", headers=auth(keys["viewer"])).json()
    assert invoice["approval_status"] == "pending"
    clerk = client.post(f"/v1/invoices/{ids['invoice']}/issue", headers=auth(keys["billing_clerk"]))
    assert clerk.status_code == 403 and "approval threshold" in clerk.json()["detail"]
    clerk_approve = client.post(
        f"/v1/invoices/{ids['invoice']}/approve", headers=auth(keys["billing_clerk"])
    )
    assert clerk_approve.status_code == 403
    approve = client.post(
        f"/v1/invoices/{ids['invoice']}/approve", headers=auth(keys["billing_manager"])
    )
    assert approve.status_code == 200 and approve.json()["approval_status"] == "approved"
    issued = client.post(
        f"/v1/invoices/{ids['invoice']}/issue", headers=auth(keys["billing_clerk"])
    )
    assert issued.status_code == 200 and issued.json()["status"] == "issued"
    assert client.get("/v1/customers", headers=auth("tb_nope_nope")).status_code == 401


def test_problem_details_name_the_field(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    bad_country = client.post(
        "/v1/customers", json={"legal_name": "x", "country": "XX", "currency": "EUR"}, headers=h
    )
    assert bad_country.status_code == 422
    body = bad_country.json()
    assert body["field"] == "country" and body["title"] == "Invalid input"
    assert bad_country.headers["content-type"].startswith("application/problem+json")
    float_price = client.post(
        "/v1/tax-rates",
        json={"code": "x", "name": "x", "jurisdiction": "DE", "percent": 19.5},
        headers=h,
    )
    assert float_price.status_code == 422 and "percent" in float_price.json()["detail"]
    missing = client.post("/v1/customers", json={"country": "DE", "currency": "EUR"}, headers=h)
    assert missing.status_code == 422 and missing.json()["field"] == "legal_name"
    bad_tax_id = client.post(
        "/v1/customers",
        json={"legal_name": "x", "country": "DE", "currency": "EUR", "tax_ids": ["DE123"]},
        headers=h,
    )
    assert bad_tax_id.status_code == 422 and "tax_ids" in bad_tax_id.json()["detail"]
    listed = client.get("/v1/customers", headers=h).json()
    assert listed["data"] == []  # nothing half-written


def test_idempotency_key(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"], **{"Idempotency-Key": "create-cust-1"})
    body = {"legal_name": "Once GmbH", "country": "DE", "currency": "EUR"}
    first = client.post("/v1/customers", json=body, headers=h)
    second = client.post("/v1/customers", json=body, headers=h)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    different = client.post("/v1/customers", json={**body, "legal_name": "Other"}, headers=h)
    assert different.status_code == 422
    assert "Idempotency-Key" in different.json()["detail"]
    listed = client.get("/v1/customers", headers=auth(keys["admin"])).json()["data"]
    assert [c["legal_name"] for c in listed] == ["Once GmbH"]


def test_cursor_pagination(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    for index in range(5):
        client.post(
            "/v1/customers",
            json={"legal_name": f"C{index}", "country": "DE", "currency": "EUR"},
            headers=h,
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/customers", params=params, headers=h).json()
        seen += [c["legal_name"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"C{i}" for i in range(5)]


def test_openapi_document(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/invoices/{invoice_id}/lines/{line}/explanation" in spec["paths"]
    assert "/v1/billing-runs" in spec["paths"]


def test_idempotency_does_not_keep_auth_failures_or_other_roles_refusals(
    client: TestClient, db: Database
) -> None:
    _, keys = _org(db)
    body = {"legal_name": "Retry GmbH", "country": "DE", "currency": "EUR"}
    no_bearer = client.post(
        "/v1/customers",
        json=body,
        headers={"Authorization": keys["admin"], "Idempotency-Key": "k1"},
    )
    assert no_bearer.status_code == 401
    fixed = client.post(
        "/v1/customers", json=body, headers=auth(keys["admin"], **{"Idempotency-Key": "k1"})
    )
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers
    viewer = client.post(
        "/v1/customers", json=body, headers=auth(keys["viewer"], **{"Idempotency-Key": "k2"})
    )
    assert viewer.status_code == 403
    admin = client.post(
        "/v1/customers", json=body, headers=auth(keys["admin"], **{"Idempotency-Key": "k2"})
    )
    assert admin.status_code == 201
    bad = client.post(
        "/v1/customers",
        json={**body, "country": "XX"},
        headers=auth(keys["admin"], **{"Idempotency-Key": "k3"}),
    )
    replay = client.post(
        "/v1/customers",
        json={**body, "country": "XX"},
        headers=auth(keys["admin"], **{"Idempotency-Key": "k3"}),
    )
    assert bad.status_code == replay.status_code == 422
    assert replay.headers["content-type"].startswith("application/problem+json")


def test_concurrent_twins_with_one_key_create_one_customer(
    client: TestClient, db: Database
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, keys = _org(db)
    body = {"legal_name": "Twin Ltd", "country": "GB", "currency": "GBP"}
    headers = auth(keys["admin"], **{"Idempotency-Key": "twin"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda _: client.post("/v1/customers", json=body, headers=headers).status_code,
                range(8),
            )
        )
    assert set(statuses) <= {201, 409} and 201 in statuses
    listed = client.get("/v1/customers", headers=auth(keys["admin"])).json()["data"]
    assert [c["legal_name"] for c in listed] == ["Twin Ltd"]


def test_patch_with_nulls_leaves_required_fields_and_clears_optional_ones(
    client: TestClient, db: Database
) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    created = client.post(
        "/v1/customers",
        json={"legal_name": "Null AG", "country": "DE", "currency": "EUR", "region": "BY"},
        headers=h,
    )
    patched = client.patch(
        f"/v1/customers/{created.json()['id']}",
        json={"timezone": None, "legal_name": None, "region": None},
        headers=h,
    )
    assert patched.status_code == 200
    assert (patched.json()["timezone"], patched.json()["legal_name"], patched.json()["region"]) == (
        "UTC",
        "Null AG",
        None,
    )
    settings = client.patch("/v1/organization", json={"name": None, "timezone": None}, headers=h)
    assert settings.status_code == 200 and settings.json()["timezone"] == "Europe/Berlin"


def test_credit_notes_and_charges_are_paginated(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    customer = client.post(
        "/v1/customers",
        json={"legal_name": "Page AG", "country": "DE", "currency": "EUR"},
        headers=h,
    ).json()
    for index in range(5):
        created = client.post(
            "/v1/charges",
            json={
                "customer_id": customer["id"],
                "description": f"Fee {index}",
                "unit_price": "10.00",
            },
            headers=h,
        )
        assert created.status_code == 201
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/charges", params=params, headers=h).json()
        assert len(page["data"]) <= 2
        seen += [c["description"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"Fee {i}" for i in range(5)]
    assert client.get("/v1/credit-notes", params={"limit": 2}, headers=h).json() == {
        "data": [],
        "next_cursor": None,
    }
