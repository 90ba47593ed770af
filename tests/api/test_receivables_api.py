"""Receivables reports and dunning through the REST API: aging, DSO and statements as JSON,
CSV and XLSX; policies, runs, reminders, disputes and the worklist; the tenancy wall."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services import customers, invoices, payments
from tallybook.services.base import Actor, Database, Role
from tallybook.services.organizations import create_api_key

STEPS = [
    {"offset_days": -3, "name": "friendly reminder"},
    {"offset_days": 0, "name": "due today"},
    {"offset_days": 7, "level": 2, "name": "first reminder"},
    {"offset_days": 14, "level": 2, "name": "second reminder", "late_fee": True},
    {"offset_days": 30, "level": 3, "name": "final notice", "late_fee": True},
]


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def books(db: Database, admin: Actor) -> dict[str, str]:
    """A Finnish customer (no VAT) with two invoices issued on fixed dates and one payment."""
    customer = customers.create_customer(
        db, admin, {"legal_name": "Kivi Oy", "country": "FI", "currency": "EUR"}
    )
    ids = {"customer": customer.id}
    # 10,000.00 is above the 1,000 threshold: another manager approves the admin's draft.
    checker = create_api_key(db, admin, "second pair of eyes", "billing_manager")
    manager = Actor(admin.organization_id, checker.id, Role.BILLING_MANAGER)
    for key, amount, day in (
        ("first", "10000.00", date(2026, 1, 5)),
        ("second", "500.00", date(2026, 2, 10)),
    ):
        draft = invoices.create_draft(db, admin, customer.id)
        invoices.add_line(db, admin, draft.id, {"description": "Audit", "unit_price": amount})
        invoices.approve_invoice(db, manager, draft.id, "test books")
        issued = invoices.issue_invoice(db, admin, draft.id, issue_date=day)
        ids[key] = issued.id
        ids[f"{key}_number"] = issued.number
    payments.record_payment(
        db,
        admin,
        {
            "amount": "500.00",
            "currency": "EUR",
            "received_on": "2026-03-20",
            "invoice_ids": [ids["second"]],
        },
    )
    return ids


def test_aging_as_json_csv_and_xlsx(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    ids = books(db, admin)
    h = auth(keys["viewer"])  # reports are for every role
    before = client.get(
        "/v1/receivables/aging", params={"as_of": "2026-03-15", "documents": "true"}, headers=h
    )
    assert before.status_code == 200, before.text
    body = before.json()
    (row,) = body["rows"]
    # first: due 02-04, 39 days late; second: due 03-12, 3 days late (paid on 03-20)
    assert (row["days_31_60"], row["days_1_30"], row["total"]) == ("10000.00", "500.00", "10500.00")
    assert {d["number"]: d["bucket"] for d in body["documents"]} == {
        ids["first_number"]: "31-60",
        ids["second_number"]: "1-30",
    }
    after = client.get("/v1/receivables/aging", params={"as_of": "2026-03-25"}, headers=h).json()
    assert after["totals"] == [
        {
            "currency": "EUR",
            "current_minor": 0, "current": "0.00",
            "days_1_30_minor": 0, "days_1_30": "0.00",
            "days_31_60_minor": 1000000, "days_31_60": "10000.00",
            "days_61_90_minor": 0, "days_61_90": "0.00",
            "days_over_90_minor": 0, "days_over_90": "0.00",
            "total_minor": 1000000, "total": "10000.00",
            "document_count": 1,
        }
    ]  # fmt: skip
    assert "documents" not in after

    as_csv = client.get(
        "/v1/receivables/aging", params={"as_of": "2026-03-15", "format": "csv"}, headers=h
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert 'filename="aging-2026-03-15.csv"' in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert (rows[0]["31-60"], rows[0]["1-30"], rows[0]["total"]) == (
        "10000.00",
        "500.00",
        "10500.00",
    )
    assert (rows[1]["row_type"], rows[1]["total"]) == ("total", "10500.00")

    as_xlsx = client.get(
        "/v1/receivables/aging", params={"as_of": "2026-03-15", "format": "xlsx"}, headers=h
    )
    assert as_xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="aging-2026-03-15.xlsx"' in as_xlsx.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(as_xlsx.content))["Aging EUR"]
    header = [c.value for c in sheet[1]]
    first = dict(zip(header, [c.value for c in sheet[2]], strict=True))
    assert Decimal(str(first["31-60"])) == Decimal("10000.00")
    assert Decimal(str(first["Total"])) == Decimal(row["total"])

    wrong = client.get("/v1/receivables/aging", params={"format": "pdf"}, headers=h)
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_statement_and_dso(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    ids = books(db, admin)
    h = auth(keys["viewer"])
    url = f"/v1/customers/{ids['customer']}/statement"
    got = client.get(url, params={"from": "2026-02-01", "to": "2026-03-31"}, headers=h)
    assert got.status_code == 200, got.text
    s = got.json()
    assert s["opening_balance"] == "10000.00"
    assert [(x["kind"], x["amount"], x["balance"]) for x in s["lines"]] == [
        ("invoice", "500.00", "10500.00"),
        ("payment", "-500.00", "10000.00"),
    ]
    assert s["closing_balance"] == s["open_receivables"] == "10000.00"
    assert s["unapplied_credit"] == "0.00"
    as_csv = client.get(
        url, params={"from": "2026-02-01", "to": "2026-03-31", "format": "csv"}, headers=h
    )
    assert "attachment" in as_csv.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [x["balance"] for x in lines] == ["10000.00", "10500.00", "10000.00", "10000.00"]
    as_xlsx = client.get(
        url, params={"from": "2026-02-01", "to": "2026-03-31", "format": "xlsx"}, headers=h
    )
    book = load_workbook(io.BytesIO(as_xlsx.content))
    assert book.sheetnames == ["Statement", "Summary"]
    backwards = client.get(url, params={"from": "2026-04-01", "to": "2026-03-31"}, headers=h)
    assert backwards.status_code == 422 and backwards.json()["field"] == "from"

    dso = client.get(
        "/v1/receivables/dso", params={"from": "2026-01-01", "to": "2026-03-31"}, headers=h
    )
    assert dso.status_code == 200, dso.text
    (figure,) = dso.json()["data"]
    # 10,000.00 open after 90 days of 10,500.00 sales: 85.714... -> 85.7
    assert (figure["receivables"], figure["credit_sales"], figure["days"], figure["dso"]) == (
        "10000.00",
        "10500.00",
        90,
        "85.7",
    )
    missing = client.get("/v1/receivables/dso", params={"from": "2026-01-01"}, headers=h)
    assert missing.status_code == 422


def test_dunning_policies_runs_reminders_disputes_and_the_worklist(
    client: TestClient, db: Database
) -> None:
    admin, keys = _org(db)
    ids = books(db, admin)
    manager, clerk, viewer = (auth(keys[r]) for r in ("billing_manager", "billing_clerk", "viewer"))
    created = client.post(
        "/v1/dunning-policies",
        json={
            "name": "standard",
            "steps": STEPS,
            "late_fee": {"kind": "percent", "percent": "1.5", "cap": {"EUR": "40.00"}},
        },
        headers=manager,
    )
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["is_default"] and [s["level"] for s in policy["steps"]] == [1, 2, 2, 2, 3]
    assert policy["late_fee"] == {"kind": "percent", "percent": "1.5", "cap": {"EUR": "40.00"}}
    refused = client.post(
        "/v1/dunning-policies",
        json={"name": "floaty", "steps": STEPS, "late_fee": {"kind": "percent", "percent": 1.5}},
        headers=manager,
    )
    assert refused.status_code == 422
    assert (
        client.post(
            "/v1/dunning-policies", json={"name": "x", "steps": STEPS[:1]}, headers=clerk
        ).status_code
        == 403
    )

    # The first invoice (10,000.00, due 2026-02-04) on 2026-02-18: second reminder, fee 40.00.
    dry = client.post(
        "/v1/dunning-runs", json={"as_of": "2026-02-18", "dry_run": True}, headers=viewer
    )
    assert dry.status_code == 200, dry.text
    assert [(r["name"], r["fee"]) for r in dry.json()["reminders"]] == [
        ("second reminder", "40.00")
    ]
    assert (
        client.post("/v1/dunning-runs", json={"as_of": "2026-02-18"}, headers=viewer).status_code
        == 403
    )
    run = client.post("/v1/dunning-runs", json={"as_of": "2026-02-18"}, headers=manager).json()
    (sent,) = run["reminders"]
    assert sent["debit_note_number"].startswith("DN-") and run["fees"] == {
        "EUR": {"fee_minor": 4000, "fee": "40.00"}
    }
    again = client.post("/v1/dunning-runs", json={"as_of": "2026-02-18"}, headers=manager).json()
    assert again["reminders"] == []
    listed = client.get(
        "/v1/dunning/reminders", params={"invoice_id": ids["first"]}, headers=viewer
    ).json()["data"]
    assert [(r["name"], r["fee"], r["status"]) for r in listed] == [
        ("second reminder", "40.00", "recorded")
    ]
    assert "late fee of 40.00 EUR" in listed[0]["summary"]
    skipped = client.get(
        "/v1/dunning/reminders",
        params={"customer_id": ids["customer"], "include_skipped": "true"},
        headers=viewer,
    ).json()["data"]
    assert sorted(r["status"] for r in skipped) == ["recorded", "skipped", "skipped", "skipped"]

    disputed = client.post(
        f"/v1/invoices/{ids['first']}/dispute", json={"reason": "hours not agreed"}, headers=clerk
    )
    assert disputed.status_code == 200, disputed.text
    assert disputed.json()["dispute_reason"] == "hours not agreed"
    assert disputed.json()["disputed_at"] is not None
    paused = client.post("/v1/dunning-runs", json={"as_of": "2026-03-10"}, headers=manager).json()
    assert paused["reminders"] == [] and [p["name"] for p in paused["paused"]] == ["final notice"]
    worklist = client.get(
        "/v1/collections/worklist", params={"as_of": "2026-03-10"}, headers=viewer
    ).json()["data"]
    (row,) = worklist
    assert (row["overdue"], row["oldest_days_overdue"], row["disputed"]) == ("10040.00", 34, True)
    assert row["last_reminder_level"] == 2 and row["failed_attempts"] == 0
    resolved = client.post(f"/v1/invoices/{ids['first']}/resolve-dispute", headers=clerk)
    assert resolved.status_code == 200 and resolved.json()["disputed_at"] is None
    final = client.post("/v1/dunning-runs", json={"as_of": "2026-03-10"}, headers=manager).json()
    assert [(r["name"], r["fee"]) for r in final["reminders"]] == [("final notice", "0.00")]
    conflict = client.post(f"/v1/invoices/{ids['first']}/resolve-dispute", headers=clerk)
    assert conflict.status_code == 409

    other = client.post(
        "/v1/dunning-policies",
        json={"name": "gentle", "steps": [{"offset_days": 60, "name": "nudge"}]},
        headers=manager,
    ).json()
    assert not other["is_default"]
    assigned = client.put(
        f"/v1/customers/{ids['customer']}/dunning-policy",
        json={"policy_id": "gentle"},
        headers=manager,
    )
    assert assigned.json() == {"customer_id": ids["customer"], "dunning_policy_id": other["id"]}
    patched = client.patch(
        f"/v1/dunning-policies/{other['id']}",
        json={"is_default": True, "late_fee": None},
        headers=manager,
    )
    assert patched.status_code == 200 and patched.json()["is_default"]
    names = {
        p["name"]: p["is_default"]
        for p in client.get("/v1/dunning-policies", headers=viewer).json()["data"]
    }
    assert names == {"standard": False, "gentle": True}
    busy = client.delete(f"/v1/dunning-policies/{other['id']}", headers=manager)
    assert busy.status_code == 409
    client.put(
        f"/v1/customers/{ids['customer']}/dunning-policy", json={"policy_id": None}, headers=manager
    )
    assert client.delete(f"/v1/dunning-policies/{other['id']}", headers=manager).json() == {
        "id": other["id"],
        "deleted": True,
    }


def test_another_organisations_key_gets_404_for_every_id(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    ids = books(db, admin)
    mine = auth(keys["admin"])
    policy = client.post(
        "/v1/dunning-policies", json={"name": "standard", "steps": STEPS[:2]}, headers=mine
    ).json()
    _, other_keys = _org(db, "Other Org")
    theirs = auth(other_keys["admin"])
    customer, invoice = ids["customer"], ids["first"]
    answers = {
        "statement": client.get(f"/v1/customers/{customer}/statement", headers=theirs),
        "statement csv": client.get(
            f"/v1/customers/{customer}/statement", params={"format": "csv"}, headers=theirs
        ),
        "aging of a customer": client.get(
            "/v1/receivables/aging", params={"customer_id": customer}, headers=theirs
        ),
        "dispute": client.post(
            f"/v1/invoices/{invoice}/dispute", json={"reason": "x"}, headers=theirs
        ),
        "resolve": client.post(f"/v1/invoices/{invoice}/resolve-dispute", headers=theirs),
        "assignment": client.put(
            f"/v1/customers/{customer}/dunning-policy", json={"policy_id": None}, headers=theirs
        ),
        "reminders by invoice": client.get(
            "/v1/dunning/reminders", params={"invoice_id": invoice}, headers=theirs
        ),
        "reminders by customer": client.get(
            "/v1/dunning/reminders", params={"customer_id": customer}, headers=theirs
        ),
        "policy": client.get(f"/v1/dunning-policies/{policy['id']}", headers=theirs),
        "policy patch": client.patch(
            f"/v1/dunning-policies/{policy['id']}", json={"name": "mine"}, headers=theirs
        ),
        "policy delete": client.delete(f"/v1/dunning-policies/{policy['id']}", headers=theirs),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    # Nothing of ours shows in their reports.
    assert client.get("/v1/receivables/aging", headers=theirs).json()["rows"] == []
    assert client.get("/v1/collections/worklist", headers=theirs).json()["data"] == []
    assert client.get("/v1/dunning-policies", headers=theirs).json()["data"] == []
