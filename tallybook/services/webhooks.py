"""Webhooks: the endpoints an organisation registers, the events written to the outbox for them
in the event's own transaction, and posting one, signed per the Standard Webhooks
specification (webhook-id, webhook-timestamp, webhook-signature) with the endpoint's secret.

The secret is needed to sign, so it is stored, encrypted with TALLYBOOK_SECRET_KEY (Fernet);
it is shown once, when the endpoint is created or its secret rotated.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from tallybook.config import secret_keys
from tallybook.core.money import from_minor
from tallybook.db.models import Delivery, WebhookEndpoint, new_id
from tallybook.services.base import (
    Actor,
    Database,
    InvalidInput,
    Role,
    ServiceError,
    audit,
    get_owned,
    snapshot,
    utcnow,
)

# What an endpoint can subscribe to ("*": everything, including types added later).
EVENT_TYPES = (
    "invoice.issued",
    "invoice.paid",
    "invoice.voided",
    "credit_note.issued",
    "debit_note.issued",
    "payment.received",
    "payment.failed",
    "dunning.reminder",
    "webhook.test",
)
RESPONSE_EXCERPT = 500
USER_AGENT = "Tallybook-Webhooks/1"


class NotConfigured(ServiceError):
    status = 503
    title = "Not configured"
    type_suffix = "not-configured"


# -- the secret, encrypted at rest -------------------------------------------------------------


def _cipher() -> MultiFernet:
    keys = secret_keys()
    if not keys:
        raise NotConfigured(
            "TALLYBOOK_SECRET_KEY is not set: webhook secrets are stored encrypted with it "
            "(make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise NotConfigured(
            "TALLYBOOK_SECRET_KEY: each key must be a Fernet key (32 url-safe base64 bytes)"
        ) from None


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: whsec_ and 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def encrypt_secret(secret: str) -> str:
    return _cipher().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        raise NotConfigured(
            "the webhook secret cannot be decrypted with TALLYBOOK_SECRET_KEY (was the key "
            "changed without keeping the old one after a comma?)"
        ) from None


# -- endpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _url(value: Any) -> str:
    text = str(value or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url: {text!r} is not an http(s) URL", field="url")
    if len(text) > 2000:
        raise InvalidInput("url: at most 2000 characters", field="url")
    return text


def _events(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput(
            'events: list the event types to receive (or ["*"] for all)', field="events"
        )
    events: list[str] = []
    for index, event in enumerate(value):
        if event != "*" and event not in EVENT_TYPES:
            raise InvalidInput(
                f"events[{index}]: {event!r} is not an event type; one of "
                + ", ".join(EVENT_TYPES),
                field="events",
            )
        if event not in events:
            events.append(event)
    return ["*"] if "*" in events else events


def _description(value: Any) -> str | None:
    text = (str(value).strip() if value is not None else "") or None
    if text and len(text) > 300:
        raise InvalidInput("description: at most 300 characters", field="description")
    return text


def create_endpoint(db: Database, actor: Actor, values: dict[str, Any]) -> CreatedEndpoint:
    actor.require(Role.ADMIN, action="manage webhook endpoints")
    url = _url(values.get("url"))
    events = _events(values.get("events"))
    description = _description(values.get("description"))
    enabled = values.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled: must be true or false", field="enabled")
    secret = new_secret()
    encrypted = encrypt_secret(secret)
    now = utcnow()
    with db.transaction() as session:
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            organization_id=actor.organization_id,
            url=url,
            description=description,
            events=events,
            enabled=enabled,
            secret_encrypted=encrypted,
            created_at=now,
            updated_at=now,
        )
        session.add(endpoint)
        _forget_endpoints(session)
        session.flush()
        audit(
            session,
            actor,
            "webhook_endpoint.created",
            "webhook_endpoint",
            endpoint.id,
            after=_audited(endpoint),
        )
    return CreatedEndpoint(endpoint, secret)


def _audited(endpoint: WebhookEndpoint) -> dict[str, Any]:
    # Never the secret, not even encrypted.
    return snapshot(endpoint, "url", "description", "events", "enabled")


def update_endpoint(
    db: Database, actor: Actor, endpoint_id: str, values: dict[str, Any]
) -> WebhookEndpoint:
    actor.require(Role.ADMIN, action="manage webhook endpoints")
    unknown = set(values) - {"url", "events", "description", "enabled"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name}: not a webhook endpoint field", field=name)
    with db.transaction() as session:
        endpoint = get_owned(
            session, WebhookEndpoint, endpoint_id, actor, lock=True, label="webhook endpoint"
        )
        before = _audited(endpoint)
        if "url" in values:
            endpoint.url = _url(values["url"])
        if "events" in values:
            endpoint.events = _events(values["events"])
            _forget_endpoints(session)
        if "description" in values:
            endpoint.description = _description(values["description"])
        if "enabled" in values:
            if not isinstance(values["enabled"], bool):
                raise InvalidInput("enabled: must be true or false", field="enabled")
            endpoint.enabled = values["enabled"]
            _forget_endpoints(session)
        endpoint.updated_at = utcnow()
        audit(
            session,
            actor,
            "webhook_endpoint.updated",
            "webhook_endpoint",
            endpoint.id,
            before=before,
            after=_audited(endpoint),
        )
    return endpoint


def rotate_secret(db: Database, actor: Actor, endpoint_id: str) -> CreatedEndpoint:
    """A new signing secret (shown once); deliveries from now on are signed with it."""
    actor.require(Role.ADMIN, action="manage webhook endpoints")
    secret = new_secret()
    encrypted = encrypt_secret(secret)
    with db.transaction() as session:
        endpoint = get_owned(
            session, WebhookEndpoint, endpoint_id, actor, lock=True, label="webhook endpoint"
        )
        endpoint.secret_encrypted = encrypted
        endpoint.updated_at = utcnow()
        audit(session, actor, "webhook_endpoint.secret_rotated", "webhook_endpoint", endpoint.id)
    return CreatedEndpoint(endpoint, secret)


def delete_endpoint(db: Database, actor: Actor, endpoint_id: str) -> int:
    """Remove an endpoint; its queued deliveries fail (nowhere to send them). Returns how many."""
    actor.require(Role.ADMIN, action="manage webhook endpoints")
    with db.transaction() as session:
        endpoint = get_owned(
            session, WebhookEndpoint, endpoint_id, actor, lock=True, label="webhook endpoint"
        )
        waiting = list(
            session.scalars(
                select(Delivery)
                .where(
                    Delivery.organization_id == actor.organization_id,
                    Delivery.endpoint_id == endpoint.id,
                    Delivery.status == "queued",
                )
                .with_for_update()
            )
        )
        for delivery in waiting:
            delivery.status = "failed"
            delivery.last_error = "the webhook endpoint was deleted"
        audit(
            session,
            actor,
            "webhook_endpoint.deleted",
            "webhook_endpoint",
            endpoint.id,
            {"queued_deliveries_failed": len(waiting)},
            before=_audited(endpoint),
        )
        session.delete(endpoint)
        _forget_endpoints(session)
    return len(waiting)


def list_endpoints(db: Database, actor: Actor) -> list[WebhookEndpoint]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.organization_id == actor.organization_id)
                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
            )
        )


def get_endpoint(db: Database, actor: Actor, endpoint_id: str) -> WebhookEndpoint:
    with db.reading() as session:
        return get_owned(session, WebhookEndpoint, endpoint_id, actor, label="webhook endpoint")


def send_test_event(db: Database, actor: Actor, endpoint_id: str) -> Delivery:
    """Queue a `webhook.test` event to one endpoint, to check it receives and verifies."""
    actor.require(Role.ADMIN, action="manage webhook endpoints")
    with db.transaction() as session:
        endpoint = get_owned(session, WebhookEndpoint, endpoint_id, actor, label="webhook endpoint")
        [delivery] = _queue(
            session,
            actor.organization_id,
            "webhook.test",
            {"endpoint_id": endpoint.id},
            [endpoint],
            requested_by=actor.key_id,
        )
        audit(
            session,
            actor,
            "webhook_endpoint.tested",
            "webhook_endpoint",
            endpoint.id,
            {"delivery": delivery.id},
        )
    return delivery


# -- events into the outbox, in the caller's transaction ---------------------------------------


def queue_event(
    session: Session, organization_id: str, event_type: str, data: dict[str, Any]
) -> list[Delivery]:
    """One delivery per enabled endpoint of the organisation subscribed to the event."""
    return queue_events(session, organization_id, event_type, [data])


def queue_events(
    session: Session, organization_id: str, event_type: str, datas: Sequence[dict[str, Any]]
) -> list[Delivery]:
    """Several events of one type (a bulk path): the endpoints are looked up once."""
    assert event_type in EVENT_TYPES, event_type
    endpoints = [
        endpoint
        for endpoint in _enabled_endpoints(session, organization_id)
        if "*" in endpoint.events or event_type in endpoint.events
    ]
    if not endpoints:
        return []
    deliveries: list[Delivery] = []
    for data in datas:
        deliveries += _queue(session, organization_id, event_type, data, endpoints)
    return deliveries


_ENDPOINTS = "tallybook.webhook_endpoints"


def _enabled_endpoints(session: Session, organization_id: str) -> list[WebhookEndpoint]:
    """The organisation's enabled endpoints, looked up once per transaction: a statement import
    settles tens of thousands of invoices, each an invoice.paid event. Changing an endpoint
    forgets the list (`_forget_endpoints`)."""
    known: dict[str, list[WebhookEndpoint]] = session.info.setdefault(_ENDPOINTS, {})
    found = known.get(organization_id)
    if found is None:
        found = list(
            session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.organization_id == organization_id,
                    WebhookEndpoint.enabled.is_(True),
                )
            )
        )
        known[organization_id] = found
    return found


def _forget_endpoints(session: Session) -> None:
    session.info.pop(_ENDPOINTS, None)


def _queue(
    session: Session,
    organization_id: str,
    event_type: str,
    data: dict[str, Any],
    endpoints: Sequence[WebhookEndpoint],
    *,
    requested_by: str | None = None,
) -> list[Delivery]:
    now = utcnow()
    # One event, one webhook-id: every endpoint (and every retry and replay) sees the same id,
    # which is what receivers deduplicate on.
    event_id = new_id("msg")
    payload = {"type": event_type, "timestamp": now.isoformat(), "data": _plain(data)}
    deliveries = []
    for endpoint in endpoints:
        delivery = Delivery(
            id=new_id("dlv"),
            organization_id=organization_id,
            channel="webhook",
            status="queued",
            recipients=[endpoint.url],
            details={},
            endpoint_id=endpoint.id,
            event_type=event_type,
            payload=payload,
            message_id=event_id,
            attempts=0,
            next_attempt_at=now,
            requested_by=requested_by,
            created_at=now,
        )
        session.add(delivery)
        deliveries.append(delivery)
    return deliveries


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _money(data: dict[str, Any], currency: str, **minor: int) -> dict[str, Any]:
    for name, amount in minor.items():
        data[f"{name}_minor"] = amount
        data[name] = format(from_minor(amount, currency), "f")
    return data


def invoice_data(invoice: Any) -> dict[str, Any]:
    data = {
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "customer_id": invoice.customer_id,
        "currency": invoice.currency,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "payment_reference": invoice.payment_reference,
    }
    return _money(
        data,
        invoice.currency,
        total=invoice.total_minor,
        tax=invoice.tax_minor,
        paid=invoice.paid_minor,
        amount_due=invoice.amount_due_minor,
    )


def note_data(note: Any, invoice: Any) -> dict[str, Any]:
    data = {
        "id": note.id,
        "number": note.number,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "customer_id": note.customer_id,
        "currency": note.currency,
        "issue_date": note.issue_date,
        "reason": note.reason,
    }
    return _money(data, note.currency, total=note.total_minor, tax=note.tax_minor)


def payment_data(payment: Any) -> dict[str, Any]:
    data = {
        "id": payment.id,
        "number": payment.number,
        "customer_id": payment.customer_id,
        "currency": payment.currency,
        "received_on": payment.received_on,
        "method": payment.method,
        "source": payment.source,
    }
    return _money(
        data, payment.currency, amount=payment.amount_minor, unapplied=payment.unapplied_minor
    )


def failed_charge_data(attempt: Any, invoice: Any) -> dict[str, Any]:
    data = {
        "attempt_id": attempt.id,
        "attempt": attempt.attempt,
        "status": attempt.status,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "customer_id": attempt.customer_id,
        "currency": attempt.currency,
        "failure_code": attempt.failure_code,
        "failure_message": attempt.failure_message,
        "next_attempt_on": attempt.next_attempt_on,
    }
    return _money(data, attempt.currency, amount=attempt.amount_minor)


def reminder_data(reminder: Any, invoice: Any) -> dict[str, Any]:
    data = {
        "id": reminder.id,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "customer_id": reminder.customer_id,
        "step": reminder.step,
        "level": reminder.level,
        "name": reminder.name,
        "recorded_on": reminder.recorded_on,
        "debit_note_id": reminder.debit_note_id,
        "currency": reminder.currency,
        "summary": reminder.summary,
    }
    return _money(data, reminder.currency, open=reminder.open_minor, fee=reminder.fee_minor)


# -- posting one -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    outcome: str  # sent | retry
    status_code: int | None
    response_excerpt: str | None
    error: str | None


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes posted: the same on every attempt (keys sorted), so signatures compare."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def signed_headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    signature = Webhook(secret).sign(message_id, at, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def post(
    client: httpx.Client, url: str, secret: str, message_id: str, payload: dict[str, Any]
) -> WebhookResult:
    """POST the event; 2xx is delivered, anything else (or no answer) is tried again later."""
    body = body_of(payload)
    headers = signed_headers(secret, message_id, utcnow(), body)
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return WebhookResult("retry", None, None, f"{type(error).__name__}: {error}".strip())
    excerpt = response.text[:RESPONSE_EXCERPT] if response.content else None
    if 200 <= response.status_code < 300:
        return WebhookResult("sent", response.status_code, excerpt, None)
    return WebhookResult(
        "retry", response.status_code, excerpt, f"the endpoint answered {response.status_code}"
    )
