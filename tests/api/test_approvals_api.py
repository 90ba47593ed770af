"""Approvals over HTTP: a creator cannot approve their own invoice or credit note; held credit
notes are carried out by the approve call; rules; the tenancy wall."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services import customers, invoices
from tallybook.services.base import Actor, Database, Role
from tallybook.services.organizations import create_api_key


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def _draft(client: TestClient, key: str, customer_id: str, price: str) -> str:
    draft = client.post("/v1/invoices", json={"customer_id": customer_id}, headers=auth(key))
    assert draft.status_code in (200, 201), draft.text
    line = client.post(
        f"/v1/invoices/{draft.json()['id']}/lines",
        json={"description": "Advisory", "quantity": "1", "unit_price": price},
        headers=auth(key),
    )
    assert line.status_code in (200, 201), line.text
    return draft.json()["id"]


def _world(db: Database):  # type: ignore[no-untyped-def]
    admin, keys = _org(db)
    second = create_api_key(db, admin, "second manager", "billing_manager")
    keys["second_manager"] = second.secret
    customer = customers.create_customer(
        db, admin, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    return admin, keys, customer.id


def test_a_creator_cannot_approve_their_own_invoice(client: TestClient, db: Database) -> None:
    _, keys, customer_id = _world(db)
    invoice_id = _draft(client, keys["billing_manager"], customer_id, "2000.00")
    own = client.post(f"/v1/invoices/{invoice_id}/approve", headers=auth(keys["billing_manager"]))
    assert own.status_code == 403 and "you created invoice" in own.json()["detail"]
    issue = client.post(f"/v1/invoices/{invoice_id}/issue", headers=auth(keys["billing_manager"]))
    assert issue.status_code == 403
    problem = issue.json()
    assert problem["type"].endswith("/approval-required")
    assert problem["title"] == "Approval required"
    [waiting] = client.get(
        "/v1/approvals", params={"status": "pending"}, headers=auth(keys["viewer"])
    ).json()["data"]
    assert waiting["id"] in problem["detail"]
    assert (waiting["amount"], waiting["amount_minor"], waiting["currency"]) == (
        "2000.00",
        200000,
        "EUR",
    )
    self_approve = client.post(
        f"/v1/approvals/{waiting['id']}/approve",
        json={"reason": "fine"},
        headers=auth(keys["billing_manager"]),
    )
    assert self_approve.status_code == 403 and "you asked" in self_approve.json()["detail"]
    no_reason = client.post(
        f"/v1/approvals/{waiting['id']}/approve", json={}, headers=auth(keys["second_manager"])
    )
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
    approved = client.post(
        f"/v1/approvals/{waiting['id']}/approve",
        json={"reason": "matches the engagement letter"},
        headers=auth(keys["second_manager"]),
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    issued = client.post(f"/v1/invoices/{invoice_id}/issue", headers=auth(keys["billing_manager"]))
    assert issued.status_code == 200 and issued.json()["status"] == "issued"


def test_a_creator_cannot_approve_their_own_credit_note(client: TestClient, db: Database) -> None:
    admin, keys, customer_id = _world(db)
    put = client.put(
        "/v1/approval-rules", json={"credit_note": {"EUR": "50.00"}}, headers=auth(keys["admin"])
    )
    assert put.status_code == 200 and put.json()["credit_note"] == {"EUR": "50.00"}
    invoice_id = _draft(client, keys["billing_clerk"], customer_id, "300.00")
    assert (
        client.post(
            f"/v1/invoices/{invoice_id}/issue", headers=auth(keys["billing_clerk"])
        ).status_code
        == 200
    )
    held = client.post(
        f"/v1/invoices/{invoice_id}/credit-notes",
        json={"reason": "service outage", "lines": [{"line_id": "1", "amount": "120.00"}]},
        headers=auth(keys["billing_manager"]),
    )
    assert held.status_code == 403 and held.json()["type"].endswith("/approval-required")
    assert (
        client.get(f"/v1/invoices/{invoice_id}", headers=auth(keys["admin"])).json()["amount_due"]
        == "300.00"
    )
    [waiting] = client.get(
        "/v1/approvals",
        params={"status": "pending", "subject_type": "credit_note"},
        headers=auth(keys["admin"]),
    ).json()["data"]
    own = client.post(
        f"/v1/approvals/{waiting['id']}/approve",
        json={"reason": "mine"},
        headers=auth(keys["billing_manager"]),
    )
    assert own.status_code == 403
    clerk = client.post(
        f"/v1/approvals/{waiting['id']}/approve",
        json={"reason": "ok"},
        headers=auth(keys["billing_clerk"]),
    )
    assert clerk.status_code == 403
    done = client.post(
        f"/v1/approvals/{waiting['id']}/approve",
        json={"reason": "outage confirmed"},
        headers=auth(keys["second_manager"]),
    ).json()
    assert (done["status"], done["result_type"]) == ("approved", "credit_note")
    assert (
        client.get(f"/v1/invoices/{invoice_id}", headers=auth(keys["admin"])).json()["amount_due"]
        == "180.00"
    )


def test_reject_and_ask(client: TestClient, db: Database) -> None:
    admin, keys, customer_id = _world(db)
    invoice_id = _draft(client, keys["billing_clerk"], customer_id, "1500.00")
    asked = client.post(
        "/v1/approvals",
        json={"subject_type": "invoice", "subject_id": invoice_id, "reason": "month end"},
        headers=auth(keys["billing_clerk"]),
    )
    assert asked.status_code == 201 and asked.json()["status"] == "pending"
    rejected = client.post(
        f"/v1/approvals/{asked.json()['id']}/reject",
        json={"reason": "wrong rate"},
        headers=auth(keys["billing_manager"]),
    )
    assert rejected.status_code == 200 and rejected.json()["decision_reason"] == "wrong rate"
    issue = client.post(f"/v1/invoices/{invoice_id}/issue", headers=auth(keys["billing_clerk"]))
    assert issue.status_code == 409 and "wrong rate" in issue.json()["detail"]
    bad = client.post(
        "/v1/approvals",
        json={"subject_type": "payment", "subject_id": invoice_id, "reason": "x"},
        headers=auth(keys["billing_clerk"]),
    )
    assert bad.status_code == 422
    viewer = client.post(
        "/v1/approvals",
        json={"subject_type": "invoice", "subject_id": invoice_id, "reason": "x"},
        headers=auth(keys["viewer"]),
    )
    assert viewer.status_code == 403


def test_another_organisations_key_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    admin, keys, customer_id = _world(db)
    _, other_keys = _org(db, "Other")
    invoice_id = _draft(client, keys["billing_clerk"], customer_id, "1500.00")
    approval = client.post(
        "/v1/approvals",
        json={"subject_type": "invoice", "subject_id": invoice_id, "reason": "please"},
        headers=auth(keys["billing_clerk"]),
    ).json()
    stranger = auth(other_keys["billing_manager"])
    assert client.get(f"/v1/approvals/{approval['id']}", headers=stranger).status_code == 404
    for verb in ("approve", "reject"):
        answer = client.post(
            f"/v1/approvals/{approval['id']}/{verb}", json={"reason": "x"}, headers=stranger
        )
        assert answer.status_code == 404
    asked = client.post(
        "/v1/approvals",
        json={"subject_type": "invoice", "subject_id": invoice_id, "reason": "x"},
        headers=auth(other_keys["billing_clerk"]),
    )
    assert asked.status_code == 404
    listed = client.get("/v1/approvals", headers=stranger).json()
    assert listed["data"] == []
    assert (
        client.get(f"/v1/approvals/{approval['id']}", headers=auth(keys["viewer"])).status_code
        == 200
    )
    # The invoice itself stays approvable by its own organisation.
    manager = Actor(admin.organization_id, None, Role.BILLING_MANAGER)
    assert invoices.get_invoice(db, manager, invoice_id)[0].approval_status == "pending"


def test_rules_need_an_admin_and_valid_amounts(client: TestClient, db: Database) -> None:
    _, keys, _ = _world(db)
    got = client.get("/v1/approval-rules", headers=auth(keys["viewer"])).json()
    assert got == {
        "invoice": {"EUR": "1000"},
        "credit_note": {},
        "write_off": {},
        "finding_override": "always",
    }
    manager = client.put(
        "/v1/approval-rules",
        json={"write_off": {"EUR": "0"}},
        headers=auth(keys["billing_manager"]),
    )
    assert manager.status_code == 403
    negative = client.put(
        "/v1/approval-rules", json={"write_off": {"EUR": "-5"}}, headers=auth(keys["admin"])
    )
    assert negative.status_code == 422 and negative.json()["field"] == "write_off"
    unknown = client.put(
        "/v1/approval-rules", json={"payments": {"EUR": "5"}}, headers=auth(keys["admin"])
    )
    assert unknown.status_code == 422
