"""Sending documents, the delivery log and webhooks over HTTP: every document type sent, the log
filtered by document and status, retry, replay, secrets shown once, roles, and another
organisation's ids answering 404 on every endpoint that takes one."""

from __future__ import annotations

from datetime import date

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from local_servers import SmtpServer, WebhookReceiver
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.config import DeliverySettings, SmtpSettings
from tallybook.services import credit_notes, customers, dunning, invoices, organizations, outbox
from tallybook.services.base import Actor, Database

SELLER = {
    "country": "DE",
    "address_line1": "Hauptstr. 5",
    "city": "Berlin",
    "postal_code": "10115",
    "vat_id": "DE136695976",
    "iban": "DE44 5001 0517 5407 3249 31",
    "contact_email": "billing@acme.example",
}
NO_WAIT = DeliverySettings(0.0, 0.0, 2, 900.0, 5.0, 1)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", Fernet.generate_key().decode())


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def world(db: Database, name: str = "Acme") -> tuple[Actor, dict[str, str], dict[str, str]]:
    """An organisation with an issued invoice, a credit note, a debit note and a reminder."""
    admin, keys = _org(db, name)
    organizations.update_settings(db, admin, SELLER)
    customer = customers.create_customer(
        db,
        admin,
        {
            "legal_name": "Kunde GmbH",
            "country": "DE",
            "currency": "EUR",
            "emails": ["ap@kunde.example"],
            "payment_terms_days": 0,
            "delivery_channel": "portal",  # nothing goes out by itself
        },
    )
    draft = invoices.create_draft(db, admin, customer.id)
    invoices.add_line(db, admin, draft.id, {"description": "Consulting", "unit_price": "500"})
    invoice = invoices.issue_invoice(db, admin, draft.id, issue_date=date(2026, 3, 2))
    note = credit_notes.create_credit_note(
        db, admin, invoice.id, {"reason": "goodwill", "lines": [{"line": 1, "amount": "50"}]}
    )
    debit = credit_notes.create_debit_note(
        db,
        admin,
        invoice.id,
        {"reason": "travel", "lines": [{"description": "Train", "unit_price": "89.00"}]},
    )
    dunning.create_policy(
        db,
        admin,
        {"name": "std", "steps": [{"offset_days": 1, "name": "reminder"}], "is_default": True},
    )
    dunning.run_dunning(db, admin, date(2026, 3, 10))
    [reminder] = dunning.list_reminders(db, admin, invoice_id=invoice.id)
    ids = {
        "customer": customer.id,
        "invoice": invoice.id,
        "invoice_number": invoice.number or "",
        "credit_note": note.id,
        "debit_note": debit.id,
        "reminder": reminder.reminder.id,
    }
    return admin, keys, ids


def test_sending_every_document_and_the_log(client: TestClient, db: Database) -> None:
    admin, keys, ids = world(db)
    h = auth(keys["billing_clerk"])
    sent = client.post(
        f"/v1/invoices/{ids['invoice']}/send",
        json={"einvoice": "ubl", "to": ["Accounts <ap@kunde.example>"]},
        headers=h,
    )
    assert sent.status_code == 202, sent.text
    invoice_mail = sent.json()
    assert (invoice_mail["status"], invoice_mail["einvoice"], invoice_mail["document_type"]) == (
        "queued",
        "ubl",
        "invoice",
    )
    for path in (
        f"/v1/credit-notes/{ids['credit_note']}/send",
        f"/v1/debit-notes/{ids['debit_note']}/send",
        f"/v1/dunning/reminders/{ids['reminder']}/send",
    ):
        answer = client.post(path, headers=h)
        assert answer.status_code == 202, (path, answer.text)
    statement = client.post(
        f"/v1/customers/{ids['customer']}/statement/send",
        json={"from": "2026-03-01", "until": "2026-03-31"},
        headers=h,
    )
    assert statement.status_code == 202, statement.text
    assert statement.json()["subject"].startswith("Statement of account 2026-03-01 to 2026-03-31")

    listed = client.get(
        "/v1/deliveries", params={"document": ids["invoice_number"]}, headers=h
    ).json()
    # Everything sent about the invoice: the invoice itself and its reminder.
    about = {d["document_type"]: d["id"] for d in listed["data"]}
    assert set(about) == {"invoice", "dunning_reminder"}
    assert about["invoice"] == invoice_mail["id"]
    by_id = client.get("/v1/deliveries", params={"document": ids["invoice"]}, headers=h).json()
    assert [d["id"] for d in by_id["data"]] == [invoice_mail["id"]]
    queued = client.get("/v1/deliveries", params={"status": "queued"}, headers=h).json()
    assert len(queued["data"]) == 5

    with SmtpServer() as smtp:
        smtp.inbox.refuse = ["550 5.1.1 No such mailbox"]  # the oldest (the invoice) fails
        settings = SmtpSettings("127.0.0.1", smtp.port, "none", None, None, 5, "b@acme.example")
        report = outbox.send_due(
            db, settings=NO_WAIT, smtp_settings=settings, organization_id=admin.organization_id
        )
        assert (report.sent, report.failed) == (4, 1)
        failed = client.get("/v1/deliveries", params={"status": "failed"}, headers=h).json()
        assert [d["id"] for d in failed["data"]] == [invoice_mail["id"]]
        shown = client.get(f"/v1/deliveries/{invoice_mail['id']}", headers=h).json()
        assert [(a["outcome"], a["status_code"]) for a in shown["attempt_log"]] == [("failed", 550)]
        retried = client.post(f"/v1/deliveries/{invoice_mail['id']}/retry", headers=h)
        assert (retried.status_code, retried.json()["status"]) == (200, "queued")
        outbox.send_due(
            db, settings=NO_WAIT, smtp_settings=settings, organization_id=admin.organization_id
        )
        assert len(smtp.inbox.received) == 5
        assert len(smtp.inbox.per_message_id()) == 5
    again = client.post(f"/v1/deliveries/{invoice_mail['id']}/retry", headers=h)
    assert again.status_code == 409

    bad = client.post(f"/v1/invoices/{ids['invoice']}/send", json={"to": ["nobody"]}, headers=h)
    assert (bad.status_code, bad.json()["field"]) == (422, "to")
    viewer = client.post(f"/v1/invoices/{ids['invoice']}/send", headers=auth(keys["viewer"]))
    assert viewer.status_code == 403


def test_preferences_and_the_sender_address(client: TestClient, db: Database) -> None:
    _, keys, ids = world(db)
    h = auth(keys["admin"])
    path = f"/v1/customers/{ids['customer']}/delivery-preferences"
    assert client.get(path, headers=h).json()["delivery_channel"] == "portal"
    changed = client.put(
        path, json={"delivery_channel": "email", "einvoice_attachment": "facturx"}, headers=h
    )
    assert changed.json() == {
        "customer_id": ids["customer"],
        "delivery_channel": "email",
        "einvoice_attachment": "facturx",
        "emails": ["ap@kunde.example"],
    }
    wrong = client.put(path, json={"delivery_channel": "fax"}, headers=h)
    assert wrong.status_code == 422
    settings = client.put(
        "/v1/organization/delivery-settings",
        json={"email_from": "Acme Billing <billing@acme.example>", "scheduled_runs": ["dunning"]},
        headers=h,
    )
    assert settings.json() == {
        "email_from": "Acme Billing <billing@acme.example>",
        "scheduled_runs": ["dunning"],
    }
    refused = client.put(
        "/v1/organization/delivery-settings", json={"email_from": "billing"}, headers=h
    )
    assert (refused.status_code, refused.json()["field"]) == (422, "email_from")


def test_webhook_endpoints_deliveries_and_replay(client: TestClient, db: Database) -> None:
    admin, keys, ids = world(db)
    h = auth(keys["admin"])
    with WebhookReceiver(answers=[500]) as receiver:
        created = client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["webhook.test", "invoice.issued"]},
            headers=h,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        receiver.secret = endpoint["secret"]
        endpoint_id = endpoint["id"]
        # The secret is shown once: never again.
        listed = client.get("/v1/webhook-endpoints", headers=h).json()
        assert "secret" not in listed["data"][0] and "invoice.paid" in listed["event_types"]
        assert "secret" not in client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=h).json()

        test = client.post(f"/v1/webhook-endpoints/{endpoint_id}/test", headers=h)
        assert test.status_code == 202
        outbox.send_due(
            db,
            settings=NO_WAIT,
            smtp_settings=SmtpSettings(None, 25, "none", None, None, 5, None),
            organization_id=admin.organization_id,
        )
        hooks = client.get(
            "/v1/webhook-deliveries", params={"endpoint_id": endpoint_id}, headers=h
        ).json()["data"]
        assert [(d["event_type"], d["status"], d["attempts"]) for d in hooks] == [
            ("webhook.test", "sent", 2)
        ]
        shown = client.get(f"/v1/webhook-deliveries/{hooks[0]['id']}", headers=h).json()
        assert [(a["outcome"], a["status_code"]) for a in shown["attempt_log"]] == [
            ("retry", 500),
            ("sent", 200),
        ]
        replay = client.post(f"/v1/webhook-deliveries/{hooks[0]['id']}/replay", headers=h)
        assert replay.status_code == 202
        assert replay.json()["replay_of"] == hooks[0]["id"]
        outbox.send_due(
            db,
            settings=NO_WAIT,
            smtp_settings=SmtpSettings(None, 25, "none", None, None, 5, None),
            organization_id=admin.organization_id,
        )
        assert [h.verified for h in receiver.hooks] == [True, True, True]
        assert len({h.headers["webhook-id"] for h in receiver.hooks}) == 1

        rotated = client.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret", headers=h)
        assert rotated.json()["secret"] != endpoint["secret"]
        off = client.patch(
            f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": False}, headers=h
        )
        assert off.json()["enabled"] is False
        bad = client.post(
            "/v1/webhook-endpoints", json={"url": receiver.url, "events": ["nope"]}, headers=h
        )
        assert (bad.status_code, bad.json()["field"]) == (422, "events")
        clerk = client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["*"]},
            headers=auth(keys["billing_clerk"]),
        )
        assert clerk.status_code == 403
        gone = client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=h)
        assert gone.json()["deleted"] is True
        assert client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=h).status_code == 404
    assert ids  # the world the endpoint was registered in


def test_another_organisations_ids_answer_404(client: TestClient, db: Database) -> None:
    admin, keys, ids = world(db, "Owner")
    endpoint = client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/h", "events": ["*"]},
        headers=auth(keys["admin"]),
    ).json()
    hook = client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=auth(keys["admin"])
    ).json()
    mail = client.post(f"/v1/invoices/{ids['invoice']}/send", headers=auth(keys["admin"])).json()
    _, other, _ = world(db, "Intruder")
    h = auth(other["admin"])
    calls = [
        ("post", f"/v1/invoices/{ids['invoice']}/send", None),
        ("post", f"/v1/credit-notes/{ids['credit_note']}/send", None),
        ("post", f"/v1/debit-notes/{ids['debit_note']}/send", None),
        ("post", f"/v1/dunning/reminders/{ids['reminder']}/send", None),
        ("post", f"/v1/customers/{ids['customer']}/statement/send", None),
        ("get", f"/v1/customers/{ids['customer']}/delivery-preferences", None),
        (
            "put",
            f"/v1/customers/{ids['customer']}/delivery-preferences",
            {"delivery_channel": "email"},
        ),
        ("get", f"/v1/deliveries/{mail['id']}", None),
        ("post", f"/v1/deliveries/{mail['id']}/retry", None),
        ("get", f"/v1/webhook-endpoints/{endpoint['id']}", None),
        ("patch", f"/v1/webhook-endpoints/{endpoint['id']}", {"enabled": False}),
        ("delete", f"/v1/webhook-endpoints/{endpoint['id']}", None),
        ("post", f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", None),
        ("post", f"/v1/webhook-endpoints/{endpoint['id']}/test", None),
        ("get", f"/v1/webhook-deliveries/{hook['id']}", None),
        ("post", f"/v1/webhook-deliveries/{hook['id']}/replay", None),
    ]
    for method, path, body in calls:
        answer = client.request(method, path, json=body, headers=h)
        assert answer.status_code == 404, (method, path, answer.text)
    assert client.get("/v1/deliveries", headers=h).json()["data"] == []
    # Still there for the owner.
    assert (
        client.get(f"/v1/deliveries/{mail['id']}", headers=auth(keys["admin"])).status_code == 200
    )
    assert admin.organization_id
