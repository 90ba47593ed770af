"""Late usage on draft invoices: re-rate the draft's usage lines for the late periods.

Ingestion marks a rated period as late in the event's own transaction. While the period's
invoice is a draft, the draft is re-rated here (right after ingestion, before a billing run,
and inside issuing, so an invoice never goes out with stale usage). Once it is issued, the
billing run bills the difference on the next invoice instead (`billing.late_adjustments`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tallybook.db.models import (
    Customer,
    Invoice,
    InvoiceLine,
    LateUsagePeriod,
    Organization,
    Subscription,
    SubscriptionPeriodInvoice,
    new_id,
)
from tallybook.services.base import WRITERS, Actor, Database, audit, snapshot
from tallybook.services.rating import taxes_to_json


def _late_drafts(session: Session, org_id: str, invoice_id: str | None) -> list[str]:
    query = (
        select(Invoice.id)
        .join(SubscriptionPeriodInvoice, SubscriptionPeriodInvoice.invoice_id == Invoice.id)
        .join(
            LateUsagePeriod,
            (LateUsagePeriod.subscription_id == SubscriptionPeriodInvoice.subscription_id)
            & (LateUsagePeriod.period_start == SubscriptionPeriodInvoice.period_start),
        )
        .where(
            LateUsagePeriod.organization_id == org_id,
            SubscriptionPeriodInvoice.timing == "in_arrears",
            Invoice.status == "draft",
        )
        .distinct()
    )
    if invoice_id is not None:
        query = query.where(Invoice.id == invoice_id)
    return sorted(session.scalars(query))


def rerate_drafts(
    session: Session, actor: Actor, invoice_id: str | None = None, *, locked: bool = False
) -> int:
    """Re-rate the usage lines of drafts with late periods (one draft, or all); in the
    caller's transaction. Returns the number of periods re-rated."""
    from tallybook.services import billing
    from tallybook.services.invoices import _rerate

    org_id = actor.organization_id
    drafts = _late_drafts(session, org_id, invoice_id)
    if not drafts:
        return 0
    ctx = billing._load_context(session, org_id)
    done = 0
    for draft_id in drafts:
        # The customer first (as the billing run does): ingestion share-locks it, so an event
        # still being written is committed, and read here, before its period's mark goes.
        customer_id = session.scalar(select(Invoice.customer_id).where(Invoice.id == draft_id))
        session.get(Customer, customer_id, with_for_update=True)
        invoice = session.get(Invoice, draft_id, with_for_update=not locked)
        # Read again under the lock: a concurrent re-rate may have taken them.
        marks = session.execute(
            select(LateUsagePeriod.subscription_id, LateUsagePeriod.period_start)
            .join(
                SubscriptionPeriodInvoice,
                (SubscriptionPeriodInvoice.subscription_id == LateUsagePeriod.subscription_id)
                & (SubscriptionPeriodInvoice.period_start == LateUsagePeriod.period_start)
                & (SubscriptionPeriodInvoice.timing == "in_arrears"),
            )
            .where(SubscriptionPeriodInvoice.invoice_id == draft_id)
            .order_by(LateUsagePeriod.subscription_id, LateUsagePeriod.period_start)
        ).all()
        if invoice is None or invoice.status != "draft" or not marks:
            continue
        customer = session.get(Customer, invoice.customer_id)
        assert customer is not None
        was = snapshot(invoice, "subtotal_minor", "tax_minor", "total_minor", "approval_status")
        subscriptions = {
            s.id: s
            for s in map(
                billing._SubscriptionRow._make,
                session.execute(
                    select(*billing._SUBSCRIPTION_COLUMNS).where(
                        Subscription.id.in_(sorted({m[0] for m in marks}))
                    )
                ),
            )
        }
        fresh = billing.fresh_usage_lines(
            session, ctx, org_id, [(subscriptions[sub], customer, start) for sub, start in marks]
        )
        elsewhere = billing.billed_usage(session, list(marks), exclude_invoice=draft_id)
        position = (
            session.scalar(
                select(InvoiceLine.position)
                .where(InvoiceLine.invoice_id == draft_id)
                .order_by(InvoiceLine.position.desc())
                .limit(1)
            )
            or 0
        )
        changes: dict[str, list[str]] = defaultdict(list)
        for sub_id, start in marks:
            period, lines = fresh[(sub_id, start)]
            old = list(
                session.scalars(
                    select(InvoiceLine).where(
                        InvoiceLine.invoice_id == draft_id,
                        InvoiceLine.subscription_id == sub_id,
                        InvoiceLine.period_start == start,
                        InvoiceLine.usage_key.is_not(None),
                    )
                )
            )
            before = {line.usage_key: (line.quantity, line.amount) for line in old}
            for line in old:
                session.delete(line)
            billed_elsewhere = elsewhere.get((sub_id, start), {})
            for line in lines:
                # Usage already billed on another invoice (rare: a voided and re-issued
                # period) is not billed twice.
                quantity, amount = billed_elsewhere.get(line.usage_key or "", (0, 0))
                position += 1
                category = (
                    ctx.products[line.product_id].tax_category if line.product_id else "standard"
                )
                session.add(
                    InvoiceLine(
                        id=new_id("line"),
                        organization_id=org_id,
                        invoice_id=draft_id,
                        position=position,
                        kind=line.kind,
                        description=line.description,
                        product_id=line.product_id,
                        price_id=line.price_id,
                        subscription_id=line.subscription_id,
                        period_start=line.period_start,
                        period_end=line.period_end,
                        coverage_weight=0,
                        quantity=line.quantity - quantity,
                        unit_price=line.unit_price,
                        amount=line.amount - amount,
                        subtotal_minor=0,
                        total_minor=0,
                        taxes=taxes_to_json(ctx.taxes.for_customer(customer, category)),
                        explanation=dict(line.explanation),
                        usage_key=line.usage_key,
                    )
                )
                if before.get(line.usage_key) != (line.quantity, line.amount):
                    changes[period.label()].append(
                        f"{line.usage_key}: {before.get(line.usage_key, (0, 0))[0]} -> "
                        f"{line.quantity}"
                    )
            session.execute(
                delete(LateUsagePeriod).where(
                    LateUsagePeriod.subscription_id == sub_id,
                    LateUsagePeriod.period_start == start,
                )
            )
            done += 1
        session.flush()
        org = session.get(Organization, org_id)
        assert org is not None
        _rerate(session, org, invoice, customer)
        audit(
            session,
            actor,
            "invoice.usage_rerated",
            "invoice",
            draft_id,
            {"periods": [m[1].isoformat() for m in marks], "changes": dict(changes)},
            before=was,
            after=invoice,
        )
    return done


def rerate_late_drafts(db: Database, actor: Actor) -> int:
    """Re-rate every draft that has late usage, in one transaction."""
    actor.require(*WRITERS, action="re-rate drafts")
    with db.transaction() as session:
        return rerate_drafts(session, actor)


def late_periods(db: Database, actor: Actor) -> list[tuple[str, datetime, datetime]]:
    """Periods waiting for late usage to be billed: (subscription, start, end)."""
    with db.reading() as session:
        return [
            (row.subscription_id, row.period_start, row.period_end)
            for row in session.scalars(
                select(LateUsagePeriod)
                .where(LateUsagePeriod.organization_id == actor.organization_id)
                .order_by(LateUsagePeriod.detected_at)
            )
        ]
