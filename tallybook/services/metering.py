"""Billable metrics and usage readings: what a customer's events add up to per period.

On PostgreSQL a reading is one SQL aggregation per usage price over every window of a batch
(a window: one subscription's period); events never travel to Python, except each transaction's
value for percentage prices with per-transaction fees. SQLite reads each window's events and
aggregates them with the core's reference implementation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core.metering import (
    Aggregation,
    Event,
    GroupKey,
    MeteringError,
    Metric,
    Reading,
    UsageCharge,
    aggregate,
    clean_filters,
    seconds,
    weighted_value,
)
from tallybook.core.pricing import PriceTerms, PricingModel
from tallybook.db.models import BillableMetric, UsageEvent, new_id
from tallybook.services.base import (
    MANAGERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    get_owned,
    utcnow,
)


def to_metric(row: BillableMetric) -> Metric:
    return Metric(
        code=row.code,
        name=row.name,
        aggregation=Aggregation(row.aggregation),
        field=row.field,
        filters={k: tuple(v) for k, v in (row.filters or {}).items()},
        weighted_unit=row.weighted_unit,
    )


def load_metrics(
    session: Session, org_id: str, codes: Iterable[str] | None = None
) -> dict[str, Metric]:
    query = select(BillableMetric).where(BillableMetric.organization_id == org_id)
    if codes is not None:
        codes = list(codes)
        if not codes:
            return {}
        query = query.where(BillableMetric.code.in_(codes))
    return {row.code: to_metric(row) for row in session.scalars(query)}


def create_metric(db: Database, actor: Actor, values: dict[str, Any]) -> BillableMetric:
    """A billable metric. Quarantined events waiting for it are released in the same go."""
    actor.require(*MANAGERS, action="manage the catalog")
    code = values.get("code")
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("code: is required", field="code")
    name = values.get("name") or code
    try:
        metric = Metric(
            code=code.strip(),
            name=name,
            aggregation=Aggregation(values.get("aggregation", "")),
            field=values.get("field") or None,
            filters=clean_filters(values.get("filters"), "filters"),
            weighted_unit=values.get("weighted_unit") or "hour",
        ).validate()
    except ValueError as error:
        message = str(error)
        if isinstance(error, MeteringError):
            field_name = message.split(":", 1)[0]
        else:
            choices = ", ".join(a.value for a in Aggregation)
            field_name, message = "aggregation", f"aggregation: must be one of {choices}"
        raise InvalidInput(message, field=field_name) from None
    from tallybook.services.events import release_quarantine

    try:
        with db.transaction() as session:
            row = BillableMetric(
                id=new_id("bm"),
                organization_id=actor.organization_id,
                code=metric.code,
                name=metric.name,
                description=values.get("description"),
                aggregation=metric.aggregation.value,
                field=metric.field,
                filters={k: list(v) for k, v in metric.filters.items()},
                weighted_unit=metric.weighted_unit,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit(
                session,
                actor,
                "metric.created",
                "billable_metric",
                row.id,
                {"code": row.code, "aggregation": row.aggregation, "field": row.field},
                after=row,
            )
            release_quarantine(session, actor.organization_id, metric_code=metric.code)
    except IntegrityError:
        raise Conflict(f"code: metric {metric.code!r} already exists", field="code") from None
    return row


def list_metrics(db: Database, actor: Actor) -> list[BillableMetric]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(BillableMetric)
                .where(BillableMetric.organization_id == actor.organization_id)
                .order_by(BillableMetric.code)
            )
        )


def get_metric(db: Database, actor: Actor, metric_id: str) -> BillableMetric:
    with db.reading() as session:
        return get_owned(session, BillableMetric, metric_id, actor, label="metric")


# --- readings ---------------------------------------------------------------------------------


def needs_transactions(terms: PriceTerms) -> bool:
    """Percentage prices with per-transaction fees or limits rate each event's value."""
    return terms.model is PricingModel.PERCENTAGE and bool(
        terms.fixed_fee_per_transaction
        or terms.free_transactions
        or terms.min_per_transaction is not None
        or terms.max_per_transaction is not None
    )


@dataclass(frozen=True)
class Window:
    """One subscription's period. `owner`: it also bills events sent with the customer only."""

    key: Hashable
    customer_id: str
    subscription_id: str
    owner: bool
    start: datetime
    end: datetime


def read_usage(
    session: Session, org_id: str, charge: UsageCharge, windows: Sequence[Window]
) -> dict[Hashable, dict[GroupKey, Reading]]:
    """The charge's readings per window and group. Windows with no usage are absent."""
    if not windows:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        return _read_postgresql(session, org_id, charge, windows)
    return _read_python(session, org_id, charge, windows)


def _read_python(
    session: Session, org_id: str, charge: UsageCharge, windows: Sequence[Window]
) -> dict[Hashable, dict[GroupKey, Reading]]:
    result: dict[Hashable, dict[GroupKey, Reading]] = {}
    weighted = charge.metric.aggregation is Aggregation.WEIGHTED_SUM
    for window in windows:
        query = select(
            UsageEvent.transaction_id,
            UsageEvent.occurred_at,
            UsageEvent.properties,
            UsageEvent.subscription_id,
        ).where(
            UsageEvent.organization_id == org_id,
            UsageEvent.customer_id == window.customer_id,
            UsageEvent.metric_code == charge.metric.code,
            UsageEvent.occurred_at < window.end,
        )
        if not weighted:
            query = query.where(UsageEvent.occurred_at >= window.start)
        events = [
            Event(tid, at, props)
            for tid, at, props, sub in session.execute(query)
            if sub == window.subscription_id or (sub is None and window.owner)
        ]
        readings = aggregate(
            charge.metric,
            events,
            window.start,
            window.end,
            filters=dict(charge.filters) or None,
            group_by=charge.group_by,
            with_transactions=charge.with_transactions,
        )
        readings = {k: r for k, r in readings.items() if r.events or r.value}
        if readings:
            result[window.key] = readings
    return result


def _read_postgresql(
    session: Session, org_id: str, charge: UsageCharge, windows: Sequence[Window]
) -> dict[Hashable, dict[GroupKey, Reading]]:
    metric = charge.metric
    params: dict[str, Any] = {
        "org": org_id,
        "metric": metric.code,
        "k": list(range(len(windows))),
        "c": [w.customer_id for w in windows],
        "s": [w.subscription_id for w in windows],
        "o": [w.owner for w in windows],
        "a": [w.start for w in windows],
        "b": [w.end for w in windows],
        "field": metric.field,
    }
    conditions = []
    for position, (name, allowed) in enumerate(sorted(charge.all_filters.items())):
        params[f"fn{position}"] = name
        params[f"fv{position}"] = list(allowed)
        conditions.append(f"AND e.properties ->> :fn{position} = ANY(:fv{position})")
    groups = []
    for position, name in enumerate(charge.group_by):
        params[f"g{position}"] = name
        # Objects and arrays group as "no value", as the reference aggregation does.
        groups.append(
            f"CASE WHEN jsonb_typeof(e.properties -> :g{position}) IN ('object', 'array') "
            f"THEN NULL ELSE e.properties ->> :g{position} END"
        )
    group_sql = "".join(f", {g}" for g in groups)
    value = "(e.properties ->> :field)::numeric"
    agg = metric.aggregation
    if agg is Aggregation.COUNT:
        measure = "count(*)"
    elif agg is Aggregation.SUM:
        measure = f"coalesce(sum({value}), 0)"
    elif agg is Aggregation.MAX:
        measure = f"coalesce(max({value}), 0)"
    elif agg is Aggregation.UNIQUE_COUNT:
        measure = "count(DISTINCT e.properties ->> :field)"
    elif agg is Aggregation.LATEST:
        latest_first = 'e.occurred_at DESC, e.transaction_id COLLATE "C" DESC'
        measure = f"(array_agg({value} ORDER BY {latest_first}))[1]"
    else:
        # Value-seconds from each change to the period's end; the opening value is added below.
        measure = f"coalesce(sum({value} * extract(epoch FROM w.end_at - e.occurred_at)), 0)"
    transactions = (
        f', array_agg({value} ORDER BY e.occurred_at, e.transaction_id COLLATE "C")'
        if charge.with_transactions
        else ""
    )
    windows_sql = (
        "unnest(CAST(:k AS int[]), CAST(:c AS text[]), CAST(:s AS text[]), CAST(:o AS bool[]), "
        "CAST(:a AS timestamptz[]), CAST(:b AS timestamptz[])) "
        "AS w(k, customer_id, subscription_id, owner, start_at, end_at)"
    )
    join = (
        "JOIN usage_events e ON e.organization_id = :org AND e.customer_id = w.customer_id "
        "AND e.metric_code = :metric "
        "AND (e.subscription_id = w.subscription_id OR (e.subscription_id IS NULL AND w.owner)) "
        + " ".join(conditions)
    )
    sql = (
        f"SELECT w.k{group_sql}, {measure}, count(*){transactions} FROM {windows_sql} {join} "
        "AND e.occurred_at >= w.start_at AND e.occurred_at < w.end_at "
        f"GROUP BY w.k{group_sql}"
    )
    width = len(groups)
    raw: dict[int, dict[GroupKey, list[Any]]] = {}
    for row in session.execute(text(sql), params):
        key = tuple(row[1 : 1 + width])
        measured, count = row[1 + width], row[2 + width]
        values = tuple(row[3 + width]) if charge.with_transactions else ()
        raw.setdefault(row[0], {})[key] = [Decimal(measured), int(count), values]
    if agg is Aggregation.WEIGHTED_SUM:
        opening_sql = (
            f"SELECT w.k{group_sql}, sum({value}) FROM {windows_sql} {join} "
            f"AND e.occurred_at < w.start_at GROUP BY w.k{group_sql}"
        )
        for row in session.execute(text(opening_sql), params):
            key = tuple(row[1 : 1 + width])
            window = windows[row[0]]
            entry = raw.setdefault(row[0], {}).setdefault(key, [Decimal(0), 0, ()])
            entry[0] += Decimal(row[1 + width]) * seconds(window.end - window.start)
        for groups_of in raw.values():
            for entry in groups_of.values():
                entry[0] = weighted_value(entry[0], metric.weighted_unit)
    result: dict[Hashable, dict[GroupKey, Reading]] = {}
    for index, groups_of in raw.items():
        readings = {
            key: Reading(value, count, values)
            for key, (value, count, values) in groups_of.items()
            if count or value
        }
        if readings:
            result[windows[index].key] = readings
    return result
