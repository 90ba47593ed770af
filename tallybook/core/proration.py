"""Proration: the exact fraction of a billing period that a subscription actually used.

Fractions are integer ratios; applying one to an amount yields an unrounded Decimal that the
caller rounds once, through `tallybook.core.money.round_to_minor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from functools import lru_cache

from tallybook.core.money import parse_decimal
from tallybook.core.periods import (
    BillingPeriod,
    Interval,
    _require_aware,
    _require_interval,
    boundary_date,
    local_date,
    local_midnight,
)

__all__ = ["ProrationFraction", "ProrationPolicy", "prorate"]

_ONE_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)
# Significant digits kept beyond the exact product when a quotient does not terminate: far
# finer than any currency's minor unit, and enough for every terminating quotient of a period
# length (a denominator below 2**40 terminates within 40 decimal places).
_EXTRA_DIGITS = 40
# Bound of the memo of `prorate`, which a billing run asks the same question per subscription.
_MEMO_SIZE = 4096


class ProrationPolicy(StrEnum):
    EXACT_DAYS = "exact_days"
    EXACT_SECONDS = "exact_seconds"
    THIRTY_DAY_MONTH = "thirty_day_month"


_POLICY_WORDS = {
    ProrationPolicy.EXACT_DAYS: "exact days",
    ProrationPolicy.EXACT_SECONDS: "exact seconds",
    ProrationPolicy.THIRTY_DAY_MONTH: "30-day months",
}


@dataclass(frozen=True)
class ProrationFraction:
    """numerator/denominator of `period` used between used_from and used_to (UTC, clipped)."""

    numerator: int
    denominator: int
    unit: str
    policy: ProrationPolicy
    used_from: datetime
    used_to: datetime
    period: BillingPeriod

    def __post_init__(self) -> None:
        for name in ("numerator", "denominator"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: {value!r} is not a whole number")
        if self.denominator <= 0:
            raise ValueError(f"denominator: must be positive, got {self.denominator}")
        if not 0 <= self.numerator <= self.denominator:
            raise ValueError(
                f"numerator: {self.numerator} is outside 0..{self.denominator} (the denominator)"
            )
        if self.unit not in ("days", "seconds"):
            raise ValueError(f"unit: {self.unit!r} is neither 'days' nor 'seconds'")
        object.__setattr__(self, "policy", ProrationPolicy(self.policy))

    @property
    def is_full(self) -> bool:
        return self.numerator == self.denominator

    def apply(self, amount: Decimal) -> Decimal:
        """amount * numerator / denominator, unrounded: the product is exact and the single
        division is exact whenever the quotient terminates."""
        value = parse_decimal(amount, "amount")
        if self.is_full:
            return value
        product_digits = len(value.as_tuple().digits) + len(str(self.numerator))
        context = Context(prec=product_digits + _EXTRA_DIGITS, rounding=ROUND_HALF_EVEN)
        return context.divide(context.multiply(value, Decimal(self.numerator)), self.denominator)

    def describe(self) -> str:
        """e.g. '17/31 days of 2026-01-01 to 2026-01-31 (exact days)'."""
        return (
            f"{self.numerator}/{self.denominator} {self.unit} of {self.period.label()} "
            f"({_POLICY_WORDS[self.policy]})"
        )


def prorate(
    period: BillingPeriod,
    used_from: datetime,
    used_to: datetime,
    policy: ProrationPolicy,
    interval: Interval,
) -> ProrationFraction:
    """The fraction of `period` used in [used_from, used_to), clipped to the period.

    Day-based policies count local calendar dates: usage starting at 13:00 counts that whole
    day, usage ending at 13:00 does not count the day it ends on, so splitting a period at any
    instant gives parts whose numerators add up to the denominator. An empty or reversed window
    uses nothing. THIRTY_DAY_MONTH falls back to EXACT_DAYS for day and week intervals, and the
    fraction records the policy actually applied.
    """
    if not isinstance(period, BillingPeriod):
        raise TypeError(f"period: expected a BillingPeriod, got {period!r}")
    _require_aware(used_from, "used_from")
    _require_aware(used_to, "used_to")
    _require_interval(interval)
    try:
        policy = ProrationPolicy(policy)
    except ValueError:
        choices = ", ".join(p.value for p in ProrationPolicy)
        raise ValueError(f"policy: {policy!r} is not one of {choices}") from None
    # The window is clipped in UTC anyway; converting first also makes equal memo keys the same
    # instants (local readings of a repeated hour compare equal, fold ignored).
    return _prorate(period, used_from.astimezone(UTC), used_to.astimezone(UTC), policy, interval)


@lru_cache(maxsize=_MEMO_SIZE)
def _prorate(
    period: BillingPeriod,
    used_from: datetime,
    used_to: datetime,
    policy: ProrationPolicy,
    interval: Interval,
) -> ProrationFraction:
    # Pure and asked again for every subscription sharing a period and a window: memoised.
    _check_interval_matches(period, interval)
    if period.end == period.start:
        # Only a skipped local date (Samoa's 2011-12-30) gives this; no window can be told apart.
        raise ValueError(f"period: {period.label()} lasts no time at all in {period.timezone}")

    start = min(max(used_from, period.start), period.end)
    end = max(min(used_to, period.end), start)
    months = interval.months()
    if policy is ProrationPolicy.THIRTY_DAY_MONTH and months is None:
        policy = ProrationPolicy.EXACT_DAYS

    if policy is ProrationPolicy.EXACT_SECONDS:
        # Whole seconds since the period start (which is itself a whole second): truncating
        # both ends the same way keeps the parts of a split adding up exactly.
        numerator = (end - period.start) // _ONE_SECOND - (start - period.start) // _ONE_SECOND
        denominator = (period.end - period.start) // _ONE_SECOND
        unit = "seconds"
    else:
        first = _billing_date(start, period)
        last = _billing_date(end, period)
        if policy is ProrationPolicy.THIRTY_DAY_MONTH and months is not None:
            denominator = 30 * months
            numerator = _position_360(last, period, denominator) - _position_360(
                first, period, denominator
            )
        else:
            denominator = period.days()
            numerator = (last - first).days
        unit = "days"

    return ProrationFraction(
        numerator=numerator,
        denominator=denominator,
        unit=unit,
        policy=policy,
        used_from=start,
        used_to=end,
        period=period,
    )


def _check_interval_matches(period: BillingPeriod, interval: Interval) -> None:
    # A mismatched interval would silently give a wrong 30/360 denominator.
    months = interval.months()
    if months is None:
        matches = boundary_date(period.start_date, interval, 1) == period.end_date
    else:
        # Month-based ends may be clipped to a short month (Feb 28 to Mar 31), so compare months.
        start, end = period.start_date, period.end_date
        matches = (end.year - start.year) * 12 + end.month - start.month == months
    if not matches:
        raise ValueError(f"interval: {interval.label()} does not match period {period.label()}")


def _billing_date(instant: datetime, period: BillingPeriod) -> date:
    """The local date an instant counts from, kept within [start_date, end_date]."""
    if instant <= period.start:
        return period.start_date
    if instant >= period.end:
        return period.end_date
    day = local_date(instant, period.timezone)
    # The latest date whose midnight has passed: this equals the local date except where a clock
    # change steps back across midnight, and it never runs backwards as the instant advances.
    while day < period.end_date and local_midnight(day + _ONE_DAY, period.timezone) <= instant:
        day += _ONE_DAY
    while day > period.start_date and local_midnight(day, period.timezone) > instant:
        day -= _ONE_DAY
    return min(max(day, period.start_date), period.end_date)


def _days_360(day: date) -> int:
    # 30E/360: every month has 30 days and the 31st counts as the 30th.
    return day.year * 360 + (day.month - 1) * 30 + min(day.day, 30)


def _position_360(day: date, period: BillingPeriod, denominator: int) -> int:
    """30/360 days from the period's first date to `day`, pinned to 0..denominator.

    Periods whose anchor falls on the 29th-31st can have a raw 30/360 length other than
    30 per month (Jan 31 to Feb 28 counts 28): the end date is pinned to the full denominator so
    that a full period is always full, and the pin makes the days past it count nothing.
    """
    if day >= period.end_date:
        return denominator
    raw = _days_360(day) - _days_360(period.start_date)
    return min(max(raw, 0), denominator)
