"""The outbox: documents e-mailed to customers and events posted to webhook endpoints.

A delivery row is written in the same transaction as the event it tells about (issuing an
invoice, a credit or debit note, a dunning reminder, a payment...), so a rolled-back event
leaves none. After the commit the job worker (tallybook.jobs) sends it:

1. claim: one short transaction takes the next due row (FOR UPDATE SKIP LOCKED on
   PostgreSQL, so workers on many machines never take the same one) and commits it as
   `sending`, with who claimed it, BEFORE anything is said to the SMTP server or endpoint;
2. send, outside any transaction;
3. record the outcome in a second transaction: `sent`; `queued` again with exponential
   backoff (core.retries) when the server refused for now or the conversation broke before
   the message was handed over; `failed` after the last attempt or for a permanent refusal;
   `unknown` when the connection broke while the message was being handed over.

A delivery found in `sending` whose worker is gone (its process died, or the lease ran out)
is never sent again by itself: an e-mail becomes `unknown` for a clerk to check and release
(`retry`), so a killed and restarted sender sends no message twice. A webhook goes back to
the queue: Standard Webhooks receivers deduplicate on webhook-id, which stays the same.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import parseaddr
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, object_session

from tallybook.config import DeliverySettings, SmtpSettings
from tallybook.core.money import from_minor
from tallybook.core.references import display
from tallybook.core.retries import Backoff, next_attempt
from tallybook.db.models import (
    CreditNote,
    Customer,
    DebitNote,
    Delivery,
    DeliveryAttempt,
    DunningReminder,
    Invoice,
    Organization,
    WebhookEndpoint,
    new_id,
)
from tallybook.services import email as smtp
from tallybook.services import webhooks
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    Role,
    ServiceError,
    audit,
    get_owned,
    keyset_page,
    utcnow,
)

DOCUMENT_TYPES = ("invoice", "credit_note", "debit_note", "dunning_reminder", "statement")
CHANNELS = ("email", "webhook")
STATUSES = ("queued", "sending", "sent", "failed", "unknown")
DELIVERY_CHANNELS = ("email", "portal")
EINVOICE_ATTACHMENTS = ("ubl", "cii", "facturx")
SENDABLE_INVOICE_STATES = ("issued", "partially_paid", "paid", "uncollectible")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_UNSET: Any = object()


# -- events, in the caller's transaction --------------------------------------------------------


def invoice_issued(session: Session, invoice: Invoice, customer: Customer) -> None:
    webhooks.queue_event(
        session, invoice.organization_id, "invoice.issued", webhooks.invoice_data(invoice)
    )
    if customer.delivery_channel == "email":
        queue_email(session, customer, "invoice", invoice.id, invoice.number)


def invoice_voided(session: Session, invoice: Invoice) -> None:
    if invoice.number is None:  # a discarded draft was never told to anyone
        return
    webhooks.queue_event(
        session, invoice.organization_id, "invoice.voided", webhooks.invoice_data(invoice)
    )


def invoice_paid(invoice: Invoice) -> None:
    """The invoice just became paid (by a payment, customer credit or a credit note)."""
    session = object_session(invoice)
    if session is None:
        return
    webhooks.queue_event(
        session, invoice.organization_id, "invoice.paid", webhooks.invoice_data(invoice)
    )


def credit_note_issued(
    session: Session, note: CreditNote, invoice: Invoice, customer: Customer
) -> None:
    webhooks.queue_event(
        session, note.organization_id, "credit_note.issued", webhooks.note_data(note, invoice)
    )
    if customer.delivery_channel == "email":
        queue_email(session, customer, "credit_note", note.id, note.number)


def debit_note_issued(
    session: Session, note: DebitNote, invoice: Invoice, customer: Customer, *, late_fee: bool
) -> None:
    data = webhooks.note_data(note, invoice)
    data["late_fee"] = late_fee
    webhooks.queue_event(session, note.organization_id, "debit_note.issued", data)
    # A late fee goes out with its dunning reminder, not as an e-mail of its own.
    if customer.delivery_channel == "email" and not late_fee:
        queue_email(session, customer, "debit_note", note.id, note.number)


def payment_received(session: Session, payment: Any) -> None:
    webhooks.queue_event(
        session, payment.organization_id, "payment.received", webhooks.payment_data(payment)
    )


def payments_received(
    session: Session, organization_id: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Payments written as rows by a bulk path (cash application's sure matches)."""
    webhooks.queue_events(
        session,
        organization_id,
        "payment.received",
        [webhooks.payment_data(SimpleNamespace(**row)) for row in rows],
    )


def payment_failed(session: Session, attempt: Any, invoice: Invoice) -> None:
    webhooks.queue_event(
        session,
        attempt.organization_id,
        "payment.failed",
        webhooks.failed_charge_data(attempt, invoice),
    )


def reminder_recorded(
    session: Session, reminder: DunningReminder, invoice: Invoice, customer: Customer
) -> None:
    webhooks.queue_event(
        session,
        reminder.organization_id,
        "dunning.reminder",
        webhooks.reminder_data(reminder, invoice),
    )
    if customer.delivery_channel == "email":
        queue_email(
            session,
            customer,
            "dunning_reminder",
            reminder.id,
            invoice.number,
            subject=f"{reminder.name[:1].upper()}{reminder.name[1:]}: invoice {invoice.number}",
        )


# -- e-mails into the outbox ---------------------------------------------------------------------


def _recipients(values: Sequence[Any], field: str = "to") -> tuple[str, ...]:
    for index, value in enumerate(values):
        if not isinstance(value, str) or not _EMAIL.match(parseaddr(value.strip())[1]):
            raise InvalidInput(f"{field}[{index}]: {value!r} is not an e-mail address", field=field)
    return smtp.addresses(values)


def _domain(org: Organization) -> str:
    address = org.email_from or ""
    found = re.search(r"@([A-Za-z0-9.-]+)", address)
    return found.group(1) if found else "tallybook.invalid"


def _subject(kind: str, number: str | None, org: Organization, details: dict[str, Any]) -> str:
    if kind == "statement":
        return f"Statement of account {details['from']} to {details['to']} from {org.name}"
    label = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note"}
    return f"{label.get(kind, 'Document')} {number} from {org.name}"


def queue_email(
    session: Session,
    customer: Customer,
    document_type: str,
    document_id: str,
    number: str | None,
    *,
    to: Sequence[str] | None = None,
    einvoice: Any = _UNSET,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    requested_by: str | None = None,
) -> Delivery | None:
    """An e-mail of a document to the customer's addresses (or `to`); None when there is no
    address to send to. The e-invoice preference applies to invoices, credit and debit notes."""
    recipients = _recipients(to) if to else smtp.addresses(customer.emails or [])
    if not recipients:
        return None
    org = session.get(Organization, customer.organization_id)
    assert org is not None
    wanted = customer.einvoice_attachment if einvoice is _UNSET else einvoice
    if document_type not in ("invoice", "credit_note", "debit_note"):
        wanted = None
    extra = dict(details or {})
    if wanted:
        extra["einvoice"] = wanted
    now = utcnow()
    delivery_id = new_id("dlv")
    delivery = Delivery(
        id=delivery_id,
        organization_id=customer.organization_id,
        channel="email",
        status="queued",
        document_type=document_type,
        document_id=document_id,
        document_number=number,
        customer_id=customer.id,
        recipients=list(recipients),
        subject=(subject or _subject(document_type, number, org, extra))[:300],
        details=extra,
        # Stable for the delivery: the same on any later attempt, so a duplicate is visible.
        message_id=f"<{delivery_id}@{_domain(org)}>",
        attempts=0,
        next_attempt_at=now,
        requested_by=requested_by,
        created_at=now,
    )
    session.add(delivery)
    return delivery


def _find(session: Session, model: Any, reference: str, actor: Actor, label: str) -> Any:
    row = session.scalars(
        select(model).where(
            model.organization_id == actor.organization_id,
            or_(model.id == reference, model.number == reference),
        )
    ).first()
    if row is None:
        raise NotFound(f"{label} {reference} not found")
    return row


def _einvoice_choice(value: Any) -> Any:
    if value is _UNSET:
        return _UNSET
    if value in (None, "", "none"):
        return None
    if value not in EINVOICE_ATTACHMENTS:
        raise InvalidInput(
            f"einvoice: {value!r} is not one of none, {', '.join(EINVOICE_ATTACHMENTS)}",
            field="einvoice",
        )
    return value


def send_document(
    db: Database,
    actor: Actor,
    document_type: str,
    reference: str,
    *,
    to: Sequence[str] | None = None,
    einvoice: Any = _UNSET,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Delivery:
    """E-mail a document now (it is sent after the commit): an issued invoice, a credit or
    debit note (by id or number), a dunning reminder, or a customer's statement for a period
    (`reference` is then the customer). A clerk's request goes out even to a customer who
    gets documents through the portal only."""
    actor.require(*WRITERS, action="send documents")
    if document_type not in DOCUMENT_TYPES:
        raise InvalidInput(
            f"document_type: must be one of {', '.join(DOCUMENT_TYPES)}", field="document_type"
        )
    choice = _einvoice_choice(einvoice)
    extra: dict[str, Any] = {}
    subject = None
    with db.transaction() as session:
        if document_type == "invoice":
            document = _find(session, Invoice, reference, actor, "invoice")
            if document.status not in SENDABLE_INVOICE_STATES:
                raise Conflict(
                    f"invoice {document.number or document.id} is {document.status}; only "
                    "issued invoices are sent"
                )
            customer_id, number = document.customer_id, document.number
        elif document_type in ("credit_note", "debit_note"):
            model = CreditNote if document_type == "credit_note" else DebitNote
            document = _find(session, model, reference, actor, document_type.replace("_", " "))
            customer_id, number = document.customer_id, document.number
        elif document_type == "dunning_reminder":
            document = get_owned(
                session, DunningReminder, reference, actor, label="dunning reminder"
            )
            if document.status != "recorded":
                raise Conflict(f"dunning reminder {document.id} was skipped; nothing to send")
            invoice = session.get(Invoice, document.invoice_id)
            assert invoice is not None
            customer_id, number = document.customer_id, invoice.number
            subject = f"{document.name[:1].upper()}{document.name[1:]}: invoice {number}"
        else:
            document = get_owned(session, Customer, reference, actor, label="customer")
            from tallybook.services.receivables import organization_today

            date_to = date_to or organization_today(session, actor.organization_id)
            date_from = date_from or date_to.replace(day=1)
            if date_from > date_to:
                raise InvalidInput(
                    f"from: {date_from} is after the period end {date_to}", field="from"
                )
            extra = {"from": date_from.isoformat(), "to": date_to.isoformat()}
            customer_id, number = document.id, None
        customer = session.get(Customer, customer_id)
        assert customer is not None
        if not to and not customer.emails:
            raise InvalidInput(
                f"to: customer {customer.legal_name} has no e-mail address; give one", field="to"
            )
        delivery = queue_email(
            session,
            customer,
            document_type,
            document.id,
            number,
            to=to,
            einvoice=choice,
            subject=subject,
            details=extra,
            requested_by=actor.key_id,
        )
        assert delivery is not None
        session.flush()
        audit(
            session,
            actor,
            "delivery.requested",
            "delivery",
            delivery.id,
            {
                "document_type": document_type,
                "document": number or document.id,
                "recipients": delivery.recipients,
                "einvoice": delivery.details.get("einvoice"),
            },
        )
    return delivery


# -- the delivery log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryView:
    delivery: Delivery
    attempts: tuple[DeliveryAttempt, ...]


def _statuses(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    for item in items:
        if item not in STATUSES:
            raise InvalidInput(
                f"status: {item!r} is not one of {', '.join(STATUSES)}", field="status"
            )
    return items or None


def list_deliveries(
    db: Database,
    actor: Actor,
    *,
    channel: str | None = None,
    status: str | Sequence[str] | None = None,
    document: str | None = None,
    customer_id: str | None = None,
    endpoint_id: str | None = None,
    event_type: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Delivery], str | None]:
    """The log, newest state of each delivery; `document` is a document's id or number."""
    if channel is not None and channel not in CHANNELS:
        raise InvalidInput("channel: must be email or webhook", field="channel")
    statuses = _statuses(status)
    query = select(Delivery).where(Delivery.organization_id == actor.organization_id)
    if channel:
        query = query.where(Delivery.channel == channel)
    if statuses:
        query = query.where(Delivery.status.in_(statuses))
    if document:
        query = query.where(
            or_(Delivery.document_id == document, Delivery.document_number == document)
        )
    if customer_id:
        query = query.where(Delivery.customer_id == customer_id)
    if endpoint_id:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    if event_type:
        query = query.where(Delivery.event_type == event_type)
    with db.reading() as session:
        return keyset_page(session, query, Delivery, limit, after)


def get_delivery(
    db: Database, actor: Actor, delivery_id: str, *, channel: str | None = None
) -> DeliveryView:
    with db.reading() as session:
        delivery = get_owned(session, Delivery, delivery_id, actor, label="delivery")
        if channel and delivery.channel != channel:
            raise NotFound(f"{channel} delivery {delivery_id} not found")
        attempts = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery.id)
            .order_by(DeliveryAttempt.attempt)
        )
        return DeliveryView(delivery, tuple(attempts))


def retry_delivery(db: Database, actor: Actor, delivery_id: str) -> Delivery:
    """Put a failed delivery, or one whose fate is unknown (checked by a person), back in the
    queue with a fresh set of attempts; a queued one is tried at once."""
    actor.require(*WRITERS, action="retry deliveries")
    with db.transaction() as session:
        delivery = get_owned(session, Delivery, delivery_id, actor, lock=True, label="delivery")
        if delivery.status == "sent":
            hint = "replay it" if delivery.channel == "webhook" else "send the document again"
            raise Conflict(f"delivery {delivery.id} was sent already; {hint}")
        if delivery.status == "sending":
            raise Conflict(f"delivery {delivery.id} is being sent right now")
        was = delivery.status
        delivery.status = "queued"
        delivery.attempts = 0
        delivery.next_attempt_at = utcnow()
        delivery.claimed_at = None
        delivery.claimed_by = None
        audit(
            session,
            actor,
            "delivery.retried",
            "delivery",
            delivery.id,
            {"was": was, "last_error": delivery.last_error},
        )
    return delivery


def replay_webhook(db: Database, actor: Actor, delivery_id: str) -> Delivery:
    """Deliver a webhook event again to its endpoint: a new delivery with the same body and
    webhook-id (a receiver that processed it already recognises it), signed anew."""
    actor.require(Role.ADMIN, Role.BILLING_MANAGER, action="replay webhooks")
    with db.transaction() as session:
        original = get_owned(session, Delivery, delivery_id, actor, label="webhook delivery")
        if original.channel != "webhook":
            raise NotFound(f"webhook delivery {delivery_id} not found")
        endpoint = session.get(WebhookEndpoint, original.endpoint_id)
        if endpoint is None or endpoint.organization_id != actor.organization_id:
            raise Conflict("the webhook endpoint of this delivery was deleted")
        now = utcnow()
        replay = Delivery(
            id=new_id("dlv"),
            organization_id=original.organization_id,
            channel="webhook",
            status="queued",
            recipients=[endpoint.url],
            details={},
            endpoint_id=endpoint.id,
            event_type=original.event_type,
            payload=original.payload,
            message_id=original.message_id,
            replay_of=original.id,
            attempts=0,
            next_attempt_at=now,
            requested_by=actor.key_id,
            created_at=now,
        )
        session.add(replay)
        session.flush()
        audit(
            session,
            actor,
            "webhook.replayed",
            "delivery",
            replay.id,
            {"replay_of": original.id, "event_type": original.event_type},
        )
    return replay


# -- the sender: claim, send, record --------------------------------------------------------------

_identity: tuple[int, str] | None = None


def worker_identity() -> str:
    """host:pid:token of this process (a new token after a fork)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:12]}")
    return _identity[1]


@dataclass(frozen=True)
class Claim:
    """What the sender needs of a claimed delivery, read in the claiming transaction."""

    id: str
    organization_id: str
    channel: str
    message_id: str
    recipients: tuple[str, ...]
    subject: str | None
    document_type: str | None
    document_id: str | None
    customer_id: str | None
    details: dict[str, Any]
    endpoint_id: str | None
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class Outcome:
    outcome: str  # sent | retry | failed | unknown
    error: str | None = None
    status_code: int | None = None
    response: str | None = None


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    recovered: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.unknown


def _backoff(settings: DeliverySettings) -> Backoff:
    return Backoff(
        base_seconds=settings.backoff_seconds,
        cap_seconds=max(settings.backoff_cap_seconds, settings.backoff_seconds),
        max_attempts=max(1, settings.max_attempts),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(row: Delivery, me: str, now: datetime, lease: timedelta) -> bool:
    """Is the worker that claimed this delivery gone? Its lease ran out, or it ran on this
    machine and its process is dead (or is an earlier process that had our pid)."""
    if row.claimed_at is None or row.claimed_at <= now - lease:
        return True
    parts = (row.claimed_by or "").rsplit(":", 2)
    my_host, my_pid, _ = me.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != my_host:
        return False  # another machine's worker: only its lease tells
    pid = parts[1]
    if pid == my_pid:
        return row.claimed_by != me
    return not (pid.isdigit() and _alive(int(pid)))


def _log(
    session: Session, delivery: Delivery, outcome: Outcome, started: datetime, now: datetime
) -> None:
    last = session.scalar(
        select(func.max(DeliveryAttempt.attempt)).where(DeliveryAttempt.delivery_id == delivery.id)
    )
    session.add(
        DeliveryAttempt(
            id=new_id("dat"),
            organization_id=delivery.organization_id,
            delivery_id=delivery.id,
            attempt=(last or 0) + 1,
            outcome=outcome.outcome,
            status_code=outcome.status_code,
            response_excerpt=outcome.response,
            error=outcome.error,
            started_at=started,
            finished_at=now,
        )
    )


def recover_abandoned(db: Database, worker: str, settings: DeliverySettings) -> int:
    """Deliveries left in `sending` by a worker that is gone: e-mails become `unknown` (never
    re-sent by themselves), webhooks go back to the queue with the same webhook-id."""
    now = utcnow()
    lease = timedelta(seconds=settings.lease_seconds)
    recovered = 0
    with db.transaction() as session:
        rows = session.scalars(
            select(Delivery)
            .where(Delivery.status == "sending")
            .order_by(Delivery.id)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            if not _abandoned(row, worker, now, lease):
                continue
            if row.channel == "email":
                row.status = "unknown"
                error = (
                    f"the sender ({row.claimed_by}) stopped while handing the message over; it "
                    "may have been delivered: check, then retry it or leave it"
                )
            else:
                row.status = "queued"
                row.next_attempt_at = now
                error = f"the sender ({row.claimed_by}) stopped; posted again, same webhook-id"
            row.last_error = error
            _log(session, row, Outcome("unknown", error), row.claimed_at or now, now)
            row.claimed_by = None
            recovered += 1
    return recovered


def claim_next(
    db: Database, worker: str, channels: Sequence[str], organization_id: str | None = None
) -> Claim | None:
    """Take the next due delivery and commit it as `sending` before anything is sent."""
    if not channels:
        return None
    now = utcnow()
    query = select(Delivery).where(
        Delivery.status == "queued",
        Delivery.next_attempt_at <= now,
        Delivery.channel.in_(list(channels)),
    )
    if organization_id is not None:
        query = query.where(Delivery.organization_id == organization_id)
    with db.transaction() as session:
        row = session.scalars(
            query.order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        row.status = "sending"
        row.attempts += 1
        row.claimed_at = now
        row.claimed_by = worker
        return Claim(
            id=row.id,
            organization_id=row.organization_id,
            channel=row.channel,
            message_id=row.message_id,
            recipients=tuple(row.recipients or ()),
            subject=row.subject,
            document_type=row.document_type,
            document_id=row.document_id,
            customer_id=row.customer_id,
            details=dict(row.details or {}),
            endpoint_id=row.endpoint_id,
            payload=row.payload,
        )


def record(
    db: Database,
    claim: Claim,
    worker: str,
    outcome: Outcome,
    settings: DeliverySettings,
    started: datetime,
) -> str:
    """The outcome onto the claimed delivery; returns its new status. A delivery no longer
    ours (presumed lost and recovered meanwhile) keeps its state; the attempt is logged."""
    now = utcnow()
    with db.transaction() as session:
        row = session.get(Delivery, claim.id, with_for_update=True)
        assert row is not None
        _log(session, row, outcome, started, now)
        row.last_error = outcome.error
        row.last_status_code = outcome.status_code
        row.last_response = outcome.response
        if row.status != "sending" or row.claimed_by != worker:
            return row.status
        row.claimed_by = None
        if outcome.outcome == "sent":
            row.status = "sent"
            row.sent_at = now
        elif outcome.outcome == "retry":
            when = next_attempt(_backoff(settings), row.attempts, row.id, now)
            if when is None:
                row.status = "failed"
                row.last_error = f"gave up after {row.attempts} attempts: {outcome.error}"
            else:
                row.status = "queued"
                row.next_attempt_at = when
        else:
            row.status = outcome.outcome  # failed | unknown
        return row.status


def send_due(
    db: Database,
    *,
    limit: int = 1000,
    settings: DeliverySettings | None = None,
    smtp_settings: SmtpSettings | None = None,
    worker: str | None = None,
    organization_id: str | None = None,
) -> SendReport:
    """Send what is due (of one organisation, or all), one delivery at a time, until nothing
    is due or `limit` were handled. The task the job worker runs; safe to run in many
    processes at once."""
    settings = settings or DeliverySettings.from_env()
    smtp_settings = smtp_settings or SmtpSettings.from_env()
    worker = worker or worker_identity()
    report = SendReport(recovered=recover_abandoned(db, worker, settings))
    # Without an SMTP server e-mails wait in the queue; webhooks still go.
    channels = ["webhook"] + (["email"] if smtp_settings.host else [])
    with ExitStack() as stack:
        sender: smtp.SmtpSender | None = None
        client: httpx.Client | None = None
        while report.handled < limit:
            claim = claim_next(db, worker, channels, organization_id)
            if claim is None:
                break
            started = utcnow()
            if claim.channel == "email":
                if sender is None:
                    sender = stack.enter_context(smtp.SmtpSender(smtp_settings))
                outcome = _send_email(db, claim, sender, smtp_settings)
            else:
                if client is None:
                    client = stack.enter_context(
                        httpx.Client(timeout=settings.webhook_timeout_seconds)
                    )
                outcome = _send_webhook(db, claim, client)
            status = record(db, claim, worker, outcome, settings, started)
            report.outcomes[claim.id] = status
            if status == "sent":
                report.sent += 1
            elif status == "queued":
                report.retried += 1
            elif status == "failed":
                report.failed += 1
            else:
                report.unknown += 1
    return report


def _send_webhook(db: Database, claim: Claim, client: httpx.Client) -> Outcome:
    with db.reading() as session:
        endpoint = session.get(WebhookEndpoint, claim.endpoint_id)
        if endpoint is None:
            return Outcome("failed", "the webhook endpoint was deleted")
        url, encrypted = endpoint.url, endpoint.secret_encrypted
    try:
        secret = webhooks.decrypt_secret(encrypted)
    except ServiceError as error:
        return Outcome("retry", error.detail)
    result = webhooks.post(client, url, secret, claim.message_id, claim.payload or {})
    return Outcome(result.outcome, result.error, result.status_code, result.response_excerpt)


def _send_email(
    db: Database, claim: Claim, sender: smtp.SmtpSender, settings: SmtpSettings
) -> Outcome:
    try:
        message = compose(db, claim, settings)
    except _NoSender as error:
        return Outcome("retry", str(error))
    except ServiceError as error:
        # The document cannot be rendered as asked (an e-invoice missing the seller's
        # details, say): nothing was sent; a clerk fixes it and retries.
        return Outcome("failed", f"cannot prepare the e-mail: {error.detail}")
    result = sender.send(message)
    detail = result.detail
    if result.refused:
        refused = "; ".join(f"{address}: {reply}" for address, reply in result.refused.items())
        detail = f"{detail or ''} (refused: {refused})".strip()
    if result.outcome == smtp.SENT:
        return Outcome("sent", detail if result.refused else None, result.code, result.detail)
    return Outcome(result.outcome, detail, result.code)


# -- composing an e-mail ----------------------------------------------------------------------


class _NoSender(Exception):
    pass


def _amount(minor: int, currency: str) -> str:
    return f"{format(from_minor(minor, currency), 'f')} {currency}"


def _pay_to(org: Organization, reference: str | None) -> list[str]:
    lines = []
    if reference:
        lines.append(f"Payment reference: {display(reference)}")
    if org.iban:
        lines.append(f"Pay to: IBAN {org.iban}" + (f", BIC {org.bic}" if org.bic else ""))
    return lines


def compose(db: Database, claim: Claim, settings: SmtpSettings) -> smtp.OutgoingEmail:
    """The e-mail of a claimed delivery: text and attachments rendered now from the issued
    document (issued documents never change, so every attempt sends the same)."""
    actor = Actor(claim.organization_id, None, Role.VIEWER)
    with db.reading() as session:
        org = session.get(Organization, claim.organization_id)
        customer = session.get(Customer, claim.customer_id)
        assert org is not None and customer is not None
        sender = org.email_from or settings.default_from
        if not sender:
            raise _NoSender(
                "no sender address: set the organisation's email_from or TALLYBOOK_SMTP_FROM"
            )
        text, attachments = _content(session, claim, org, customer)
        org_name, contact = org.name, org.contact_email
    files = [*_render(db, actor, claim, attachments)]
    closing = [
        "",
        f"Questions? Reply to this e-mail{f' or write to {contact}' if contact else ''}.",
        "",
        org_name,
    ]
    return smtp.OutgoingEmail(
        sender=sender,
        recipients=claim.recipients,
        subject=claim.subject or f"Document from {org_name}",
        text=f"Dear {customer.legal_name},\n\n" + "\n".join(text + closing) + "\n",
        message_id=claim.message_id,
        sent_at=utcnow(),
        attachments=tuple(files),
        reply_to=contact,
    )


def _content(
    session: Session, claim: Claim, org: Organization, customer: Customer
) -> tuple[list[str], list[tuple[str, str]]]:
    """The body's lines and what to attach: (kind, document id) pairs."""
    kind, document_id = claim.document_type, claim.document_id
    assert document_id is not None
    einvoice = claim.details.get("einvoice")
    if kind == "invoice":
        invoice = session.get(Invoice, document_id)
        assert invoice is not None
        text = [
            f"please find attached invoice {invoice.number} of {invoice.issue_date}.",
            "",
            f"Total: {_amount(invoice.total_minor, invoice.currency)}",
            f"Amount due: {_amount(invoice.amount_due_minor, invoice.currency)}"
            + (f", by {invoice.due_date}" if invoice.amount_due_minor else ""),
            *_pay_to(org, invoice.payment_reference if invoice.amount_due_minor else None),
        ]
        pdf = "facturx" if einvoice == "facturx" else "pdf"
        attach = [(pdf, "invoice")]
        if einvoice in ("ubl", "cii"):
            attach.append((einvoice, "invoice"))
        return text, attach
    if kind in ("credit_note", "debit_note"):
        model = CreditNote if kind == "credit_note" else DebitNote
        note = session.get(model, document_id)
        assert note is not None
        invoice = session.get(Invoice, note.invoice_id)
        assert invoice is not None
        label = "credit note" if kind == "credit_note" else "debit note"
        text = [
            f"please find attached {label} {note.number} of {note.issue_date} for invoice "
            f"{invoice.number}: {note.reason}",
            "",
            f"Total: {_amount(note.total_minor, note.currency)}",
        ]
        if kind == "debit_note":
            text += [f"Due by {note.due_date}.", *_pay_to(org, invoice.payment_reference)]
        attach = [("pdf", kind)]
        if einvoice in ("ubl", "cii", "facturx"):
            # Factur-X is an invoice's PDF; a note carries its CII as a separate file.
            attach.append(("cii" if einvoice == "facturx" else einvoice, kind))
        return text, attach
    if kind == "dunning_reminder":
        reminder = session.get(DunningReminder, document_id)
        assert reminder is not None
        invoice = session.get(Invoice, reminder.invoice_id)
        assert invoice is not None
        text = [
            reminder.summary or f"{reminder.name}: invoice {invoice.number}",
            "",
            f"Open on invoice {invoice.number}: {_amount(reminder.open_minor, reminder.currency)}"
            f", due since {invoice.due_date}",
        ]
        if reminder.fee_minor:
            text.append(f"Late fee charged: {_amount(reminder.fee_minor, reminder.currency)}")
        text += _pay_to(org, invoice.payment_reference)
        attach = [("pdf:dunning_letter", reminder.id), ("pdf:invoice", invoice.id)]
        if reminder.debit_note_id:
            attach.append(("pdf:debit_note", reminder.debit_note_id))
        return text, attach
    if kind == "statement":
        text = [
            f"please find attached your statement of account from {claim.details['from']} to "
            f"{claim.details['to']}.",
        ]
        return text, [("statement", customer.id)]
    raise ServiceError(f"document type {kind!r} cannot be e-mailed")


def _render(
    db: Database, actor: Actor, claim: Claim, wanted: list[tuple[str, str]]
) -> list[smtp.Attachment]:
    files: list[smtp.Attachment] = []
    for what, ref in wanted:
        # ("pdf", kind) attaches the claimed document; ("pdf:kind", id) another one.
        if what == "pdf":
            document_kind, document_id = ref, claim.document_id
        elif what.startswith("pdf:"):
            document_kind, document_id = what[4:], ref
        else:
            document_kind, document_id = ref, claim.document_id
        assert document_id is not None
        if what == "pdf" or what.startswith("pdf:"):
            pdf = _pdf(db, actor, document_kind, document_id)
            if pdf is not None:
                files.append(pdf)
        elif what == "facturx":
            facturx = _facturx(db, actor, document_id)
            if facturx is not None:
                files.append(facturx)
            else:  # no Factur-X renderer: the CII XML goes along instead
                files.append(_xml(db, actor, document_kind, document_id, "cii"))
        elif what in ("ubl", "cii"):
            files.append(_xml(db, actor, document_kind, document_id, what))
        elif what == "statement":
            files.append(_statement(db, actor, ref, claim.details))
    return files


def _documents() -> Any:
    try:
        from tallybook.services import documents
    except ImportError:  # the PDF renderer is not installed in this build
        return None
    return documents


def _pdf(db: Database, actor: Actor, kind: str, document_id: str) -> smtp.Attachment | None:
    documents = _documents()
    if documents is None:
        return None
    rendered = documents.document_pdf(db, actor, kind, document_id)
    return smtp.Attachment(rendered.file_name, rendered.media_type, rendered.content)


def _facturx(db: Database, actor: Actor, invoice_id: str) -> smtp.Attachment | None:
    documents = _documents()
    if documents is None:
        return None
    rendered = documents.document_facturx(db, actor, invoice_id)
    return smtp.Attachment(rendered.file_name, rendered.media_type, rendered.content)


def _xml(db: Database, actor: Actor, kind: str, document_id: str, syntax: str) -> smtp.Attachment:
    from tallybook.services.einvoices import einvoice_file

    file = einvoice_file(db, actor, document_id, kind, syntax)
    return smtp.Attachment(file.file_name, file.media_type, file.content)


def _statement(
    db: Database, actor: Actor, customer_id: str, details: dict[str, Any]
) -> smtp.Attachment:
    date_from = date.fromisoformat(details["from"])
    date_to = date.fromisoformat(details["to"])
    documents = _documents()
    if documents is not None:
        rendered = documents.document_pdf(
            db, actor, "statement", customer_id, date_from=date_from, date_to=date_to
        )
        return smtp.Attachment(rendered.file_name, rendered.media_type, rendered.content)
    # Without the PDF renderer the statement goes as CSV.
    from tallybook.formats.receivables_reports import statement_csv
    from tallybook.services.receivables import customer_statement

    view = customer_statement(db, actor, customer_id, date_from, date_to)
    return smtp.Attachment(
        f"statement-{date_from}-{date_to}.csv", "text/csv", statement_csv(view.statement).encode()
    )
