"""Current usage: a customer's usage to date in each open period, and what it would bill now.

Rated exactly as the billing run will rate it (same readings, same prices, same rounding),
before tax. A time-weighted sum assumes the current value holds to the end of the period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from tallybook.core.money import RoundingMode, format_minor, round_to_minor
from tallybook.core.periods import period_containing
from tallybook.db.models import Customer, Subscription
from tallybook.services import billing
from tallybook.services.base import Actor, Database, get_owned, utcnow


def current_usage(
    db: Database, actor: Actor, customer_id: str, at: datetime | None = None
) -> dict[str, Any]:
    at = at or utcnow()
    with db.reading() as session:
        customer = get_owned(session, Customer, customer_id, actor)
        ctx = billing._load_context(session, actor.organization_id)
        mode = RoundingMode(ctx.org.rounding_mode)
        rows = [
            billing._SubscriptionRow._make(row)
            for row in session.execute(
                select(*billing._SUBSCRIPTION_COLUMNS)
                .where(
                    Subscription.organization_id == actor.organization_id,
                    Subscription.customer_id == customer.id,
                    Subscription.status != "ended",
                    Subscription.start_at <= at,
                )
                .order_by(Subscription.start_at, Subscription.id)
            )
        ]
        wanted = []
        for row in rows:
            period = period_containing(
                row.anchor_date, ctx.intervals[row.plan_id], at, customer.timezone
            )
            wanted.append((row, customer, period.start))
        fresh = billing.fresh_usage_lines(session, ctx, actor.organization_id, wanted)
    currency = customer.currency
    result: list[dict[str, Any]] = []
    total = 0
    for row, _, start in wanted:
        period, lines = fresh[(row.id, start)]
        charges = []
        subtotal = 0
        for line in lines:
            minor = round_to_minor(line.amount, currency, mode)
            subtotal += minor
            explanation = dict(line.explanation)
            charges.append(
                {
                    "description": line.description,
                    "kind": line.kind,
                    "price_code": explanation.get("price", {}).get("code"),
                    "metric": (explanation.get("metric") or {}).get("code"),
                    "aggregation": (explanation.get("metric") or {}).get("aggregation"),
                    "group": explanation.get("group"),
                    "quantity": str(line.quantity),
                    "events": (explanation.get("quantity") or {}).get("events"),
                    "exact_amount": str(line.amount),
                    "amount_minor": minor,
                    "amount": format_minor(minor, currency),
                    "explanation": explanation.get("rating", {}).get("summary"),
                }
            )
        total += subtotal
        result.append(
            {
                "subscription_id": row.id,
                "plan_id": row.plan_id,
                "period": {
                    "start": period.start.isoformat(),
                    "end": period.end.isoformat(),
                    "label": period.label(),
                },
                "charges": charges,
                "amount_minor": subtotal,
                "amount": format_minor(subtotal, currency),
            }
        )
    return {
        "customer_id": customer.id,
        "as_of": at.isoformat(),
        "currency": currency,
        "subscriptions": result,
        "amount_minor": total,
        "amount": format_minor(total, currency),
        "note": "before tax; a time-weighted sum assumes the current value holds to period end",
    }
