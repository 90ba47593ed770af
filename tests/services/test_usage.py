"""Usage billing through the services, on SQLite (reference aggregation in Python) and
PostgreSQL (aggregation in SQL): each aggregation against hand-computed values, exactly-once
ingestion, quarantine, invoices with their explanations, and late events on both paths."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest
from conftest import make_org
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tallybook.core.metering import Event, Metric, aggregate
from tallybook.db.models import LateUsagePeriod, QuarantinedEvent, UsageEvent
from tallybook.services import (
    billing,
    catalog,
    customers,
    events,
    invoices,
    metering,
    subscriptions,
)
from tallybook.services.base import Actor, Conflict, Database, InvalidInput
from tallybook.services.current_usage import current_usage
from tallybook.services.metering import Window, read_usage


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(*args: int) -> str:
    return at(*args).isoformat()


def world(db: Database, **org_settings: Any) -> tuple[Actor, Any]:
    actor = make_org(db, **org_settings)
    customer = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Quarry Robotics Inc.",
            "external_id": "quarry",
            "country": "US",
            "currency": "USD",
            "timezone": "UTC",
        },
    )
    return actor, customer


def metered_plan(
    db: Database,
    actor: Actor,
    metric: dict[str, Any],
    terms: dict[str, Any],
    **price: Any,
) -> Any:
    metering.create_metric(db, actor, metric)
    product = catalog.create_product(
        db, actor, {"code": f"p-{metric['code']}", "name": metric.get("name", metric["code"])}
    )
    catalog.create_price(
        db,
        actor,
        {
            "code": f"{metric['code']}-usd",
            "product_id": product.id,
            "currency": "USD",
            "kind": "usage",
            "metric_code": metric["code"],
            "terms": terms,
            "effective_from": at(2020, 1, 1),
            **price,
        },
    )
    return catalog.create_plan(
        db,
        actor,
        {
            "code": f"plan-{metric['code']}",
            "name": "Usage",
            "currency": "USD",
            "price_codes": [f"{metric['code']}-usd"],
        },
    )


def subscribe(db: Database, actor: Actor, customer: Any, plan: Any) -> Any:
    return subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )


def send(db: Database, actor: Actor, *items: tuple[str, str, str, dict[str, Any]]) -> Any:
    """(transaction id, metric, ISO timestamp, properties) for customer 'quarry'."""
    return events.ingest_events(
        db,
        actor,
        [
            {
                "transaction_id": t,
                "customer": "quarry",
                "metric": m,
                "timestamp": ts,
                "properties": p,
            }
            for t, m, ts, p in items
        ],
    )


def readings(
    db: Database,
    actor: Actor,
    customer: Any,
    sub: Any,
    code: str,
    start: datetime,
    end: datetime,
    **charge: Any,
) -> dict:
    with db.reading() as session:
        metric = metering.load_metrics(session, actor.organization_id, [code])[code]
        usage_charge = metering.UsageCharge(metric, **charge)
        window = Window("w", customer.id, sub.id, True, start, end)
        return read_usage(session, actor.organization_id, usage_charge, [window]).get("w", {})


JAN = (at(2026, 1, 1), at(2026, 2, 1))
FEB = (at(2026, 2, 1), at(2026, 3, 1))


# --- each aggregation against hand-computed values --------------------------------------------


def test_count_and_sum_in_the_period_only(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "calls", "aggregation": "sum", "field": "n"},
        {"model": "per_unit", "amount": "0.01"},
    )
    metering.create_metric(db, actor, {"code": "requests", "aggregation": "count"})
    sub = subscribe(db, actor, customer, plan)
    result = send(
        db,
        actor,
        ("a", "calls", iso(2025, 12, 31, 23, 59, 59), {"n": 1000}),  # before the period
        ("b", "calls", iso(2026, 1, 1), {"n": "0.5"}),  # the first instant counts
        ("c", "calls", iso(2026, 1, 15, 12), {"n": 2}),
        ("d", "calls", "2026-01-31T23:59:59.999999+00:00", {"n": 3.25}),
        ("e", "calls", iso(2026, 2, 1), {"n": 1000}),  # the end instant does not
        ("r1", "requests", iso(2026, 1, 2), {}),
        ("r2", "requests", iso(2026, 1, 3), {}),
    )
    assert (result.accepted, result.rejected, result.quarantined) == (7, 0, 0)
    # 0.5 + 2 + 3.25 = 5.75 over three events
    assert readings(db, actor, customer, sub, "calls", *JAN) == {(): metering.Reading(D("5.75"), 3)}
    got = readings(db, actor, customer, sub, "requests", *JAN)[()]
    assert (got.value, got.events) == (2, 2)


def test_max_and_unique_count_with_repeats(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "peak", "aggregation": "max", "field": "gb"},
        {"model": "per_unit", "amount": "1"},
    )
    metering.create_metric(
        db, actor, {"code": "users", "aggregation": "unique_count", "field": "user"}
    )
    sub = subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("p1", "peak", iso(2026, 1, 3), {"gb": "12.5"}),
        ("p2", "peak", iso(2026, 1, 9), {"gb": 40}),
        ("p3", "peak", iso(2026, 1, 20), {"gb": "7"}),
        *[
            (f"u{i}", "users", iso(2026, 1, 1 + i), {"user": name})
            for i, name in enumerate(["ann", "bob", "ann", "cy", "bob", "ann"])
        ],
        ("u-feb", "users", iso(2026, 2, 2), {"user": "dee"}),
    )
    assert readings(db, actor, customer, sub, "peak", *JAN)[()].value == 40
    users = readings(db, actor, customer, sub, "users", *JAN)[()]
    # ann, bob, cy: 3 distinct users over 6 events; dee is in February
    assert (users.value, users.events) == (3, 6)


def test_latest_value_by_timestamp_not_by_arrival(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "seats", "aggregation": "latest", "field": "count"},
        {"model": "per_unit", "amount": "5"},
    )
    sub = subscribe(db, actor, customer, plan)
    # Sent in this order; the reading of 20 January is the latest in time.
    send(db, actor, ("s3", "seats", iso(2026, 1, 20), {"count": 14}))
    send(db, actor, ("s1", "seats", iso(2026, 1, 5), {"count": 9}))
    send(db, actor, ("s2", "seats", iso(2026, 1, 10), {"count": 30}))
    send(db, actor, ("s4", "seats", iso(2026, 2, 3), {"count": 2}))
    assert readings(db, actor, customer, sub, "seats", *JAN)[()] == metering.Reading(D(14), 3)


def test_weighted_sum_carries_the_value_across_the_period_boundary(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "storage", "aggregation": "weighted_sum", "field": "gb", "weighted_unit": "hour"},
        {"model": "per_unit", "amount": "0.001"},
    )
    sub = subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("g1", "storage", iso(2026, 1, 20), {"gb": 10}),  # +10 GB in January, carried over
        ("g2", "storage", iso(2026, 2, 15), {"gb": 5}),  # +5 GB for the last 14 days
        ("g3", "storage", iso(2026, 2, 22, 12), {"gb": -3}),  # -3 GB for 6.5 days
    )
    # February (672 h): 10 x 672 + 5 x 336 - 3 x 156 = 6720 + 1680 - 468 = 7932 GB-hours
    feb = readings(db, actor, customer, sub, "storage", *FEB)[()]
    assert (feb.value, feb.events) == (D(7932), 2)
    # January: 10 GB from the 20th 00:00 to 1 February = 12 days = 288 h -> 2880 GB-hours
    assert readings(db, actor, customer, sub, "storage", *JAN)[()].value == 2880
    # March: nothing sent, 12 GB carried for 744 h = 8928 GB-hours, from 0 events
    march = readings(db, actor, customer, sub, "storage", at(2026, 3, 1), at(2026, 4, 1))[()]
    assert (march.value, march.events) == (D(8928), 0)


def test_filters_and_group_by(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "gb", "aggregation": "sum", "field": "gb", "filters": {"tier": ["hot", "warm"]}},
        {"model": "per_unit", "amount": "0.02"},
    )
    sub = subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("1", "gb", iso(2026, 1, 2), {"gb": 10, "region": "eu", "tier": "hot"}),
        ("2", "gb", iso(2026, 1, 3), {"gb": 20, "region": "us", "tier": "warm"}),
        ("3", "gb", iso(2026, 1, 4), {"gb": 40, "region": "eu", "tier": "cold"}),  # filtered out
        ("4", "gb", iso(2026, 1, 5), {"gb": 1, "region": "eu", "tier": "hot"}),
        ("5", "gb", iso(2026, 1, 6), {"gb": 2, "tier": "hot"}),  # no region
    )
    assert readings(db, actor, customer, sub, "gb", *JAN)[()].value == 33
    eu_only = readings(db, actor, customer, sub, "gb", *JAN, filters={"region": ("eu",)})
    assert eu_only == {(): metering.Reading(D(11), 2)}
    by_region = readings(db, actor, customer, sub, "gb", *JAN, group_by=("region",))
    assert by_region == {
        ("eu",): metering.Reading(D(11), 2),
        ("us",): metering.Reading(D(20), 1),
        (None,): metering.Reading(D(2), 1),
    }


# --- exactly once -----------------------------------------------------------------------------


def test_duplicates_and_conflicts_are_answered_per_event(db: Database) -> None:
    actor, customer = world(db)
    metered_plan(
        db,
        actor,
        {"code": "calls", "aggregation": "sum", "field": "n"},
        {"model": "per_unit", "amount": "0.01"},
    )
    first = send(db, actor, ("t1", "calls", iso(2026, 1, 2), {"n": 1, "z": "a"}))
    assert first.accepted == 1
    batch = events.ingest_events(
        db,
        actor,
        [
            # Same content (keys in another order, same instant in another offset): duplicate.
            {
                "transaction_id": "t1",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": "2026-01-02T01:00:00+01:00",
                "properties": {"z": "a", "n": 1},
            },
            {
                "transaction_id": "t1",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 2),
                "properties": {"n": 2, "z": "a"},
            },
            {
                "transaction_id": "t2",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 3),
                "properties": {"n": "lots"},
            },
            {
                "transaction_id": "t3",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": "2026-01-03T10:00:00",
                "properties": {"n": 1},
            },
            {
                "transaction_id": "t4",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 4),
                "properties": {"n": 4},
            },
            {
                "transaction_id": "t4",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 4),
                "properties": {"n": 4},
            },
            "not an event",
            {
                "transaction_id": "t5\x00",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 4),
                "properties": {"n": 4},
            },
            {
                "transaction_id": "t6",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 4),
                "properties": {"n": 4, "note": "a\x00b"},
            },
            {
                "transaction_id": "t\\7\ttab",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 4),
                "properties": {"n": 4, "note": "back\\slash\nline"},
            },
        ],
    )
    statuses = [(o.status, o.reason) for o in batch.outcomes]
    assert statuses == [
        ("duplicate", None),
        (
            "rejected",
            "transaction_id: event 0 of this batch has the same id with different content",
        ),
        ("rejected", "properties.n: metric calls needs a number here"),
        ("rejected", "timestamp: give a time zone offset (Z for UTC)"),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "event: must be an object"),
        ("rejected", "transaction_id: must not contain NUL characters"),
        ("rejected", "properties: text must not contain NUL characters"),
        ("accepted", None),
    ]
    with db.reading() as session:
        stored = session.scalars(
            select(UsageEvent.transaction_id)
            .where(UsageEvent.organization_id == actor.organization_id)
            .order_by(UsageEvent.transaction_id)
        ).all()
    assert stored == ["t1", "t4", "t\\7\ttab"]
    with db.reading() as session:
        note = session.scalar(
            select(UsageEvent.properties).where(UsageEvent.transaction_id == "t\\7\ttab")
        )
    assert note == {"n": 4, "note": "back\\slash\nline"}


def test_a_batch_over_ten_thousand_is_refused_whole(db: Database) -> None:
    actor, _ = world(db)
    with pytest.raises(InvalidInput, match="^events: at most 10000"):
        events.ingest_events(db, actor, [{}] * 10_001)


stream_event = st.tuples(
    st.integers(0, 30),  # transaction id number
    st.integers(0, 24 * 59),  # hour offset in January and February
    st.integers(-50, 500),  # value
    st.sampled_from(["eu", "us"]),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=st.lists(stream_event, min_size=1, max_size=40), seed=st.integers(0, 10_000))
def test_a_shuffled_stream_with_duplicates_stores_and_bills_what_the_oracle_does(
    db: Database, stream: list[tuple[int, int, int, str]], seed: int
) -> None:
    """Whatever the order and however often events are re-sent: the stored events are the
    first version of each id, and readings equal the reference aggregation of those."""
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "gb", "aggregation": "weighted_sum", "field": "gb", "weighted_unit": "day"},
        {"model": "per_unit", "amount": "1"},
    )
    metering.create_metric(db, actor, {"code": "n", "aggregation": "sum", "field": "gb"})
    sub = subscribe(db, actor, customer, plan)
    # Each id has one content; re-sends repeat it exactly.
    first: dict[int, tuple[int, int, int, str]] = {}
    for item in stream:
        first.setdefault(item[0], item)
    sends = [first[item[0]] for item in stream] + [first[k] for k in first]
    random.Random(seed).shuffle(sends)

    def raw(item: tuple[int, int, int, str], metric: str) -> dict[str, Any]:
        number, hours, value, region = item
        return {
            "transaction_id": f"{metric}-{number}",
            "customer": "quarry",
            "metric": metric,
            "timestamp": (at(2026, 1, 1) + timedelta(hours=hours)).isoformat(),
            "properties": {"gb": value, "region": region},
        }

    for cut in range(0, len(sends), 7):
        part = sends[cut : cut + 7]
        events.ingest_events(db, actor, [raw(i, "gb") for i in part] + [raw(i, "n") for i in part])
    with db.reading() as session:
        stored = session.execute(
            select(UsageEvent.metric_code, func.count())
            .where(UsageEvent.organization_id == actor.organization_id)
            .group_by(UsageEvent.metric_code)
        ).all()
    assert dict(stored) == {"gb": len(first), "n": len(first)}
    oracle_events = [
        Event(f"gb-{n}", at(2026, 1, 1) + timedelta(hours=h), {"gb": v, "region": r})
        for n, h, v, r in first.values()
    ]
    for metric, code in (
        (Metric("gb", "GB", "weighted_sum", "gb", weighted_unit="day"), "gb"),
        (Metric("n", "N", "sum", "gb"), "n"),
    ):
        for start, end in (JAN, FEB):
            expected = aggregate(metric, oracle_events, start, end, group_by=("region",))
            expected = {k: r for k, r in expected.items() if r.events or r.value}
            got = readings(db, actor, customer, sub, code, start, end, group_by=("region",))
            assert got == expected


# --- quarantine -------------------------------------------------------------------------------


def test_events_for_unknown_customers_and_metrics_wait_in_quarantine(db: Database) -> None:
    actor, _ = world(db)
    result = events.ingest_events(
        db,
        actor,
        [
            {
                "transaction_id": "q1",
                "customer": "newco",
                "metric": "calls",
                "timestamp": iso(2026, 1, 5),
                "properties": {"n": 7},
            },
            {
                "transaction_id": "q2",
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 6),
                "properties": {"n": 5},
            },
        ],
    )
    assert [o.quarantined for o in result.outcomes] == [
        "customer newco does not exist yet",
        "metric calls does not exist yet",
    ]
    held, _ = events.list_quarantine(db, actor)
    assert sorted(h.transaction_id for h in held) == ["q1", "q2"]
    # A re-send while quarantined is still a duplicate.
    again = events.ingest_events(
        db,
        actor,
        [
            {
                "transaction_id": "q1",
                "customer": "newco",
                "metric": "calls",
                "timestamp": iso(2026, 1, 5),
                "properties": {"n": 7},
            }
        ],
    )
    assert again.outcomes[0].status == "duplicate"
    metering.create_metric(db, actor, {"code": "calls", "aggregation": "sum", "field": "n"})
    held, _ = events.list_quarantine(db, actor)
    assert [(h.transaction_id, h.reason) for h in held] == [
        ("q1", "customer newco does not exist yet")
    ]
    customers.create_customer(
        db,
        actor,
        {"legal_name": "NewCo", "external_id": "newco", "country": "US", "currency": "USD"},
    )
    with db.reading() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(QuarantinedEvent)
                .where(QuarantinedEvent.organization_id == actor.organization_id)
            )
            == 0
        )
        assert sorted(
            session.scalars(
                select(UsageEvent.transaction_id).where(
                    UsageEvent.organization_id == actor.organization_id
                )
            )
        ) == ["q1", "q2"]


def test_another_organisations_subscription_is_not_found(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db, actor, {"code": "calls", "aggregation": "count"}, {"model": "per_unit", "amount": "1"}
    )
    sub = subscribe(db, actor, customer, plan)
    other = make_org(db)
    metering.create_metric(db, other, {"code": "calls", "aggregation": "count"})
    result = events.ingest_events(
        db,
        other,
        [
            {
                "transaction_id": "x",
                "subscription_id": sub.id,
                "metric": "calls",
                "timestamp": iso(2026, 1, 2),
            }
        ],
    )
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].reason == f"subscription_id: subscription {sub.id} not found"


# --- billing ----------------------------------------------------------------------------------


def test_usage_lines_per_group_with_their_explanation(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "gb", "name": "Storage", "aggregation": "sum", "field": "gb"},
        {
            "model": "graduated",
            "tiers": [{"up_to": "10", "unit_price": "0"}, {"up_to": None, "unit_price": "0.50"}],
        },
        group_by=["region"],
    )
    sub = subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("1", "gb", iso(2026, 1, 2), {"gb": 30, "region": "eu"}),
        ("2", "gb", iso(2026, 1, 9), {"gb": "4.5", "region": "eu"}),
        ("3", "gb", iso(2026, 1, 10), {"gb": 8, "region": "us"}),
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    invoice, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    usage = [line for line in lines if line.kind == "usage"]
    # eu: 34.5 GB, 10 free, 24.5 x 0.50 = 12.25; us: 8 GB, all free
    assert [(u.description, u.subtotal_minor) for u in usage] == [
        ("Storage (region eu): 34.5 units, 2026-01-01 to 2026-01-31", 1225),
        ("Storage (region us): 8 units, 2026-01-01 to 2026-01-31", 0),
    ]
    explanation = usage[0].explanation
    assert explanation["metric"]["code"] == "gb"
    assert explanation["metric"]["aggregation"] == "sum"
    assert explanation["group"] == {"region": "eu"}
    assert explanation["quantity"]["events"] == 2
    assert explanation["period"]["label"] == "2026-01-01 to 2026-01-31"
    text = invoices.explain_invoice_line(db, actor, invoice.id, usage[0].id)
    assert "sum of gb" in str(text) and "2 events" in str(text)
    assert invoice.subtotal_minor == 1225
    assert sub.id == usage[0].subscription_id


def test_percentage_with_per_transaction_fees_reads_each_event(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "payments", "aggregation": "sum", "field": "amount"},
        {
            "model": "percentage",
            "percent": "2",
            "fixed_fee_per_transaction": "0.30",
            "min_per_transaction": "0.50",
        },
    )
    subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("p1", "payments", iso(2026, 1, 2), {"amount": "100.00"}),  # 2.00 + 0.30 = 2.30
        ("p2", "payments", iso(2026, 1, 3), {"amount": "5.00"}),  # 0.10 + 0.30 = 0.40 -> 0.50
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    _, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    assert [line.subtotal_minor for line in lines if line.kind == "usage"] == [280]


def test_current_usage_shows_the_open_period_and_what_it_would_bill(db: Database) -> None:
    actor, customer = world(db)
    plan = metered_plan(
        db,
        actor,
        {"code": "calls", "aggregation": "sum", "field": "n"},
        {"model": "per_unit", "amount": "0.01"},
    )
    sub = subscribe(db, actor, customer, plan)
    send(
        db,
        actor,
        ("c1", "calls", iso(2026, 3, 2), {"n": 1000}),
        ("c2", "calls", iso(2026, 3, 9), {"n": 234}),
        ("c3", "calls", iso(2026, 2, 27), {"n": 99999}),
    )  # February: not this period
    usage = current_usage(db, actor, customer.id, at(2026, 3, 15))
    [subscription] = usage["subscriptions"]
    assert subscription["subscription_id"] == sub.id
    assert subscription["period"]["label"] == "2026-03-01 to 2026-03-31"
    [charge] = subscription["charges"]
    assert (charge["quantity"], charge["events"], charge["amount_minor"]) == ("1234", 2, 1234)
    assert usage["amount_minor"] == 1234 and usage["currency"] == "USD"
    with pytest.raises(Exception, match="not found"):
        current_usage(db, make_org(db), customer.id)


# --- late events ------------------------------------------------------------------------------


def late_world(db: Database, **org_settings: Any) -> tuple[Actor, Any, Any]:
    actor, customer = world(db, **org_settings)
    plan = metered_plan(
        db,
        actor,
        {"code": "calls", "aggregation": "sum", "field": "n"},
        {"model": "per_unit", "amount": "0.01"},
    )
    sub = subscribe(db, actor, customer, plan)
    send(db, actor, ("j1", "calls", iso(2026, 1, 10), {"n": 500}))
    return actor, customer, sub


def test_a_late_event_re_rates_the_draft(db: Database) -> None:
    actor, customer, sub = late_world(db)
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    draft, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    assert draft.subtotal_minor == 500
    late = send(db, actor, ("j2", "calls", iso(2026, 1, 31, 23), {"n": 250}))
    assert late.late_periods == 1
    draft, lines = invoices.get_invoice(db, actor, draft.id)
    usage = [line for line in lines if line.kind == "usage"]
    assert [(u.quantity, u.subtotal_minor) for u in usage] == [(D(750), 750)]
    assert usage[0].explanation["quantity"]["events"] == 2
    assert draft.subtotal_minor == 750 and draft.status == "draft"
    with db.reading() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(LateUsagePeriod)
                .where(LateUsagePeriod.organization_id == actor.organization_id)
            )
            == 0
        )
    issued = invoices.issue_invoice(db, actor, draft.id)
    assert issued.total_minor == 750


def test_issuing_re_rates_late_usage_still_marked(db: Database) -> None:
    """A mark left behind (the re-rate after ingestion failed) is handled when issuing."""
    actor, customer, sub = late_world(db)
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    with db.transaction() as session:
        session.add(
            LateUsagePeriod(
                subscription_id=sub.id,
                period_start=at(2026, 1, 1),
                organization_id=actor.organization_id,
                period_end=at(2026, 2, 1),
                detected_at=at(2026, 2, 1, 2),
            )
        )
        session.add(
            UsageEvent(
                organization_id=actor.organization_id,
                customer_id=customer.id,
                metric_code="calls",
                occurred_at=at(2026, 1, 20),
                transaction_id="direct",
                subscription_id=None,
                properties={"n": 100},
                received_at=at(2026, 2, 1, 2),
            )
        )
    issued = invoices.issue_invoice(db, actor, run.invoice_ids[0])
    assert issued.subtotal_minor == 600


def test_late_usage_after_issue_is_billed_on_the_next_invoice(db: Database) -> None:
    actor, customer, sub = late_world(db)
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    january = invoices.issue_invoice(db, actor, run.invoice_ids[0])
    assert january.subtotal_minor == 500
    send(db, actor, ("f1", "calls", iso(2026, 2, 10), {"n": 100}))
    late = send(db, actor, ("j2", "calls", iso(2026, 1, 25), {"n": 321}))
    assert late.late_periods == 1
    # The issued invoice is untouched.
    assert invoices.get_invoice(db, actor, january.id)[0].subtotal_minor == 500
    run = billing.run_billing(db, actor, at(2026, 3, 1, 1))
    february, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    by_kind = {line.kind: line for line in lines}
    assert by_kind["usage"].subtotal_minor == 100
    adjustment = by_kind["usage_adjustment"]
    assert adjustment.subtotal_minor == 321
    assert adjustment.quantity == 321
    assert adjustment.period_start == at(2026, 1, 1)
    assert adjustment.description.startswith(
        f"Late usage for 2026-01-01 to 2026-01-31 (after {january.number})"
    )
    assert adjustment.explanation["late_usage"]["billed_amount"] == "5.00"
    assert february.subtotal_minor == 421
    # Billed once: a later run finds nothing more for January.
    later = billing.run_billing(db, actor, at(2026, 3, 1, 2))
    assert later.invoices_created == 0 and later.invoices_updated == 0


def test_grace_period_keeps_usage_invoices_draft(db: Database) -> None:
    actor, customer, sub = late_world(db, usage_grace_days=3)
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    # The period ended 2026-02-01; today's clock is far later, so the grace has passed...
    issued = invoices.issue_invoice(db, actor, run.invoice_ids[0])
    assert issued.status == "issued"
    # ...while last month's usage (its period ended on the 1st of this month) is still within a
    # 45-day grace period.
    actor2, customer2 = world(db, usage_grace_days=45)
    now = datetime.now(UTC)
    first_of_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    last_month = (first_of_month - timedelta(days=1)).replace(day=1)
    plan = metered_plan(
        db, actor2, {"code": "calls", "aggregation": "count"}, {"model": "per_unit", "amount": "1"}
    )
    subscriptions.create_subscription(
        db,
        actor2,
        {
            "customer_id": customer2.id,
            "plan_id": plan.id,
            "start_at": last_month,
            "anchor": "calendar",
        },
    )
    run = billing.run_billing(db, actor2, now)
    drafts = [invoices.get_invoice(db, actor2, i) for i in run.invoice_ids]
    usage_drafts = [inv for inv, lines in drafts if any(x.kind == "usage" for x in lines)]
    assert usage_drafts
    with pytest.raises(Conflict, match="grace period"):
        invoices.issue_invoice(db, actor2, usage_drafts[0].id)


def test_a_failed_batch_leaves_its_connection_usable(
    postgres_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails after staging must not break the pooled connection for the next."""
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable")
    db = Database(postgres_url, pool_size=1, max_overflow=0)
    try:
        actor, customer = world(db)
        metering.create_metric(db, actor, {"code": "calls", "aggregation": "count"})
        monkeypatch.setattr(events, "_SHARED_CLAIM", "SELECT 1 / 0")
        with pytest.raises(Exception, match="division by zero"):
            send(db, actor, ("x1", "calls", iso(2026, 1, 2), {}))
        monkeypatch.undo()
        assert send(db, actor, ("x1", "calls", iso(2026, 1, 2), {})).accepted == 1
    finally:
        db.dispose()


def test_a_batch_caught_in_a_deadlock_is_written_again_alone(
    postgres_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadlock beside other batches (PostgreSQL picks a victim) rolls the batch back; it is
    written again holding the claim lock alone, and answered once."""
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable")
    db = Database(postgres_url)
    try:
        actor, _ = world(db)
        metering.create_metric(db, actor, {"code": "calls", "aggregation": "count"})
        monkeypatch.setattr(
            events,
            "_SHARED_CLAIM",
            "DO $$ BEGIN RAISE EXCEPTION 'victim' USING ERRCODE = '40P01'; END $$",
        )
        result = send(
            db, actor, ("d1", "calls", iso(2026, 1, 2), {}), ("d2", "calls", iso(2026, 1, 3), {})
        )
        assert [(o.transaction_id, o.status) for o in result.outcomes] == [
            ("d1", "accepted"),
            ("d2", "accepted"),
        ]
        again = send(db, actor, ("d1", "calls", iso(2026, 1, 2), {}))
        assert [o.status for o in again.outcomes] == ["duplicate"]
        with db.reading() as session:
            stored = select(UsageEvent.transaction_id).where(
                UsageEvent.organization_id == actor.organization_id
            )
            assert sorted(session.scalars(stored).all()) == ["d1", "d2"]
    finally:
        db.dispose()


def wait_for_a_lock(postgres_url: str, locktype: str, failure: str) -> None:
    """Until some session waits for a lock of this type (pg_locks), or fail the test."""
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as watch:
        for _ in range(600):
            waiting = watch.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = %s AND NOT granted", (locktype,)
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    pytest.fail(failure)


def test_a_metric_created_while_a_batch_quarantines_its_events_still_releases_them(
    postgres_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch found no metric and is committing its quarantine when the metric is created:
    the creation waits for the batch, then releases what it quarantined."""
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable")
    db = Database(postgres_url)
    inside, go = threading.Event(), threading.Event()
    real_mark_late = events.mark_late

    def paused_mark_late(*args: Any, **kwargs: Any) -> int:
        inside.set()  # the batch's transaction has written its quarantine, uncommitted
        assert go.wait(60)
        return real_mark_late(*args, **kwargs)

    try:
        actor, _ = world(db)
        monkeypatch.setattr(events, "mark_late", paused_mark_late)
        sent: dict[str, Any] = {}
        batch = threading.Thread(
            target=lambda: sent.update(result=send(db, actor, ("x1", "calls", iso(2026, 1, 2), {})))
        )
        batch.start()
        assert inside.wait(60)
        creation = threading.Thread(
            target=lambda: metering.create_metric(
                db, actor, {"code": "calls", "aggregation": "count"}
            )
        )
        creation.start()
        # Until the creation waits for the batch's claim lock.
        wait_for_a_lock(postgres_url, "advisory", "creating the metric did not wait for the batch")
        go.set()
        batch.join(60)
        creation.join(60)
        assert sent["result"].quarantined == 1
        with db.reading() as session:
            mine = actor.organization_id
            held = select(func.count()).where(QuarantinedEvent.organization_id == mine)
            assert session.scalar(held) == 0
            stored = select(UsageEvent.transaction_id).where(UsageEvent.organization_id == mine)
            assert session.scalars(stored).all() == ["x1"]
    finally:
        go.set()
        db.dispose()


def test_two_batches_claiming_the_same_new_ids_at_once(
    postgres_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches write side by side: the second finds none of the shared ids taken (the first
    has not committed), its claim waits for the first, is refused by the unique key when the
    first commits, and is made again after a second lookup, in the same transaction: the
    shared ids are duplicates, stored once."""
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable")
    db = Database(postgres_url)
    inside, go = threading.Event(), threading.Event()
    real_mark_late, real_existing = events.mark_late, events._existing
    looked_up: list[list[str]] = []

    def paused_mark_late(*args: Any, **kwargs: Any) -> int:
        inside.set()  # the first batch has COPYed its ids and events, uncommitted
        assert go.wait(60)
        return real_mark_late(*args, **kwargs)

    def spied_existing(raw: Any, org_id: str, ids: list[str]) -> dict[str, bytes]:
        looked_up.append(ids)
        return real_existing(raw, org_id, ids)

    day = iso(2026, 1, 2)
    try:
        actor, _ = world(db)
        metering.create_metric(db, actor, {"code": "calls", "aggregation": "count"})
        monkeypatch.setattr(events, "mark_late", paused_mark_late)
        sent: dict[str, Any] = {}
        first = threading.Thread(
            target=lambda: sent.update(
                first=send(db, actor, *[(f"s{i}", "calls", day, {}) for i in range(3)])
            )
        )
        first.start()
        assert inside.wait(60)
        monkeypatch.setattr(events, "_existing", spied_existing)
        second = threading.Thread(
            target=lambda: sent.update(
                second=send(
                    db,
                    actor,
                    ("own-1", "calls", day, {}),
                    ("s1", "calls", day, {}),
                    ("s2", "calls", day, {"other": "content"}),
                    ("own-2", "calls", day, {}),
                )
            )
        )
        second.start()
        # Until the second batch's claim waits for the first's.
        wait_for_a_lock(postgres_url, "transactionid", "the second batch did not write beside it")
        go.set()
        first.join(60)
        second.join(60)
        assert sent["first"].accepted == 3
        answers = [(o.transaction_id, o.status, o.reason) for o in sent["second"].outcomes]
        assert answers == [
            ("own-1", "accepted", None),
            ("s1", "duplicate", None),
            ("s2", "rejected", "transaction_id: already used for an event with different content"),
            ("own-2", "accepted", None),
        ]
        assert looked_up == [["own-1", "own-2", "s1", "s2"]] * 2
        with db.reading() as session:
            stored = select(UsageEvent.transaction_id).where(
                UsageEvent.organization_id == actor.organization_id
            )
            assert sorted(session.scalars(stored).all()) == ["own-1", "own-2", "s0", "s1", "s2"]
    finally:
        go.set()
        db.dispose()


def two_plans_on_one_metric(db: Database, actor: Actor) -> dict[str, Any]:
    metering.create_metric(db, actor, {"code": "calls", "aggregation": "count"})
    product = catalog.create_product(db, actor, {"code": "api", "name": "API calls"})
    plans = {}
    for name, amount in (("starter", "1.00"), ("pro", "0.50")):
        catalog.create_price(
            db,
            actor,
            {
                "code": f"{name}-calls",
                "product_id": product.id,
                "currency": "USD",
                "kind": "usage",
                "metric_code": "calls",
                "effective_from": at(2020, 1, 1),
                "terms": {"model": "per_unit", "amount": amount},
            },
        )
        plans[name] = catalog.create_plan(
            db,
            actor,
            {"code": name, "name": name, "currency": "USD", "price_codes": [f"{name}-calls"]},
        )
    return plans


def test_an_upgrade_mid_period_splits_usage_between_the_two_prices(db: Database) -> None:
    """Calls before the upgrade on 16 January at 1.00, after it at 0.50; none counted twice."""
    actor, customer = world(db)
    plans = two_plans_on_one_metric(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plans["starter"].id,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    # Days 1, 4, 7, 10, 13 before; 16, 19, 22, 25, 28 after.
    send(db, actor, *[(f"t{i}", "calls", iso(2026, 1, 1 + i * 3), {}) for i in range(10)])
    subscriptions.change_subscription(
        db, actor, sub.id, {"plan_id": plans["pro"].id, "effective_at": at(2026, 1, 16)}
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    invoice, lines = invoices.get_invoice(db, actor, run.invoice_ids[-1])
    usage = sorted((line.quantity, line.subtotal_minor) for line in lines if line.kind == "usage")
    # 5 x 1.00 + 5 x 0.50 = 7.50
    assert usage == [(D(5), 250), (D(5), 500)]


def test_customer_events_go_to_the_subscription_billing_the_metric_in_that_period(
    db: Database,
) -> None:
    """Subscription A ends in January, B starts in February: February's events are B's."""
    actor, customer = world(db)
    plans = two_plans_on_one_metric(db, actor)
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plans["starter"].id,
            "start_at": at(2026, 1, 1),
            "end_at": at(2026, 2, 1),
            "anchor": "calendar",
        },
    )
    b = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plans["pro"].id,
            "start_at": at(2026, 2, 1),
            "anchor": "calendar",
        },
    )
    send(
        db,
        actor,
        ("jan", "calls", iso(2026, 1, 5), {}),
        *[(f"feb{i}", "calls", iso(2026, 2, 2 + i), {}) for i in range(7)],
    )
    billing.run_billing(db, actor, at(2026, 3, 1, 1))
    lines = [
        line
        for invoice in invoices.list_invoices(db, actor)[0]
        for line in invoices.get_invoice(db, actor, invoice.id)[1]
        if line.kind == "usage"
    ]
    assert sorted((line.subscription_id == b.id, line.quantity) for line in lines) == [
        (False, D(1)),
        (True, D(7)),
    ]


def test_voiding_a_draft_with_late_usage_puts_it_back_for_the_next_invoice(db: Database) -> None:
    actor, customer, sub = late_world(db)
    january = invoices.issue_invoice(
        db, actor, billing.run_billing(db, actor, at(2026, 2, 1, 1)).invoice_ids[0]
    )
    send(db, actor, ("j2", "calls", iso(2026, 1, 25), {"n": 321}))
    february = billing.run_billing(db, actor, at(2026, 3, 1, 1)).invoice_ids[0]
    invoices.void_invoice(db, actor, february, "wrong customer contact")
    again = billing.run_billing(db, actor, at(2026, 3, 1, 2))
    _, lines = invoices.get_invoice(db, actor, again.invoice_ids[0])
    late = [line for line in lines if line.kind == "usage_adjustment"]
    assert [(line.subtotal_minor, line.period_start) for line in late] == [(321, at(2026, 1, 1))]
    assert january.number in late[0].description


@pytest.mark.parametrize("text", ["1_000", "١٢", "1e-20000", "12 kg"])
def test_numbers_postgresql_cannot_read_are_refused_at_the_door(db: Database, text: str) -> None:
    actor, customer = world(db)
    metered_plan(
        db,
        actor,
        {"code": "gb", "aggregation": "sum", "field": "gb"},
        {"model": "per_unit", "amount": "1"},
    )
    result = send(db, actor, ("x", "gb", iso(2026, 1, 2), {"gb": text}))
    assert result.outcomes[0].reason == "properties.gb: metric gb needs a number here"


# The common forms of a UTC time are read from their text; every other form goes through
# datetime. Both must give the same instant, written the same way, or the same refusal.
_utc_texts = st.builds(
    lambda day, seconds, fraction, suffix: (
        f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        f"{fraction}{suffix}"
    ),
    st.dates(min_value=datetime(1999, 1, 1).date(), max_value=datetime(2100, 12, 31).date()),
    st.integers(0, 86_399),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,7}", fullmatch=True)),
    st.sampled_from(["Z", "+00:00", "z", "+01:00", "-00:00", ""]),
)
_odd_texts = st.one_of(
    st.from_regex(
        r"20[0-9]{2}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|\+00:00)?",
        fullmatch=True,
    ),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(_utc_texts, _odd_texts))
@example(text="2026-01-05T03:04:05Z")
@example(text="2026-01-05T03:04:05.000Z")
@example(text="2026-01-05T03:04:05.120+00:00")
@example(text="2026-02-29T00:00:00Z")
@example(text="2028-02-29T23:59:59Z")
@example(text="2026-01-05T24:00:00Z")
@example(text="2026-01-05T03:04:60Z")
@example(text="1999-12-31T23:59:59Z")
def test_a_timestamp_text_is_read_as_datetime_reads_it(text: str) -> None:
    try:
        expected: str | BaseException = events._timestamp(text).isoformat()
    except ValueError as error:
        expected = error
    try:
        got: str | BaseException = events._utc_iso(text)
    except ValueError as error:
        got = error
    if isinstance(expected, BaseException):
        assert isinstance(got, ValueError) and str(got) == str(expected)
    else:
        assert got == expected
        parsed = events.parse_event(
            {"transaction_id": "t", "customer": "c", "metric": "m", "timestamp": text}, 0
        )
        assert parsed.occurred_iso == expected
        assert parsed.occurred_at == datetime.fromisoformat(expected)


def test_an_id_claimed_without_a_lookup_but_taken_is_answered_as_a_duplicate(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file import claims ids new to the file without looking them up. When one was taken
    after all (stored before the import, or by another writer meanwhile), the unique key
    refuses the batch, which is written again with every id looked up: nothing half-written,
    and the answers are still right."""
    db = postgres_db
    actor, customer = world(db)
    metering.create_metric(db, actor, {"code": "calls", "aggregation": "count"})
    assert send(db, actor, ("b", "calls", iso(2026, 1, 2), {})).accepted == 1
    real_existing = events._existing
    looked_up: list[list[str]] = []

    def existing(raw: Any, org_id: str, ids: list[str]) -> dict[str, bytes]:
        looked_up.append(sorted(ids))
        return real_existing(raw, org_id, ids)

    monkeypatch.setattr(events, "_existing", existing)
    batch = events.prepare_events(
        [
            {
                "transaction_id": tid,
                "customer": "quarry",
                "metric": "calls",
                "timestamp": iso(2026, 1, 2),
                "properties": {"n": 1} if tid == "b" else {},
            }
            for tid in ("a", "b", "c")
        ]
    )
    batch.lookup = set()
    result = events.store_events_batch(db, actor, batch)
    assert [(o.transaction_id, o.status) for o in result.outcomes] == [
        ("a", "accepted"),
        ("b", "rejected"),
        ("c", "accepted"),
    ]
    assert result.outcomes[1].reason == (
        "transaction_id: already used for an event with different content"
    )
    assert looked_up == [[], ["a", "b", "c"]] and result.looked_up_again == 1
    with db.reading() as session:
        stored = session.scalars(
            select(UsageEvent.transaction_id).where(
                UsageEvent.organization_id == actor.organization_id
            )
        ).all()
    assert sorted(stored) == ["a", "b", "c"]
