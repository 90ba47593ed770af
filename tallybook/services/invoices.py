"""The invoice lifecycle: edit and approve drafts, issue with a gapless number, void, explain."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from tallybook.core.explain import explain_line
from tallybook.core.money import format_minor
from tallybook.core.numbering import format_number, series_scope
from tallybook.core.periods import local_date
from tallybook.core.references import creditor_reference
from tallybook.db.models import (
    Customer,
    CustomerCreditEntry,
    Invoice,
    InvoiceLine,
    NumberSeries,
    Organization,
    Product,
    TaxRate,
    new_id,
)
from tallybook.services.approvals import (
    WRITE_OFF,
    Decision,
    carried_out,
    check_held_action,
    check_invoice_issue,
    holds_for_approval,
)
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    Role,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.billing import _approval_status
from tallybook.services.catalog import _decimal
from tallybook.services.customers import billing_snapshot
from tallybook.services.rating import (
    TaxTable,
    line_explanation_tail,
    rate_invoice,
    taxes_from_json,
    taxes_to_json,
    treatment_of,
)

ISSUED_STATES = ("issued", "partially_paid", "paid", "uncollectible")
# What the audit trail compares before and after a change of an invoice.
AUDITED = (
    "status",
    "approval_status",
    "approved_by",
    "number",
    "po_number",
    "notes",
    "discounts",
    "issue_date",
    "due_date",
    "subtotal_minor",
    "discount_minor",
    "tax_minor",
    "total_minor",
    "credit_applied_minor",
    "written_off_minor",
    "amount_due_minor",
    "void_reason",
)


def _draft(session: Session, actor: Actor, invoice_id: str) -> Invoice:
    invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
    if invoice.status != "draft":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; an issued "
            "invoice cannot be changed: issue a credit note or a debit note instead"
        )
    return invoice


def _rerate(session: Session, org: Organization, invoice: Invoice, customer: Customer) -> None:
    """Recompute a draft's totals after an edit, keeping each line's own explanation."""
    lines = list(
        session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.position)
        )
    )
    totals = rate_invoice(
        org,
        invoice.currency,
        treatment_of(customer),
        [(line.id, line.amount, taxes_from_json(line.taxes), line.product_id) for line in lines],
        invoice.discounts,
    )
    names = {d["key"]: d.get("name", d["key"]) for d in invoice.discounts}
    for line, line_totals in zip(lines, totals.lines, strict=True):
        tail = line_explanation_tail(org, line_totals, line.amount, names, totals.legal_note)
        line.subtotal_minor = line_totals.subtotal_minor
        line.discount_minor = line_totals.discount_minor
        line.tax_minor = line_totals.tax_minor
        line.total_minor = line_totals.total_minor
        line.explanation = {**line.explanation, **tail}
    invoice.subtotal_minor = totals.subtotal_minor
    invoice.discount_minor = totals.discount_minor
    invoice.tax_minor = totals.tax_minor
    invoice.total_minor = totals.total_minor
    invoice.amount_due_minor = totals.total_minor
    invoice.tax_treatment = totals.treatment.value
    invoice.legal_note = totals.legal_note
    invoice.tax_summary = [
        {
            "code": t.code,
            "name": t.name,
            "percent": str(t.percent),
            "taxable_minor": t.taxable_minor,
            "tax_minor": t.tax_minor,
        }
        for t in totals.tax_summary
    ]
    status = _approval_status(org, invoice.currency, invoice.total_minor)
    # An edit after approval needs a fresh approval when the total is still above the limit.
    invoice.approval_status = status


def create_draft(
    db: Database, actor: Actor, customer_id: str, values: dict[str, Any] | None = None
) -> Invoice:
    """An empty manual draft for a customer, to which lines are added."""
    actor.require(*WRITERS, action="create drafts")
    values = values or {}
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor)
        if customer.archived_at is not None:
            raise Conflict("customer_id: the customer is archived", field="customer_id")
        now = utcnow()
        invoice = Invoice(
            id=new_id("inv"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            status="draft",
            currency=customer.currency,
            billing_date=local_date(now, customer.timezone),
            po_number=values.get("po_number"),
            notes=values.get("notes"),
            discounts=[],
            tax_summary=[],
            created_by=actor.key_id,
            created_at=now,
            rating_context={},
        )
        session.add(invoice)
        session.flush()
        audit(session, actor, "invoice.draft_created", "invoice", invoice.id, after=invoice)
    return invoice


def add_line(db: Database, actor: Actor, invoice_id: str, values: dict[str, Any]) -> InvoiceLine:
    """A manual line on a draft: description, quantity, unit price, optional product."""
    actor.require(*WRITERS, action="edit drafts")
    if not values.get("description"):
        raise InvalidInput("description: is required", field="description")
    quantity = _decimal(values.get("quantity", 1), "quantity")
    unit_price = (
        _decimal(values.get("unit_price"), "unit_price")
        if values.get("unit_price") is not None
        else None
    )
    if unit_price is None:
        raise InvalidInput("unit_price: is required", field="unit_price")
    with db.transaction() as session:
        invoice = _draft(session, actor, invoice_id)
        before = snapshot(invoice, *AUDITED)
        customer = session.get(Customer, invoice.customer_id)
        org = session.get(Organization, actor.organization_id)
        product = None
        if values.get("product_id"):
            product = get_owned(session, Product, values["product_id"], actor)
        table = TaxTable.build(
            session.scalars(select(TaxRate).where(TaxRate.organization_id == actor.organization_id))
        )
        rates = table.for_customer(customer, product.tax_category if product else "standard")
        position = (
            session.scalar(
                select(func.coalesce(func.max(InvoiceLine.position), -1)).where(
                    InvoiceLine.invoice_id == invoice.id
                )
            )
            + 1
        )
        amount = quantity * unit_price
        line = InvoiceLine(
            id=new_id("line"),
            organization_id=actor.organization_id,
            invoice_id=invoice.id,
            position=position,
            kind="manual",
            description=values["description"],
            product_id=product.id if product else None,
            quantity=quantity,
            unit_price=unit_price,
            amount=amount,
            subtotal_minor=0,
            total_minor=0,
            taxes=taxes_to_json(rates),
            coverage_weight=0,
            explanation={
                "source": "manual",
                "quantity": {"value": str(quantity), "source": "entered by hand on the draft"},
                "charge": {
                    "kind": "manual",
                    "quantity": str(quantity),
                    "unit_price": str(unit_price),
                    "reference": values.get("reference"),
                },
                "exact_amount": str(amount),
            },
        )
        session.add(line)
        session.flush()
        _rerate(session, org, invoice, customer)
        audit(
            session,
            actor,
            "invoice.line_added",
            "invoice",
            invoice.id,
            {"line": line.id, "description": line.description, "amount": str(amount)},
            before=before,
            after=invoice,
        )
    return line


def remove_line(db: Database, actor: Actor, invoice_id: str, line_id: str) -> Invoice:
    actor.require(*WRITERS, action="edit drafts")
    with db.transaction() as session:
        invoice = _draft(session, actor, invoice_id)
        before = snapshot(invoice, *AUDITED)
        line = session.scalars(
            select(InvoiceLine).where(
                InvoiceLine.id == line_id, InvoiceLine.invoice_id == invoice.id
            )
        ).first()
        if line is None:
            raise NotFound(f"line {line_id} not found on invoice {invoice_id}")
        if line.subscription_id is not None:
            raise Conflict(
                "line: subscription lines come from the billing run; change the "
                "subscription or void the draft instead"
            )
        if line.charge_id is not None:
            from tallybook.db.models import Charge

            session.execute(
                update(Charge).where(Charge.id == line.charge_id).values(invoice_id=None)
            )
        session.delete(line)
        session.flush()
        _rerate(
            session,
            session.get(Organization, actor.organization_id),
            invoice,
            session.get(Customer, invoice.customer_id),
        )
        audit(
            session,
            actor,
            "invoice.line_removed",
            "invoice",
            invoice.id,
            {"line": line_id, "removed": snapshot(line, "description", "quantity", "amount")},
            before=before,
            after=invoice,
        )
    return invoice


def update_draft(db: Database, actor: Actor, invoice_id: str, values: dict[str, Any]) -> Invoice:
    """Edit a draft's PO number, notes and discounts."""
    actor.require(*WRITERS, action="edit drafts")
    allowed = {"po_number", "notes", "discounts"}
    unknown = set(values) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name}: cannot be edited on a draft", field=name)
    with db.transaction() as session:
        invoice = _draft(session, actor, invoice_id)
        before = snapshot(invoice, *AUDITED)
        if "discounts" in values:
            invoice.discounts = _clean_discounts(
                session, actor, values["discounts"], invoice.currency
            )
        for key in ("po_number", "notes"):
            if key in values:
                setattr(invoice, key, values[key])
        _rerate(
            session,
            session.get(Organization, actor.organization_id),
            invoice,
            session.get(Customer, invoice.customer_id),
        )
        audit(
            session,
            actor,
            "invoice.draft_updated",
            "invoice",
            invoice.id,
            {"edited": sorted(values)},
            before=before,
            after=invoice,
        )
    return invoice


def _clean_discounts(
    session: Session, actor: Actor, discounts: Any, currency: str
) -> list[dict[str, Any]]:
    if not isinstance(discounts, list):
        raise InvalidInput("discounts: must be a list", field="discounts")
    clean = []
    for index, entry in enumerate(discounts):
        field = f"discounts[{index}]"
        if not isinstance(entry, dict) or entry.get("kind") not in ("percent", "fixed"):
            raise InvalidInput(f"{field}.kind: must be percent or fixed", field="discounts")
        value = _decimal(entry.get("value"), f"{field}.value")
        if value <= 0 or (entry["kind"] == "percent" and value > 100):
            raise InvalidInput(f"{field}.value: out of range", field="discounts")
        product_ids = entry.get("product_ids")
        if product_ids is not None:
            for pid in product_ids:
                get_owned(session, Product, pid, actor)
        clean.append(
            {
                "key": entry.get("key") or f"manual-{index + 1}",
                "name": entry.get("name")
                or f"Discount {value}" + ("%" if entry["kind"] == "percent" else f" {currency}"),
                "kind": entry["kind"],
                "value": str(value),
                "product_ids": product_ids,
            }
        )
    return clean


def approve_invoice(
    db: Database, actor: Actor, invoice_id: str, reason: str | None = None
) -> Invoice:
    """Approve a draft: a billing manager or admin other than its creator (services.approvals)."""
    from tallybook.services.approvals import approve_draft

    return approve_draft(db, actor, invoice_id, reason)


def next_number(
    session: Session, organization_id: str, kind: str, pattern: str, issue_date: date
) -> str:
    """Draw the next number of a gapless series inside the caller's transaction.

    The series row is locked (FOR UPDATE) so concurrent issues queue; a rollback of the issuing
    transaction rolls the counter back too, which is what keeps the series gapless.
    """
    return reserve_numbers(session, organization_id, kind, pattern, issue_date, 1)[0]


def reserve_numbers(
    session: Session, organization_id: str, kind: str, pattern: str, issue_date: date, count: int
) -> list[str]:
    """The next `count` numbers of a series at once (a statement import posts thousands of
    payments); gapless the same way as `next_number`."""
    if count < 1:
        return []
    scope = series_scope(pattern, issue_date)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(
            pg_insert(NumberSeries)
            .values(
                id=new_id("ser"),
                organization_id=organization_id,
                kind=kind,
                scope=scope,
                last_value=0,
            )
            .on_conflict_do_nothing()
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(
            sqlite_insert(NumberSeries)
            .values(
                id=new_id("ser"),
                organization_id=organization_id,
                kind=kind,
                scope=scope,
                last_value=0,
            )
            .on_conflict_do_nothing()
        )
    row = session.scalars(
        select(NumberSeries)
        .where(
            NumberSeries.organization_id == organization_id,
            NumberSeries.kind == kind,
            NumberSeries.scope == scope,
        )
        .with_for_update()
    ).one()
    first = row.last_value + 1
    row.last_value += count
    session.flush()
    return [format_number(pattern, issue_date, value) for value in range(first, first + count)]


@holds_for_approval
def issue_invoice(
    db: Database, actor: Actor, invoice_id: str, *, issue_date: date | None = None
) -> Invoice:
    """Freeze a draft: number, customer snapshot, due date; apply customer credit."""
    actor.require(*WRITERS, action="issue invoices")
    # Pre-flight verification, in its own transaction so a refused issue keeps its findings.
    from tallybook.services import verification

    verification.before_issue(db, actor, invoice_id)
    with db.transaction() as session:
        invoice = _draft(session, actor, invoice_id)
        before = snapshot(invoice, *AUDITED)
        org = session.get(Organization, actor.organization_id)
        # Locked before re-rating late usage, in the order ingestion and the run use.
        session.get(Customer, invoice.customer_id, with_for_update=True)
        _check_usage_grace(session, org, invoice)
        # Late events for the draft's usage periods: re-rate before the invoice is frozen.
        from tallybook.services.late_usage import rerate_drafts

        rerate_drafts(session, actor, invoice.id, locked=True)
        customer = session.get(Customer, invoice.customer_id, with_for_update=True)
        count = session.scalar(
            select(func.count())
            .select_from(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
        )
        if not count:
            raise Conflict("invoice has no lines; add a line before issuing")
        # The rule is checked against today's threshold, not the one in force when the draft
        # was rated: lowering the threshold must not let an old draft slip through.
        if invoice.approval_status not in ("approved", "rejected"):
            invoice.approval_status = _approval_status(org, invoice.currency, invoice.total_minor)
        # Above the threshold: approved by someone other than its creator, or held.
        check_invoice_issue(session, actor, org, invoice)
        # Again on the locked, re-rated draft: what is issued is what was verified.
        verification.check_at_issue(session, actor, invoice)
        if customer.po_required and not invoice.po_number:
            raise Conflict(
                "po_number: this customer requires a purchase order number", field="po_number"
            )
        now = utcnow()
        day = issue_date or local_date(now, customer.timezone)
        invoice.number = next_number(session, org.id, "invoice", org.invoice_number_pattern, day)
        invoice.status = "issued"
        invoice.issue_date = day
        invoice.due_date = day + timedelta(days=customer.payment_terms_days)
        invoice.issued_at = now
        invoice.customer_snapshot = billing_snapshot(customer)
        # A negative invoice (more credited back than charged) becomes customer credit.
        if invoice.total_minor < 0:
            customer.credit_balance_minor += -invoice.total_minor
            session.add(
                CustomerCreditEntry(
                    id=new_id("cce"),
                    organization_id=org.id,
                    customer_id=customer.id,
                    amount_minor=-invoice.total_minor,
                    currency=invoice.currency,
                    source="negative_invoice",
                    source_id=invoice.id,
                    created_at=now,
                )
            )
        # Customer credit (from credit notes or negative invoices) pays what it can.
        usable = min(customer.credit_balance_minor, max(invoice.total_minor, 0))
        if usable > 0:
            customer.credit_balance_minor -= usable
            invoice.credit_applied_minor = usable
            session.execute(
                insert(CustomerCreditEntry).values(
                    id=new_id("cce"),
                    organization_id=org.id,
                    customer_id=customer.id,
                    amount_minor=-usable,
                    currency=invoice.currency,
                    source="invoice",
                    source_id=invoice.id,
                    created_at=now,
                )
            )
        _refresh_amount_due(invoice)
        invoice.payment_reference = creditor_reference(invoice.number)
        from tallybook.services.ledger import post_invoice_issued

        post_invoice_issued(session, invoice, customer)
        # What the invoice uses of its PO, and the time and service reports it bills.
        from tallybook.services.purchase_orders import consume_for_invoice
        from tallybook.services.time_sheets import mark_billed

        consume_for_invoice(session, actor, invoice)
        mark_billed(session, actor, invoice)
        audit(
            session,
            actor,
            "invoice.issued",
            "invoice",
            invoice.id,
            {
                "number": invoice.number,
                "total_minor": invoice.total_minor,
                "credit_applied_minor": invoice.credit_applied_minor,
            },
            before=before,
            after=invoice,
        )
        # The e-mail (per the customer's preferences) and webhooks, sent after the commit.
        from tallybook.services.outbox import invoice_issued

        invoice_issued(session, invoice, customer)
    return invoice


def _check_usage_grace(session: Session, org: Organization, invoice: Invoice) -> None:
    """Usage invoices stay drafts for the organisation's grace period, for late events."""
    if not org.usage_grace_days:
        return
    ends = session.scalars(
        select(InvoiceLine.period_end).where(
            InvoiceLine.invoice_id == invoice.id,
            InvoiceLine.usage_key.is_not(None),
            InvoiceLine.kind != "usage_adjustment",
        )
    ).all()
    if not ends:
        return
    open_until = max(ends) + timedelta(days=org.usage_grace_days)
    if utcnow() < open_until:
        raise Conflict(
            f"invoice holds usage still open for late events until {open_until.isoformat()} "
            f"(the organisation's {org.usage_grace_days}-day grace period); issue it after that"
        )


def amount_due_and_status(invoice: Any, paid_minor: int) -> tuple[int, str]:
    """What an invoice has due, and its status, once `paid_minor` has been paid on it: the
    amount due follows totals, credits, debits, payments and write-offs."""
    due = max(
        invoice.total_minor
        + invoice.debited_minor
        - invoice.credit_applied_minor
        - invoice.credited_minor
        - paid_minor
        - invoice.written_off_minor,
        0,
    )
    if invoice.status not in ("issued", "partially_paid", "paid"):
        return due, invoice.status
    if due == 0:
        return due, "paid"  # settled: by payment, customer credit or credit notes
    return due, "partially_paid" if paid_minor > 0 else "issued"


def _refresh_amount_due(invoice: Invoice) -> None:
    """Amount due and the payment status follow totals, credits, debits and payments."""
    was = invoice.status
    invoice.amount_due_minor, invoice.status = amount_due_and_status(invoice, invoice.paid_minor)
    if invoice.status == "paid" and was in ("issued", "partially_paid"):
        from tallybook.services.outbox import invoice_paid

        invoice_paid(invoice)  # webhooks, in the settling transaction


def void_invoice(db: Database, actor: Actor, invoice_id: str, reason: str) -> Invoice:
    """Void an issued invoice without payments (its number stays used) or discard a draft."""
    actor.require(*MANAGERS, action="void invoices")
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why the invoice is voided", field="reason")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        before = snapshot(invoice, *AUDITED)
        if invoice.status == "void":
            raise Conflict(f"invoice {invoice.number or invoice.id} is already void")
        if invoice.paid_minor > 0:
            raise Conflict("invoice has payments; refund or reverse them before voiding")
        from tallybook.db.models import CreditNote, DebitNote

        for model, label in ((CreditNote, "credit notes"), (DebitNote, "debit notes")):
            if session.scalar(select(func.count()).where(model.invoice_id == invoice.id)):
                raise Conflict(f"invoice has {label}; it cannot be voided")
        if invoice.status != "draft" and invoice.total_minor < 0:
            raise Conflict("a negative invoice became customer credit; it cannot be voided")
        if invoice.credit_applied_minor:
            customer = session.get(Customer, invoice.customer_id, with_for_update=True)
            customer.credit_balance_minor += invoice.credit_applied_minor
            session.add(
                CustomerCreditEntry(
                    id=new_id("cce"),
                    organization_id=invoice.organization_id,
                    customer_id=customer.id,
                    amount_minor=invoice.credit_applied_minor,
                    currency=invoice.currency,
                    source="invoice_void",
                    source_id=invoice.id,
                    created_at=utcnow(),
                )
            )
            invoice.credit_applied_minor = 0
        was = invoice.status
        invoice.status = "void"
        invoice.voided_at = utcnow()
        invoice.void_reason = reason
        invoice.amount_due_minor = 0
        if was == "draft":
            _release_draft(session, invoice)
        else:
            from tallybook.services.ledger import post_reversal

            post_reversal(
                session,
                invoice.organization_id,
                source_type="invoice",
                source_id=invoice.id,
                kind="invoice_voided",
                on=local_date(invoice.voided_at, "UTC"),
                document=invoice.number or invoice.id,
                memo=f"{invoice.number} voided: {reason}",
            )
            from tallybook.services.purchase_orders import give_back_for_void

            give_back_for_void(session, actor, invoice)
            from tallybook.services.time_sheets import release_billed

            release_billed(session, actor, invoice)
        audit(
            session,
            actor,
            "invoice.voided",
            "invoice",
            invoice.id,
            {"reason": reason, "was": was, "number": invoice.number},
            before=before,
            after=invoice,
        )
        if was != "draft":
            from tallybook.services.outbox import invoice_voided

            invoice_voided(session, invoice)
    return invoice


def _release_draft(session: Session, invoice: Invoice) -> None:
    """A discarded draft gives back what it billed, so the next run bills it again.

    Pending charges are released; the (subscription, period) guards are removed and each
    subscription's cursor is moved back to the earliest billing instant the draft covered;
    adjustment lines are recomputed by re-rating from the earliest period they touched.
    """
    from tallybook.db.models import Charge, Subscription, SubscriptionPeriodInvoice

    session.execute(update(Charge).where(Charge.invoice_id == invoice.id).values(invoice_id=None))
    guards = list(
        session.scalars(
            select(SubscriptionPeriodInvoice).where(
                SubscriptionPeriodInvoice.invoice_id == invoice.id
            )
        )
    )
    from tallybook.db.models import LateUsagePeriod

    rewind: dict[str, Any] = {}
    for guard in guards:
        # Advance charges are billed at the period start, arrears at its end.
        instant = guard.period_start if guard.timing == "in_advance" else guard.period_end
        rewind[guard.subscription_id] = min(rewind.get(guard.subscription_id, instant), instant)
        session.delete(guard)
        # The run rates the released period afresh, late events included.
        session.execute(
            delete(LateUsagePeriod).where(
                LateUsagePeriod.subscription_id == guard.subscription_id,
                LateUsagePeriod.period_start == guard.period_start,
            )
        )
    # Late usage this draft was carrying goes back to waiting for the next invoice.
    late_lines = session.execute(
        select(InvoiceLine.subscription_id, InvoiceLine.period_start, InvoiceLine.period_end)
        .where(InvoiceLine.invoice_id == invoice.id, InvoiceLine.kind == "usage_adjustment")
        .distinct()
    ).all()
    for subscription_id, period_start, period_end in late_lines:
        if session.get(LateUsagePeriod, (subscription_id, period_start)) is None:
            session.add(
                LateUsagePeriod(
                    subscription_id=subscription_id,
                    period_start=period_start,
                    organization_id=invoice.organization_id,
                    period_end=period_end,
                    detected_at=utcnow(),
                )
            )
    adjusted: dict[str, Any] = {}
    for line in session.scalars(
        select(InvoiceLine).where(
            InvoiceLine.invoice_id == invoice.id, InvoiceLine.kind == "adjustment"
        )
    ):
        start = line.period_start
        adjusted[line.subscription_id] = min(adjusted.get(line.subscription_id, start), start)
    for subscription_id in set(rewind) | set(adjusted):
        subscription = session.get(Subscription, subscription_id, with_for_update=True)
        if subscription_id in rewind:
            instant = max(rewind[subscription_id], subscription.start_at)
            if subscription.trial_end_at is not None:
                instant = max(instant, subscription.trial_end_at)
            subscription.next_billing_at = min(subscription.next_billing_at, instant)
            if subscription.status == "ended":
                subscription.status = "canceled"
        if subscription_id in adjusted:
            start = adjusted[subscription_id]
            if subscription.rerate_from is None or start < subscription.rerate_from:
                subscription.rerate_from = start


@holds_for_approval
def mark_uncollectible(
    db: Database, actor: Actor, invoice_id: str, reason: str, *, approval: Decision | None = None
) -> Invoice:
    """Write off what is still owed: Dr bad debt / Cr receivable; the invoice is uncollectible.
    Above the organisation's write-off limit it is held for another manager's approval."""
    actor.require(*MANAGERS, action="mark invoices uncollectible")
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why the invoice is written off", field="reason")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status not in ("issued", "partially_paid"):
            raise Conflict(
                f"only an open issued invoice can be uncollectible; this one is {invoice.status}"
            )
        amount = invoice.amount_due_minor
        before = snapshot(invoice, *AUDITED)
        held = check_held_action(
            session,
            actor,
            session.get(Organization, actor.organization_id),
            WRITE_OFF,
            invoice.id,
            amount,
            invoice.currency,
            action={"reason": reason},
            decision=approval,
            message=f"writing off {format_minor(amount, invoice.currency)} of invoice "
            f"{invoice.number} needs approval under the organisation's write-off rule",
        )
        carried_out(held, "invoice", invoice.id)
        customer = session.get(Customer, invoice.customer_id)
        invoice.written_off_minor += amount
        _refresh_amount_due(invoice)
        invoice.status = "uncollectible"
        from tallybook.core import ledger as core_ledger
        from tallybook.services.ledger import accounts_of, post

        post(
            session,
            invoice.organization_id,
            core_ledger.written_off(
                accounts_of(session, invoice.organization_id),
                number=invoice.number or invoice.id,
                on=local_date(utcnow(), customer.timezone),
                currency=invoice.currency,
                customer=customer.legal_name,
                amount_minor=amount,
            ),
            source_type="invoice",
            source_id=invoice.id,
            customer_id=customer.id,
        )
        audit(
            session,
            actor,
            "invoice.uncollectible",
            "invoice",
            invoice.id,
            {"reason": reason, "written_off_minor": amount},
            before=before,
            after=invoice,
        )
    return invoice


def get_invoice(
    db: Database, actor: Actor, invoice_id_or_number: str
) -> tuple[Invoice, list[InvoiceLine]]:
    with db.reading() as session:
        invoice = session.scalars(
            select(Invoice).where(
                Invoice.organization_id == actor.organization_id,
                (Invoice.id == invoice_id_or_number) | (Invoice.number == invoice_id_or_number),
            )
        ).first()
        if invoice is None:
            raise NotFound(f"invoice {invoice_id_or_number} not found")
        lines = list(
            session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.position)
            )
        )
    return invoice, lines


def list_invoices(
    db: Database,
    actor: Actor,
    *,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Invoice], str | None]:
    with db.reading() as session:
        query = select(Invoice).where(Invoice.organization_id == actor.organization_id)
        if status:
            query = query.where(Invoice.status == status)
        if customer_id:
            query = query.where(Invoice.customer_id == customer_id)
        return keyset_page(session, query, Invoice, limit, after)


def explain_invoice_line(
    db: Database, actor: Actor, invoice_id: str, line_ref: str
) -> tuple[InvoiceLine, str, str]:
    """A line (by id or 1-based position) with its explanation sentence and currency."""
    invoice, lines = get_invoice(db, actor, invoice_id)
    for index, line in enumerate(lines, start=1):
        if line.id == line_ref or str(index) == str(line_ref):
            return line, explain_line(line.explanation, invoice.currency), invoice.currency
    raise NotFound(f"line {line_ref} not found on invoice {invoice_id}")


def role_can_issue(actor: Actor) -> bool:
    return actor.role is not Role.VIEWER
