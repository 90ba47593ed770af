"""Billable metrics: what a usage event stream adds up to in a billing period.

Pure. A metric names an aggregation (count, sum, max, unique count, latest value, time-weighted
sum) over one property of the events, optionally narrowed by property filters; a usage price
may narrow it further and split it into groups (one line per region, say). `aggregate` is the
reference implementation: the SQLite store uses it directly and the PostgreSQL store's SQL is
tested against it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any

import orjson

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)


class MeteringError(ValueError):
    """A metric or event that cannot be used; the message starts with the field at fault."""


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"
    WEIGHTED_SUM = "weighted_sum"


# Aggregations that read a number from the event's `field` property.
NUMERIC = frozenset(
    {Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST, Aggregation.WEIGHTED_SUM}
)
# Seconds per unit of a time-weighted sum: GB over hours gives GB-hours.
WEIGHT_UNITS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# Time-weighted sums divide by the unit; 34 significant digits is far below a cent of any price.
_DIVISION = Context(prec=34)
# Sums and products are exact (as in PostgreSQL's numeric) within any sane usage.
_EXACT = Context(prec=200)
# Events outside these years are typing mistakes (a timestamp in ms read as s, say).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_ALLOWED = datetime(2100, 1, 1, tzinfo=UTC)

Filters = Mapping[str, tuple[str, ...]]
GroupKey = tuple[str | None, ...]


def property_text(value: Any) -> str | None:
    """A property as text, the way PostgreSQL's `->>` renders it; None for absent or nested."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        # Plain notation, as PostgreSQL renders a JSON number: 1e-05 -> 0.00001.
        return format(Decimal(repr(value)), "f")
    return str(value)


def property_number(value: Any) -> Decimal | None:
    """A property as an exact number: JSON numbers and numeric strings; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # The shortest text that reads back as this float: what the client wrote.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        # Only what PostgreSQL's numeric also reads: ASCII digits, no '_', a short exponent.
        text = value.strip()
        if _NUMBER.fullmatch(text) is None:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def clean_filters(data: Any, field_name: str) -> dict[str, tuple[str, ...]]:
    """{"region": ["eu", "us"]} or {"region": "eu"} -> {"region": ("eu", "us")}."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise MeteringError(f"{field_name}: must be an object of property -> allowed values")
    result: dict[str, tuple[str, ...]] = {}
    for key, values in data.items():
        if not isinstance(key, str) or not key:
            raise MeteringError(f"{field_name}: property names must be non-empty text")
        if isinstance(values, (str, int, float)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise MeteringError(f"{field_name}.{key}: give a value or a list of values")
        texts = [property_text(v) for v in values]
        if any(t is None for t in texts):
            raise MeteringError(f"{field_name}.{key}: values must be text or numbers")
        result[key] = tuple(sorted(set(texts)))  # type: ignore[arg-type]
    return result


def combine_filters(*filters: Filters | None) -> dict[str, tuple[str, ...]]:
    """All filters at once: a property filtered twice must satisfy both (values intersect)."""
    combined: dict[str, tuple[str, ...]] = {}
    for each in filters:
        for key, allowed in (each or {}).items():
            if key in combined:
                combined[key] = tuple(v for v in combined[key] if v in allowed)
            else:
                combined[key] = tuple(allowed)
    return combined


def matches(properties: Mapping[str, Any], filters: Filters) -> bool:
    """True when every filtered property holds one of its allowed values."""
    for key, allowed in filters.items():
        if property_text(properties.get(key)) not in allowed:
            return False
    return True


def group_key(properties: Mapping[str, Any], group_by: Sequence[str]) -> GroupKey:
    return tuple(property_text(properties.get(name)) for name in group_by)


@dataclass(frozen=True)
class Metric:
    code: str
    name: str
    aggregation: Aggregation
    field: str | None = None
    filters: Filters = dataclasses.field(default_factory=dict)
    weighted_unit: str = "hour"

    def __post_init__(self) -> None:
        # Rows and callers hand over plain text; comparisons below use the enum.
        try:
            object.__setattr__(self, "aggregation", Aggregation(self.aggregation))
        except ValueError:
            choices = ", ".join(a.value for a in Aggregation)
            raise MeteringError(f"aggregation: must be one of {choices}") from None

    def validate(self) -> Metric:
        if not self.code:
            raise MeteringError("code: is required")
        if self.aggregation is not Aggregation.COUNT and not self.field:
            raise MeteringError(f"field: {self.aggregation.value} needs the property it reads")
        if self.aggregation is Aggregation.COUNT and self.field:
            raise MeteringError("field: count counts events and reads no property")
        if self.weighted_unit not in WEIGHT_UNITS:
            raise MeteringError(f"weighted_unit: must be one of {', '.join(WEIGHT_UNITS)}")
        return self

    def describe(self) -> str:
        """'sum of gb', 'count of events', 'unique count of user_id', ..."""
        if self.aggregation is Aggregation.COUNT:
            text = "count of events"
        elif self.aggregation is Aggregation.WEIGHTED_SUM:
            text = f"time-weighted sum of {self.field} ({self.field}-{self.weighted_unit}s)"
        else:
            text = f"{self.aggregation.value.replace('_', ' ')} of {self.field}"
        if self.filters:
            text += " where " + describe_filters(self.filters)
        return text

    def check_event(self, properties: Mapping[str, Any]) -> str | None:
        """Why an event cannot be measured by this metric, or None when it can."""
        if self.aggregation in NUMERIC:
            value = properties.get(self.field)  # type: ignore[arg-type]
            # A JSON integer is always an exact, finite number: no Decimal needed to tell.
            if type(value) is not int and property_number(value) is None:
                return f"properties.{self.field}: metric {self.code} needs a number here"
        elif self.aggregation is Aggregation.UNIQUE_COUNT:
            if property_text(properties.get(self.field)) is None:  # type: ignore[arg-type]
                return f"properties.{self.field}: metric {self.code} counts distinct values of it"
        return None


def describe_filters(filters: Filters) -> str:
    return " and ".join(
        f"{key} = {values[0]}" if len(values) == 1 else f"{key} in ({', '.join(values)})"
        for key, values in sorted(filters.items())
    )


@dataclass(frozen=True)
class Event:
    transaction_id: str
    timestamp: datetime
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Reading:
    """A metric's value for one group in one period, and how many events made it."""

    value: Decimal
    events: int
    # Percentage pricing per transaction: each event's value in time order.
    transactions: tuple[Decimal, ...] = ()


def weighted_value(numerator: Decimal, unit: str) -> Decimal:
    """Value-seconds into value-units (GB-seconds into GB-hours), to 34 significant digits."""
    with localcontext(_DIVISION):
        return numerator / WEIGHT_UNITS[unit]


def seconds(delta: Any) -> Decimal:
    """A timedelta in seconds, exactly (timestamps carry whole microseconds)."""
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)


def aggregate(
    metric: Metric,
    events: Iterable[Event],
    start: datetime,
    end: datetime,
    *,
    filters: Filters | None = None,
    group_by: Sequence[str] = (),
    with_transactions: bool = False,
) -> dict[GroupKey, Reading]:
    """The metric over events with start <= timestamp < end, per group.

    Events before `start` matter only to a time-weighted sum: their changes give the value
    carried into the period. With no events in the period an ungrouped metric reads 0 (or, for
    a time-weighted sum, the carried value over the whole period).
    """
    combined = combine_filters(metric.filters, filters)
    opening: dict[GroupKey, Decimal] = {}
    inside: dict[GroupKey, list[Event]] = {}
    for event in events:
        if event.timestamp >= end or not matches(event.properties, combined):
            continue
        key = group_key(event.properties, group_by)
        if event.timestamp < start:
            if metric.aggregation is Aggregation.WEIGHTED_SUM:
                change = property_number(event.properties.get(metric.field))  # type: ignore[arg-type]
                if change is not None:
                    with localcontext(_EXACT):
                        opening[key] = opening.get(key, Decimal(0)) + change
            continue
        inside.setdefault(key, []).append(event)
    keys = set(inside) | set(opening)
    if not group_by:
        keys.add(())
    period_seconds = seconds(end - start)
    result: dict[GroupKey, Reading] = {}
    with localcontext(_EXACT):
        for key in keys:
            result[key] = _reading(
                metric, key, inside, opening, end, period_seconds, with_transactions
            )
    return result


def _reading(
    metric: Metric,
    key: GroupKey,
    inside: Mapping[GroupKey, list[Event]],
    opening: Mapping[GroupKey, Decimal],
    end: datetime,
    period_seconds: Decimal,
    with_transactions: bool,
) -> Reading:
    rows = sorted(inside.get(key, []), key=lambda e: (e.timestamp, e.transaction_id))
    numbers = [
        property_number(e.properties.get(metric.field)) if metric.field else None for e in rows
    ]
    values = [n for n in numbers if n is not None]
    agg = metric.aggregation
    if agg is Aggregation.COUNT:
        value = Decimal(len(rows))
    elif agg is Aggregation.SUM:
        value = sum(values, Decimal(0))
    elif agg is Aggregation.MAX:
        value = max(values, default=Decimal(0))
    elif agg is Aggregation.UNIQUE_COUNT:
        distinct = {property_text(e.properties.get(metric.field)) for e in rows}  # type: ignore[arg-type]
        value = Decimal(len(distinct - {None}))
    elif agg is Aggregation.LATEST:
        value = values[-1] if values else Decimal(0)
    else:
        numerator = opening.get(key, Decimal(0)) * period_seconds
        for event, change in zip(rows, numbers, strict=True):
            if change is not None:
                numerator += change * seconds(end - event.timestamp)
        value = weighted_value(numerator, metric.weighted_unit)
    transactions = tuple(values) if with_transactions else ()
    return Reading(value, len(rows), transactions)


@dataclass(frozen=True, eq=False)
class UsageCharge:
    """How a usage price reads its metric: extra filters, groups, per-transaction values."""

    metric: Metric
    filters: Filters = dataclasses.field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    with_transactions: bool = False

    @property
    def all_filters(self) -> dict[str, tuple[str, ...]]:
        return combine_filters(self.metric.filters, self.filters)

    def describe(self) -> str:
        text = f"{self.metric.name} ({self.metric.describe()}"
        if self.filters:
            text += (" and " if self.metric.filters else " where ") + describe_filters(self.filters)
        return text + ")"


def fingerprint(
    customer: str | None,
    subscription_id: str | None,
    metric_code: str,
    timestamp: datetime,
    properties: Mapping[str, Any],
) -> bytes:
    """16 bytes that change whenever anything billable about an event changes.

    A retried event must match its first delivery: same customer, metric, instant and
    properties (key order does not matter).
    """
    return fingerprint_of(
        customer,
        subscription_id,
        metric_code,
        timestamp.astimezone(UTC).isoformat(),
        orjson.dumps(properties, option=orjson.OPT_SORT_KEYS),
    )


_FINGERPRINT = hashlib.blake2b(digest_size=16)


def fingerprint_of(
    customer: str | None,
    subscription_id: str | None,
    metric_code: str,
    utc_iso: str,
    sorted_properties_json: bytes,
) -> bytes:
    """`fingerprint` from the parts ingestion has at hand anyway (it stores the same JSON)."""
    digest = _FINGERPRINT.copy()  # cheaper than a new blake2b with its parameters
    digest.update(orjson.dumps([customer, subscription_id, metric_code, utc_iso]))
    digest.update(sorted_properties_json)
    return digest.digest()
