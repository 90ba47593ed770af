"""The outbox on SQLite and PostgreSQL: e-mails and webhook events written in the event's own
transaction (a rolled-back issue leaves none), e-mails received by a real SMTP server with
their attachments, refusals retried with backoff or failed, deliveries abandoned by a dead
sender never re-sent by themselves, webhooks signed (Standard Webhooks), retried and replayed,
secrets encrypted at rest, and the tenancy wall."""

from __future__ import annotations

import socket
from datetime import date, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from local_servers import SmtpServer, WebhookReceiver
from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_einvoices import german_customer, seller_org

from tallybook.api.render import money
from tallybook.config import DeliverySettings, SmtpSettings
from tallybook.db.models import Base, Delivery, DeliveryAttempt, Invoice
from tallybook.services import (
    catalog,
    credit_notes,
    customers,
    dunning,
    einvoices,
    invoices,
    outbox,
    payment_methods,
    payments,
    webhooks,
)
from tallybook.services.base import Actor, Conflict, Database, InvalidInput, NotFound, utcnow
from tallybook.services.collection import collect_due_invoices

FAST = DeliverySettings(
    backoff_seconds=60.0,
    backoff_cap_seconds=3600.0,
    max_attempts=4,
    lease_seconds=900.0,
    webhook_timeout_seconds=5.0,
    sweep_seconds=1,
)
NO_WAIT = DeliverySettings(0.0, 0.0, 3, 900.0, 5.0, 1)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", key)
    return key


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    with SmtpServer() as server:
        yield server


def issued_invoice(db: Database, actor: Actor, customer, discount: str | None = "20") -> Invoice:  # type: ignore[no-untyped-def]
    """14.5 days of workshop at 135 (19 % VAT) and a handbook at 4.90 (7 %), less 20 %."""
    products = {p.code: p.id for p in catalog.list_products(db, actor)}
    if not products:
        products = {
            p.code: p.id
            for p in (
                catalog.create_product(
                    db, actor, {"code": "handbook", "name": "Handbook", "tax_category": "reduced"}
                ),
                catalog.create_product(
                    db, actor, {"code": "services", "name": "Services", "unit_label": "days"}
                ),
            )
        }
    draft = invoices.create_draft(db, actor, customer.id, {"po_number": "PO-7781"})
    invoices.add_line(
        db,
        actor,
        draft.id,
        {
            "description": "Workshop",
            "quantity": "14.5",
            "unit_price": "135",
            "product_id": products["services"],
        },
    )
    invoices.add_line(
        db,
        actor,
        draft.id,
        {"description": "Handbook", "unit_price": "4.90", "product_id": products["handbook"]},
    )
    if discount:
        invoices.update_draft(
            db, actor, draft.id, {"discounts": [{"kind": "percent", "value": discount}]}
        )
    return invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 2))


def smtp_of(server: SmtpServer) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", server.port, "none", None, None, 10.0, "billing@acme.test")


def deliveries_of(db: Database, actor: Actor, **where: object) -> list[Delivery]:
    with db.reading() as session:
        query = select(Delivery).where(Delivery.organization_id == actor.organization_id)
        for name, value in where.items():
            query = query.where(getattr(Delivery, name) == value)
        return list(session.scalars(query.order_by(Delivery.created_at, Delivery.id)))


def attempts_of(db: Database, delivery_id: str) -> list[DeliveryAttempt]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.attempt)
            )
        )


def send(db: Database, actor: Actor, server: SmtpServer | None = None, settings=FAST):  # type: ignore[no-untyped-def]
    smtp = smtp_of(server) if server else SmtpSettings(None, 25, "none", None, None, 5, None)
    return outbox.send_due(
        db, settings=settings, smtp_settings=smtp, organization_id=actor.organization_id
    )


def due_now(db: Database, delivery_id: str) -> None:
    """As if the backoff had passed."""
    with db.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


# -- written with the event -----------------------------------------------------------------


def test_issuing_writes_the_email_and_the_webhooks_with_the_invoice(db: Database) -> None:
    actor = seller_org(db)
    everything = webhooks.create_endpoint(
        db, actor, {"url": "http://127.0.0.1:9/all", "events": ["*"]}
    ).endpoint
    webhooks.create_endpoint(
        db, actor, {"url": "http://127.0.0.1:9/pay", "events": ["payment.received"]}
    )
    webhooks.create_endpoint(
        db, actor, {"url": "http://127.0.0.1:9/off", "events": ["*"], "enabled": False}
    )
    customer = german_customer(db, actor, emails=["ap@kunde.example", "cfo@kunde.example"])
    invoice = issued_invoice(db, actor, customer)

    [mail] = deliveries_of(db, actor, channel="email")
    assert (mail.status, mail.document_type, mail.document_id, mail.document_number) == (
        "queued",
        "invoice",
        invoice.id,
        invoice.number,
    )
    assert mail.recipients == ["ap@kunde.example", "cfo@kunde.example"]
    assert mail.subject == f"Invoice {invoice.number} from Northwind Cloud Ltd"
    assert mail.message_id == f"<{mail.id}@tallybook.invalid>"
    [hook] = deliveries_of(db, actor, channel="webhook")
    assert (hook.endpoint_id, hook.event_type, hook.message_id[:4]) == (
        everything.id,
        "invoice.issued",
        "msg_",
    )
    # 1957.50 and 4.90 less 20 %, plus 19 % and 7 % VAT: 1863.54 + 4.19.
    assert hook.payload["type"] == "invoice.issued"
    data = hook.payload["data"]
    assert (data["number"], data["total_minor"], data["total"]) == (
        invoice.number,
        invoice.total_minor,
        f"{invoice.total_minor // 100}.{invoice.total_minor % 100:02d}",
    )
    assert data["amount_due_minor"] == invoice.amount_due_minor == 186773


def test_a_portal_only_customer_gets_no_email_but_the_webhooks_go(db: Database) -> None:
    actor = seller_org(db)
    webhooks.create_endpoint(db, actor, {"url": "http://127.0.0.1:9/h", "events": ["*"]})
    customer = german_customer(db, actor, delivery_channel="portal")
    issued_invoice(db, actor, customer)
    assert [d.channel for d in deliveries_of(db, actor)] == ["webhook"]
    nobody = german_customer(db, actor, emails=[], external_id="crm-78")
    issued_invoice(db, actor, nobody)
    assert [d.channel for d in deliveries_of(db, actor)] == ["webhook", "webhook"]


def test_a_rolled_back_issue_leaves_no_delivery(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = seller_org(db)
    webhooks.create_endpoint(db, actor, {"url": "http://127.0.0.1:9/h", "events": ["*"]})
    customer = german_customer(db, actor)
    real = outbox.invoice_issued

    def then_fail(session, invoice, customer):  # type: ignore[no-untyped-def]
        real(session, invoice, customer)
        session.flush()  # the rows are really written inside the transaction...
        raise RuntimeError("the issuing transaction fails after the outbox rows")

    monkeypatch.setattr(outbox, "invoice_issued", then_fail)
    with pytest.raises(RuntimeError):
        issued_invoice(db, actor, customer)
    # ...and go with it.
    assert deliveries_of(db, actor) == []
    with db.reading() as session:
        [draft] = session.scalars(
            select(Invoice).where(Invoice.organization_id == actor.organization_id)
        ).all()
        assert (draft.status, draft.number) == ("draft", None)


# -- e-mail through a real SMTP server ---------------------------------------------------------


def test_the_invoice_and_its_ubl_reach_the_smtp_server(db: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    customer = german_customer(db, actor, einvoice_attachment="ubl")
    invoice = issued_invoice(db, actor, customer)
    report = send(db, actor, smtp_server)
    assert (report.sent, report.retried, report.failed, report.unknown) == (1, 0, 0, 0)

    [received] = smtp_server.inbox.received
    message = received.message
    [mail] = deliveries_of(db, actor)
    assert received.recipients == ["ap@kunde.example"]
    assert received.sender == "billing@acme.test"
    assert message["Subject"] == f"Invoice {invoice.number} from Northwind Cloud Ltd"
    assert message["Message-ID"] == mail.message_id
    body = message.get_body(("plain",)).get_content()
    assert "Amount due: 1867.73 EUR" in body and invoice.number in body
    files = {part.get_filename(): part for part in message.iter_attachments()}
    ubl = einvoices.einvoice_file(db, actor, invoice.id, "invoice", "ubl")
    assert files[ubl.file_name].get_content_type() == "application/xml"
    assert files[ubl.file_name].get_payload(decode=True) == ubl.content
    pdfs = [part for part in files.values() if part.get_content_type() == "application/pdf"]
    if outbox._documents() is not None:
        from io import BytesIO

        from pypdf import PdfReader

        [pdf] = pdfs
        text_of_pdf = PdfReader(BytesIO(pdf.get_payload(decode=True))).pages[0].extract_text()
        assert invoice.number in text_of_pdf and "1,867.73" in text_of_pdf
    assert (mail.status, mail.attempts, mail.last_error) == ("sent", 1, None)
    assert mail.sent_at is not None
    [attempt] = attempts_of(db, mail.id)
    assert (attempt.attempt, attempt.outcome, attempt.status_code) == (1, "sent", 250)
    # Sent is sent: another sweep sends nothing.
    assert send(db, actor, smtp_server).handled == 0
    assert len(smtp_server.inbox.received) == 1


def test_without_an_smtp_server_emails_wait_in_the_queue(db: Database) -> None:
    actor = seller_org(db)
    issued_invoice(db, actor, german_customer(db, actor))
    assert send(db, actor).handled == 0
    [mail] = deliveries_of(db, actor)
    assert (mail.status, mail.attempts) == ("queued", 0)


def test_refusals_are_retried_with_backoff_or_failed_for_good(db: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    later = issued_invoice(db, actor, german_customer(db, actor))
    never = issued_invoice(db, actor, german_customer(db, actor, external_id="crm-2"))
    by_document = {d.document_id: d.id for d in deliveries_of(db, actor)}
    # The oldest first: `later` is refused for now, `never` for good.
    smtp_server.inbox.refuse = ["451 4.3.0 Try again later", "550 5.1.1 No such mailbox"]
    before = utcnow()
    report = send(db, actor, smtp_server)
    assert (report.sent, report.retried, report.failed) == (0, 1, 1)
    waiting = deliveries_of(db, actor, id=by_document[later.id])[0]
    assert (waiting.status, waiting.attempts, waiting.last_status_code) == ("queued", 1, 451)
    assert "451" in waiting.last_error
    wait = waiting.next_attempt_at - before
    assert timedelta(seconds=60) <= wait <= timedelta(seconds=67)  # 60 s + up to 10 % spread
    failed = deliveries_of(db, actor, id=by_document[never.id])[0]
    assert failed.status == "failed" and "550" in failed.last_error
    # Not due yet: nothing happens; once due, it goes.
    assert send(db, actor, smtp_server).handled == 0
    due_now(db, waiting.id)
    assert send(db, actor, smtp_server).sent == 1
    assert [a.outcome for a in attempts_of(db, waiting.id)] == ["retry", "sent"]
    assert [r.message["Message-ID"] for r in smtp_server.inbox.received] == [waiting.message_id]
    # A clerk puts the failed one back (the address was corrected meanwhile): sent once.
    outbox.retry_delivery(db, actor, failed.id)
    assert send(db, actor, smtp_server).sent == 1
    assert smtp_server.inbox.per_message_id()[failed.message_id] == 1
    with pytest.raises(Conflict, match="sent already"):
        outbox.retry_delivery(db, actor, failed.id)


def test_after_the_last_attempt_the_delivery_fails(db: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    issued_invoice(db, actor, german_customer(db, actor))
    smtp_server.inbox.refuse = ["421 4.7.0 Busy"] * 3
    report = send(db, actor, smtp_server, settings=NO_WAIT)
    [mail] = deliveries_of(db, actor)
    assert (report.retried, report.failed) == (2, 1)
    assert (mail.status, mail.attempts) == ("failed", 3)
    assert mail.last_error.startswith("gave up after 3 attempts")
    assert smtp_server.inbox.received == []


# -- a sender that died ------------------------------------------------------------------------


def test_what_a_dead_sender_left_is_never_sent_again_by_itself(
    db: Database, smtp_server, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    receiver = WebhookReceiver()
    with receiver:
        created = webhooks.create_endpoint(db, actor, {"url": receiver.url, "events": ["*"]})
        receiver.secret = created.secret
        issued_invoice(db, actor, german_customer(db, actor))
        # A worker on this machine claimed both, then its process died (a pid nobody has).
        dead = f"{socket.gethostname()}:999999999:0ld"
        claims = [
            outbox.claim_next(db, dead, ["email", "webhook"], actor.organization_id)
            for _ in range(2)
        ]
        assert {c.channel for c in claims} == {"email", "webhook"}
        report = send(db, actor, smtp_server)
        assert report.recovered == 2
        mail = deliveries_of(db, actor, channel="email")[0]
        hook = deliveries_of(db, actor, channel="webhook")[0]
        # The e-mail may have reached the server: unknown, not sent again.
        assert mail.status == "unknown" and "may have been delivered" in mail.last_error
        assert smtp_server.inbox.received == []
        # The webhook goes again, with the same webhook-id (receivers deduplicate on it).
        assert hook.status == "sent"
        assert [h.headers["webhook-id"] for h in receiver.hooks] == [hook.message_id]
        assert [a.outcome for a in attempts_of(db, mail.id)] == ["unknown"]
        # A clerk checked: it never arrived. Released, it is sent, once.
        outbox.retry_delivery(db, actor, mail.id)
        assert send(db, actor, smtp_server).sent == 1
        assert smtp_server.inbox.per_message_id() == {mail.message_id: 1}


def test_another_machines_claim_waits_for_its_lease(db: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    issued_invoice(db, actor, german_customer(db, actor))
    outbox.claim_next(db, "elsewhere:1:abc", ["email"], actor.organization_id)
    assert send(db, actor, smtp_server).recovered == 0
    assert deliveries_of(db, actor)[0].status == "sending"
    expired = DeliverySettings(60.0, 3600.0, 4, 0.0, 5.0, 1)
    assert send(db, actor, smtp_server, settings=expired).recovered == 1
    assert deliveries_of(db, actor)[0].status == "unknown"
    assert smtp_server.inbox.received == []


# -- webhooks ----------------------------------------------------------------------------------


def test_webhooks_are_signed_retried_after_a_500_and_replayed(db: Database) -> None:
    actor = seller_org(db)
    with WebhookReceiver(answers=[500]) as receiver:
        created = webhooks.create_endpoint(
            db, actor, {"url": receiver.url, "events": ["payment.received"]}
        )
        receiver.secret = created.secret
        assert created.secret.startswith("whsec_")
        customer = german_customer(db, actor, emails=[])
        invoice = issued_invoice(db, actor, customer)
        payments.record_payment(
            db,
            actor,
            {
                "customer_id": customer.id,
                "amount": "500.00",
                "currency": "EUR",
                "received_on": "2026-03-10",
            },
        )
        [hook] = deliveries_of(db, actor)
        report = send(db, actor)
        assert (report.sent, report.retried) == (0, 1)
        assert deliveries_of(db, actor)[0].status == "queued"
        due_now(db, hook.id)
        assert send(db, actor).sent == 1

        first, second = receiver.hooks
        assert first.verified and second.verified
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == hook.message_id
        assert first.body == second.body  # the same bytes on every attempt
        assert second.payload["type"] == "payment.received"
        assert second.payload["data"]["amount_minor"] == 50000
        assert second.payload["data"]["amount"] == "500.00"
        log = attempts_of(db, hook.id)
        assert [(a.outcome, a.status_code) for a in log] == [("retry", 500), ("sent", 200)]
        assert log[0].response_excerpt == "receiver unavailable"
        assert log[1].response_excerpt == '{"ok": true}'
        sent = deliveries_of(db, actor)[0]
        assert (sent.status, sent.attempts, sent.last_status_code) == ("sent", 2, 200)

        replay = outbox.replay_webhook(db, actor, hook.id)
        assert (replay.replay_of, replay.message_id) == (hook.id, hook.message_id)
        assert send(db, actor).sent == 1
        third = receiver.hooks[2]
        assert third.verified and third.body == first.body
        assert third.headers["webhook-id"] == hook.message_id
        # Signed with another secret, the same message does not verify.
        forged = webhooks.signed_headers(
            webhooks.new_secret(), hook.message_id, utcnow(), first.body
        )
        with pytest.raises(WebhookVerificationError):
            Webhook(created.secret).verify(first.body, forged)
        assert invoice.amount_due_minor == 186773  # the invoice the payment went to


def test_every_event_reaches_a_catch_all_endpoint(db: Database) -> None:
    actor = seller_org(db)
    webhooks.create_endpoint(db, actor, {"url": "http://127.0.0.1:9/h", "events": ["*"]})
    customer = german_customer(db, actor, payment_terms_days=0)
    first = issued_invoice(db, actor, customer, discount=None)
    credit_notes.create_credit_note(
        db,
        actor,
        first.id,
        {"reason": "one day unused", "lines": [{"line": 1, "quantity": "1"}]},
    )
    credit_notes.create_debit_note(
        db,
        actor,
        first.id,
        {"reason": "travel", "lines": [{"description": "Train", "unit_price": "89.00"}]},
    )
    paid = issued_invoice(db, actor, customer, discount=None)
    total = money(paid.total_minor, "EUR")
    payments.record_payment(
        db,
        actor,
        {
            "customer_id": customer.id,
            "amount": total,
            "currency": "EUR",
            "received_on": "2026-03-03",
            "allocations": [{"invoice_id": paid.id, "amount": total}],
        },
    )
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Extra", "unit_price": "10"})
    voided = invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 2))
    invoices.void_invoice(db, actor, voided.id, "issued by mistake")
    payment_methods.attach_payment_method(
        db, actor, customer.id, {"provider": "simulated", "token": "sim_card_declined"}
    )
    collect_due_invoices(db, actor, date(2026, 3, 5))
    dunning.create_policy(
        db,
        actor,
        {
            "name": "standard",
            "steps": [{"offset_days": 1, "name": "first reminder"}],
            "is_default": True,
        },
    )
    dunning.run_dunning(db, actor, date(2026, 3, 5))

    types = {d.event_type for d in deliveries_of(db, actor, channel="webhook")}
    assert types == {
        "invoice.issued",
        "credit_note.issued",
        "debit_note.issued",
        "payment.received",
        "invoice.paid",
        "invoice.voided",
        "payment.failed",
        "dunning.reminder",
    }
    mails = {d.document_type for d in deliveries_of(db, actor, channel="email")}
    assert mails == {"invoice", "credit_note", "debit_note", "dunning_reminder"}


# -- sending on request ------------------------------------------------------------------------


def test_any_document_can_be_sent_on_request(db: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    actor = seller_org(db)
    customer = german_customer(db, actor, delivery_channel="portal")
    invoice = issued_invoice(db, actor, customer)
    note = credit_notes.create_credit_note(
        db, actor, invoice.id, {"reason": "goodwill", "lines": [{"line": 2}]}
    )
    assert deliveries_of(db, actor) == []  # portal only: nothing e-mailed by itself
    by_number = outbox.send_document(db, actor, "invoice", invoice.number, einvoice="cii")
    to_other = outbox.send_document(
        db, actor, "credit_note", note.number, to=["Controller <controller@kunde.example>"]
    )
    statement = outbox.send_document(
        db,
        actor,
        "statement",
        customer.id,
        date_from=date(2026, 3, 1),
        date_to=date(2026, 3, 31),
    )
    assert by_number.details == {"einvoice": "cii"}
    assert to_other.recipients == ["Controller <controller@kunde.example>"]
    assert statement.subject == (
        "Statement of account 2026-03-01 to 2026-03-31 from Northwind Cloud Ltd"
    )
    assert send(db, actor, smtp_server).sent == 3
    received = {r.message["Message-ID"]: r for r in smtp_server.inbox.received}
    files = {
        part.get_filename() for part in received[by_number.message_id].message.iter_attachments()
    }
    cii = einvoices.einvoice_file(db, actor, invoice.id, "invoice", "cii")
    assert cii.file_name in files
    assert received[to_other.message_id].recipients == ["controller@kunde.example"]
    [csv_or_pdf] = list(received[statement.message_id].message.iter_attachments())
    assert csv_or_pdf.get_filename().startswith("statement")

    with pytest.raises(InvalidInput, match="to\\[0\\]"):
        outbox.send_document(db, actor, "invoice", invoice.id, to=["not-an-address"])
    with pytest.raises(InvalidInput, match="einvoice"):
        outbox.send_document(db, actor, "invoice", invoice.id, einvoice="pdf")
    draft = invoices.create_draft(db, actor, customer.id)
    with pytest.raises(Conflict, match="only issued invoices"):
        outbox.send_document(db, actor, "invoice", draft.id)
    silent = german_customer(db, actor, emails=[], external_id="crm-9")
    with pytest.raises(InvalidInput, match="no e-mail address"):
        outbox.send_document(db, actor, "statement", silent.id)


def test_delivery_preferences_are_checked(db: Database) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    with pytest.raises(InvalidInput, match="delivery_channel"):
        customers.update_customer(db, actor, customer.id, {"delivery_channel": "fax"})
    with pytest.raises(InvalidInput, match="einvoice_attachment"):
        customers.update_customer(db, actor, customer.id, {"einvoice_attachment": "pdf"})
    changed = customers.update_customer(
        db, actor, customer.id, {"delivery_channel": "portal", "einvoice_attachment": "facturx"}
    )
    assert (changed.delivery_channel, changed.einvoice_attachment) == ("portal", "facturx")
    cleared = customers.update_customer(db, actor, customer.id, {"einvoice_attachment": "none"})
    assert cleared.einvoice_attachment is None


# -- secrets and walls -------------------------------------------------------------------------


def test_webhook_secrets_are_never_stored_in_the_clear(db: Database, secret_key: str) -> None:
    actor = seller_org(db)
    created = webhooks.create_endpoint(
        db, actor, {"url": "https://hooks.example/t", "events": ["*"]}
    )
    rotated = webhooks.rotate_secret(db, actor, created.endpoint.id)
    raw = [s.removeprefix("whsec_") for s in (created.secret, rotated.secret)]
    found = []
    with db.reading() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                text_of_row = " ".join(str(value) for value in row)
                found += [s for s in (*raw, secret_key) if s in text_of_row]
        endpoint = session.get(type(created.endpoint), created.endpoint.id)
        assert webhooks.decrypt_secret(endpoint.secret_encrypted) == rotated.secret
    assert found == []
    path = db.url.removeprefix("sqlite:///")
    if db.dialect == "sqlite":
        for file in (Path(path), Path(path + "-wal")):
            if file.exists():
                content = file.read_bytes()
                assert not any(s.encode() in content for s in raw)


def test_without_a_secret_key_no_endpoint_is_created(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = seller_org(db)
    monkeypatch.delenv("TALLYBOOK_SECRET_KEY")
    with pytest.raises(webhooks.NotConfigured, match="TALLYBOOK_SECRET_KEY"):
        webhooks.create_endpoint(db, actor, {"url": "https://hooks.example/t", "events": ["*"]})
    assert webhooks.list_endpoints(db, actor) == []
    with pytest.raises(InvalidInput, match="events\\[0\\]"):
        monkeypatch.setenv("TALLYBOOK_SECRET_KEY", Fernet.generate_key().decode())
        webhooks.create_endpoint(db, actor, {"url": "https://h.example/", "events": ["nope"]})
    with pytest.raises(InvalidInput, match="url"):
        webhooks.create_endpoint(db, actor, {"url": "ftp://h.example/", "events": ["*"]})


def test_another_organisations_deliveries_are_not_found(db: Database) -> None:
    actor = seller_org(db)
    webhooks.create_endpoint(db, actor, {"url": "http://127.0.0.1:9/h", "events": ["*"]})
    invoice = issued_invoice(db, actor, german_customer(db, actor))
    mail = deliveries_of(db, actor, channel="email")[0]
    hook = deliveries_of(db, actor, channel="webhook")[0]
    intruder = seller_org(db)
    for attempt in (
        lambda: outbox.get_delivery(db, intruder, mail.id),
        lambda: outbox.retry_delivery(db, intruder, mail.id),
        lambda: outbox.replay_webhook(db, intruder, hook.id),
        lambda: outbox.send_document(db, intruder, "invoice", invoice.id),
        lambda: outbox.send_document(db, intruder, "invoice", invoice.number),
        lambda: webhooks.get_endpoint(db, intruder, hook.endpoint_id),
        lambda: webhooks.delete_endpoint(db, intruder, hook.endpoint_id),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert outbox.list_deliveries(db, intruder)[0] == []
    with db.reading() as session:
        assert session.execute(text("select 1")).scalar() == 1


def test_payments_matched_from_a_bank_statement_are_told_too(db: Database) -> None:
    from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053
    from tallybook.services import cash_application

    actor = seller_org(db)
    webhooks.create_endpoint(
        db,
        actor,
        {"url": "http://127.0.0.1:9/h", "events": ["payment.received", "invoice.paid"]},
    )
    invoice = issued_invoice(db, actor, german_customer(db, actor, emails=[]))
    data = write_camt053(
        [
            Movement(
                date(2026, 3, 9),
                invoice.total_minor,
                "EUR",
                "Kunde GmbH",
                "DE89370400440532013000",
                None,
                invoice.payment_reference,
            )
        ],
        account="GB33BUKB20201555555555",
        currency="EUR",
        statement_id="STMT-OUTBOX",
        created=date(2026, 3, 10),
    )
    cash_application.import_statement(db, actor, data, file_name="march.xml")
    hooks = {d.event_type: d.payload["data"] for d in deliveries_of(db, actor)}
    assert set(hooks) == {"payment.received", "invoice.paid"}
    assert hooks["payment.received"]["amount_minor"] == invoice.total_minor == 186773
    assert hooks["payment.received"]["source"] == "bank"
    assert (hooks["invoice.paid"]["status"], hooks["invoice.paid"]["amount_due_minor"]) == (
        "paid",
        0,
    )
