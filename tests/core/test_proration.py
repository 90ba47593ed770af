"""Proration fractions under each policy, with expectations worked out by hand."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tallybook.core.money import MoneyError
from tallybook.core.periods import BillingPeriod, Interval, IntervalUnit, period_at
from tallybook.core.proration import ProrationFraction, ProrationPolicy, prorate

MONTHLY = Interval(IntervalUnit.MONTH)
QUARTERLY = Interval(IntervalUnit.QUARTER)
EVERY_3_MONTHS = Interval(IntervalUnit.MONTH, 3)
YEARLY = Interval(IntervalUnit.YEAR)
WEEKLY = Interval(IntervalUnit.WEEK)
DAILY = Interval(IntervalUnit.DAY)

DAYS = ProrationPolicy.EXACT_DAYS
SECONDS = ProrationPolicy.EXACT_SECONDS
THIRTY = ProrationPolicy.THIRTY_DAY_MONTH

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def january_2026_new_york() -> BillingPeriod:
    # Jan 1 00:00 EST to Feb 1 00:00 EST: 31 days, no DST change.
    return period_at(date(2026, 1, 1), MONTHLY, 0, NEW_YORK)


# --- upgrade on the 16th of a 31-day month ----------------------------------------------------


def test_upgrade_on_the_16th_exact_days() -> None:
    period = january_2026_new_york()
    upgrade = ny(2026, 1, 16, 13)
    new_plan = prorate(period, upgrade, period.end, DAYS, MONTHLY)
    old_plan = prorate(period, period.start, upgrade, DAYS, MONTHLY)
    # New plan: Jan 16..31 inclusive = 31 - 16 + 1 = 16 days. Old plan: Jan 1..15 = 15 days.
    assert (new_plan.numerator, new_plan.denominator, new_plan.unit) == (16, 31, "days")
    assert (old_plan.numerator, old_plan.denominator) == (15, 31)
    assert new_plan.describe() == "16/31 days of 2026-01-01 to 2026-01-31 (exact days)"


def test_upgrade_on_the_16th_thirty_day_month() -> None:
    period = january_2026_new_york()
    upgrade = ny(2026, 1, 16, 13)
    new_plan = prorate(period, upgrade, period.end, THIRTY, MONTHLY)
    old_plan = prorate(period, period.start, upgrade, THIRTY, MONTHLY)
    # 30/360 from Jan 16 to Feb 1: (2 - 1) * 30 + (1 - 16) = 15.
    # 30/360 from Jan 1 to Jan 16: 0 * 30 + (16 - 1) = 15.
    assert (new_plan.numerator, new_plan.denominator, new_plan.unit) == (15, 30, "days")
    assert (old_plan.numerator, old_plan.denominator) == (15, 30)
    assert new_plan.policy is THIRTY
    assert new_plan.describe() == "15/30 days of 2026-01-01 to 2026-01-31 (30-day months)"


def test_upgrade_on_the_16th_exact_seconds() -> None:
    period = january_2026_new_york()
    upgrade = ny(2026, 1, 16, 13)
    new_plan = prorate(period, upgrade, period.end, SECONDS, MONTHLY)
    # Denominator: 31 * 86400 = 2_678_400. New plan: Jan 16 13:00 to Feb 1 00:00 is
    # 15 days 11 hours = 1_296_000 + 39_600 = 1_335_600 seconds.
    assert (new_plan.numerator, new_plan.denominator, new_plan.unit) == (
        1_335_600,
        2_678_400,
        "seconds",
    )
    # The recorded window is the clipped one, in UTC: 13:00 EST = 18:00 UTC.
    assert new_plan.used_from == utc(2026, 1, 16, 18)
    assert new_plan.used_from.tzinfo is UTC
    assert new_plan.used_to == utc(2026, 2, 1, 5)


def test_thirty_day_month_on_the_31st() -> None:
    period = period_at(date(2026, 1, 1), MONTHLY, 0, "UTC")
    # Day 31 counts as day 30: Jan 31 to Feb 1 = 30 + (1 - 30) = 1; Jan 1 to Jan 31 = 30 - 1 = 29.
    last_day = prorate(period, utc(2026, 1, 31), period.end, THIRTY, MONTHLY)
    assert (last_day.numerator, last_day.denominator) == (1, 30)
    rest = prorate(period, period.start, utc(2026, 1, 31), THIRTY, MONTHLY)
    assert (rest.numerator, rest.denominator) == (29, 30)


# --- February ---------------------------------------------------------------------------------


def test_february_with_28_days() -> None:
    period = period_at(date(2027, 2, 1), MONTHLY, 0, "UTC")
    exact = prorate(period, utc(2027, 2, 15), period.end, DAYS, MONTHLY)
    # Feb 15..28 inclusive = 14 of 28 days.
    assert (exact.numerator, exact.denominator) == (14, 28)
    thirty = prorate(period, utc(2027, 2, 15), period.end, THIRTY, MONTHLY)
    # 30/360 from Feb 15 to Mar 1 = 30 + (1 - 15) = 16 of 30.
    assert (thirty.numerator, thirty.denominator) == (16, 30)
    # A full February counts 30 under 30/360: (3 - 2) * 30 + (1 - 1).
    assert prorate(period, period.start, period.end, THIRTY, MONTHLY).numerator == 30


def test_february_with_29_days() -> None:
    period = period_at(date(2028, 2, 1), MONTHLY, 0, "UTC")
    exact = prorate(period, utc(2028, 2, 15), period.end, DAYS, MONTHLY)
    # Feb 15..29 inclusive = 15 of 29 days.
    assert (exact.numerator, exact.denominator) == (15, 29)
    thirty = prorate(period, utc(2028, 2, 15), period.end, THIRTY, MONTHLY)
    # Same dates as in 2027, so the same 30/360 count: 16 of 30.
    assert (thirty.numerator, thirty.denominator) == (16, 30)
    seconds = prorate(period, utc(2028, 2, 15), period.end, SECONDS, MONTHLY)
    # 15 days * 86400 = 1_296_000 of 29 * 86400 = 2_505_600.
    assert (seconds.numerator, seconds.denominator) == (1_296_000, 2_505_600)


# --- full periods -----------------------------------------------------------------------------

FULL_PERIOD_CASES = [
    (date(2026, 1, 1), MONTHLY, 0, NEW_YORK),
    (date(2026, 1, 1), MONTHLY, 2, NEW_YORK),  # March, 1 hour short
    (date(2026, 1, 31), MONTHLY, 0, "UTC"),  # Jan 31 to Feb 28: raw 30/360 count is 28
    (date(2026, 1, 31), MONTHLY, 1, "UTC"),  # Feb 28 to Mar 31: raw 30/360 count is 32
    (date(2028, 1, 30), MONTHLY, 1, "Europe/Berlin"),  # Feb 29 to Mar 30 in a leap year
    (date(2026, 1, 1), QUARTERLY, 0, "Asia/Tokyo"),
    (date(2026, 1, 31), EVERY_3_MONTHS, 0, "UTC"),
    (date(2028, 2, 29), YEARLY, 0, NEW_YORK),
    (date(2026, 3, 2), WEEKLY, 0, NEW_YORK),  # the week with the DST change
    (date(2026, 3, 8), DAILY, 0, NEW_YORK),  # the 23-hour day
]


@pytest.mark.parametrize(("anchor", "interval", "index", "timezone"), FULL_PERIOD_CASES)
@pytest.mark.parametrize("policy", list(ProrationPolicy))
def test_a_full_period_is_full_under_every_policy(
    anchor: date, interval: Interval, index: int, timezone: str, policy: ProrationPolicy
) -> None:
    period = period_at(anchor, interval, index, timezone)
    fraction = prorate(period, period.start, period.end, policy, interval)
    assert fraction.is_full
    assert fraction.numerator == fraction.denominator
    assert fraction.apply(Decimal("49.99")) == Decimal("49.99")
    # A window wider than the period is clipped to it.
    wider = prorate(
        period, period.start - timedelta(days=400), period.end + timedelta(days=3), policy, interval
    )
    assert wider.is_full
    assert (wider.used_from, wider.used_to) == (period.start, period.end)


# --- DST under EXACT_SECONDS ------------------------------------------------------------------


def test_the_spring_forward_day_has_23_hours() -> None:
    march = period_at(date(2026, 1, 1), MONTHLY, 2, NEW_YORK)
    day = prorate(march, ny(2026, 3, 8), ny(2026, 3, 9), SECONDS, MONTHLY)
    # Mar 8 00:00 EST (05:00 UTC) to Mar 9 00:00 EDT (04:00 UTC): 23 h = 82_800 s.
    # March: 31 * 86_400 - 3_600 = 2_674_800 s.
    assert (day.numerator, day.denominator) == (82_800, 2_674_800)
    assert day.describe() == "82800/2674800 seconds of 2026-03-01 to 2026-03-31 (exact seconds)"
    # Under exact days the same window is simply one day of 31.
    assert prorate(march, ny(2026, 3, 8), ny(2026, 3, 9), DAYS, MONTHLY).numerator == 1
    # As a daily period of its own, the day is 82_800 of 82_800 seconds.
    daily = period_at(date(2026, 3, 8), DAILY, 0, NEW_YORK)
    whole_day = prorate(daily, daily.start, daily.end, SECONDS, DAILY)
    assert (whole_day.numerator, whole_day.denominator) == (82_800, 82_800)


def test_the_fall_back_day_has_25_hours() -> None:
    # US DST ended on Sunday 2026-11-01: Nov 1 00:00 EDT (04:00 UTC) to Nov 2 00:00 EST
    # (05:00 UTC) is 25 h = 90_000 s.
    daily = period_at(date(2026, 11, 1), DAILY, 0, NEW_YORK)
    fraction = prorate(daily, daily.start, ny(2026, 11, 1, 12), SECONDS, DAILY)
    # Noon EST (after the change) is 17:00 UTC, 13 h = 46_800 s after the start.
    assert (fraction.numerator, fraction.denominator) == (46_800, 90_000)


# --- quarters and longer ----------------------------------------------------------------------


@pytest.mark.parametrize("interval", [QUARTERLY, EVERY_3_MONTHS])
def test_thirty_day_month_quarter(interval: Interval) -> None:
    period = period_at(date(2026, 1, 1), interval, 0, "UTC")
    fraction = prorate(period, utc(2026, 2, 15, 9), period.end, THIRTY, interval)
    # Denominator 3 * 30 = 90. 30/360 from Feb 15 to Apr 1 = (4 - 2) * 30 + (1 - 15) = 46.
    assert (fraction.numerator, fraction.denominator) == (46, 90)
    exact = prorate(period, utc(2026, 2, 15, 9), period.end, DAYS, interval)
    # Feb 15..28 (14) + March (31) = 45 days of Jan 31 + Feb 28 + Mar 31 = 90.
    assert (exact.numerator, exact.denominator) == (45, 90)


def test_thirty_day_month_year() -> None:
    period = period_at(date(2026, 1, 1), YEARLY, 0, "UTC")
    fraction = prorate(period, utc(2026, 7, 1), period.end, THIRTY, YEARLY)
    # 12 * 30 = 360; Jul 1 to Jan 1 next year = 360 + (1 - 7) * 30 + 0 = 180.
    assert (fraction.numerator, fraction.denominator) == (180, 360)


def test_thirty_day_month_with_an_anchor_on_the_31st() -> None:
    # Anchor Jan 31: period 1 runs Feb 28 to Mar 31 (31 local days).
    period = period_at(date(2026, 1, 31), MONTHLY, 1, "UTC")
    fraction = prorate(period, utc(2026, 3, 15), period.end, THIRTY, MONTHLY)
    # 30/360 position of Mar 15 from Feb 28: (3 - 2) * 30 + (15 - 28) = 17, so 30 - 17 = 13.
    assert (fraction.numerator, fraction.denominator) == (13, 30)
    exact = prorate(period, utc(2026, 3, 15), period.end, DAYS, MONTHLY)
    # Mar 15..30 inclusive = 16 days of 31.
    assert (exact.numerator, exact.denominator) == (16, 31)


def test_thirty_day_month_falls_back_to_exact_days_for_weeks_and_days() -> None:
    week = period_at(date(2026, 3, 2), WEEKLY, 0, NEW_YORK)
    fraction = prorate(week, ny(2026, 3, 4, 8), week.end, THIRTY, WEEKLY)
    # Mar 4..8 inclusive = 5 of 7 days; the fraction records the policy actually applied.
    assert (fraction.numerator, fraction.denominator) == (5, 7)
    assert fraction.policy is DAYS
    assert fraction.describe() == "5/7 days of 2026-03-02 to 2026-03-08 (exact days)"


# --- trials and odd windows -------------------------------------------------------------------


def test_trial_ending_mid_period() -> None:
    period = january_2026_new_york()
    trial_end = ny(2026, 1, 10, 9, 30)
    # Exact days: Jan 10..31 inclusive = 22 of 31.
    assert prorate(period, trial_end, period.end, DAYS, MONTHLY).numerator == 22
    # 30/360: Jan 10 to Feb 1 = 30 + (1 - 10) = 21 of 30.
    assert prorate(period, trial_end, period.end, THIRTY, MONTHLY).numerator == 21
    # Seconds: Jan 10 09:30 to Feb 1 00:00 = 21 days 14.5 hours = 1_814_400 + 52_200.
    assert prorate(period, trial_end, period.end, SECONDS, MONTHLY).numerator == 1_866_600


def test_trial_ending_after_the_period_uses_nothing() -> None:
    period = january_2026_new_york()
    for policy in ProrationPolicy:
        fraction = prorate(period, ny(2026, 2, 10), ny(2026, 3, 1), policy, MONTHLY)
        assert fraction.numerator == 0
        assert (fraction.used_from, fraction.used_to) == (period.end, period.end)
        assert fraction.apply(Decimal("30.00")) == 0


def test_empty_and_reversed_windows_use_nothing() -> None:
    period = january_2026_new_york()
    for policy in ProrationPolicy:
        empty = prorate(period, ny(2026, 1, 5), ny(2026, 1, 5), policy, MONTHLY)
        reversed_window = prorate(period, ny(2026, 1, 20), ny(2026, 1, 5), policy, MONTHLY)
        assert empty.numerator == reversed_window.numerator == 0
        assert reversed_window.used_from == reversed_window.used_to == ny(2026, 1, 20)


def test_same_day_start_and_stop_counts_no_day() -> None:
    # A change at 09:00 and another at 17:00 on the same local date: local dates are equal.
    period = january_2026_new_york()
    fraction = prorate(period, ny(2026, 1, 5, 9), ny(2026, 1, 5, 17), DAYS, MONTHLY)
    assert fraction.numerator == 0


# --- apply ------------------------------------------------------------------------------------


def test_apply_multiplies_then_divides_without_rounding() -> None:
    period = january_2026_new_york()
    sixteen = prorate(period, ny(2026, 1, 16, 13), period.end, DAYS, MONTHLY)
    # 31.00 * 16 / 31 = 16.00 exactly.
    assert sixteen.apply(Decimal("31.00")) == Decimal("16.00")
    # 10 * 16 / 31 = 160 / 31 = 5.161290322580645 161290322580645... (the block "161290322580645"
    # repeats). It does not terminate, so it is cut off far below a cent, not at a cent.
    share = sixteen.apply(Decimal("10"))
    assert str(share).startswith("5.16129032258064516129032258064516129032")
    assert len(share.as_tuple().digits) >= 40
    # Not rounded to cents: 10.00 * 15 / 31 = 4.8387..., which would be 4.84 at cents.
    fifteen = prorate(period, period.start, ny(2026, 1, 16, 13), DAYS, MONTHLY)
    assert str(fifteen.apply(Decimal("10.00"))).startswith("4.83870967741935483870967741935")
    # More digits than the default 28-digit context, still exact: 3100000000000000000000000000.31
    # / 31 = 100000000000000000000000000.01, times 16 = 1600000000000000000000000000.16.
    big = sixteen.apply(Decimal("3100000000000000000000000000.31"))
    assert big == Decimal("1600000000000000000000000000.16")
    # Exact results keep the amount's places: 30.00 * 15 / 30 = 15.00.
    half = prorate(period, period.start, ny(2026, 1, 16), THIRTY, MONTHLY)
    assert str(half.apply(Decimal("30.00"))) == "15.00"


def test_apply_refuses_floats() -> None:
    fraction = prorate(january_2026_new_york(), ny(2026, 1, 16), ny(2026, 2, 1), DAYS, MONTHLY)
    with pytest.raises(MoneyError):
        fraction.apply(0.1)  # type: ignore[arg-type]


# --- validation -------------------------------------------------------------------------------


def test_naive_datetimes_are_rejected_by_name() -> None:
    period = january_2026_new_york()
    with pytest.raises(ValueError, match="used_from"):
        prorate(period, datetime(2026, 1, 5), period.end, DAYS, MONTHLY)
    with pytest.raises(ValueError, match="used_to"):
        prorate(period, period.start, datetime(2026, 1, 5), DAYS, MONTHLY)


def test_policy_and_interval_are_checked() -> None:
    period = january_2026_new_york()
    assert prorate(period, period.start, period.end, "exact_days", MONTHLY).policy is DAYS  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        prorate(period, period.start, period.end, "actual/365", MONTHLY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        prorate(period, period.start, period.end, THIRTY, QUARTERLY)
    with pytest.raises(ValueError, match="interval"):
        prorate(period, period.start, period.end, DAYS, WEEKLY)


def test_fraction_validation() -> None:
    period = january_2026_new_york()
    with pytest.raises(ValueError, match="numerator"):
        ProrationFraction(32, 31, "days", DAYS, period.start, period.end, period)
    with pytest.raises(ValueError, match="denominator"):
        ProrationFraction(0, 0, "days", DAYS, period.start, period.end, period)
    with pytest.raises(ValueError, match="unit"):
        ProrationFraction(1, 31, "hours", DAYS, period.start, period.end, period)


def test_a_period_without_instants_cannot_be_prorated() -> None:
    # Samoa skipped 2011-12-30: its daily period has a date but not a single instant.
    lost = period_at(date(2011, 12, 30), DAILY, 0, "Pacific/Apia")
    for policy in ProrationPolicy:
        with pytest.raises(ValueError, match="period"):
            prorate(lost, lost.start, lost.end, policy, DAILY)


# --- properties -------------------------------------------------------------------------------

ZONES = [
    "UTC",
    NEW_YORK,
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "America/Havana",
]
INTERVALS = [DAILY, WEEKLY, MONTHLY, EVERY_3_MONTHS, QUARTERLY, YEARLY]
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def periods(draw: st.DrawFn) -> tuple[BillingPeriod, Interval]:
    anchor = draw(st.dates(min_value=date(1995, 1, 1), max_value=date(2035, 12, 31)))
    interval = draw(st.sampled_from(INTERVALS))
    timezone = draw(st.sampled_from(ZONES))
    index = draw(st.integers(min_value=-24, max_value=24))
    return period_at(anchor, interval, index, timezone), interval


def instant_in(draw: st.DrawFn, period: BillingPeriod) -> datetime:
    span = period.end - period.start
    offset = draw(st.timedeltas(min_value=timedelta(0), max_value=span))
    return period.start + offset


@PROPERTY_SETTINGS
@given(data=st.data(), drawn=periods(), policy=st.sampled_from(list(ProrationPolicy)))
def test_splitting_a_period_gives_parts_that_add_up(
    data: st.DataObject, drawn: tuple[BillingPeriod, Interval], policy: ProrationPolicy
) -> None:
    period, interval = drawn
    split = instant_in(data.draw, period)
    before = prorate(period, period.start, split, policy, interval)
    after = prorate(period, split, period.end, policy, interval)
    assert before.denominator == after.denominator
    assert before.numerator + after.numerator == before.denominator


@PROPERTY_SETTINGS
@given(data=st.data(), drawn=periods(), policy=st.sampled_from(list(ProrationPolicy)))
def test_splitting_a_period_three_ways_adds_up(
    data: st.DataObject, drawn: tuple[BillingPeriod, Interval], policy: ProrationPolicy
) -> None:
    period, interval = drawn
    first, second = sorted([instant_in(data.draw, period), instant_in(data.draw, period)])
    parts = [
        prorate(period, period.start, first, policy, interval),
        prorate(period, first, second, policy, interval),
        prorate(period, second, period.end, policy, interval),
    ]
    assert sum(part.numerator for part in parts) == parts[0].denominator


@PROPERTY_SETTINGS
@given(
    drawn=periods(),
    policy=st.sampled_from(list(ProrationPolicy)),
    used_from=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    length=st.timedeltas(min_value=timedelta(days=-60), max_value=timedelta(days=500)),
)
def test_numerator_stays_within_the_denominator(
    drawn: tuple[BillingPeriod, Interval],
    policy: ProrationPolicy,
    used_from: datetime,
    length: timedelta,
) -> None:
    period, interval = drawn
    assume(used_from + length < datetime(2041, 1, 1, tzinfo=UTC))
    fraction = prorate(period, used_from, used_from + length, policy, interval)
    assert 0 <= fraction.numerator <= fraction.denominator
    assert period.start <= fraction.used_from <= fraction.used_to <= period.end
