"""Proration through real billing runs: policies, cancellation, anchors, leap year, DST, trial."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.services import billing, catalog, customers, invoices, subscriptions
from tallybook.services.base import Actor, Database


def at(*args: int, tz: str = "UTC") -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))


def two_plans(db: Database, actor: Actor, timezone: str = "UTC"):
    """Basic 10.00 and Pro 31.00 a month, flat; no tax, so amounts are the prices."""
    product = catalog.create_product(db, actor, {"code": "svc", "name": "Service"})
    for code, amount in (("basic-m", "10.00"), ("pro-m", "31.00")):
        catalog.create_price(
            db,
            actor,
            {
                "code": code,
                "product_id": product.id,
                "currency": "USD",
                "effective_from": at(2020, 1, 1),
                "terms": {"model": "per_unit", "amount": amount},
            },
        )
    basic = catalog.create_plan(
        db, actor, {"code": "basic", "name": "Basic", "currency": "USD", "price_codes": ["basic-m"]}
    )
    pro = catalog.create_plan(
        db, actor, {"code": "pro", "name": "Pro", "currency": "USD", "price_codes": ["pro-m"]}
    )
    customer = customers.create_customer(
        db,
        actor,
        {"legal_name": "Acme Inc", "country": "US", "currency": "USD", "timezone": timezone},
    )
    return basic, pro, customer


def lines_of(db: Database, actor: Actor, invoice_id: str) -> list[int]:
    return sorted(line.subtotal_minor for line in invoices.get_invoice(db, actor, invoice_id)[1])


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Jan 2026 has 31 days; upgrade on Jan 16 leaves 16 days.
        # credit Basic 10.00 x 16/31 = 5.1613 -> 5.16; charge Pro 31.00 x 16/31 = 16.00
        ("exact_days", [-516, 1600, 3100]),
        # Same in seconds: 16 x 86400 / (31 x 86400) in UTC.
        ("exact_seconds", [-516, 1600, 3100]),
        # 30/360: Jan 16 -> end counts 15 of 30 days. 10.00 x 15/30 = 5.00; 31.00 x 15/30 = 15.50
        ("thirty_day_month", [-500, 1550, 3100]),
    ],
)
def test_upgrade_mid_period_under_each_policy(
    db: Database, policy: str, expected: list[int]
) -> None:
    actor = make_org(db, proration_policy=policy)
    basic, pro, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    first = billing.run_billing(db, actor, at(2026, 1, 1, 0, 0, 1))
    assert lines_of(db, actor, first.invoice_ids[0]) == [1000]
    subscriptions.change_subscription(
        db, actor, sub.id, {"plan_id": pro.id, "effective_at": at(2026, 1, 16)}
    )
    second = billing.run_billing(db, actor, at(2026, 2, 1, 0, 0, 1))
    # February in advance on Pro (31.00) plus the two January adjustments.
    assert lines_of(db, actor, second.invoice_ids[0]) == expected


def test_downgrade_credit_immediately_or_at_period_end(db: Database) -> None:
    actor = make_org(db, downgrade_credit="immediate")
    basic, pro, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": pro.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, actor, at(2026, 1, 1, 0, 0, 1))
    subscriptions.change_subscription(
        db, actor, sub.id, {"plan_id": basic.id, "effective_at": at(2026, 1, 21)}
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 0, 0, 1))
    # 11 days left of 31: credit Pro 31.00 x 11/31 = 11.00; charge Basic 10 x 11/31 = 3.548 -> 3.55
    assert lines_of(db, actor, run.invoice_ids[0]) == [-1100, 355, 1000]

    later = make_org(db, downgrade_credit="period_end")
    basic, pro, customer = two_plans(db, later)
    sub = subscriptions.create_subscription(
        db,
        later,
        {
            "customer_id": customer.id,
            "plan_id": pro.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, later, at(2026, 1, 1, 0, 0, 1))
    change = subscriptions.change_subscription(db, later, sub.id, {"plan_id": basic.id})
    # No effective_at given: the downgrade waits for the end of the paid period.
    assert change.effective_at >= at(2026, 2, 1) or change.effective_at > datetime.now(UTC)


def test_cancellation_now_credits_unused_time(db: Database) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, actor, at(2026, 1, 1, 0, 0, 1))
    subscriptions.cancel_subscription(db, actor, sub.id, effective_at=at(2026, 1, 11))
    run = billing.run_billing(db, actor, at(2026, 2, 1, 0, 0, 1))
    # Used Jan 1-10 (10 days); credit 21/31 x 10.00 = 6.774 -> 6.77; nothing for February.
    assert lines_of(db, actor, run.invoice_ids[0]) == [-677]
    assert subscriptions.get_subscription(db, actor, sub.id).status == "ended"
    assert billing.run_billing(db, actor, at(2026, 6, 1)).invoices_created == 0


@pytest.mark.parametrize(("year", "february_day"), [(2026, 28), (2028, 29)])
def test_anniversary_on_the_31st_across_february(
    db: Database, year: int, february_day: int
) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(year, 1, 31),
            "anchor": "anniversary",
        },
    )
    run = billing.run_billing(db, actor, at(year, 5, 1))
    dates = sorted(
        invoices.get_invoice(db, actor, i)[0].billing_date.isoformat() for i in run.invoice_ids
    )
    # Falls on the last day of February, then returns to the 31st; April has 30 days.
    assert dates == [f"{year}-01-31", f"{year}-02-{february_day}", f"{year}-03-31", f"{year}-04-30"]
    # Every full period is billed in full, whatever its length.
    assert all(lines_of(db, actor, i) == [1000] for i in run.invoice_ids)


def test_dst_change_in_the_customers_timezone(db: Database) -> None:
    """March 2026 in New York is 31 days minus one hour (DST starts March 8)."""
    seconds = make_org(db, proration_policy="exact_seconds")
    days = make_org(db, proration_policy="exact_days")
    results = {}
    for name, actor in (("seconds", seconds), ("days", days)):
        basic, pro, customer = two_plans(db, actor, timezone="America/New_York")
        sub = subscriptions.create_subscription(
            db,
            actor,
            {
                "customer_id": customer.id,
                "plan_id": basic.id,
                "start_at": at(2026, 3, 1, tz="America/New_York"),
                "anchor": "calendar",
            },
        )
        billing.run_billing(db, actor, at(2026, 3, 1, 1, tz="America/New_York"))
        subscriptions.change_subscription(
            db,
            actor,
            sub.id,
            {"plan_id": pro.id, "effective_at": at(2026, 3, 16, tz="America/New_York")},
        )
        run = billing.run_billing(db, actor, at(2026, 4, 1, 1, tz="America/New_York"))
        results[name] = lines_of(db, actor, run.invoice_ids[0])
    # Seconds: 16 days = 1,382,400 s of 2,674,800 s. Pro 31 x that = 16.0215 -> 16.02;
    # Basic credit 10 x that = 5.1682 -> 5.17.
    assert results["seconds"] == [-517, 1602, 3100]
    # Days: 16/31 -> 16.00 and 5.16.
    assert results["days"] == [-516, 1600, 3100]


def test_trial_ending_mid_period(db: Database) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "trial_days": 14,
            "anchor": "calendar",
        },
    )
    assert billing.run_billing(db, actor, at(2026, 1, 10)).invoices_created == 0
    run = billing.run_billing(db, actor, at(2026, 2, 1, 0, 0, 1))
    amounts = sorted(lines_of(db, actor, i) for i in run.invoice_ids)
    # Trial ends Jan 15: 17/31 x 10.00 = 5.4839 -> 5.48 on Jan 15; February in full.
    assert amounts == [[548], [1000]]


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    quantities=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=4),
    days=st.lists(st.integers(min_value=1, max_value=27), min_size=4, max_size=4),
    months=st.integers(min_value=1, max_value=4),
)
def test_second_run_for_the_same_instant_creates_nothing(
    db: Database, quantities: list[int], days: list[int], months: int
) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, actor, at(2026, 1, 1, 1))
    for index, quantity in enumerate(quantities):
        subscriptions.change_subscription(
            db, actor, sub.id, {"quantity": quantity, "effective_at": at(2026, 1, days[index])}
        )
    as_of = at(2026, 1 + months, 1, 1)
    first = billing.run_billing(db, actor, as_of)
    second = billing.run_billing(db, actor, as_of)
    assert first.invoices_created == months
    assert (second.invoices_created, second.invoices_updated, second.lines_created) == (0, 0, 0)


def test_pause_and_resume_credit_the_paused_days(db: Database) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, actor, at(2026, 1, 1, 1))
    subscriptions.pause_subscription(
        db, actor, sub.id, effective_at=at(2026, 1, 11), resume_at=at(2026, 1, 21)
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    # Paused Jan 11-20: 10/31 x 10.00 = 3.2258 -> credit 3.23; February billed in full.
    assert lines_of(db, actor, run.invoice_ids[0]) == [-323, 1000]


def test_cancel_at_period_end_bills_nothing_more(db: Database) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    billing.run_billing(db, actor, at(2026, 1, 1, 1))
    cancelled = subscriptions.cancel_subscription(
        db, actor, sub.id, at_period_end=True, effective_at=at(2026, 1, 10)
    )
    assert cancelled.end_at == at(2026, 2, 1)
    assert billing.run_billing(db, actor, at(2026, 3, 1, 1)).invoices_created == 0
    assert subscriptions.get_subscription(db, actor, sub.id).status == "ended"


def test_a_finished_trial_shows_as_active_after_the_run(db: Database) -> None:
    actor = make_org(db)
    basic, _, customer = two_plans(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": basic.id,
            "trial_end_at": at(2030, 1, 15),
            "start_at": at(2030, 1, 1),
            "anchor": "calendar",
        },
    )
    assert sub.status == "trialing"
    billing.run_billing(db, actor, at(2030, 1, 10))
    assert subscriptions.get_subscription(db, actor, sub.id).status == "trialing"
