"""Subscriptions: start, trial, upgrade, downgrade, quantity, pause, cancel, and usage reports.

Every change is recorded with the instant it takes effect; billing rebuilds the timeline from
that history, so a backdated change simply becomes adjustment lines on the next invoice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core.periods import (
    Interval,
    IntervalUnit,
    calendar_anchor,
    local_date,
    period_containing,
)
from tallybook.core.pricing import PriceTerms, rate
from tallybook.db.models import (
    Customer,
    Organization,
    Plan,
    Price,
    Subscription,
    SubscriptionChange,
    new_id,
)
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.catalog import _decimal, _instant


def plan_interval(plan: Plan) -> Interval:
    return Interval(IntervalUnit(plan.interval_unit), plan.interval_count)


def _quantity(value: Any, field: str = "quantity") -> Decimal:
    quantity = _decimal(value, field)
    if quantity < 0:
        raise InvalidInput(f"{field}: must not be negative", field=field)
    return quantity


# What the audit trail compares before and after a change of a subscription.
AUDITED = (
    "plan_id",
    "quantity",
    "status",
    "end_at",
    "cancel_at_period_end",
    "canceled_at",
    "next_billing_at",
)


def create_subscription(db: Database, actor: Actor, values: dict[str, Any]) -> Subscription:
    actor.require(*WRITERS, action="create subscriptions")
    for name in ("customer_id", "plan_id"):
        if not values.get(name):
            raise InvalidInput(f"{name}: is required", field=name)
    quantity = _quantity(values.get("quantity", 1))
    anchor = values.get("anchor", "anniversary")
    if anchor not in ("calendar", "anniversary"):
        raise InvalidInput("anchor: must be calendar or anniversary", field="anchor")
    now = utcnow()
    start_at = _instant(values.get("start_at"), "start_at") or now
    end_at = _instant(values.get("end_at"), "end_at")
    auto_renew = values.get("auto_renew", True)
    term = values.get("renewal_term_months")
    if term is not None and (not isinstance(term, int) or term < 1):
        raise InvalidInput(
            "renewal_term_months: must be a whole number of months", field="renewal_term_months"
        )
    with db.transaction() as session:
        customer = get_owned(session, Customer, values["customer_id"], actor)
        plan = get_owned(session, Plan, values["plan_id"], actor)
        if customer.archived_at is not None:
            raise Conflict("customer_id: the customer is archived", field="customer_id")
        if plan.currency != customer.currency:
            raise InvalidInput(
                f"plan_id: plan {plan.code} is in {plan.currency}; the customer "
                f"bills in {customer.currency}",
                field="plan_id",
            )
        trial_days = values.get("trial_days", plan.trial_days)
        if not isinstance(trial_days, int) or trial_days < 0:
            raise InvalidInput("trial_days: must be a whole number of days", field="trial_days")
        trial_end = _instant(values.get("trial_end_at"), "trial_end_at")
        if trial_end is None and trial_days:
            trial_end = start_at + timedelta(days=trial_days)
        if trial_end is not None and trial_end <= start_at:
            raise InvalidInput("trial_end_at: must be after start_at", field="trial_end_at")
        if end_at is None and not auto_renew and term:
            from tallybook.core.periods import boundary_date, local_midnight

            local_start = local_date(start_at, customer.timezone)
            end_at = local_midnight(
                boundary_date(local_start, Interval(IntervalUnit.MONTH, term), 1),
                customer.timezone,
            )
        if end_at is not None and end_at <= start_at:
            raise InvalidInput("end_at: must be after start_at", field="end_at")
        interval = plan_interval(plan)
        billing_start = trial_end or start_at
        first_day = local_date(billing_start, customer.timezone)
        anchor_date = calendar_anchor(first_day, interval) if anchor == "calendar" else first_day
        subscription = Subscription(
            id=new_id("sub"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            plan_id=plan.id,
            quantity=quantity,
            status="trialing" if trial_end and trial_end > now else "active",
            start_at=start_at,
            end_at=end_at,
            trial_end_at=trial_end,
            anchor=anchor,
            anchor_date=anchor_date,
            auto_renew=bool(auto_renew),
            renewal_term_months=term,
            next_billing_at=billing_start,
            created_at=now,
        )
        session.add(subscription)
        session.flush()
        session.add(
            SubscriptionChange(
                id=new_id("chg"),
                organization_id=actor.organization_id,
                subscription_id=subscription.id,
                kind="start",
                effective_at=start_at,
                plan_id=plan.id,
                quantity=quantity,
                created_at=now,
            )
        )
        if end_at is not None:
            session.add(
                SubscriptionChange(
                    id=new_id("chg"),
                    organization_id=actor.organization_id,
                    subscription_id=subscription.id,
                    kind="cancel",
                    effective_at=end_at,
                    note="end of term",
                    created_at=now,
                )
            )
        audit(
            session,
            actor,
            "subscription.created",
            "subscription",
            subscription.id,
            {"plan": plan.code, "quantity": str(quantity), "start_at": start_at.isoformat()},
            after=subscription,
        )
    return subscription


def _period_amount(
    session: Session, actor: Actor, plan: Plan, quantity: Decimal, at: datetime
) -> Decimal:
    """What one full period of the plan costs at `quantity`: tells an upgrade from a downgrade."""
    total = Decimal(0)
    for code in plan.price_codes:
        price = session.scalars(
            select(Price)
            .where(
                Price.organization_id == actor.organization_id,
                Price.code == code,
                Price.effective_from <= at,
            )
            .order_by(Price.version.desc())
            .limit(1)
        ).first()
        if price is None or price.kind != "recurring":
            continue
        terms = PriceTerms.from_dict(price.terms)
        total += rate(terms, Decimal(1) if terms.model.value == "flat" else quantity).amount
    return total


def _record(
    session: Session,
    actor: Actor,
    subscription: Subscription,
    kind: str,
    effective_at: datetime,
    *,
    plan_id: str | None = None,
    quantity: Decimal | None = None,
    note: str | None = None,
) -> SubscriptionChange:
    if effective_at < subscription.start_at:
        raise InvalidInput("effective_at: before the subscription started", field="effective_at")
    if subscription.end_at is not None and effective_at > subscription.end_at:
        raise Conflict("effective_at: after the subscription ends", field="effective_at")
    change = SubscriptionChange(
        id=new_id("chg"),
        organization_id=actor.organization_id,
        subscription_id=subscription.id,
        kind=kind,
        effective_at=effective_at,
        plan_id=plan_id,
        quantity=quantity,
        note=note,
        created_at=utcnow(),
    )
    session.add(change)
    # Anything already billed from this instant on must be re-rated on the next invoice.
    if effective_at < subscription.next_billing_at:
        if subscription.rerate_from is None or effective_at < subscription.rerate_from:
            subscription.rerate_from = effective_at
    return change


def _context(session: Session, actor: Actor, subscription_id: str):  # type: ignore[no-untyped-def]
    subscription = get_owned(session, Subscription, subscription_id, actor, lock=True)
    if subscription.status in ("canceled", "ended"):
        raise Conflict(f"subscription {subscription.id} has ended")
    customer = session.get(Customer, subscription.customer_id)
    org = session.get(Organization, actor.organization_id)
    plan = session.get(Plan, subscription.plan_id)
    return subscription, customer, org, plan


def change_subscription(
    db: Database, actor: Actor, subscription_id: str, values: dict[str, Any]
) -> SubscriptionChange:
    """Upgrade, downgrade or change the quantity, now, later or backdated."""
    actor.require(*WRITERS, action="change subscriptions")
    new_plan_id = values.get("plan_id")
    new_quantity = None if values.get("quantity") is None else _quantity(values["quantity"])
    if new_plan_id is None and new_quantity is None:
        raise InvalidInput("plan_id: give a new plan, a new quantity, or both", field="plan_id")
    now = utcnow()
    requested = _instant(values.get("effective_at"), "effective_at")
    with db.transaction() as session:
        subscription, customer, org, plan = _context(session, actor, subscription_id)
        was = snapshot(subscription, *AUDITED)
        before = {"plan": plan.code, "quantity": str(subscription.quantity)}
        target = plan
        if new_plan_id is not None:
            target = get_owned(session, Plan, new_plan_id, actor)
            if target.currency != plan.currency:
                raise InvalidInput("plan_id: the new plan is in another currency", field="plan_id")
            if (target.interval_unit, target.interval_count) != (
                plan.interval_unit,
                plan.interval_count,
            ):
                raise InvalidInput(
                    "plan_id: the new plan bills on another interval; cancel "
                    "and start a new subscription instead",
                    field="plan_id",
                )
        quantity = new_quantity if new_quantity is not None else subscription.quantity
        at = requested or now
        old_amount = _period_amount(session, actor, plan, subscription.quantity, at)
        new_amount = _period_amount(session, actor, target, quantity, at)
        direction = "upgrade" if new_amount >= old_amount else "downgrade"
        if direction == "downgrade" and requested is None and org.downgrade_credit == "period_end":
            # Policy: a downgrade takes effect when the paid period ends; no mid-period credit.
            interval = plan_interval(plan)
            at = period_containing(subscription.anchor_date, interval, now, customer.timezone).end
        kind = "plan" if new_plan_id is not None else "quantity"
        change = _record(
            session,
            actor,
            subscription,
            kind,
            at,
            plan_id=target.id,
            quantity=quantity,
            note=values.get("note") or direction,
        )
        if at <= now:
            subscription.plan_id = target.id
            subscription.quantity = quantity
        audit(
            session,
            actor,
            f"subscription.{direction}",
            "subscription",
            subscription.id,
            {
                "plan": target.code,
                "quantity": str(quantity),
                "effective_at": at.isoformat(),
                "terms_before": before,
            },
            before=was,
            after=subscription,
        )
    return change


def cancel_subscription(
    db: Database,
    actor: Actor,
    subscription_id: str,
    *,
    at_period_end: bool = False,
    effective_at: Any = None,
) -> Subscription:
    actor.require(*WRITERS, action="cancel subscriptions")
    now = utcnow()
    requested = _instant(effective_at, "effective_at")
    with db.transaction() as session:
        subscription, customer, org, plan = _context(session, actor, subscription_id)
        was = snapshot(subscription, *AUDITED)
        at = requested or now
        if at_period_end:
            at = period_containing(
                subscription.anchor_date, plan_interval(plan), at, customer.timezone
            ).end
        for change in session.scalars(
            select(SubscriptionChange).where(
                SubscriptionChange.subscription_id == subscription.id,
                SubscriptionChange.kind == "cancel",
            )
        ):
            # A new cancellation replaces the end of term or an earlier scheduled cancellation.
            session.delete(change)
        subscription.end_at = None
        _record(
            session,
            actor,
            subscription,
            "cancel",
            at,
            note="at period end" if at_period_end else "cancelled",
        )
        subscription.end_at = at
        subscription.cancel_at_period_end = at_period_end
        subscription.canceled_at = now
        if at <= now:
            subscription.status = "canceled"
        audit(
            session,
            actor,
            "subscription.canceled",
            "subscription",
            subscription.id,
            {"effective_at": at.isoformat(), "at_period_end": at_period_end},
            before=was,
            after=subscription,
        )
    return subscription


def pause_subscription(
    db: Database,
    actor: Actor,
    subscription_id: str,
    *,
    effective_at: Any = None,
    resume_at: Any = None,
) -> Subscription:
    actor.require(*WRITERS, action="pause subscriptions")
    now = utcnow()
    at = _instant(effective_at, "effective_at") or now
    resume = _instant(resume_at, "resume_at")
    with db.transaction() as session:
        subscription, _, _, _ = _context(session, actor, subscription_id)
        was = snapshot(subscription, *AUDITED)
        if subscription.status == "paused":
            raise Conflict(f"subscription {subscription.id} is already paused")
        _record(session, actor, subscription, "pause", at)
        if resume is not None:
            if resume <= at:
                raise InvalidInput("resume_at: must be after the pause", field="resume_at")
            _record(session, actor, subscription, "resume", resume)
        if at <= now and (resume is None or resume > now):
            subscription.status = "paused"
        audit(
            session,
            actor,
            "subscription.paused",
            "subscription",
            subscription.id,
            {
                "effective_at": at.isoformat(),
                "resume_at": None if resume is None else resume.isoformat(),
            },
            before=was,
            after=subscription,
        )
    return subscription


def resume_subscription(
    db: Database, actor: Actor, subscription_id: str, *, effective_at: Any = None
) -> Subscription:
    actor.require(*WRITERS, action="resume subscriptions")
    at = _instant(effective_at, "effective_at") or utcnow()
    with db.transaction() as session:
        subscription, _, _, _ = _context(session, actor, subscription_id)
        was = snapshot(subscription, *AUDITED)
        if subscription.status != "paused":
            raise Conflict(f"subscription {subscription.id} is not paused")
        _record(session, actor, subscription, "resume", at)
        subscription.status = "active"
        audit(
            session,
            actor,
            "subscription.resumed",
            "subscription",
            subscription.id,
            {"effective_at": at.isoformat()},
            before=was,
            after=subscription,
        )
    return subscription


def get_subscription(db: Database, actor: Actor, subscription_id: str) -> Subscription:
    with db.reading() as session:
        return get_owned(session, Subscription, subscription_id, actor)


def list_subscriptions(
    db: Database,
    actor: Actor,
    *,
    customer_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Subscription], str | None]:
    with db.reading() as session:
        query = select(Subscription).where(Subscription.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(Subscription.customer_id == customer_id)
        return keyset_page(session, query, Subscription, limit, after)


def list_changes(db: Database, actor: Actor, subscription_id: str) -> list[SubscriptionChange]:
    with db.reading() as session:
        get_owned(session, Subscription, subscription_id, actor)
        return list(
            session.scalars(
                select(SubscriptionChange)
                .where(
                    SubscriptionChange.subscription_id == subscription_id,
                )
                .order_by(SubscriptionChange.effective_at, SubscriptionChange.created_at)
            )
        )
