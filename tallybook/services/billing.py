"""The billing run: find everything due up to an instant and write one draft per customer and
billing date. Streams customers in batches; a unique constraint on (subscription, period,
timing) makes a re-run or a concurrent run harmless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core.billing import (
    Catalog,
    DraftLine,
    PlanInfo,
    PriceVersion,
    SubscriptionContext,
    SubscriptionState,
    UsageTotals,
    bill_subscription,
)
from tallybook.core.coverage import Coverage
from tallybook.core.money import RoundingMode, round_to_minor
from tallybook.core.periods import BillingPeriod, local_date, local_midnight
from tallybook.core.pricing import PriceTerms
from tallybook.core.proration import ProrationPolicy
from tallybook.core.timeline import Change, ChangeKind
from tallybook.db.models import (
    Charge,
    Coupon,
    CouponRedemption,
    Customer,
    Invoice,
    InvoiceLine,
    Organization,
    Plan,
    Price,
    Product,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriodInvoice,
    TaxRate,
    UsageRecord,
    new_id,
)
from tallybook.services.base import WRITERS, Actor, Database, audit, utcnow
from tallybook.services.rating import (
    TaxTable,
    line_explanation_tail,
    rate_invoice,
    taxes_from_json,
    taxes_to_json,
    treatment_of,
)
from tallybook.services.subscriptions import plan_interval


@dataclass
class DraftPreview:
    customer_id: str
    customer_name: str
    billing_date: date
    currency: str
    lines: list[dict[str, Any]]
    subtotal_minor: int
    discount_minor: int
    tax_minor: int
    total_minor: int
    invoice_id: str | None = None


@dataclass
class BillingRunResult:
    as_of: datetime
    dry_run: bool
    customers_seen: int = 0
    invoices_created: int = 0
    invoices_updated: int = 0
    lines_created: int = 0
    totals_by_currency: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    previews: list[DraftPreview] = field(default_factory=list)
    invoice_ids: list[str] = field(default_factory=list)
    # Off for very large runs, so that memory does not grow with the number of customers.
    keep_invoice_ids: bool = True


@dataclass(frozen=True)
class _RunContext:
    org: Organization
    catalog: Catalog
    products: dict[str, Product]
    plans: dict[str, Plan]
    taxes: TaxTable
    coupons: dict[str, Coupon]
    policy: ProrationPolicy


def _load_context(session: Session, organization_id: str) -> _RunContext:
    org = session.get(Organization, organization_id)
    assert org is not None
    products = {
        p.id: p
        for p in session.scalars(select(Product).where(Product.organization_id == organization_id))
    }
    prices = [
        PriceVersion(
            id=p.id,
            code=p.code,
            version=p.version,
            product_id=p.product_id,
            product_name=products[p.product_id].name,
            kind=p.kind,
            timing=p.timing,
            terms=PriceTerms.from_dict(p.terms),
            effective_from=p.effective_from,
            unit_label=products[p.product_id].unit_label,
        )
        for p in session.scalars(select(Price).where(Price.organization_id == organization_id))
    ]
    plans = {
        p.id: p
        for p in session.scalars(select(Plan).where(Plan.organization_id == organization_id))
    }
    catalog = Catalog.build(
        prices, [PlanInfo(p.id, p.code, p.name, tuple(p.price_codes)) for p in plans.values()]
    )
    taxes = TaxTable.build(
        session.scalars(select(TaxRate).where(TaxRate.organization_id == organization_id))
    )
    coupons = {
        c.id: c
        for c in session.scalars(select(Coupon).where(Coupon.organization_id == organization_id))
    }
    return _RunContext(
        org, catalog, products, plans, taxes, coupons, ProrationPolicy(org.proration_policy)
    )


def _candidate_customers(
    session: Session, organization_id: str, as_of: datetime, after: str, limit: int
) -> list[str]:
    due_subscriptions = select(Subscription.customer_id.label("customer_id")).where(
        Subscription.organization_id == organization_id,
        Subscription.next_billing_at <= as_of,
        Subscription.status != "ended",
        Subscription.customer_id > after,
    )
    due_charges = select(Charge.customer_id.label("customer_id")).where(
        Charge.organization_id == organization_id,
        Charge.invoice_id.is_(None),
        Charge.billable_at <= as_of,
        Charge.customer_id > after,
    )
    combined = union(due_subscriptions, due_charges).subquery()
    return list(
        session.scalars(
            select(combined.c.customer_id).order_by(combined.c.customer_id).limit(limit)
        )
    )


def run_billing(
    db: Database,
    actor: Actor,
    as_of: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    keep_invoice_ids: bool = True,
) -> BillingRunResult:
    """Bill everything due up to `as_of`; with dry_run, return what would be billed."""
    if as_of.tzinfo is None:
        raise ValueError("as_of: give a date-time with a time zone")
    if not dry_run:
        actor.require(*WRITERS, action="run billing")
    result = BillingRunResult(as_of=as_of, dry_run=dry_run, keep_invoice_ids=keep_invoice_ids)
    with db.reading() as session:
        context = _load_context(session, actor.organization_id)
    after = ""
    while True:
        with db.reading() as session:
            batch = _candidate_customers(session, actor.organization_id, as_of, after, batch_size)
        if not batch:
            break
        after = batch[-1]
        for attempt_batch in _attempts(batch):
            try:
                with db.transaction() as session:
                    _bill_batch(session, actor, context, attempt_batch, as_of, dry_run, result)
                    if dry_run:
                        session.rollback()
                break
            except IntegrityError:
                # Another run billed one of these customers first. Retry one by one so that
                # the others still get billed; the conflicting one now finds nothing due.
                result.conflicts += 1
                if len(attempt_batch) == 1:
                    continue
                for single in attempt_batch:
                    try:
                        with db.transaction() as session:
                            _bill_batch(session, actor, context, [single], as_of, dry_run, result)
                    except IntegrityError:
                        result.conflicts += 1
                break
        result.customers_seen += len(batch)
        if progress is not None:
            progress(len(batch))
    return result


def _attempts(batch: list[str]) -> Iterator[list[str]]:
    yield batch


def _lock_customers(session: Session, ids: Sequence[str]) -> dict[str, Customer]:
    query = select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id)
    if session.get_bind().dialect.name == "postgresql":
        # Two runs at once queue per customer; the second then sees the advanced cursor.
        query = query.with_for_update()
    return {c.id: c for c in session.scalars(query)}


def _bill_batch(
    session: Session,
    actor: Actor,
    ctx: _RunContext,
    customer_ids: list[str],
    as_of: datetime,
    dry_run: bool,
    result: BillingRunResult,
) -> None:
    org_id = actor.organization_id
    customers = _lock_customers(session, customer_ids)
    subscriptions = list(
        session.scalars(
            select(Subscription)
            .where(
                Subscription.organization_id == org_id,
                Subscription.customer_id.in_(customer_ids),
                Subscription.next_billing_at <= as_of,
                Subscription.status != "ended",
            )
            .order_by(Subscription.customer_id, Subscription.id)
        )
    )
    sub_ids = [s.id for s in subscriptions]
    changes: dict[str, list[SubscriptionChange]] = defaultdict(list)
    now = utcnow()
    if sub_ids:
        for row in session.scalars(
            select(SubscriptionChange)
            .where(SubscriptionChange.subscription_id.in_(sub_ids))
            .order_by(SubscriptionChange.created_at)
        ):
            changes[row.subscription_id].append(row)
    billed = _billed_coverage(session, [s for s in subscriptions if s.rerate_from is not None])
    usage = _usage(session, ctx, subscriptions, as_of, changes)
    charges: dict[str, list[Charge]] = defaultdict(list)
    for charge in session.scalars(
        select(Charge)
        .where(
            Charge.organization_id == org_id,
            Charge.customer_id.in_(customer_ids),
            Charge.invoice_id.is_(None),
            Charge.billable_at <= as_of,
        )
        .order_by(Charge.billable_at, Charge.id)
    ):
        charges[charge.customer_id].append(charge)
    redemptions: dict[str, list[CouponRedemption]] = defaultdict(list)
    for redemption in session.scalars(
        select(CouponRedemption)
        .where(CouponRedemption.customer_id.in_(customer_ids), CouponRedemption.active.is_(True))
        .order_by(CouponRedemption.created_at)
    ):
        redemptions[redemption.customer_id].append(redemption)

    # customer -> billing date -> (lines, guards)
    drafts: dict[str, dict[date, tuple[list[DraftLine], list[Any]]]] = defaultdict(dict)
    cursor_updates: list[dict[str, Any]] = []
    for subscription in subscriptions:
        customer = customers[subscription.customer_id]
        plan = ctx.plans[subscription.plan_id]
        sub_context = SubscriptionContext(
            id=subscription.id,
            plan_names={p.id: p.name for p in ctx.plans.values()},
            interval=plan_interval(plan),
            timezone=customer.timezone,
            currency=customer.currency,
            policy=ctx.policy,
        )
        state = SubscriptionState(
            id=subscription.id,
            anchor_date=subscription.anchor_date,
            changes=tuple(
                _to_change(row, i, customer.timezone)
                for i, row in enumerate(changes[subscription.id])
            ),
            trial_end=subscription.trial_end_at,
            next_billing_at=subscription.next_billing_at,
            rerate_from=subscription.rerate_from,
        )
        sub_usage = usage.get(subscription.id, [])

        def usage_for(
            period: BillingPeriod, records: list[UsageRecord] = sub_usage
        ) -> dict[str, UsageTotals]:
            return _usage_totals(records, period)

        outcome = bill_subscription(
            sub_context, state, ctx.catalog, as_of, billed.get(subscription.id, {}), usage_for
        )
        for bill in outcome.bills:
            billing_date = local_date(bill.billing_at, customer.timezone)
            lines, guards = drafts[customer.id].setdefault(billing_date, ([], []))
            lines.extend(bill.lines)
            guards.extend((subscription.id, g) for g in bill.guards)
        plan_id, quantity = _current_terms(changes[subscription.id], subscription, now)
        cursor_updates.append(
            {
                "id": subscription.id,
                "next_billing_at": outcome.next_billing_at,
                "status": "ended" if outcome.ended else subscription.status,
                # Scheduled changes that have come into force show on the subscription.
                "plan_id": plan_id,
                "quantity": quantity,
            }
        )
    for customer_id, customer_charges in charges.items():
        customer = customers[customer_id]
        dates = drafts[customer_id]
        billing_date = max(dates) if dates else local_date(as_of, customer.timezone)
        lines, _ = dates.setdefault(billing_date, ([], []))
        lines.extend(_charge_line(charge, ctx) for charge in customer_charges)

    existing = _existing_drafts(session, org_id, drafts)
    invoice_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    guard_rows: list[dict[str, Any]] = []
    charge_updates: list[dict[str, Any]] = []
    redemption_updates: dict[str, int] = {}
    for customer_id, by_date in drafts.items():
        customer = customers[customer_id]
        for billing_date, (lines, guards) in sorted(by_date.items()):
            if not lines:
                continue
            draft = existing.get((customer_id, billing_date))
            invoice_id = draft.id if draft is not None else new_id("inv")
            prior_lines = _prior_lines(session, draft) if draft is not None else []
            discounts = (
                draft.discounts
                if draft is not None
                else _coupon_discounts(ctx, redemptions[customer_id], redemption_updates)
            )
            rated = _rate(ctx, customer, lines, prior_lines, discounts)
            totals, line_payloads = rated
            preview = DraftPreview(
                customer_id=customer.id,
                customer_name=customer.legal_name,
                billing_date=billing_date,
                currency=customer.currency,
                lines=line_payloads,
                subtotal_minor=totals.subtotal_minor,
                discount_minor=totals.discount_minor,
                tax_minor=totals.tax_minor,
                total_minor=totals.total_minor,
                invoice_id=invoice_id,
            )
            result.totals_by_currency[customer.currency] = (
                result.totals_by_currency.get(customer.currency, 0) + totals.total_minor
            )
            if dry_run:
                result.previews.append(preview)
                continue
            invoice_values = _invoice_values(ctx, customer, totals)
            if draft is None:
                invoice_rows.append(
                    {
                        "id": invoice_id,
                        "organization_id": org_id,
                        "customer_id": customer.id,
                        "number": None,
                        "status": "draft",
                        "approval_status": _approval_status(
                            ctx.org, customer.currency, totals.total_minor
                        ),
                        "approved_by": None,
                        "currency": customer.currency,
                        "billing_date": billing_date,
                        "issue_date": None,
                        "due_date": None,
                        "po_number": None,
                        "notes": None,
                        "discounts": discounts,
                        "customer_snapshot": None,
                        "created_by": actor.key_id,
                        "created_at": now,
                        "issued_at": None,
                        "voided_at": None,
                        "void_reason": None,
                        **invoice_values,
                    }
                )
                result.invoices_created += 1
            else:
                session.execute(
                    update(Invoice)
                    .where(Invoice.id == draft.id)
                    .values(
                        approval_status=_approval_status(
                            ctx.org, customer.currency, totals.total_minor
                        ),
                        **invoice_values,
                    )
                )
                result.invoices_updated += 1
            if result.keep_invoice_ids:
                result.invoice_ids.append(invoice_id)
            start = len(prior_lines)
            for position, payload in enumerate(line_payloads[start:], start=start):
                payload.update(invoice_id=invoice_id, organization_id=org_id, position=position)
                line_rows.append(payload)
            for prior, payload in zip(prior_lines, line_payloads[:start], strict=True):
                session.execute(
                    update(InvoiceLine)
                    .where(InvoiceLine.id == prior.id)
                    .values(
                        subtotal_minor=payload["subtotal_minor"],
                        discount_minor=payload["discount_minor"],
                        tax_minor=payload["tax_minor"],
                        total_minor=payload["total_minor"],
                        explanation=payload["explanation"],
                    )
                )
            for subscription_id, guard in guards:
                guard_rows.append(
                    {
                        "id": new_id("spi"),
                        "organization_id": org_id,
                        "subscription_id": subscription_id,
                        "period_start": guard.period_start,
                        "period_end": guard.period_end,
                        "timing": guard.timing,
                        "invoice_id": invoice_id,
                    }
                )
            charge_updates.extend(
                {"id": line.charge_id, "invoice_id": invoice_id} for line in lines if line.charge_id
            )
    if dry_run:
        return
    if invoice_rows:
        session.execute(insert(Invoice), invoice_rows)
    if line_rows:
        session.execute(insert(InvoiceLine), line_rows)
        result.lines_created += len(line_rows)
    if guard_rows:
        session.execute(insert(SubscriptionPeriodInvoice), guard_rows)
    if cursor_updates:
        # One executemany by primary key instead of a statement per subscription.
        session.execute(
            update(Subscription),
            [{**values, "rerate_from": None} for values in cursor_updates],
        )
    for values in charge_updates:
        session.execute(
            update(Charge)
            .where(Charge.id == values["id"], Charge.invoice_id.is_(None))
            .values(invoice_id=values["invoice_id"])
        )
    for redemption_id, uses in redemption_updates.items():
        redemption = session.get(CouponRedemption, redemption_id)
        assert redemption is not None
        coupon = ctx.coupons[redemption.coupon_id]
        redemption.invoices_applied += uses
        if coupon.duration == "once" or (
            coupon.duration == "repeating"
            and redemption.invoices_applied >= (coupon.duration_periods or 0)
        ):
            redemption.active = False
    if invoice_rows:
        audit(
            session,
            actor,
            "billing_run.drafts_created",
            "billing_run",
            as_of.isoformat()[:40],
            {"as_of": as_of.isoformat(), "invoices": len(invoice_rows)},
        )


def _current_terms(
    history: list[SubscriptionChange], subscription: Subscription, now: datetime
) -> tuple[str, Decimal]:
    plan_id, quantity = subscription.plan_id, subscription.quantity
    for change in sorted(history, key=lambda c: (c.effective_at, c.created_at)):
        if change.effective_at > now:
            break
        if change.kind in ("start", "plan", "quantity"):
            plan_id = change.plan_id or plan_id
            quantity = change.quantity if change.quantity is not None else quantity
    return plan_id, quantity


def _to_change(row: SubscriptionChange, sequence: int, timezone: str) -> Change:
    effective = row.effective_at
    if row.kind == "start":
        # Service is counted from the start day's local midnight: a subscription started at
        # 14:00 is not billed 0.42 days short under the exact-seconds policy.
        effective = local_midnight(local_date(effective, timezone), timezone)
    return Change(ChangeKind(row.kind), effective, row.plan_id, row.quantity, sequence)


def _billed_coverage(
    session: Session, subscriptions: list[Subscription]
) -> dict[str, dict[tuple[datetime, str], list[Coverage]]]:
    """What was already invoiced (not void) for subscriptions with a pending re-rate."""
    result: dict[str, dict[tuple[datetime, str], list[Coverage]]] = defaultdict(dict)
    if not subscriptions:
        return result
    ids = [s.id for s in subscriptions]
    guards = session.execute(
        select(
            SubscriptionPeriodInvoice.subscription_id,
            SubscriptionPeriodInvoice.period_start,
            SubscriptionPeriodInvoice.timing,
        ).where(SubscriptionPeriodInvoice.subscription_id.in_(ids))
    ).all()
    for sub_id, period_start, timing in guards:
        result[sub_id].setdefault((period_start, timing), [])
    rows = session.execute(
        select(
            InvoiceLine.subscription_id,
            InvoiceLine.period_start,
            InvoiceLine.price_id,
            InvoiceLine.quantity,
            InvoiceLine.service_from,
            InvoiceLine.service_to,
            InvoiceLine.coverage_weight,
            Price.timing,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .join(Price, Price.id == InvoiceLine.price_id)
        .where(
            InvoiceLine.subscription_id.in_(ids),
            InvoiceLine.coverage_weight != 0,
            Invoice.status != "void",
        )
    ).all()
    for sub_id, period_start, price_id, quantity, start, end, weight, timing in rows:
        result[sub_id].setdefault((period_start, timing), []).append(
            Coverage(price_id, quantity, start, end, weight)
        )
    return result


def _usage(
    session: Session,
    ctx: _RunContext,
    subscriptions: list[Subscription],
    as_of: datetime,
    changes: dict[str, list[SubscriptionChange]],
) -> dict[str, list[UsageRecord]]:
    metered_plans = {
        plan.id
        for plan in ctx.plans.values()
        if any(
            ctx.catalog.prices.get(code) and ctx.catalog.prices[code][-1].kind == "usage"
            for code in plan.price_codes
        )
    }
    # A subscription's plan may change in the period (also to or from a metered plan).
    ids = [
        s.id
        for s in subscriptions
        if metered_plans & {c.plan_id for c in changes.get(s.id, ()) if c.plan_id}
    ]
    if not ids:
        return {}
    earliest = min(s.next_billing_at for s in subscriptions if s.id in ids) - timedelta(days=400)
    result: dict[str, list[UsageRecord]] = defaultdict(list)
    for record in session.scalars(
        select(UsageRecord)
        .where(
            UsageRecord.subscription_id.in_(ids),
            UsageRecord.occurred_at >= earliest,
            UsageRecord.occurred_at < as_of,
        )
        .order_by(UsageRecord.occurred_at, UsageRecord.id)
    ):
        result[record.subscription_id].append(record)
    return result


def _usage_totals(records: list[UsageRecord], period: BillingPeriod) -> dict[str, UsageTotals]:
    grouped: dict[str, list[UsageRecord]] = defaultdict(list)
    for record in records:
        if period.start <= record.occurred_at < period.end:
            grouped[record.price_code].append(record)
    return {
        code: UsageTotals(
            quantity=sum((r.quantity for r in rows), Decimal(0)),
            transactions=tuple(r.value for r in rows if r.value is not None),
            records=len(rows),
        )
        for code, rows in grouped.items()
    }


def _charge_line(charge: Charge, ctx: _RunContext) -> DraftLine:
    amount = charge.quantity * charge.unit_price
    return DraftLine(
        kind=charge.kind,
        description=charge.description,
        amount=amount,
        quantity=charge.quantity,
        unit_price=charge.unit_price,
        product_id=charge.product_id,
        charge_id=charge.id,
        explanation={
            "source": charge.kind,
            "charge": {
                "id": charge.id,
                "kind": charge.kind,
                "quantity": str(charge.quantity),
                "unit_price": str(charge.unit_price),
                "reference": charge.details.get("reference") if charge.details else None,
                "service_date": None
                if charge.service_date is None
                else charge.service_date.isoformat(),
            },
            "quantity": {
                "value": str(charge.quantity),
                "source": charge.details.get("quantity_source", "entered on the charge")
                if charge.details
                else "entered on the charge",
            },
            "exact_amount": str(amount),
        },
    )


def _existing_drafts(
    session: Session, org_id: str, drafts: dict[str, dict[date, Any]]
) -> dict[tuple[str, date], Invoice]:
    customer_ids = [c for c, by_date in drafts.items() if by_date]
    if not customer_ids:
        return {}
    rows = session.scalars(
        select(Invoice).where(
            Invoice.organization_id == org_id,
            Invoice.customer_id.in_(customer_ids),
            Invoice.status == "draft",
        )
    )
    return {(row.customer_id, row.billing_date): row for row in rows}


def _prior_lines(session: Session, draft: Invoice) -> list[InvoiceLine]:
    return list(
        session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == draft.id)
            .order_by(InvoiceLine.position)
        )
    )


def _coupon_discounts(
    ctx: _RunContext, redemptions: list[CouponRedemption], updates: dict[str, int]
) -> list[dict[str, Any]]:
    result = []
    for redemption in redemptions:
        coupon = ctx.coupons[redemption.coupon_id]
        used = redemption.invoices_applied + updates.get(redemption.id, 0)
        limit = {"once": 1, "repeating": coupon.duration_periods}.get(coupon.duration)
        if limit is not None and used >= limit:
            continue  # used up by earlier invoices of this same run
        product_ids = None
        if coupon.product_codes:
            product_ids = [p.id for p in ctx.products.values() if p.code in coupon.product_codes]
        result.append(
            {
                "key": coupon.code,
                "name": coupon.name,
                "kind": coupon.kind,
                "value": str(coupon.value),
                "product_ids": product_ids,
                "coupon_id": coupon.id,
            }
        )
        updates[redemption.id] = updates.get(redemption.id, 0) + 1
    return result


def _rate(
    ctx: _RunContext,
    customer: Customer,
    lines: list[DraftLine],
    prior: list[InvoiceLine],
    discounts: list[dict[str, Any]],
) -> tuple[Any, list[dict[str, Any]]]:
    """Tax and total all lines of one draft; return the totals and rows ready to insert."""
    treatment = treatment_of(customer)
    entries: list[tuple[str, Decimal, Any, str | None]] = []
    for line in prior:
        entries.append((line.id, line.amount, taxes_from_json(line.taxes), line.product_id))
    fresh_taxes = []
    for line in lines:
        category = ctx.products[line.product_id].tax_category if line.product_id else "standard"
        rates = ctx.taxes.for_customer(customer, category)
        fresh_taxes.append(rates)
        entries.append((new_id("line"), line.amount, rates, line.product_id))
    totals = rate_invoice(ctx.org, customer.currency, treatment, entries, discounts)
    names = {d["key"]: d.get("name", d["key"]) for d in discounts}
    payloads: list[dict[str, Any]] = []
    for index, line_totals in enumerate(totals.lines):
        key, amount, rates, _ = entries[index]
        tail = line_explanation_tail(ctx.org, line_totals, amount, names, totals.legal_note)
        if index < len(prior):
            row = prior[index]
            payloads.append(
                {
                    "subtotal_minor": line_totals.subtotal_minor,
                    "discount_minor": line_totals.discount_minor,
                    "tax_minor": line_totals.tax_minor,
                    "total_minor": line_totals.total_minor,
                    "explanation": {**row.explanation, **tail},
                }
            )
            continue
        line = lines[index - len(prior)]
        payloads.append(
            {
                "id": key,
                "kind": line.kind,
                "description": line.description,
                "product_id": line.product_id,
                "price_id": line.price_id,
                "subscription_id": line.subscription_id,
                "charge_id": line.charge_id,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "service_from": line.service_from,
                "service_to": line.service_to,
                "coverage_weight": line.coverage_weight,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": line.amount,
                "subtotal_minor": line_totals.subtotal_minor,
                "discount_minor": line_totals.discount_minor,
                "tax_minor": line_totals.tax_minor,
                "total_minor": line_totals.total_minor,
                "taxes": taxes_to_json(rates),
                "explanation": {**line.explanation, **tail},
            }
        )
    return totals, payloads


def _invoice_values(ctx: _RunContext, customer: Customer, totals: Any) -> dict[str, Any]:
    return {
        "tax_treatment": totals.treatment.value,
        "legal_note": totals.legal_note,
        "tax_summary": [
            {
                "code": t.code,
                "name": t.name,
                "percent": str(t.percent),
                "taxable_minor": t.taxable_minor,
                "tax_minor": t.tax_minor,
            }
            for t in totals.tax_summary
        ],
        "subtotal_minor": totals.subtotal_minor,
        "discount_minor": totals.discount_minor,
        "tax_minor": totals.tax_minor,
        "total_minor": totals.total_minor,
        "amount_due_minor": totals.total_minor,
        "rating_context": {
            "proration_policy": ctx.org.proration_policy,
            "rounding_mode": ctx.org.rounding_mode,
            "tax_rounding": ctx.org.tax_rounding,
            "prices_include_tax": ctx.org.prices_include_tax,
        },
    }


def _approval_status(org: Organization, currency: str, total_minor: int) -> str:
    threshold = (org.approval_thresholds or {}).get(currency)
    if threshold is None:
        return "not_required"
    limit = round_to_minor(Decimal(threshold), currency, RoundingMode.HALF_UP)
    return "pending" if total_minor > limit else "not_required"
