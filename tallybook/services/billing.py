"""The billing run: find everything due up to an instant and write one draft per customer and
billing date. Streams customers in batches (on PostgreSQL two at a time, rows written with
COPY); a unique constraint on (subscription, period, timing) makes a re-run or a concurrent run
harmless.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque, namedtuple
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    bindparam,
    select,
    text,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core.billing import (
    Catalog,
    DraftLine,
    PlanInfo,
    PriceVersion,
    SubscriptionContext,
    SubscriptionState,
    bill_subscription,
    late_usage_lines,
    usage_lines,
    usage_periods,
)
from tallybook.core.coverage import Coverage
from tallybook.core.metering import UsageCharge
from tallybook.core.money import RoundingMode, round_to_minor
from tallybook.core.periods import BillingPeriod, Interval, local_date, local_midnight
from tallybook.core.pricing import PriceTerms
from tallybook.core.proration import ProrationPolicy
from tallybook.core.timeline import Change, ChangeKind, Segment, billable_segments
from tallybook.core.totals import InvoiceTotals, TaxTreatment
from tallybook.db.bulk import insert_rows
from tallybook.db.models import (
    Charge,
    Coupon,
    CouponRedemption,
    Customer,
    Invoice,
    InvoiceLine,
    LateUsagePeriod,
    Organization,
    Plan,
    Price,
    Product,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriodInvoice,
    TaxRate,
    new_id,
)
from tallybook.services.base import WRITERS, Actor, Database, audit, utcnow
from tallybook.services.metering import Window, load_metrics, needs_transactions, read_usage
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
    # Built once per run rather than once per subscription.
    plan_names: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)
    # Per-run memo of draft totals by shape; see _totals_and_tails.
    drafts_rated: dict[Any, tuple[InvoiceTotals, list[dict[str, Any]]]] = field(
        default_factory=dict
    )


# Bounds the per-run memo of draft totals, so that memory stays flat however odd the data.
_MEMO_LIMIT = 10_000


def _load_context(session: Session, organization_id: str) -> _RunContext:
    org = session.get(Organization, organization_id)
    assert org is not None
    products = {
        p.id: p
        for p in session.scalars(select(Product).where(Product.organization_id == organization_id))
    }
    metrics = load_metrics(session, organization_id)
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
            usage=_usage_charge(p, metrics),
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
        org,
        catalog,
        products,
        plans,
        taxes,
        coupons,
        ProrationPolicy(org.proration_policy),
        plan_names={p.id: p.name for p in plans.values()},
        intervals={p.id: plan_interval(p) for p in plans.values()},
    )


def _usage_charge(price: Price, metrics: dict[str, Any]) -> UsageCharge | None:
    if price.kind != "usage" or price.metric_code not in metrics:
        return None
    return UsageCharge(
        metric=metrics[price.metric_code],
        filters={k: tuple(v) for k, v in (price.usage_filters or {}).items()},
        group_by=tuple(price.group_by or ()),
        with_transactions=needs_transactions(PriceTerms.from_dict(price.terms)),
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
    # Each side is cut to its first `limit` customers before the union: the first `limit` of the
    # union are among them, and the database walks the customer_id index instead of collecting
    # every customer still due on every batch (which made long runs quadratic).
    # Late usage of an ended subscription has no next period to ride on: bill it now.
    late_after_end = (
        select(Subscription.customer_id.label("customer_id"))
        .join(LateUsagePeriod, LateUsagePeriod.subscription_id == Subscription.id)
        .where(
            LateUsagePeriod.organization_id == organization_id,
            Subscription.status == "ended",
            Subscription.customer_id > after,
        )
    )
    firsts = [
        query.distinct().order_by("customer_id").limit(limit).subquery()
        for query in (due_subscriptions, due_charges, late_after_end)
    ]
    combined = union(*(select(first.c.customer_id) for first in firsts)).subquery()
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
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    keep_invoice_ids: bool = True,
) -> BillingRunResult:
    """Bill everything due up to `as_of`; with dry_run, return what would be billed."""
    if as_of.tzinfo is None:
        raise ValueError("as_of: give a date-time with a time zone")
    if not dry_run:
        actor.require(*WRITERS, action="run billing")
    result = BillingRunResult(as_of=as_of, dry_run=dry_run, keep_invoice_ids=keep_invoice_ids)
    if not dry_run:
        from tallybook.services.late_usage import rerate_late_drafts

        rerate_late_drafts(db, actor)
    with db.reading() as session:
        context = _load_context(session, actor.organization_id)

    def bill(batch: list[str]) -> BillingRunResult:
        part = BillingRunResult(as_of=as_of, dry_run=dry_run, keep_invoice_ids=keep_invoice_ids)
        _bill_customers(db, actor, context, batch, as_of, dry_run, part)
        return part

    # On PostgreSQL the next batch is billed while the server writes the previous one (JSONB,
    # indexes, foreign keys), each in its own transaction. Batches hold disjoint customers, so
    # they never wait for each other. SQLite has one writer at a time: one batch after another.
    workers = _PARALLEL_BATCHES if db.dialect == "postgresql" else 1
    batches = _batches(db, actor.organization_id, as_of, batch_size)
    for part in _in_order(bill, batches, workers):
        result.customers_seen += part.customers_seen
        result.invoices_created += part.invoices_created
        result.invoices_updated += part.invoices_updated
        result.lines_created += part.lines_created
        for currency, total in part.totals_by_currency.items():
            result.totals_by_currency[currency] = result.totals_by_currency.get(currency, 0) + total
        result.conflicts += part.conflicts
        result.previews.extend(part.previews)
        result.invoice_ids.extend(part.invoice_ids)
        if progress is not None:
            progress(part.customers_seen)
    return result


# Batches in flight at once on PostgreSQL: one computing while the other is being written.
_PARALLEL_BATCHES = 2
_T = TypeVar("_T")
_R = TypeVar("_R")


def _in_order(function: Callable[[_T], _R], items: Iterator[_T], workers: int) -> Iterator[_R]:
    """function(item) for each item, results in order, with up to `workers` calls at once."""
    if workers == 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[_R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) == workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _batches(db: Database, organization_id: str, as_of: datetime, size: int) -> Iterator[list[str]]:
    """Customers with something due, `size` at a time, by keyset pagination."""
    after = ""
    while True:
        with db.reading() as session:
            batch = _candidate_customers(session, organization_id, as_of, after, size)
        if not batch:
            return
        after = batch[-1]
        yield batch


def _bill_customers(
    db: Database,
    actor: Actor,
    context: _RunContext,
    batch: list[str],
    as_of: datetime,
    dry_run: bool,
    result: BillingRunResult,
) -> None:
    """Bill one batch of customers in one transaction."""
    try:
        with _batch_transaction(db) as session:
            _bill_batch(session, actor, context, batch, as_of, dry_run, result)
            if dry_run:
                session.rollback()
    except IntegrityError:
        # Another run billed one of these customers first. Retry one by one so that the
        # others still get billed; the conflicting one now finds nothing due.
        result.conflicts += 1
        if len(batch) > 1:
            for single in batch:
                try:
                    with _batch_transaction(db) as session:
                        _bill_batch(session, actor, context, [single], as_of, dry_run, result)
                except IntegrityError:
                    result.conflicts += 1
    result.customers_seen += len(batch)


@contextmanager
def _batch_transaction(db: Database) -> Iterator[Session]:
    """`db.transaction()` for billing a batch.

    On PostgreSQL, psycopg meanwhile stops counting statements towards preparing them: those
    carrying a batch's ids (see _among) are new text every batch, and it would keep the last
    hundred of them, tens of kilobytes each, on every connection.
    """
    with db.transaction() as session:
        if db.dialect != "postgresql":
            yield session
            return
        driver_connection = session.connection().connection.driver_connection
        assert driver_connection is not None
        threshold = driver_connection.prepare_threshold
        driver_connection.prepare_threshold = None
        try:
            yield session
        finally:
            driver_connection.prepare_threshold = threshold


# Plain rows rather than ORM objects: the run only reads these, and loading thousands of
# entities per batch costs more than billing them. They are read as named tuples, whose
# attributes are several times cheaper than a result row's.
_CUSTOMER_COLUMNS = (
    Customer.id,
    Customer.legal_name,
    Customer.currency,
    Customer.timezone,
    Customer.country,
    Customer.region,
    Customer.city,
    Customer.tax_exempt,
    Customer.reverse_charge,
)
_SUBSCRIPTION_COLUMNS = (
    Subscription.id,
    Subscription.customer_id,
    Subscription.plan_id,
    Subscription.quantity,
    Subscription.status,
    Subscription.anchor_date,
    Subscription.trial_end_at,
    Subscription.next_billing_at,
    Subscription.rerate_from,
)
_CHANGE_COLUMNS = (
    SubscriptionChange.subscription_id,
    SubscriptionChange.kind,
    SubscriptionChange.effective_at,
    SubscriptionChange.plan_id,
    SubscriptionChange.quantity,
    SubscriptionChange.created_at,
)


_CustomerRow = namedtuple("_CustomerRow", [column.key for column in _CUSTOMER_COLUMNS])
_SubscriptionRow = namedtuple("_SubscriptionRow", [column.key for column in _SUBSCRIPTION_COLUMNS])
_ChangeRow = namedtuple("_ChangeRow", [column.key for column in _CHANGE_COLUMNS])


def _among(session: Session, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column IN values` for a batch's ids; on PostgreSQL the ids are written into the
    statement.

    As bound parameters (or as an array parameter, which psycopg dumps element by element)
    each of thousands of ids is rendered and converted on its own, which cost more than the
    query. Literal values also give the planner the real list each time, never a generic plan
    that tests every row against an unhashed list.
    """
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column.in_(bindparam(None, list(values), expanding=True, literal_execute=True))


def _lock_customers(session: Session, ids: Sequence[str]) -> dict[str, _CustomerRow]:
    query = (
        select(*_CUSTOMER_COLUMNS).where(_among(session, Customer.id, ids)).order_by(Customer.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two runs at once queue per customer; the second then sees the advanced cursor.
        query = query.with_for_update()
    return {c.id: c for c in map(_CustomerRow._make, session.execute(query))}


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
        map(
            _SubscriptionRow._make,
            session.execute(
                select(*_SUBSCRIPTION_COLUMNS)
                .where(
                    Subscription.organization_id == org_id,
                    _among(session, Subscription.customer_id, customer_ids),
                    Subscription.next_billing_at <= as_of,
                    Subscription.status != "ended",
                )
                .order_by(Subscription.customer_id, Subscription.id)
            ),
        )
    )
    changes = _histories(session, [s.id for s in subscriptions])
    now = utcnow()
    billed = _billed_coverage(session, [s for s in subscriptions if s.rerate_from is not None])
    readings = usage_readings(
        session,
        ctx,
        org_id,
        [
            (
                s,
                customers[s.customer_id],
                changes[s.id],
                usage_periods(
                    s.anchor_date,
                    ctx.intervals[s.plan_id],
                    customers[s.customer_id].timezone,
                    s.next_billing_at,
                    as_of,
                ),
            )
            for s in subscriptions
        ],
    )
    charges: dict[str, list[Charge]] = defaultdict(list)
    for charge in session.scalars(
        select(Charge)
        .where(
            Charge.organization_id == org_id,
            _among(session, Charge.customer_id, customer_ids),
            Charge.invoice_id.is_(None),
            Charge.billable_at <= as_of,
        )
        .order_by(Charge.billable_at, Charge.id)
    ):
        charges[charge.customer_id].append(charge)
    redemptions: dict[str, list[CouponRedemption]] = defaultdict(list)
    for redemption in session.scalars(
        select(CouponRedemption)
        .where(
            _among(session, CouponRedemption.customer_id, customer_ids),
            CouponRedemption.active.is_(True),
        )
        .order_by(CouponRedemption.created_at)
    ):
        redemptions[redemption.customer_id].append(redemption)

    # customer -> billing date -> (lines, guards)
    drafts: dict[str, dict[date, tuple[list[DraftLine], list[Any]]]] = defaultdict(dict)
    cursor_updates: list[dict[str, Any]] = []
    for subscription in subscriptions:
        customer = customers[subscription.customer_id]
        sub_context = SubscriptionContext(
            id=subscription.id,
            plan_names=ctx.plan_names,
            interval=ctx.intervals[subscription.plan_id],
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

        def usage_for(period: BillingPeriod, sub_id: str = subscription.id) -> dict[str, Any]:
            return readings.get((sub_id, period.start), {})

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
                "status": _status_after(subscription, outcome.ended, now),
                # Scheduled changes that have come into force show on the subscription.
                "plan_id": plan_id,
                "quantity": quantity,
            }
        )
    if not dry_run:
        for customer_id, late_lines in late_adjustments(session, ctx, org_id, customers).items():
            customer = customers[customer_id]
            dates = drafts[customer_id]
            billing_date = min(dates) if dates else local_date(as_of, customer.timezone)
            dates.setdefault(billing_date, ([], []))[0].extend(late_lines)
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
            totals, line_payloads = _rate(ctx, customer, lines, prior_lines, discounts)
            result.totals_by_currency[customer.currency] = (
                result.totals_by_currency.get(customer.currency, 0) + totals.total_minor
            )
            if dry_run:
                result.previews.append(
                    DraftPreview(
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
                )
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
                        "credit_applied_minor": 0,
                        "credited_minor": 0,
                        "debited_minor": 0,
                        "paid_minor": 0,
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
    insert_rows(session, Invoice, invoice_rows)
    insert_rows(session, InvoiceLine, line_rows)
    result.lines_created += len(line_rows)
    insert_rows(session, SubscriptionPeriodInvoice, guard_rows)
    _advance_subscriptions(session, cursor_updates)
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


_ADVANCE_SUBSCRIPTIONS = text(
    "UPDATE subscriptions SET next_billing_at = v.next_billing_at, status = v.status, "
    "plan_id = v.plan_id, quantity = v.quantity, rerate_from = NULL "
    "FROM json_to_recordset(CAST(:rows AS json)) AS v (id varchar, next_billing_at timestamptz, "
    "status varchar, plan_id varchar, quantity varchar) "
    "WHERE subscriptions.id = v.id"
)


def _advance_subscriptions(session: Session, updates: list[dict[str, Any]]) -> None:
    """Move the billed subscriptions' cursors, show terms now in force, clear pending re-rates."""
    if not updates:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        # One executemany by primary key.
        session.execute(
            update(Subscription), [{**values, "rerate_from": None} for values in updates]
        )
        return
    # One statement for the whole batch, its rows as one JSON document: sent as arrays or as
    # an executemany, the values cost more to send than the update itself. They pass through the
    # columns' own processing first (UTC instants, exact decimal text).
    columns = Subscription.__table__.c
    processors = {
        name: columns[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in updates[0]
    }
    rows = [
        {
            name: values[name] if process is None else process(values[name])
            for name, process in processors.items()
        }
        for values in updates
    ]
    session.execute(_ADVANCE_SUBSCRIPTIONS, {"rows": json.dumps(rows, default=_isoformat)})


def _isoformat(value: datetime) -> str:
    return value.isoformat()


def _status_after(subscription: Any, ended: bool, now: datetime) -> str:
    """Ended once fully billed; a trial that is over becomes active."""
    if ended:
        return "ended"
    trial_end = subscription.trial_end_at
    if subscription.status == "trialing" and trial_end is not None and trial_end <= now:
        return "active"
    return subscription.status


def _current_terms(
    history: list[_ChangeRow], subscription: _SubscriptionRow, now: datetime
) -> tuple[str, Decimal]:
    plan_id, quantity = subscription.plan_id, subscription.quantity
    for change in sorted(history, key=lambda c: (c.effective_at, c.created_at)):
        if change.effective_at > now:
            break
        if change.kind in ("start", "plan", "quantity"):
            plan_id = change.plan_id or plan_id
            quantity = change.quantity if change.quantity is not None else quantity
    return plan_id, quantity


def _to_change(row: _ChangeRow, sequence: int, timezone: str) -> Change:
    effective = row.effective_at
    if row.kind == "start":
        # Service is counted from the start day's local midnight: a subscription started at
        # 14:00 is not billed 0.42 days short under the exact-seconds policy.
        effective = local_midnight(local_date(effective, timezone), timezone)
    return Change(ChangeKind(row.kind), effective, row.plan_id, row.quantity, sequence)


def _billed_coverage(
    session: Session, subscriptions: list[_SubscriptionRow]
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
        ).where(_among(session, SubscriptionPeriodInvoice.subscription_id, ids))
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
            _among(session, InvoiceLine.subscription_id, ids),
            InvoiceLine.coverage_weight != 0,
            Invoice.status != "void",
        )
    ).all()
    for sub_id, period_start, price_id, quantity, start, end, weight, timing in rows:
        result[sub_id].setdefault((period_start, timing), []).append(
            Coverage(price_id, quantity, start, end, weight)
        )
    return result


def usage_readings(
    session: Session,
    ctx: _RunContext,
    org_id: str,
    items: Sequence[tuple[Any, Any, list[Any], Sequence[BillingPeriod]]],
) -> dict[tuple[str, datetime], dict[str, Any]]:
    """Usage readings per (subscription, period start) and price code, for the given periods.

    `items` are (subscription row, customer row, change rows, periods). Each usage price reads
    only the part of the period when a plan offering it was in force (an upgrade mid-period
    splits the usage between the old and the new price, never both). One read per usage price
    version over all windows at once. Events sent with only the customer's id belong to the
    customer's earliest subscription that bills the metric in that period.
    """
    wanted: list[tuple[Any, Any, list[Segment], Sequence[BillingPeriod]]] = []
    for subscription, customer, history, periods in items:
        segments = _segments_of(subscription, customer.timezone, history)
        if periods and segments:
            wanted.append((subscription, customer, segments, periods))
    if not wanted:
        return {}
    owners = _UsageOwners(
        session,
        ctx,
        org_id,
        sorted({c.id for _, c, _, _ in wanted}),
        {s.id: segments for s, _, segments, _ in wanted},
    )
    windows: dict[str, tuple[UsageCharge, list[Window]]] = {}
    for subscription, customer, segments, periods in wanted:
        for period in periods:
            for code, (start, end) in _usage_spans(ctx, segments, period).items():
                price = ctx.catalog.price_at(code, period.start)
                if price.usage is None:
                    continue
                metric = price.usage.metric.code
                window = Window(
                    key=(subscription.id, period.start, code),
                    customer_id=customer.id,
                    subscription_id=subscription.id,
                    owner=owners.owner(customer.id, customer.timezone, metric, period)
                    == subscription.id,
                    start=start,
                    end=end,
                )
                windows.setdefault(price.id, (price.usage, []))[1].append(window)
    result: dict[tuple[str, datetime], dict[str, Any]] = {}
    for charge, charge_windows in windows.values():
        for (sub_id, start, code), groups in read_usage(
            session, org_id, charge, charge_windows
        ).items():  # type: ignore[misc]
            result.setdefault((sub_id, start), {})[code] = groups
    return result


def _histories(session: Session, sub_ids: Sequence[str]) -> dict[str, list[_ChangeRow]]:
    """Each subscription's change rows, in the order they were made."""
    history: dict[str, list[_ChangeRow]] = defaultdict(list)
    if not sub_ids:
        return history
    for row in map(
        _ChangeRow._make,
        session.execute(
            select(*_CHANGE_COLUMNS)
            .where(_among(session, SubscriptionChange.subscription_id, sub_ids))
            .order_by(SubscriptionChange.created_at)
        ),
    ):
        history[row.subscription_id].append(row)
    return history


def _segments_of(subscription: Any, timezone: str, history: Sequence[Any]) -> list[Segment]:
    if not history:
        return []
    changes = tuple(_to_change(row, i, timezone) for i, row in enumerate(history))
    return billable_segments(changes, subscription.trial_end_at)


def _usage_spans(
    ctx: _RunContext, segments: Sequence[Segment], period: BillingPeriod
) -> dict[str, tuple[datetime, datetime]]:
    """Usage price code -> the span of `period` during which a plan offering it was in force."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for segment in segments:
        overlap = segment.overlap(period.start, period.end)
        if overlap is None:
            continue
        for price in ctx.catalog.plan_prices_at(segment.plan_id, period.start):
            if price.kind != "usage":
                continue
            known = spans.get(price.code)
            spans[price.code] = (
                overlap if known is None else (min(known[0], overlap[0]), max(known[1], overlap[1]))
            )
    return spans


class _UsageOwners:
    """Which subscription bills events sent with only the customer's id, per period."""

    def __init__(
        self,
        session: Session,
        ctx: _RunContext,
        org_id: str,
        customer_ids: Sequence[str],
        known: dict[str, list[Segment]],
    ) -> None:
        self.ctx = ctx
        rows = list(
            map(
                _SubscriptionRow._make,
                session.execute(
                    select(*_SUBSCRIPTION_COLUMNS)
                    .where(
                        Subscription.organization_id == org_id,
                        _among(session, Subscription.customer_id, customer_ids),
                    )
                    .order_by(Subscription.customer_id, Subscription.start_at, Subscription.id)
                ),
            )
        )
        history = _histories(session, [r.id for r in rows if r.id not in known])
        self.rows = rows
        self.known = known
        self.history = history
        self.cache: dict[tuple[str, str, datetime, datetime], str | None] = {}

    def owner(
        self, customer_id: str, timezone: str, metric: str, period: BillingPeriod
    ) -> str | None:
        key = (customer_id, metric, period.start, period.end)
        if key not in self.cache:
            self.cache[key] = None
            for row in self.rows:
                if row.customer_id != customer_id:
                    continue
                segments = self.known.get(row.id)
                if segments is None:
                    segments = _segments_of(row, timezone, self.history.get(row.id, []))
                    self.known[row.id] = segments
                if metric in self._metrics_in(segments, period):
                    self.cache[key] = row.id
                    break
        return self.cache[key]

    def _metrics_in(self, segments: Sequence[Segment], period: BillingPeriod) -> set[str]:
        """Metrics billed by the plans these segments had in force during `period`."""
        charges = (
            self.ctx.catalog.price_at(code, period.start).usage
            for code in _usage_spans(self.ctx, segments, period)
        )
        return {charge.metric.code for charge in charges if charge is not None}


def subscription_context(ctx: _RunContext, subscription: Any, customer: Any) -> SubscriptionContext:
    return SubscriptionContext(
        id=subscription.id,
        plan_names=ctx.plan_names,
        interval=ctx.intervals[subscription.plan_id],
        timezone=customer.timezone,
        currency=customer.currency,
        policy=ctx.policy,
    )


def fresh_usage_lines(
    session: Session,
    ctx: _RunContext,
    org_id: str,
    periods: Sequence[tuple[Any, Any, datetime]],
) -> dict[tuple[str, datetime], tuple[BillingPeriod, list[DraftLine]]]:
    """Usage lines of already rated periods, re-rated on every event known now.

    `periods` are (subscription row, customer row, period start).
    """
    history = _histories(session, sorted({s.id for s, _, _ in periods}))
    from tallybook.core.periods import period_containing

    items = []
    resolved: list[tuple[Any, Any, BillingPeriod]] = []
    for subscription, customer, start in periods:
        period = period_containing(
            subscription.anchor_date, ctx.intervals[subscription.plan_id], start, customer.timezone
        )
        resolved.append((subscription, customer, period))
        items.append((subscription, customer, history[subscription.id], [period]))
    readings = usage_readings(session, ctx, org_id, items)
    result: dict[tuple[str, datetime], tuple[BillingPeriod, list[DraftLine]]] = {}
    for subscription, customer, period in resolved:
        changes = tuple(
            _to_change(row, i, customer.timezone) for i, row in enumerate(history[subscription.id])
        )
        segments = billable_segments(changes, subscription.trial_end_at)
        lines = usage_lines(
            subscription_context(ctx, subscription, customer),
            segments,
            ctx.catalog,
            period,
            readings.get((subscription.id, period.start), {}),
        )
        result[(subscription.id, period.start)] = (period, lines)
    return result


def billed_usage(
    session: Session, keys: Sequence[tuple[str, datetime]], exclude_invoice: str | None = None
) -> dict[tuple[str, datetime], dict[str, tuple[Decimal, Decimal]]]:
    """(quantity, exact amount) billed per usage key of each (subscription, period start), on
    invoices that are not void."""
    result: dict[tuple[str, datetime], dict[str, tuple[Decimal, Decimal]]] = defaultdict(dict)
    if not keys:
        return result
    wanted = set(keys)
    query = (
        select(
            InvoiceLine.subscription_id,
            InvoiceLine.period_start,
            InvoiceLine.usage_key,
            InvoiceLine.quantity,
            InvoiceLine.amount,
        )
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            _among(session, InvoiceLine.subscription_id, sorted({k[0] for k in keys})),
            InvoiceLine.usage_key.is_not(None),
            Invoice.status != "void",
        )
    )
    if exclude_invoice is not None:
        query = query.where(Invoice.id != exclude_invoice)
    for sub_id, start, key, quantity, amount in session.execute(query):
        if (sub_id, start) not in wanted:
            continue
        known = result[(sub_id, start)].get(key, (Decimal(0), Decimal(0)))
        # A true-up line's quantity is 1 whatever the usage; only its amount adds up.
        result[(sub_id, start)][key] = (known[0] + quantity, known[1] + amount)
    return result


def late_adjustments(
    session: Session, ctx: _RunContext, org_id: str, customers: dict[str, Any]
) -> dict[str, list[DraftLine]]:
    """Adjustment lines for late usage of issued periods of these customers, per customer.

    The marks are consumed: the run's transaction writes the lines and removes them together.
    Periods whose invoice is still a draft are left to `late_usage.rerate_drafts`.
    """
    rows = session.execute(
        select(
            LateUsagePeriod.subscription_id,
            LateUsagePeriod.period_start,
            Invoice.status,
            Invoice.number,
        )
        .join(Subscription, Subscription.id == LateUsagePeriod.subscription_id)
        .join(
            SubscriptionPeriodInvoice,
            (SubscriptionPeriodInvoice.subscription_id == LateUsagePeriod.subscription_id)
            & (SubscriptionPeriodInvoice.period_start == LateUsagePeriod.period_start)
            & (SubscriptionPeriodInvoice.timing == "in_arrears"),
            isouter=True,
        )
        .join(Invoice, Invoice.id == SubscriptionPeriodInvoice.invoice_id, isouter=True)
        .where(
            LateUsagePeriod.organization_id == org_id,
            _among(session, Subscription.customer_id, sorted(customers)),
        )
        .order_by(LateUsagePeriod.subscription_id, LateUsagePeriod.period_start)
    ).all()
    issued = ("issued", "partially_paid", "paid", "uncollectible")
    # A mark whose period is no longer on any live invoice (its draft was voided: the run rates
    # the period afresh; an issued invoice was voided: re-billing is the specialist's call) is
    # dropped; one on a draft is the draft re-rate's business.
    for sub_id, start, status, _ in rows:
        if status is None or status == "void":
            session.execute(
                LateUsagePeriod.__table__.delete().where(
                    LateUsagePeriod.subscription_id == sub_id,
                    LateUsagePeriod.period_start == start,
                )
            )
    pending = [(sub_id, start) for sub_id, start, status, _ in rows if status in issued]
    if not pending:
        return {}
    subscriptions = {
        s.id: s
        for s in map(
            _SubscriptionRow._make,
            session.execute(
                select(*_SUBSCRIPTION_COLUMNS).where(
                    _among(session, Subscription.id, sorted({p[0] for p in pending}))
                )
            ),
        )
    }
    fresh = fresh_usage_lines(
        session,
        ctx,
        org_id,
        [
            (subscriptions[sub_id], customers[subscriptions[sub_id].customer_id], start)
            for sub_id, start in pending
        ],
    )
    billed = billed_usage(session, pending)
    numbers: dict[tuple[str, datetime], list[str]] = defaultdict(list)
    for sub_id, start, _status, number in rows:
        if number:
            numbers[(sub_id, start)].append(number)
    result: dict[str, list[DraftLine]] = defaultdict(list)
    for sub_id, start in pending:
        period, lines = fresh[(sub_id, start)]
        adjustment = late_usage_lines(
            lines, billed.get((sub_id, start), {}), numbers[(sub_id, start)], period
        )
        result[subscriptions[sub_id].customer_id].extend(adjustment)
        session.execute(
            LateUsagePeriod.__table__.delete().where(
                LateUsagePeriod.subscription_id == sub_id, LateUsagePeriod.period_start == start
            )
        )
    return {k: v for k, v in result.items() if v}


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
            _among(session, Invoice.customer_id, customer_ids),
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
    customer: _CustomerRow,
    lines: list[DraftLine],
    prior: list[InvoiceLine],
    discounts: list[dict[str, Any]],
) -> tuple[Any, list[dict[str, Any]]]:
    """Tax and total all lines of one draft; return the totals and rows ready to insert."""
    treatment = treatment_of(customer)
    entries: list[tuple[str, Decimal, Any, str | None]] = []
    for line in prior:
        entries.append((line.id, line.amount, taxes_from_json(line.taxes), line.product_id))
    for line in lines:
        category = ctx.products[line.product_id].tax_category if line.product_id else "standard"
        rates = ctx.taxes.for_customer(customer, category)
        entries.append((new_id("line"), line.amount, rates, line.product_id))
    totals, tails = _totals_and_tails(ctx, customer.currency, treatment, entries, prior, discounts)
    payloads: list[dict[str, Any]] = []
    for index, (line_totals, tail) in enumerate(zip(totals.lines, tails, strict=True)):
        key, amount, rates, _ = entries[index]
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
                "usage_key": line.usage_key,
            }
        )
    return totals, payloads


def _totals_and_tails(
    ctx: _RunContext,
    currency: str,
    treatment: TaxTreatment,
    entries: list[tuple[str, Decimal, Any, str | None]],
    prior: list[InvoiceLine],
    discounts: list[dict[str, Any]],
) -> tuple[InvoiceTotals, list[dict[str, Any]]]:
    """The draft's totals and each line's explanation tail.

    A new draft without discounts is rated from its lines' exact amounts and tax rates alone,
    and most drafts of a run repeat a few such shapes: those are rated once per run (with the
    lines keyed by position, which nothing downstream reads). Tails are then shared between
    drafts, so they must be read, never changed.
    """
    shape = None
    if not prior and not discounts:
        shape = (
            currency,
            treatment,
            # Exact texts: 5 and 5.0 total alike but explain differently.
            tuple(
                (str(amount), rates, tuple(str(rate.percent) for rate in rates))
                for _, amount, rates, _ in entries
            ),
        )
        known = ctx.drafts_rated.get(shape)
        if known is not None:
            return known
        entries = [(str(index), *entry[1:]) for index, entry in enumerate(entries)]
    totals = rate_invoice(ctx.org, currency, treatment, entries, discounts)
    names = {d["key"]: d.get("name", d["key"]) for d in discounts}
    tails = [
        line_explanation_tail(ctx.org, line_totals, amount, names, totals.legal_note)
        for line_totals, (_, amount, _, _) in zip(totals.lines, entries, strict=True)
    ]
    if shape is not None and len(ctx.drafts_rated) < _MEMO_LIMIT:
        ctx.drafts_rated[shape] = (totals, tails)
    return totals, tails


def _invoice_values(ctx: _RunContext, customer: _CustomerRow, totals: Any) -> dict[str, Any]:
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
