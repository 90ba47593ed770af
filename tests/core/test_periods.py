"""Billing intervals, boundaries and periods, with expectations worked out by hand."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core import periods
from tallybook.core.periods import (
    BillingPeriod,
    Interval,
    IntervalUnit,
    boundary_date,
    calendar_anchor,
    local_date,
    local_midnight,
    period_at,
    period_containing,
    periods_between,
)

MONTHLY = Interval(IntervalUnit.MONTH)
QUARTERLY = Interval(IntervalUnit.QUARTER)
YEARLY = Interval(IntervalUnit.YEAR)
WEEKLY = Interval(IntervalUnit.WEEK)
DAILY = Interval(IntervalUnit.DAY)
EVERY_3_MONTHS = Interval(IntervalUnit.MONTH, 3)

NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
TOKYO = "Asia/Tokyo"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- Interval ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("month", Interval(IntervalUnit.MONTH, 1)),
        ("monthly", Interval(IntervalUnit.MONTH, 1)),
        ("quarter", Interval(IntervalUnit.QUARTER, 1)),
        ("year", Interval(IntervalUnit.YEAR, 1)),
        ("annually", Interval(IntervalUnit.YEAR, 1)),
        ("week", Interval(IntervalUnit.WEEK, 1)),
        ("day", Interval(IntervalUnit.DAY, 1)),
        ("3 months", Interval(IntervalUnit.MONTH, 3)),
        ("every 3 months", Interval(IntervalUnit.MONTH, 3)),
        ("  Every  3   Months ", Interval(IntervalUnit.MONTH, 3)),
        ("2 weeks", Interval(IntervalUnit.WEEK, 2)),
        ("every month", Interval(IntervalUnit.MONTH, 1)),
        ("1 year", Interval(IntervalUnit.YEAR, 1)),
    ],
)
def test_interval_parse(text: str, expected: Interval) -> None:
    assert Interval.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "fortnight", "every", "3", "-1 months", "1.5 months", "3 monthly", "month s"]
)
def test_interval_parse_rejects_unreadable_text(text: str) -> None:
    with pytest.raises(ValueError, match="interval: cannot read"):
        Interval.parse(text)


def test_interval_parse_rejects_zero_count() -> None:
    with pytest.raises(ValueError, match="interval_count"):
        Interval.parse("0 months")


@pytest.mark.parametrize("count", [0, -1, True, 1.0, "3"])
def test_interval_count_must_be_a_positive_whole_number(count: object) -> None:
    with pytest.raises(ValueError, match="interval_count"):
        Interval(IntervalUnit.MONTH, count)  # type: ignore[arg-type]


def test_interval_unit_is_checked_and_coerced() -> None:
    assert Interval("month", 2) == Interval(IntervalUnit.MONTH, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval_unit"):
        Interval("fortnight")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("interval", "label", "months"),
    [
        (MONTHLY, "monthly", 1),
        (QUARTERLY, "quarterly", 3),
        (YEARLY, "yearly", 12),
        (WEEKLY, "weekly", None),
        (DAILY, "daily", None),
        (EVERY_3_MONTHS, "every 3 months", 3),
        (Interval(IntervalUnit.QUARTER, 2), "every 2 quarters", 6),
        (Interval(IntervalUnit.YEAR, 2), "every 2 years", 24),
        (Interval(IntervalUnit.WEEK, 2), "every 2 weeks", None),
    ],
)
def test_interval_label_months_and_round_trip(
    interval: Interval, label: str, months: int | None
) -> None:
    assert interval.label() == label
    assert interval.months() == months
    assert Interval.parse(interval.label()) == interval


# --- boundary_date ----------------------------------------------------------------------------


def test_anchor_on_31st_clips_to_february_and_returns_in_a_common_year() -> None:
    anchor = date(2027, 1, 31)
    # 2027 is not a leap year (2027 % 4 == 3): February has 28 days.
    assert [boundary_date(anchor, MONTHLY, i) for i in range(6)] == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
        date(2027, 6, 30),
    ]


def test_anchor_on_31st_clips_to_february_29_in_a_leap_year() -> None:
    anchor = date(2028, 1, 31)
    # 2028 % 4 == 0 and 2028 % 100 != 0: leap year, February has 29 days.
    assert boundary_date(anchor, MONTHLY, 1) == date(2028, 2, 29)
    assert boundary_date(anchor, MONTHLY, 2) == date(2028, 3, 31)


def test_anchor_on_30th() -> None:
    anchor = date(2026, 1, 30)
    assert [boundary_date(anchor, MONTHLY, i) for i in range(1, 5)] == [
        date(2026, 2, 28),
        date(2026, 3, 30),
        date(2026, 4, 30),
        date(2026, 5, 30),
    ]


def test_anchor_on_29th() -> None:
    # Jan 29 anchor: Feb 29 exists in 2028 but not in 2027.
    assert boundary_date(date(2028, 1, 29), MONTHLY, 1) == date(2028, 2, 29)
    assert boundary_date(date(2027, 1, 29), MONTHLY, 1) == date(2027, 2, 28)
    assert boundary_date(date(2027, 1, 29), MONTHLY, 2) == date(2027, 3, 29)
    # Anchored on Feb 29 itself: the 29th every month, Feb 28 in the next (common) year.
    anchor = date(2028, 2, 29)
    assert boundary_date(anchor, MONTHLY, 1) == date(2028, 3, 29)
    assert boundary_date(anchor, MONTHLY, 12) == date(2029, 2, 28)
    assert boundary_date(anchor, MONTHLY, 13) == date(2029, 3, 29)


@pytest.mark.parametrize("anchor", [date(2026, 1, 31), date(2025, 11, 30), date(2028, 2, 29)])
def test_quarter_and_every_3_months_are_identical(anchor: date) -> None:
    for index in range(-8, 9):
        assert boundary_date(anchor, QUARTERLY, index) == boundary_date(
            anchor, EVERY_3_MONTHS, index
        )
    # Spot values: Jan 31 + 3 months = Apr 30 (April has 30 days); + 6 = Jul 31; - 3 = Oct 31.
    assert boundary_date(date(2026, 1, 31), QUARTERLY, 1) == date(2026, 4, 30)
    assert boundary_date(date(2026, 1, 31), QUARTERLY, 2) == date(2026, 7, 31)
    assert boundary_date(date(2026, 1, 31), QUARTERLY, -1) == date(2025, 10, 31)


def test_yearly_anchor_on_february_29() -> None:
    anchor = date(2028, 2, 29)
    assert [boundary_date(anchor, YEARLY, i) for i in range(-1, 5)] == [
        date(2027, 2, 28),
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),  # 2032 is the next leap year
    ]


def test_weekly_and_daily_add_days() -> None:
    anchor = date(2026, 1, 1)
    assert boundary_date(anchor, WEEKLY, 1) == date(2026, 1, 8)
    # 52 weeks = 364 days; 2026 has 365 days, so one day short of 2027-01-01.
    assert boundary_date(anchor, WEEKLY, 52) == date(2026, 12, 31)
    # Every 2 weeks, third boundary: 3 * 14 = 42 days = Jan 1 + 31 (to Feb 1) + 11 = Feb 12.
    assert boundary_date(anchor, Interval(IntervalUnit.WEEK, 2), 3) == date(2026, 2, 12)
    # 2028 is a leap year: Feb 28 + 1 day = Feb 29.
    assert boundary_date(date(2028, 2, 28), DAILY, 1) == date(2028, 2, 29)


def test_negative_index() -> None:
    anchor = date(2026, 3, 31)
    assert boundary_date(anchor, MONTHLY, -1) == date(2026, 2, 28)
    assert boundary_date(anchor, MONTHLY, -2) == date(2026, 1, 31)
    assert boundary_date(anchor, MONTHLY, -13) == date(2025, 2, 28)
    assert boundary_date(anchor, YEARLY, -2) == date(2024, 3, 31)
    assert boundary_date(anchor, WEEKLY, -1) == date(2026, 3, 24)
    assert boundary_date(date(2026, 1, 1), DAILY, -1) == date(2025, 12, 31)


def test_boundary_date_rejects_datetimes_and_out_of_range() -> None:
    with pytest.raises(TypeError, match="anchor"):
        boundary_date(datetime(2026, 1, 1, tzinfo=UTC), MONTHLY, 1)
    with pytest.raises(ValueError, match="index"):
        boundary_date(date(9999, 12, 1), MONTHLY, 1)
    with pytest.raises(ValueError, match="index"):
        boundary_date(date(1, 1, 1), DAILY, -1)


# --- local_midnight / local_date --------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "timezone", "expected"),
    [
        (date(2026, 1, 15), NEW_YORK, utc(2026, 1, 15, 5)),  # EST, UTC-5
        (date(2026, 7, 15), NEW_YORK, utc(2026, 7, 15, 4)),  # EDT, UTC-4
        (date(2026, 1, 15), BERLIN, utc(2026, 1, 14, 23)),  # CET, UTC+1
        (date(2026, 7, 15), BERLIN, utc(2026, 7, 14, 22)),  # CEST, UTC+2
        (date(2026, 1, 1), TOKYO, utc(2025, 12, 31, 15)),  # JST, UTC+9
        (date(2026, 1, 1), "UTC", utc(2026, 1, 1)),
        (date(2026, 1, 1), "Asia/Kolkata", utc(2025, 12, 31, 18, 30)),  # UTC+5:30
    ],
)
def test_local_midnight(day: date, timezone: str, expected: datetime) -> None:
    result = local_midnight(day, timezone)
    assert result == expected
    assert result.tzinfo is UTC


def test_local_midnight_skipped_by_dst_is_the_first_instant_after_the_gap() -> None:
    # Brazil began DST at 00:00 on 2018-11-04: clocks went from 23:59:59 -03 to 01:00 -02.
    # The jump happened at 00:00 -03 = 03:00 UTC.
    assert local_midnight(date(2018, 11, 4), "America/Sao_Paulo") == utc(2018, 11, 4, 3)
    # Toronto, 1919-03-30 23:30 EST (-5) jumped to 00:30 EDT (-4): the 31st began at
    # 23:30 + 5 h = 04:30 UTC, earlier than the 05:00 that reading 00:00 as EST would give.
    assert local_midnight(date(1919, 3, 31), "America/Toronto") == utc(1919, 3, 31, 4, 30)
    # Samoa skipped 2011-12-30 entirely: 23:59:59 -10 on the 29th became 00:00 +14 on the
    # 31st at 10:00 UTC, so both dates begin at that instant.
    assert local_midnight(date(2011, 12, 30), "Pacific/Apia") == utc(2011, 12, 30, 10)
    assert local_midnight(date(2011, 12, 31), "Pacific/Apia") == utc(2011, 12, 30, 10)


def test_local_midnight_repeated_by_dst_is_the_first_occurrence() -> None:
    # Cuba left DST at 01:00 CDT (-4) on 2024-11-03, back to 00:00 CST (-5): midnight happened
    # at 04:00 UTC and again at 05:00 UTC.
    assert local_midnight(date(2024, 11, 3), "America/Havana") == utc(2024, 11, 3, 4)


def test_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        local_midnight(date(2026, 1, 1), "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="timezone"):
        local_midnight(date(2026, 1, 1), "../etc/passwd")


def test_local_date() -> None:
    # 03:00 UTC on Jan 1 is 22:00 EST on Dec 31 and 12:00 JST on Jan 1.
    assert local_date(utc(2026, 1, 1, 3), NEW_YORK) == date(2025, 12, 31)
    assert local_date(utc(2026, 1, 1, 3), TOKYO) == date(2026, 1, 1)
    # 00:30 CEST on June 1 is 18:30 EDT on May 31.
    just_after_midnight_in_berlin = datetime(2026, 6, 1, 0, 30, tzinfo=ZoneInfo(BERLIN))
    assert local_date(just_after_midnight_in_berlin, NEW_YORK) == date(2026, 5, 31)


def test_naive_datetimes_are_rejected_by_name() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="instant"):
        local_date(naive, "UTC")
    with pytest.raises(ValueError, match="instant"):
        period_containing(date(2026, 1, 1), MONTHLY, naive, "UTC")
    with pytest.raises(ValueError, match="start"):
        list(periods_between(date(2026, 1, 1), MONTHLY, naive, utc(2026, 2, 1), "UTC"))
    with pytest.raises(ValueError, match="end"):
        list(periods_between(date(2026, 1, 1), MONTHLY, utc(2026, 1, 1), naive, "UTC"))
    with pytest.raises(ValueError, match="instant"):
        period_at(date(2026, 1, 1), MONTHLY, 0, "UTC").contains(naive)


# --- period_at --------------------------------------------------------------------------------


def test_period_across_the_march_dst_change_in_new_york() -> None:
    # US DST began Sunday 2026-03-08. March starts in EST (UTC-5) and ends in EDT (UTC-4).
    period = period_at(date(2026, 1, 1), MONTHLY, 2, NEW_YORK)
    assert period.start == utc(2026, 3, 1, 5)
    assert period.end == utc(2026, 4, 1, 4)
    assert (period.start_date, period.end_date) == (date(2026, 3, 1), date(2026, 4, 1))
    assert period.end - period.start == timedelta(days=31) - timedelta(hours=1)
    assert period.days() == 31
    assert period.index == 2
    assert period.timezone == NEW_YORK
    assert period.label() == "2026-03-01 to 2026-03-31"


def test_thirty_day_period_across_the_march_dst_change_is_one_hour_short() -> None:
    # Anchor Jan 30: period 1 runs Feb 28 (EST) to Mar 30 (EDT), 30 local days.
    period = period_at(date(2026, 1, 30), MONTHLY, 1, NEW_YORK)
    assert (period.start_date, period.end_date) == (date(2026, 2, 28), date(2026, 3, 30))
    assert period.start == utc(2026, 2, 28, 5)
    assert period.end == utc(2026, 3, 30, 4)
    assert period.days() == 30
    assert period.end - period.start == timedelta(days=30) - timedelta(hours=1)


def test_period_across_the_november_dst_change_in_new_york_is_one_hour_long() -> None:
    # US DST ended Sunday 2026-11-01: November starts in EDT (UTC-4) and ends in EST (UTC-5).
    period = period_at(date(2026, 1, 1), MONTHLY, 10, NEW_YORK)
    assert period.start == utc(2026, 11, 1, 4)
    assert period.end == utc(2026, 12, 1, 5)
    assert period.end - period.start == timedelta(days=30, hours=1)


def test_period_in_berlin_across_its_dst_change() -> None:
    # EU DST began Sunday 2026-03-29: Mar 1 00:00 CET = Feb 28 23:00 UTC,
    # Apr 1 00:00 CEST = Mar 31 22:00 UTC.
    period = period_at(date(2026, 3, 1), MONTHLY, 0, BERLIN)
    assert period.start == utc(2026, 2, 28, 23)
    assert period.end == utc(2026, 3, 31, 22)
    assert period.end - period.start == timedelta(days=31) - timedelta(hours=1)


def test_period_in_tokyo_and_utc() -> None:
    tokyo = period_at(date(2026, 1, 1), MONTHLY, 0, TOKYO)
    assert tokyo.start == utc(2025, 12, 31, 15)
    assert tokyo.end == utc(2026, 1, 31, 15)
    # Anchor Jan 31 in UTC: period 1 is Feb 28 to Mar 31, 31 days long.
    plain = period_at(date(2026, 1, 31), MONTHLY, 1, "UTC")
    assert (plain.start, plain.end) == (utc(2026, 2, 28), utc(2026, 3, 31))
    assert plain.days() == 31
    assert plain.label() == "2026-02-28 to 2026-03-30"


def test_billing_period_validation() -> None:
    with pytest.raises(ValueError, match="start"):
        BillingPeriod(
            datetime(2026, 1, 1), utc(2026, 2, 1), date(2026, 1, 1), date(2026, 2, 1), "UTC", 0
        )
    with pytest.raises(ValueError, match="ends before it starts"):
        BillingPeriod(
            utc(2026, 2, 1), utc(2026, 1, 1), date(2026, 1, 1), date(2026, 2, 1), "UTC", 0
        )
    tokyo = ZoneInfo(TOKYO)
    period = BillingPeriod(
        datetime(2026, 1, 1, tzinfo=tokyo),
        datetime(2026, 2, 1, tzinfo=tokyo),
        date(2026, 1, 1),
        date(2026, 2, 1),
        TOKYO,
        0,
    )
    assert period.start.tzinfo is UTC
    assert period == period_at(date(2026, 1, 1), MONTHLY, 0, TOKYO)


# --- period_containing ------------------------------------------------------------------------


def test_instant_on_a_boundary_belongs_to_the_later_period() -> None:
    anchor = date(2026, 1, 1)
    boundary = utc(2026, 3, 1, 5)  # March 1 00:00 EST
    assert period_containing(anchor, MONTHLY, boundary, NEW_YORK).index == 2
    just_before = boundary - timedelta(microseconds=1)
    assert period_containing(anchor, MONTHLY, just_before, NEW_YORK).index == 1
    # Tokyo: Feb 1 00:00 JST is Jan 31 15:00 UTC.
    assert period_containing(anchor, MONTHLY, utc(2026, 1, 31, 15), TOKYO).index == 1
    assert period_containing(anchor, MONTHLY, utc(2026, 1, 31, 14, 59, 59), TOKYO).index == 0


def test_period_containing_uses_the_customers_local_date() -> None:
    # 2026-04-01 02:00 UTC is still March 31 (22:00 EDT) in New York but April 1 in Berlin.
    instant = utc(2026, 4, 1, 2)
    assert period_containing(date(2026, 1, 1), MONTHLY, instant, NEW_YORK).start_date == date(
        2026, 3, 1
    )
    assert period_containing(date(2026, 1, 1), MONTHLY, instant, BERLIN).start_date == date(
        2026, 4, 1
    )


def test_period_containing_ten_years_after_the_anchor() -> None:
    # Anchor 2016-01-31; 120 months later is 2026-01-31 (index 120), index 121 starts on
    # 2026-02-28 (clipped) and index 122 on 2026-03-31. March 15 lies in index 121.
    period = period_containing(date(2016, 1, 31), MONTHLY, utc(2026, 3, 15, 12), BERLIN)
    assert period.index == 121
    assert (period.start_date, period.end_date) == (date(2026, 2, 28), date(2026, 3, 31))
    # 2016-01-04 + 522 weeks (3654 days) = 2026-01-05; the instant is 3 days later.
    weekly = period_containing(date(2016, 1, 4), WEEKLY, utc(2026, 1, 8, 12), "UTC")
    assert weekly.index == 522
    assert weekly.start_date == date(2026, 1, 5)


def test_period_containing_before_the_anchor() -> None:
    anchor = date(2026, 3, 31)
    # Index -1 starts one month earlier, clipped to Feb 28; index -2 starts on Jan 31.
    march = period_containing(anchor, MONTHLY, utc(2026, 3, 10), "UTC")
    assert march.index == -1
    assert (march.start_date, march.end_date) == (date(2026, 2, 28), date(2026, 3, 31))
    february = period_containing(anchor, MONTHLY, utc(2026, 2, 10), "UTC")
    assert february.index == -2
    assert (february.start_date, february.end_date) == (date(2026, 1, 31), date(2026, 2, 28))


def test_period_containing_does_not_scan_from_the_anchor(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_boundary_date = periods.boundary_date

    def counting(*args: object) -> date:
        nonlocal calls
        calls += 1
        return real_boundary_date(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "boundary_date", counting)
    for interval in (MONTHLY, QUARTERLY, YEARLY, WEEKLY, DAILY, EVERY_3_MONTHS):
        calls = 0
        period = period_containing(date(1901, 1, 31), interval, utc(2099, 12, 25), BERLIN)
        assert period.contains(utc(2099, 12, 25))
        assert calls <= 8, (interval, calls)


# --- periods_between --------------------------------------------------------------------------


def test_periods_between_lists_every_overlapping_period() -> None:
    # Anchor Jan 31 in Berlin. The window starts Jan 15 00:00 UTC (01:00 CET, inside the period
    # that began Dec 31) and ends Apr 30 22:00 UTC = Apr 30 00:00 CEST, exactly the start of a
    # period, which therefore does not overlap.
    found = list(
        periods_between(date(2026, 1, 31), MONTHLY, utc(2026, 1, 15), utc(2026, 4, 29, 22), BERLIN)
    )
    assert [p.label() for p in found] == [
        "2025-12-31 to 2026-01-30",
        "2026-01-31 to 2026-02-27",
        "2026-02-28 to 2026-03-30",
        "2026-03-31 to 2026-04-29",
    ]
    assert [p.index for p in found] == [-1, 0, 1, 2]


def test_periods_between_empty_and_reversed_windows() -> None:
    anchor = date(2026, 1, 1)
    assert list(periods_between(anchor, MONTHLY, utc(2026, 2, 1), utc(2026, 2, 1), "UTC")) == []
    one_second = periods_between(anchor, MONTHLY, utc(2026, 2, 1), utc(2026, 2, 1, 0, 0, 1), "UTC")
    assert [p.index for p in one_second] == [1]
    # Raised when called, not when first iterated.
    with pytest.raises(ValueError, match="end"):
        periods_between(anchor, MONTHLY, utc(2026, 2, 1), utc(2026, 1, 1), "UTC")


# --- calendar_anchor --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (MONTHLY, date(2026, 5, 1)),
        (EVERY_3_MONTHS, date(2026, 5, 1)),
        (QUARTERLY, date(2026, 4, 1)),  # May is in Q2, which starts in April
        (Interval(IntervalUnit.QUARTER, 2), date(2026, 4, 1)),
        (YEARLY, date(2026, 1, 1)),
        (WEEKLY, date(2026, 5, 17)),
        (DAILY, date(2026, 5, 17)),
    ],
)
def test_calendar_anchor(interval: Interval, expected: date) -> None:
    assert calendar_anchor(date(2026, 5, 17), interval) == expected


def test_calendar_anchor_quarters() -> None:
    starts = [calendar_anchor(date(2026, month, 10), QUARTERLY).month for month in range(1, 13)]
    assert starts == [1, 1, 1, 4, 4, 4, 7, 7, 7, 10, 10, 10]


# --- properties -------------------------------------------------------------------------------

ZONES = [
    "UTC",
    NEW_YORK,
    BERLIN,
    TOKYO,
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Sao_Paulo",  # DST used to start at midnight
    "America/Havana",  # DST ends by repeating midnight
    "Pacific/Apia",  # skipped a whole day in 2011
    "Pacific/Chatham",
]
INTERVALS = [
    DAILY,
    WEEKLY,
    Interval(IntervalUnit.DAY, 30),
    Interval(IntervalUnit.WEEK, 2),
    MONTHLY,
    EVERY_3_MONTHS,
    QUARTERLY,
    Interval(IntervalUnit.MONTH, 6),
    YEARLY,
]
anchors = st.dates(min_value=date(1995, 1, 1), max_value=date(2035, 12, 31))
instants = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@PROPERTY_SETTINGS
@given(
    anchor=anchors,
    interval=st.sampled_from(INTERVALS),
    timezone=st.sampled_from(ZONES),
    index=st.integers(min_value=-60, max_value=60),
)
def test_consecutive_periods_tile_time(
    anchor: date, interval: Interval, timezone: str, index: int
) -> None:
    this = period_at(anchor, interval, index, timezone)
    following = period_at(anchor, interval, index + 1, timezone)
    assert this.end == following.start
    assert this.end_date == following.start_date
    assert this.start <= this.end
    assert this.days() >= 1


@PROPERTY_SETTINGS
@given(
    anchor=anchors,
    interval=st.sampled_from(INTERVALS),
    timezone=st.sampled_from(ZONES),
    instant=instants,
)
def test_period_containing_contains_the_instant(
    anchor: date, interval: Interval, timezone: str, instant: datetime
) -> None:
    period = period_containing(anchor, interval, instant, timezone)
    assert period.contains(instant)
    assert period.start_date <= local_date(instant, timezone) < period.end_date
    assert period == period_at(anchor, interval, period.index, timezone)


@PROPERTY_SETTINGS
@given(
    anchor=anchors,
    interval=st.sampled_from(INTERVALS),
    timezone=st.sampled_from(ZONES),
    start=instants,
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
)
def test_periods_between_covers_the_window_exactly(
    anchor: date, interval: Interval, timezone: str, start: datetime, length: timedelta
) -> None:
    end = start + length
    found = list(periods_between(anchor, interval, start, end, timezone))
    if start == end:
        assert found == []
        return
    assert found[0].contains(start)
    assert found[-1].start < end <= found[-1].end
    for earlier, later in zip(found, found[1:], strict=False):
        # Consecutive, except that a period with no instants (Samoa's lost day) is skipped.
        assert earlier.end == later.start
        assert later.index > earlier.index


def test_samoas_skipped_day_is_an_empty_daily_period() -> None:
    # 2011-12-30 never happened in Samoa: 2011-12-29 24:00 (-10) was 2011-12-31 00:00 (+14),
    # at 2011-12-30 10:00 UTC. The daily period for the 30th has no instants at all.
    anchor = date(2011, 12, 1)
    lost = period_at(anchor, DAILY, 29, "Pacific/Apia")
    assert lost.start_date == date(2011, 12, 30)
    assert lost.start == lost.end == utc(2011, 12, 30, 10)
    found = period_containing(anchor, DAILY, utc(2011, 12, 30, 10), "Pacific/Apia")
    assert found.start_date == date(2011, 12, 31)
    window = periods_between(anchor, DAILY, utc(2011, 12, 30), utc(2011, 12, 31), "Pacific/Apia")
    assert [p.start_date for p in window] == [date(2011, 12, 29), date(2011, 12, 31)]
