"""Payment methods: a customer's card or bank mandate kept as the payment provider's token,
one of them the default that automatic collection charges. Card numbers are refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core.payments import contains_card_number
from tallybook.db.models import Customer, PaymentMethod, new_id
from tallybook.providers.payments import ProviderRegistry, default_registry
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    audit,
    get_owned,
    snapshot,
    utcnow,
)

KINDS = ("card", "sepa_debit", "ach_debit")
DEFAULT_LABELS = {"card": "Card", "sepa_debit": "SEPA Direct Debit", "ach_debit": "ACH debit"}


def _no_card_number(value: str, field: str) -> None:
    # The message never repeats the value: it must not reach logs, answers or the database.
    if contains_card_number(value):
        raise InvalidInput(
            f"{field}: looks like a card number; Tallybook never stores card numbers, attach "
            "the payment provider's token for the card instead",
            field=field,
        )


def _text(values: dict[str, Any], field: str, limit: int, *, required: bool) -> str | None:
    value = values.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"{field}: is required", field=field)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be text", field=field)
    value = value.strip()
    _no_card_number(value, field)
    if len(value) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters", field=field)
    return value


def _active(session: Session, organization_id: str, customer_id: str) -> list[PaymentMethod]:
    return list(
        session.scalars(
            select(PaymentMethod)
            .where(
                PaymentMethod.organization_id == organization_id,
                PaymentMethod.customer_id == customer_id,
                PaymentMethod.detached_at.is_(None),
            )
            .order_by(PaymentMethod.created_at, PaymentMethod.id)
        )
    )


def attach_payment_method(
    db: Database,
    actor: Actor,
    customer_id: str,
    values: dict[str, Any],
    *,
    providers: ProviderRegistry | None = None,
) -> PaymentMethod:
    """Keep a customer's way to pay: provider, token, kind (card, sepa_debit, ach_debit),
    label ("Visa ending 4242") and whether it is the default. The first one is the default
    unless told otherwise; a new default replaces the old one."""
    actor.require(*WRITERS, action="attach payment methods")
    unknown = sorted(set(values) - {"provider", "token", "kind", "label", "default"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: not a payment method field", field=unknown[0])
    token = _text(values, "token", 200, required=True)
    label = _text(values, "label", 100, required=False)
    provider = _text(values, "provider", 40, required=True)
    assert token is not None and provider is not None
    if any(c.isspace() for c in token):
        raise InvalidInput("token: a provider token has no spaces", field="token")
    registry = providers or default_registry()
    if provider not in registry:
        raise InvalidInput(
            f"provider: {provider!r} is not a configured payment provider (configured: "
            f"{', '.join(registry.names())})",
            field="provider",
        )
    kind = values.get("kind") or "card"
    if kind not in KINDS:
        raise InvalidInput(f"kind: one of {', '.join(KINDS)}", field="kind")
    make_default = values.get("default")
    if make_default is not None and not isinstance(make_default, bool):
        raise InvalidInput("default: must be true or false", field="default")
    with db.transaction() as session:
        # Locked so two attachments of one customer cannot both become the default.
        customer = get_owned(session, Customer, customer_id, actor, lock=True, label="customer")
        active = _active(session, actor.organization_id, customer.id)
        for method in active:
            if (method.provider, method.token) == (provider, token):
                raise Conflict(
                    f"token: already attached to this customer as {method.id}", field="token"
                )
        if make_default is None:
            make_default = not any(m.is_default for m in active)
        if make_default:
            for method in active:
                method.is_default = False
        method = PaymentMethod(
            id=new_id("pm"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            provider=provider,
            token=token,
            kind=kind,
            label=label or DEFAULT_LABELS[kind],
            is_default=make_default,
            created_at=utcnow(),
        )
        session.add(method)
        audit(
            session,
            actor,
            "payment_method.attached",
            "payment_method",
            method.id,
            {
                "customer_id": customer.id,
                "provider": provider,
                "kind": kind,
                "label": method.label,
                "default": make_default,
            },
            after=method,
        )
        return method


def list_payment_methods(
    db: Database, actor: Actor, customer_id: str, *, include_detached: bool = False
) -> list[PaymentMethod]:
    """The customer's payment methods, oldest first; removed ones only if asked."""
    with db.reading() as session:
        customer = get_owned(session, Customer, customer_id, actor, label="customer")
        if not include_detached:
            return _active(session, actor.organization_id, customer.id)
        return list(
            session.scalars(
                select(PaymentMethod)
                .where(
                    PaymentMethod.organization_id == actor.organization_id,
                    PaymentMethod.customer_id == customer.id,
                )
                .order_by(PaymentMethod.created_at, PaymentMethod.id)
            )
        )


def _locked_method(
    session: Session, actor: Actor, method_id: str, customer_id: str | None
) -> PaymentMethod:
    method = get_owned(session, PaymentMethod, method_id, actor, label="payment method")
    if customer_id is not None and method.customer_id != customer_id:
        # Asked through another customer's address: as far as that customer goes, not there.
        raise NotFound(f"payment method {method_id} not found")
    # The customer first, then the method: the order attaching uses, so they queue.
    session.get(Customer, method.customer_id, with_for_update=True)
    session.refresh(method, with_for_update=True)
    return method


def set_default_payment_method(
    db: Database, actor: Actor, method_id: str, *, customer_id: str | None = None
) -> PaymentMethod:
    """Make this the method automatic collection charges for its customer."""
    actor.require(*WRITERS, action="change payment methods")
    with db.transaction() as session:
        method = _locked_method(session, actor, method_id, customer_id)
        if method.detached_at is not None:
            raise Conflict(f"payment method {method.id} was removed; attach it again")
        previous = [
            other.id
            for other in _active(session, actor.organization_id, method.customer_id)
            if other.is_default
        ]
        for other in _active(session, actor.organization_id, method.customer_id):
            other.is_default = other.id == method.id
        audit(
            session,
            actor,
            "payment_method.made_default",
            "payment_method",
            method.id,
            {"customer_id": method.customer_id, "label": method.label},
            before={"default_methods": previous},
            after={"default_methods": [method.id]},
        )
        return method


def detach_payment_method(
    db: Database, actor: Actor, method_id: str, *, customer_id: str | None = None
) -> PaymentMethod:
    """Stop using a payment method. The row stays (past attempts and payments name it); if it
    was the default, the customer has none until one is chosen: collection never switches to
    another card on its own."""
    actor.require(*WRITERS, action="remove payment methods")
    with db.transaction() as session:
        method = _locked_method(session, actor, method_id, customer_id)
        if method.detached_at is not None:
            raise Conflict(f"payment method {method.id} is already removed")
        was_default = method.is_default
        before = snapshot(method, "detached_at", "is_default")
        method.detached_at = utcnow()
        method.is_default = False
        audit(
            session,
            actor,
            "payment_method.detached",
            "payment_method",
            method.id,
            {"customer_id": method.customer_id, "label": method.label, "was_default": was_default},
            before=before,
            after=method,
        )
        return method
