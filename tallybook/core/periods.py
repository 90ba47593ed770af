"""Billing intervals, anchors and periods: which local calendar dates a subscription bills over,
and the UTC instants where its periods start and end in the customer's time zone.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "BillingPeriod",
    "Interval",
    "IntervalUnit",
    "boundary_date",
    "calendar_anchor",
    "local_date",
    "local_midnight",
    "period_at",
    "period_containing",
    "periods_between",
]

_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
# Period arithmetic is pure and a billing run asks the same questions for every subscription
# with the same anchor day; the public functions validate, then answer from a bounded memo.
_MEMO_SIZE = 4096


class IntervalUnit(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_MONTHS_PER_UNIT = {IntervalUnit.MONTH: 1, IntervalUnit.QUARTER: 3, IntervalUnit.YEAR: 12}
_DAYS_PER_UNIT = {IntervalUnit.DAY: 1, IntervalUnit.WEEK: 7}
_ADJECTIVES = {
    IntervalUnit.DAY: "daily",
    IntervalUnit.WEEK: "weekly",
    IntervalUnit.MONTH: "monthly",
    IntervalUnit.QUARTER: "quarterly",
    IntervalUnit.YEAR: "yearly",
}
# Words accepted by Interval.parse, so that every label() parses back to an equal Interval.
_UNIT_WORDS = {
    **{unit.value: unit for unit in IntervalUnit},
    **{unit.value + "s": unit for unit in IntervalUnit},
    **{adjective: unit for unit, adjective in _ADJECTIVES.items()},
    "annual": IntervalUnit.YEAR,
    "annually": IntervalUnit.YEAR,
}
_ADJECTIVE_WORDS = frozenset({*_ADJECTIVES.values(), "annual", "annually"})
_INTERVAL_TEXT = re.compile(r"(?:every\s+)?(?:([0-9]+)\s*)?([a-z]+)")


@dataclass(frozen=True)
class Interval:
    """How often a subscription bills: `count` units, e.g. Interval(MONTH, 3) is every 3 months."""

    unit: IntervalUnit
    count: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "unit", IntervalUnit(self.unit))
        except ValueError:
            choices = ", ".join(unit.value for unit in IntervalUnit)
            raise ValueError(f"interval_unit: {self.unit!r} is not one of {choices}") from None
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError(f"interval_count: {self.count!r} is not a whole number")
        if self.count < 1:
            raise ValueError(f"interval_count: must be at least 1, got {self.count}")

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Read 'month', 'quarterly', 'year', '2 weeks', 'every 3 months' and the like."""
        if not isinstance(text, str):
            raise ValueError(f"interval: expected text such as 'month' or '3 months', got {text!r}")
        words = " ".join(text.lower().split())
        match = _INTERVAL_TEXT.fullmatch(words)
        unit = _UNIT_WORDS.get(match.group(2)) if match else None
        # 'monthly' stands alone: 'every 3 monthly' is more likely a typo than a request.
        if match and match.group(2) in _ADJECTIVE_WORDS and words != match.group(2):
            unit = None
        if match is None or unit is None:
            raise ValueError(
                f"interval: cannot read {text!r}; expected e.g. 'day', 'week', 'month', "
                "'quarter', 'year', '2 weeks' or 'every 3 months'"
            )
        count = int(match.group(1)) if match.group(1) is not None else 1
        return cls(unit, count)

    def label(self) -> str:
        """'monthly', 'quarterly', ... for a count of 1; otherwise 'every 3 months'."""
        if self.count == 1:
            return _ADJECTIVES[self.unit]
        return f"every {self.count} {self.unit.value}s"

    def months(self) -> int | None:
        """Length in calendar months for month-based intervals; None for days and weeks."""
        per_unit = _MONTHS_PER_UNIT.get(self.unit)
        return None if per_unit is None else per_unit * self.count

    def _days(self) -> int:
        return _DAYS_PER_UNIT[self.unit] * self.count


def _require_date(value: object, name: str) -> date:
    # datetime is a subclass of date; accepting one would silently drop its time of day.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{name}: expected a calendar date, got {value!r}")
    return value


def _require_aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: {value.isoformat()} is naive; give a timezone-aware datetime")
    return value


def _require_interval(value: object) -> Interval:
    if not isinstance(value, Interval):
        raise TypeError(f"interval: expected an Interval, got {value!r}")
    return value


def _require_index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"index: expected an integer, got {value!r}")
    return value


@cache
def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"timezone: {timezone!r} is not an IANA time zone such as 'Europe/Berlin'"
        ) from None


def boundary_date(anchor: date, interval: Interval, index: int) -> date:
    """The index-th period boundary counted from the anchor (index 0 is the anchor itself).

    Month-based intervals keep the anchor's day of the month, falling back to the last day of
    shorter months; each boundary is computed from the anchor so a Jan 31 anchor returns to the
    31st after February instead of drifting to the 28th.
    """
    _require_date(anchor, "anchor")
    _require_interval(interval)
    _require_index(index)
    try:
        months = interval.months()
        if months is None:
            return anchor + timedelta(days=interval._days() * index)
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months * index, 12)
        last_day = calendar.monthrange(year, month0 + 1)[1]
        return date(year, month0 + 1, min(anchor.day, last_day))
    except (OverflowError, ValueError):
        raise ValueError(
            f"index: boundary {index} of {interval.label()} from {anchor} is outside the "
            "supported date range"
        ) from None


@dataclass(frozen=True)
class BillingPeriod:
    """One billing period: [start, end) in UTC and [start_date, end_date) in local dates."""

    start: datetime
    end: datetime
    start_date: date
    end_date: date
    timezone: str
    index: int

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        _require_date(self.start_date, "start_date")
        _require_date(self.end_date, "end_date")
        # Store UTC so that equal periods also print alike, whatever zone they were built in.
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))
        if self.end < self.start or self.end_date <= self.start_date:
            raise ValueError(f"period: ends before it starts ({self.start} to {self.end})")

    def contains(self, instant: datetime) -> bool:
        """Whether the instant falls in [start, end)."""
        _require_aware(instant, "instant")
        return self.start <= instant < self.end

    def days(self) -> int:
        """Local calendar days in the period."""
        return (self.end_date - self.start_date).days

    def label(self) -> str:
        """'2026-01-01 to 2026-01-31': the last day is shown inclusive, as people read it."""
        return f"{self.start_date.isoformat()} to {(self.end_date - _ONE_DAY).isoformat()}"


def local_midnight(day: date, timezone: str) -> datetime:
    """The UTC instant at which the given local date begins in the time zone.

    Where 00:00 is skipped by a DST jump the date begins at the first instant after the gap;
    where 00:00 happens twice it begins at the first of them.
    """
    _require_date(day, "day")
    return _local_midnight(day, timezone)


@lru_cache(maxsize=_MEMO_SIZE)
def _local_midnight(day: date, timezone: str) -> datetime:
    zone = _zone(timezone)
    wall = datetime.combine(day, time(0))
    # fold=0 picks the earlier of two repeated midnights.
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Midnight falls in a gap. The transition lies between the two readings of the missing wall
    # time (before-offset and after-offset); tz transitions are whole seconds, so bisect on
    # seconds for the first instant whose wall clock has reached the date.
    late = instant
    early = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    early, late = min(early, late), max(early, late)
    while late - early > _ONE_SECOND:
        middle = early + (late - early) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            late = middle
        else:
            early = middle
    return late


def local_date(instant: datetime, timezone: str) -> date:
    """The customer's calendar date at the instant."""
    _require_aware(instant, "instant")
    return instant.astimezone(_zone(timezone)).date()


def period_at(anchor: date, interval: Interval, index: int, timezone: str) -> BillingPeriod:
    """The index-th period from the anchor (0 starts on the anchor; negative indexes precede it)."""
    _require_date(anchor, "anchor")
    _require_interval(interval)
    _require_index(index)
    return _period_at(anchor, interval, index, timezone)


@lru_cache(maxsize=_MEMO_SIZE)
def _period_at(anchor: date, interval: Interval, index: int, timezone: str) -> BillingPeriod:
    start_date = boundary_date(anchor, interval, index)
    end_date = boundary_date(anchor, interval, index + 1)
    return BillingPeriod(
        start=local_midnight(start_date, timezone),
        end=local_midnight(end_date, timezone),
        start_date=start_date,
        end_date=end_date,
        timezone=timezone,
        index=index,
    )


def _index_for_date(anchor: date, interval: Interval, day: date) -> int:
    """The index of the period whose local dates [start_date, end_date) include the day."""
    months = interval.months()
    if months is None:
        return (day - anchor).days // interval._days()
    # Months elapsed, floored to whole intervals, is right or one too high (when the day of the
    # month has not yet reached the anchor's); the loops settle it in a step or two.
    elapsed = (day.year - anchor.year) * 12 + day.month - anchor.month
    index = elapsed // months
    while boundary_date(anchor, interval, index) > day:
        index -= 1
    while boundary_date(anchor, interval, index + 1) <= day:
        index += 1
    return index


def period_containing(
    anchor: date, interval: Interval, instant: datetime, timezone: str
) -> BillingPeriod:
    """The period with start <= instant < end, found arithmetically rather than by scanning."""
    _require_date(anchor, "anchor")
    _require_interval(interval)
    _require_aware(instant, "instant")
    # In UTC, equal keys are the same instant: two readings of an hour repeated in a local zone
    # compare equal (fold is ignored) yet lie an hour apart.
    return _period_containing(anchor, interval, instant.astimezone(UTC), timezone)


@lru_cache(maxsize=_MEMO_SIZE)
def _period_containing(
    anchor: date, interval: Interval, instant: datetime, timezone: str
) -> BillingPeriod:
    index = _index_for_date(anchor, interval, local_date(instant, timezone))
    period = period_at(anchor, interval, index, timezone)
    # Dates decide in every zone we know of; these guard the instant-level contract should a
    # transition ever move the wall clock back across midnight.
    while instant < period.start:
        index -= 1
        period = period_at(anchor, interval, index, timezone)
    while instant >= period.end:
        index += 1
        period = period_at(anchor, interval, index, timezone)
    return period


def periods_between(
    anchor: date, interval: Interval, start: datetime, end: datetime, timezone: str
) -> Iterator[BillingPeriod]:
    """Every period that shares at least one instant with [start, end), in order."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end < start:
        raise ValueError(f"end: {end.isoformat()} is before start {start.isoformat()}")
    first = period_containing(anchor, interval, start, timezone)
    return _periods_from(first, anchor, interval, start, end, timezone)


def _periods_from(
    period: BillingPeriod,
    anchor: date,
    interval: Interval,
    start: datetime,
    end: datetime,
    timezone: str,
) -> Iterator[BillingPeriod]:
    # A separate generator so that periods_between validates when called, not when iterated.
    while period.start < end:
        if max(period.start, start) < min(period.end, end):
            yield period
        period = period_at(anchor, interval, period.index + 1, timezone)


def calendar_anchor(start_date: date, interval: Interval) -> date:
    """Anchor for calendar billing: the 1st of the month, of the calendar quarter for quarterly
    intervals, or Jan 1 for yearly ones; day and week intervals anchor on start_date itself."""
    _require_date(start_date, "start_date")
    _require_interval(interval)
    if interval.unit is IntervalUnit.YEAR:
        return date(start_date.year, 1, 1)
    if interval.unit is IntervalUnit.QUARTER:
        return date(start_date.year, (start_date.month - 1) // 3 * 3 + 1, 1)
    if interval.unit is IntervalUnit.MONTH:
        return start_date.replace(day=1)
    return start_date
