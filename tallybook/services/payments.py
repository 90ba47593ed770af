"""Payments: record money received and apply it to invoices (oldest first or as told), turn
what is left into customer credit, reverse a payment that did not happen, refund a payment or
a credit balance. Each posts its journal entry in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core import ledger as core_ledger
from tallybook.core.money import MoneyError, parse_decimal, to_minor_exact
from tallybook.core.payments import (
    OpenItem,
    PaymentError,
    apply_payment,
    contains_card_number,
    oldest_first,
)
from tallybook.core.periods import local_date
from tallybook.db.models import (
    Customer,
    CustomerCreditEntry,
    Invoice,
    Organization,
    Payment,
    PaymentAllocation,
    Refund,
    new_id,
)
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    audit,
    changes,
    get_owned,
    snapshot,
    utcnow,
)
from tallybook.services.invoices import _refresh_amount_due, next_number
from tallybook.services.ledger import accounts_of, post

METHODS = ("bank_transfer", "check", "card", "direct_debit", "cash", "other")
OPEN_STATES = ("issued", "partially_paid")


@dataclass(frozen=True)
class PaymentView:
    payment: Payment
    allocations: list[PaymentAllocation]


def _amount(value: Any, currency: str, field: str = "amount") -> int:
    try:
        return to_minor_exact(parse_decimal(value, field), currency, field)
    except MoneyError as error:
        raise InvalidInput(str(error), field=field) from None


def _day(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a date (YYYY-MM-DD)", field=field) from None


def _credit_entry(
    session: Session, customer: Customer, amount: int, currency: str, source: str, source_id: str
) -> None:
    customer.credit_balance_minor += amount
    session.add(
        CustomerCreditEntry(
            id=new_id("cce"),
            organization_id=customer.organization_id,
            customer_id=customer.id,
            amount_minor=amount,
            currency=currency,
            source=source,
            source_id=source_id,
            created_at=utcnow(),
        )
    )


def open_invoices(
    session: Session, organization_id: str, customer_id: str, *, lock: bool = False
) -> list[Invoice]:
    """The customer's invoices with something still owed, locked in id order if asked (so
    two payments for one customer queue instead of deadlocking)."""
    query = (
        select(Invoice)
        .where(
            Invoice.organization_id == organization_id,
            Invoice.customer_id == customer_id,
            Invoice.status.in_(OPEN_STATES),
            Invoice.amount_due_minor > 0,
        )
        .order_by(Invoice.id)
    )
    if lock:
        query = query.with_for_update()
    return list(session.scalars(query))


def apply_received(
    session: Session,
    actor: Actor,
    customer: Customer,
    *,
    amount_minor: int,
    currency: str,
    received_on: date,
    method: str,
    reference: str | None = None,
    explicit: dict[str, int] | None = None,
    only: list[str] | None = None,
    source: str = "manual",
    payment_method_id: str | None = None,
    provider_reference: str | None = None,
) -> Payment:
    """Record a payment of a locked customer in the caller's transaction and apply it.

    `explicit` names the amount for each invoice; `only` restricts oldest-first application
    to the listed invoices (in their oldest-first order); neither: all open invoices."""
    invoices = open_invoices(session, customer.organization_id, customer.id, lock=True)
    by_id = {i.id: i for i in invoices}
    named = list(explicit or {}) + list(only or [])
    for invoice_id in named:
        if invoice_id not in by_id:
            invoice = session.get(Invoice, invoice_id)
            if invoice is None or invoice.organization_id != customer.organization_id:
                raise NotFound(f"invoice {invoice_id} not found", field="allocations")
            if invoice.customer_id != customer.id:
                raise InvalidInput(
                    f"allocations: invoice {invoice.number or invoice.id} belongs to another "
                    "customer",
                    field="allocations",
                )
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status} with "
                f"{invoice.amount_due_minor} minor units due; nothing to apply a payment to",
                field="allocations",
            )
    items = [
        OpenItem(i.id, i.number or i.id, i.currency, i.due_date, i.issue_date, i.amount_due_minor)
        for i in invoices
        if (only is None or i.id in only) and (explicit is None or i.id in explicit)
    ]
    try:
        applied, unapplied = apply_payment(amount_minor, currency, oldest_first(items), explicit)
    except PaymentError as error:
        raise InvalidInput(str(error), field=error.field) from None
    if unapplied and currency != customer.currency:
        raise InvalidInput(
            f"currency: {unapplied} minor units would be left over as customer credit, but "
            f"the customer's credit is kept in {customer.currency}; apply the whole payment to "
            f"{currency} invoices",
            field="currency",
        )
    org = session.get(Organization, customer.organization_id)
    payment = Payment(
        id=new_id("pay"),
        organization_id=customer.organization_id,
        customer_id=customer.id,
        number=next_number(session, org.id, "payment", org.payment_number_pattern, received_on),
        currency=currency,
        amount_minor=amount_minor,
        received_on=received_on,
        method=method,
        reference=reference,
        payment_method_id=payment_method_id,
        provider_reference=provider_reference,
        source=source,
        unapplied_minor=unapplied,
        refunded_minor=0,
        status="completed",
        created_by=actor.key_id,
        created_at=utcnow(),
    )
    session.add(payment)
    session.flush()
    invoice_changes: dict[str, Any] = {}
    for position, (invoice_id, amount) in enumerate(applied, start=1):
        invoice = by_id[invoice_id]
        was = snapshot(invoice, "status", "paid_minor", "amount_due_minor")
        invoice.paid_minor += amount
        _refresh_amount_due(invoice)
        invoice_changes[invoice.number or invoice.id] = changes(was, invoice)
        session.add(
            PaymentAllocation(
                id=new_id("pal"),
                organization_id=payment.organization_id,
                payment_id=payment.id,
                invoice_id=invoice_id,
                position=position,
                amount_minor=amount,
                undone_minor=0,
                created_at=payment.created_at,
            )
        )
    if unapplied:
        _credit_entry(session, customer, unapplied, currency, "payment", payment.id)
    post(
        session,
        org.id,
        core_ledger.payment_received(
            accounts_of(session, org.id),
            number=payment.number,
            received_on=received_on,
            currency=currency,
            customer=customer.legal_name,
            amount_minor=amount_minor,
            applied_minor=amount_minor - unapplied,
        ),
        source_type="payment",
        source_id=payment.id,
        customer_id=customer.id,
    )
    audit(
        session,
        actor,
        "payment.recorded",
        "payment",
        payment.id,
        {
            "number": payment.number,
            "amount_minor": amount_minor,
            "currency": currency,
            "applied": [{"invoice": by_id[i].number, "amount_minor": a} for i, a in applied],
            "unapplied_minor": unapplied,
            "source": source,
            "invoices": invoice_changes,
        },
        after=payment,
    )
    from tallybook.services.outbox import payment_received

    payment_received(session, payment)
    return payment


def record_payment(db: Database, actor: Actor, values: dict[str, Any]) -> PaymentView:
    """Record money received from a customer.

    values: customer_id (or invoice_ids / allocations that name the customer's invoices),
    amount, currency, received_on, method, reference; allocations [{invoice_id, amount}] to
    apply exactly, or invoice_ids to settle those oldest first; else all open invoices.
    """
    actor.require(*WRITERS, action="record payments")
    method = (values.get("method") or "bank_transfer").strip()
    if method not in METHODS:
        raise InvalidInput(f"method: one of {', '.join(METHODS)}", field="method")
    currency = str(values.get("currency") or "").strip().upper()
    if not currency:
        raise InvalidInput("currency: is required", field="currency")
    amount = _amount(values.get("amount"), currency)
    if amount <= 0:
        raise InvalidInput("amount: a payment must be more than zero", field="amount")
    reference = (values.get("reference") or "").strip() or None
    if reference and len(reference) > 200:
        raise InvalidInput("reference: at most 200 characters", field="reference")
    if contains_card_number(reference):
        raise InvalidInput(
            "reference: looks like a card number; Tallybook never stores card numbers, "
            "record the payment provider's reference instead",
            field="reference",
        )
    allocations = values.get("allocations")
    only = values.get("invoice_ids")
    with db.transaction() as session:
        customer_id = values.get("customer_id")
        explicit: dict[str, int] | None = None
        if allocations is not None:
            if not isinstance(allocations, list) or not allocations:
                raise InvalidInput(
                    "allocations: give a list of {invoice_id, amount}", field="allocations"
                )
            explicit = {}
            for index, item in enumerate(allocations):
                if not isinstance(item, dict) or not item.get("invoice_id"):
                    raise InvalidInput(
                        f"allocations[{index}].invoice_id: is required", field="allocations"
                    )
                if item["invoice_id"] in explicit:
                    raise InvalidInput(
                        f"allocations[{index}]: invoice {item['invoice_id']} is named twice",
                        field="allocations",
                    )
                explicit[item["invoice_id"]] = _amount(
                    item.get("amount"), currency, f"allocations[{index}].amount"
                )
        named = list(explicit or {}) + list(only or [])
        if not customer_id and named:
            first = get_owned(session, Invoice, named[0], actor, label="invoice")
            customer_id = first.customer_id
        if not customer_id:
            raise InvalidInput(
                "customer_id: say who paid (or name the invoices paid)", field="customer_id"
            )
        customer = get_owned(session, Customer, customer_id, actor, lock=True, label="customer")
        received_on = _day(values.get("received_on"), "received_on") or local_date(
            utcnow(), customer.timezone
        )
        payment = apply_received(
            session,
            actor,
            customer,
            amount_minor=amount,
            currency=currency,
            received_on=received_on,
            method=method,
            reference=reference,
            explicit=explicit,
            only=list(only) if only else None,
        )
        return PaymentView(payment, _allocations(session, payment.id))


def _allocations(session: Session, payment_id: str) -> list[PaymentAllocation]:
    return list(
        session.scalars(
            select(PaymentAllocation)
            .where(PaymentAllocation.payment_id == payment_id)
            .order_by(PaymentAllocation.position)
        )
    )


def _lock_payment(session: Session, actor: Actor, payment_id: str) -> tuple[Payment, Customer]:
    payment = session.scalars(
        select(Payment).where(
            Payment.organization_id == actor.organization_id,
            (Payment.id == payment_id) | (Payment.number == payment_id),
        )
    ).first()
    if payment is None:
        raise NotFound(f"payment {payment_id} not found")
    customer = session.get(Customer, payment.customer_id, with_for_update=True)
    session.refresh(payment, with_for_update=True)
    return payment, customer


def _undo_allocations(session: Session, payment: Payment, amount: int) -> list[tuple[Invoice, int]]:
    """Take up to `amount` back from a payment's allocations, latest first; reopens invoices."""
    undone: list[tuple[Invoice, int]] = []
    allocations = sorted(_allocations(session, payment.id), key=lambda a: a.position, reverse=True)
    invoices = {
        i.id: i
        for i in session.scalars(
            select(Invoice)
            .where(Invoice.id.in_({a.invoice_id for a in allocations}))
            .order_by(Invoice.id)
            .with_for_update()
        )
    }
    for allocation in allocations:
        if amount == 0:
            break
        take = min(amount, allocation.amount_minor - allocation.undone_minor)
        if take <= 0:
            continue
        allocation.undone_minor += take
        invoice = invoices[allocation.invoice_id]
        invoice.paid_minor -= take
        _refresh_amount_due(invoice)
        undone.append((invoice, take))
        amount -= take
    return undone


def reverse_payment(db: Database, actor: Actor, payment_id: str, reason: str) -> PaymentView:
    """A payment that did not happen (bounced check, wrong customer): its applications are
    undone, its left-over credit taken back, and its journal entry reversed."""
    actor.require(*MANAGERS, action="reverse payments")
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why the payment is reversed", field="reason")
    with db.transaction() as session:
        payment, customer = _lock_payment(session, actor, payment_id)
        if payment.status == "reversed":
            raise Conflict(f"payment {payment.number} is already reversed")
        before = snapshot(payment, "status", "unapplied_minor", "reversed_at", "reversal_reason")
        from_credit = payment.unapplied_minor
        if from_credit > customer.credit_balance_minor:
            raise Conflict(
                f"payment {payment.number} left {from_credit} minor units of credit, but the "
                f"customer has only {customer.credit_balance_minor} left (the rest was used "
                "on later invoices); void or credit those first",
            )
        still_applied = sum(
            a.amount_minor - a.undone_minor for a in _allocations(session, payment.id)
        )
        undone = _undo_allocations(session, payment, still_applied)
        if from_credit:
            _credit_entry(
                session,
                customer,
                -from_credit,
                payment.currency,
                "payment_reversal",
                payment.id,
            )
        payment.unapplied_minor = 0
        payment.status = "reversed"
        payment.reversed_at = utcnow()
        payment.reversal_reason = reason.strip()
        day = local_date(payment.reversed_at, customer.timezone)
        post(
            session,
            actor.organization_id,
            core_ledger.money_returned(
                accounts_of(session, actor.organization_id),
                kind="payment_reversed",
                number=payment.number,
                on=max(day, payment.received_on),
                currency=payment.currency,
                customer=customer.legal_name,
                from_invoices_minor=sum(a for _, a in undone),
                from_credit_minor=from_credit,
                memo=f"{payment.number} reversed: {reason.strip()}",
            ),
            source_type="payment",
            source_id=payment.id,
            customer_id=customer.id,
        )
        audit(
            session,
            actor,
            "payment.reversed",
            "payment",
            payment.id,
            {
                "reason": reason.strip(),
                "reopened": [
                    {"invoice": i.number, "amount_minor": a, "status_now": i.status}
                    for i, a in undone
                ],
                "credit_taken_back_minor": from_credit,
            },
            before=before,
            after=payment,
        )
        return PaymentView(payment, _allocations(session, payment.id))


def refund_payment(db: Database, actor: Actor, payment_id: str, values: dict[str, Any]) -> Refund:
    """Pay back (part of) a payment: first what it left as customer credit, then what it paid
    on invoices, latest first (those invoices are owed again)."""
    actor.require(*MANAGERS, action="refund payments")
    reason = (values.get("reason") or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the money is refunded", field="reason")
    with db.transaction() as session:
        payment, customer = _lock_payment(session, actor, payment_id)
        if payment.status == "reversed":
            raise Conflict(f"payment {payment.number} is reversed; there is nothing to refund")
        refundable = payment.amount_minor - payment.refunded_minor
        amount = (
            _amount(values["amount"], payment.currency)
            if values.get("amount") is not None
            else refundable
        )
        if amount <= 0:
            raise InvalidInput("amount: a refund must be more than zero", field="amount")
        if amount > refundable:
            raise InvalidInput(
                f"amount: payment {payment.number} has {refundable} minor units left to "
                f"refund; {amount} is more",
                field="amount",
            )
        from_credit = min(amount, payment.unapplied_minor, customer.credit_balance_minor)
        undone = _undo_allocations(session, payment, amount - from_credit)
        from_invoices = sum(a for _, a in undone)
        if from_credit + from_invoices != amount:
            raise Conflict(
                f"payment {payment.number}'s credit was used on later invoices; only "
                f"{from_credit + from_invoices} minor units can be refunded from it"
            )
        if from_credit:
            payment.unapplied_minor -= from_credit
            _credit_entry(session, customer, -from_credit, payment.currency, "refund", payment.id)
        payment.refunded_minor += amount
        refund = _refund_row(
            session,
            actor,
            customer,
            payment_id=payment.id,
            currency=payment.currency,
            amount=amount,
            from_invoices=from_invoices,
            from_credit=from_credit,
            values=values,
            reason=reason,
            default_method=payment.method,
        )
        return refund


def refund_credit(db: Database, actor: Actor, customer_id: str, values: dict[str, Any]) -> Refund:
    """Pay back (part of) a customer's credit balance."""
    actor.require(*MANAGERS, action="refund customer credit")
    reason = (values.get("reason") or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the money is refunded", field="reason")
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, lock=True, label="customer")
        amount = (
            _amount(values["amount"], customer.currency)
            if values.get("amount") is not None
            else customer.credit_balance_minor
        )
        if amount <= 0:
            raise InvalidInput(
                "amount: a refund must be more than zero (the customer has no credit)",
                field="amount",
            )
        if amount > customer.credit_balance_minor:
            raise InvalidInput(
                f"amount: the customer has {customer.credit_balance_minor} minor units of "
                f"credit; {amount} is more",
                field="amount",
            )
        _credit_entry(session, customer, -amount, customer.currency, "refund", customer.id)
        return _refund_row(
            session,
            actor,
            customer,
            payment_id=None,
            currency=customer.currency,
            amount=amount,
            from_invoices=0,
            from_credit=amount,
            values=values,
            reason=reason,
            default_method="bank_transfer",
        )


def _refund_row(
    session: Session,
    actor: Actor,
    customer: Customer,
    *,
    payment_id: str | None,
    currency: str,
    amount: int,
    from_invoices: int,
    from_credit: int,
    values: dict[str, Any],
    reason: str,
    default_method: str,
) -> Refund:
    method = (values.get("method") or default_method).strip()
    if method not in METHODS:
        raise InvalidInput(f"method: one of {', '.join(METHODS)}", field="method")
    day = _day(values.get("refunded_on"), "refunded_on") or local_date(utcnow(), customer.timezone)
    refund = Refund(
        id=new_id("ref"),
        organization_id=customer.organization_id,
        customer_id=customer.id,
        payment_id=payment_id,
        currency=currency,
        amount_minor=amount,
        from_invoices_minor=from_invoices,
        from_credit_minor=from_credit,
        refunded_on=day,
        reason=reason,
        method=method,
        provider_reference=values.get("provider_reference"),
        created_by=actor.key_id,
        created_at=utcnow(),
    )
    session.add(refund)
    session.flush()
    post(
        session,
        customer.organization_id,
        core_ledger.money_returned(
            accounts_of(session, customer.organization_id),
            kind="refund",
            number=refund.id,
            on=day,
            currency=currency,
            customer=customer.legal_name,
            from_invoices_minor=from_invoices,
            from_credit_minor=from_credit,
            memo=f"refund to {customer.legal_name}: {reason}",
        ),
        source_type="refund",
        source_id=refund.id,
        customer_id=customer.id,
    )
    audit(
        session,
        actor,
        "refund.issued",
        "refund",
        refund.id,
        {
            "amount_minor": amount,
            "currency": currency,
            "payment_id": payment_id,
            "from_invoices_minor": from_invoices,
            "from_credit_minor": from_credit,
            "reason": reason,
        },
        after=refund,
    )
    return refund


def get_payment(db: Database, actor: Actor, payment_id: str) -> PaymentView:
    with db.reading() as session:
        payment = session.scalars(
            select(Payment).where(
                Payment.organization_id == actor.organization_id,
                (Payment.id == payment_id) | (Payment.number == payment_id),
            )
        ).first()
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        return PaymentView(payment, _allocations(session, payment.id))


def list_payments(
    db: Database, actor: Actor, *, customer_id: str | None = None, limit: int = 100
) -> list[Payment]:
    with db.reading() as session:
        query = select(Payment).where(Payment.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(Payment.customer_id == customer_id)
        return list(
            session.scalars(
                query.order_by(Payment.received_on.desc(), Payment.number.desc()).limit(limit)
            )
        )


def list_refunds(
    db: Database, actor: Actor, *, customer_id: str | None = None, limit: int = 100
) -> list[Refund]:
    with db.reading() as session:
        query = select(Refund).where(Refund.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(Refund.customer_id == customer_id)
        return list(session.scalars(query.order_by(Refund.created_at.desc()).limit(limit)))
