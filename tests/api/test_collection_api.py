"""Automatic collection over HTTP: payment methods, runs, attempts, the customer's collection
status, the retry setting, card numbers refused and the tenancy wall."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.db.models import AuditEvent, IdempotencyRecord, PaymentMethod
from tallybook.services import invoices
from tallybook.services.base import Actor, Database

DAY0 = date(2026, 3, 2)


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def customer_with_invoice(
    client: TestClient, db: Database, admin: Actor, key: str, price: str = "119.00"
) -> tuple[str, str]:
    created = client.post(
        "/v1/customers",
        json={
            "legal_name": "Brandt Logistik GmbH",
            "country": "DE",
            "currency": "EUR",
            "payment_terms_days": 0,
        },
        headers=auth(key),
    )
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    draft = invoices.create_draft(db, admin, customer_id)
    invoices.add_line(db, admin, draft.id, {"description": "Seats", "unit_price": price})
    return customer_id, invoices.issue_invoice(db, admin, draft.id, issue_date=DAY0).id


def attach(client: TestClient, key: str, customer_id: str, token: str, **more: object):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/customers/{customer_id}/payment-methods",
        json={"provider": "simulated", "token": token, **more},
        headers=auth(key),
    )


def test_payment_methods_runs_and_attempts_over_http(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    h = auth(keys["admin"])
    customer_id, invoice_id = customer_with_invoice(client, db, admin, keys["admin"])
    declining = attach(client, keys["admin"], customer_id, "sim_card_declined", label="Visa 0002")
    assert declining.status_code == 201, declining.text
    assert declining.json()["is_default"] is True
    good = attach(client, keys["admin"], customer_id, "sim_card_ok", label="Visa ending 4242")
    assert good.json()["is_default"] is False
    listed = client.get(f"/v1/customers/{customer_id}/payment-methods", headers=h).json()["data"]
    assert [(m["label"], m["is_default"]) for m in listed] == [
        ("Visa 0002", True),
        ("Visa ending 4242", False),
    ]

    run = client.post("/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=h)
    assert run.status_code == 200, run.text
    body = run.json()
    assert (body["attempted"], body["declined"], body["approved"]) == (1, 1, 0)
    assert body["amounts"]["EUR"]["declined"] == "119.00"
    assert body["attempts"][0]["failure_code"] == "card_declined"
    assert body["attempts"][0]["next_attempt_on"] == "2026-03-03"

    status = client.get(f"/v1/customers/{customer_id}/collection", headers=h).json()
    assert status["next_retry_on"] == "2026-03-03"
    assert [(f["invoice_id"], f["failure_code"]) for f in status["failing"]] == [
        (invoice_id, "card_declined")
    ]
    assert status["default_payment_method"]["label"] == "Visa 0002"

    switched = client.post(
        f"/v1/customers/{customer_id}/payment-methods/{good.json()['id']}/default", headers=h
    )
    assert switched.status_code == 200 and switched.json()["is_default"] is True
    retried = client.post("/v1/collection-runs", json={"as_of": "2026-03-03"}, headers=h).json()
    assert (retried["attempted"], retried["approved"]) == (1, 1)
    assert retried["amounts"]["EUR"] == {
        "attempted_minor": 11900,
        "approved_minor": 11900,
        "declined_minor": 0,
        "failed_minor": 0,
        "pending_minor": 0,
        "attempted": "119.00",
        "approved": "119.00",
        "declined": "0.00",
        "failed": "0.00",
        "pending": "0.00",
    }
    invoice = client.get(f"/v1/invoices/{invoice_id}", headers=h).json()
    assert (invoice["status"], invoice["amount_due"]) == ("paid", "0.00")
    payment_number = retried["attempts"][0]["payment_number"]
    payment = client.get(f"/v1/payments/{payment_number}", headers=h).json()
    assert (payment["source"], payment["method"], payment["amount"]) == (
        "collection",
        "card",
        "119.00",
    )

    attempts = client.get("/v1/payment-attempts", params={"invoice_id": invoice_id}, headers=h)
    assert sorted((a["attempt"], a["status"]) for a in attempts.json()["data"]) == [
        (1, "declined"),
        (2, "approved"),
    ]
    by_number = client.get(
        "/v1/payment-attempts",
        params={"invoice_id": invoice["number"], "status": "declined,failed"},
        headers=h,
    ).json()["data"]
    assert [a["attempt"] for a in by_number] == [1]
    assert by_number[0]["invoice_number"] == invoice["number"]
    one = client.get(f"/v1/payment-attempts/{by_number[0]['id']}", headers=h).json()
    assert one["amount"] == "119.00" and one["customer_name"] == "Brandt Logistik GmbH"
    assert client.get(f"/v1/customers/{customer_id}/collection", headers=h).json()["failing"] == []

    removed = client.delete(
        f"/v1/customers/{customer_id}/payment-methods/{declining.json()['id']}", headers=h
    )
    assert removed.status_code == 200 and removed.json()["detached_at"]
    again = client.delete(
        f"/v1/customers/{customer_id}/payment-methods/{declining.json()['id']}", headers=h
    )
    assert again.status_code == 409
    bad_status = client.get("/v1/payment-attempts", params={"status": "bounced"}, headers=h)
    assert bad_status.status_code == 422 and bad_status.json()["field"] == "status"


def test_a_replayed_run_request_charges_nothing_more(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    customer_id, _ = customer_with_invoice(client, db, admin, keys["admin"])
    attach(client, keys["admin"], customer_id, "sim_card_ok")
    h = auth(keys["admin"], **{"Idempotency-Key": "collect-2026-03-02"})
    first = client.post("/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=h)
    replay = client.post("/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=h)
    assert first.json()["approved"] == 1
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
    fresh = client.post(
        "/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=auth(keys["admin"])
    )
    assert fresh.json()["attempted"] == 0
    payments = client.get("/v1/payments", headers=auth(keys["admin"])).json()["data"]
    assert len(payments) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token", "4242424242424242"),
        ("token", "5555-5555-5555-4444"),
        ("label", "Visa 4111 1111 1111 1111"),
    ],
)
def test_card_numbers_are_refused_at_the_api(
    client: TestClient, db: Database, field: str, value: str
) -> None:
    admin, keys = _org(db)
    customer_id, _ = customer_with_invoice(client, db, admin, keys["admin"])
    body = {"provider": "simulated", "token": "sim_card_ok", "label": "Visa"}
    body[field] = value
    refused = client.post(
        f"/v1/customers/{customer_id}/payment-methods",
        json=body,
        headers=auth(keys["admin"], **{"Idempotency-Key": f"pm-{field}"}),
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == field and "card number" in refused.json()["detail"]
    digits = "".join(c for c in value if c.isdigit())
    assert digits not in refused.text
    with db.reading() as session:
        texts = [
            *(
                f"{m.token} {m.label}"
                for m in session.scalars(
                    select(PaymentMethod).where(
                        PaymentMethod.organization_id == admin.organization_id
                    )
                )
            ),
            *(
                str(e.data)
                for e in session.scalars(
                    select(AuditEvent).where(AuditEvent.organization_id == admin.organization_id)
                )
            ),
            *(
                r.response_body
                for r in session.scalars(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.organization_id == admin.organization_id
                    )
                )
            ),
        ]
    assert all(digits not in t.replace(" ", "").replace("-", "") for t in texts)
    # A number sent as a JSON number is not text: refused without repeating it.
    numeric = client.post(
        f"/v1/customers/{customer_id}/payment-methods",
        json={"provider": "simulated", "token": 4242424242424242},
        headers=auth(keys["admin"]),
    )
    assert numeric.status_code == 422 and "4242424242424242" not in numeric.text


def test_the_retry_schedule_is_an_organisation_setting(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    assert client.get("/v1/organization", headers=h).json()["collection_retry_days"] == [1, 3, 7]
    patched = client.patch("/v1/organization", json={"collection_retry_days": [2, 4, 9]}, headers=h)
    assert patched.status_code == 200 and patched.json()["collection_retry_days"] == [2, 4, 9]
    for bad, reason in (([4, 2], "must come after 4"), ([0], "between 1 and 365")):
        refused = client.patch("/v1/organization", json={"collection_retry_days": bad}, headers=h)
        assert refused.status_code == 422
        assert refused.json()["field"] == "collection_retry_days"
        assert reason in refused.json()["detail"]
    too_many = client.patch(
        "/v1/organization", json={"collection_retry_days": list(range(1, 12))}, headers=h
    )
    assert too_many.status_code == 422 and "at most 10" in too_many.json()["detail"]
    clerk = client.patch(
        "/v1/organization", json={"collection_retry_days": [1]}, headers=auth(keys["billing_clerk"])
    )
    assert clerk.status_code == 403
    assert client.get("/v1/organization", headers=h).json()["collection_retry_days"] == [2, 4, 9]


def test_roles(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    customer_id, _ = customer_with_invoice(client, db, admin, keys["admin"])
    viewer = auth(keys["viewer"])
    assert attach(client, keys["viewer"], customer_id, "sim_card_ok").status_code == 403
    run = client.post("/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=viewer)
    assert run.status_code == 403
    assert client.get("/v1/payment-attempts", headers=viewer).status_code == 200
    assert attach(client, keys["billing_clerk"], customer_id, "sim_card_ok").status_code == 201
    clerk_run = client.post(
        "/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=auth(keys["billing_clerk"])
    )
    assert clerk_run.status_code == 200 and clerk_run.json()["approved"] == 1


def test_another_organisations_key_gets_404(client: TestClient, db: Database) -> None:
    admin, keys = _org(db, "Owner")
    customer_id, invoice_id = customer_with_invoice(client, db, admin, keys["admin"])
    method = attach(client, keys["admin"], customer_id, "sim_card_declined").json()
    h = auth(keys["admin"])
    client.post("/v1/collection-runs", json={"as_of": "2026-03-02"}, headers=h)
    [attempt] = client.get("/v1/payment-attempts", headers=h).json()["data"]
    before = client.get(f"/v1/customers/{customer_id}/collection", headers=h).json()
    _, other = _org(db, "Intruder")
    intruder = auth(other["admin"])
    pm = f"/v1/customers/{customer_id}/payment-methods"
    calls = [
        ("post", pm, {"provider": "simulated", "token": "sim_card_ok"}),
        ("get", pm, None),
        ("post", f"{pm}/{method['id']}/default", None),
        ("delete", f"{pm}/{method['id']}", None),
        ("get", f"/v1/customers/{customer_id}/collection", None),
        ("get", f"/v1/payment-attempts?invoice_id={invoice_id}", None),
        ("get", f"/v1/payment-attempts?customer_id={customer_id}", None),
        ("get", f"/v1/payment-attempts/{attempt['id']}", None),
    ]
    for verb, path, body in calls:
        response = client.request(verb, path, json=body, headers=intruder)
        assert response.status_code == 404, (verb, path, response.status_code, response.text)
        assert response.json()["status"] == 404
    # Their own method id through the owner's customer: not there either.
    other_customer = client.post(
        "/v1/customers",
        json={"legal_name": "Intruder Ltd", "country": "GB", "currency": "GBP"},
        headers=intruder,
    ).json()
    theirs = attach(client, other["admin"], other_customer["id"], "sim_card_ok").json()
    crossed = client.delete(f"{pm}/{theirs['id']}", headers=intruder)
    assert crossed.status_code == 404
    assert client.get("/v1/payment-attempts", headers=intruder).json()["data"] == []
    their_run = client.post("/v1/collection-runs", json={"as_of": "2026-03-05"}, headers=intruder)
    assert their_run.json()["attempted"] == 0
    assert client.get(f"/v1/customers/{customer_id}/collection", headers=h).json() == before
