"""Billable metrics: hand-computed readings, validation, fingerprints and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from decimal import localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.metering import Aggregation as A
from tallybook.core.metering import (
    Event,
    MeteringError,
    Metric,
    Reading,
    aggregate,
    clean_filters,
    fingerprint,
    property_number,
    property_text,
)

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)

API_CALLS = Metric("api_calls", "API calls", A.COUNT).validate()
STORAGE = Metric("storage_gb", "Storage", A.SUM, "gb").validate()
PEAK = Metric("peak_gb", "Peak storage", A.MAX, "gb").validate()
ACTIVE_USERS = Metric("active_users", "Active users", A.UNIQUE_COUNT, "user_id").validate()
SEATS = Metric("seats", "Seats", A.LATEST, "seats").validate()
GB_HOURS = Metric("gb_hours", "Disk", A.WEIGHTED_SUM, "gb").validate()
GB_DAYS = Metric("gb_days", "Disk", A.WEIGHTED_SUM, "gb", weighted_unit="day").validate()


def on(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def ev(transaction_id: str, when: datetime, **properties) -> Event:
    return Event(transaction_id, when, properties)


def reading(metric: Metric, events, start=JAN, end=FEB, **options) -> Reading:
    """The single reading of an ungrouped metric."""
    readings = aggregate(metric, events, start, end, **options)
    assert set(readings) == {()}
    return readings[()]


# --- count, sum, max ----------------------------------------------------------------------


def test_count_includes_the_period_start_and_excludes_its_end():
    events = [
        ev("t1", JAN - timedelta(microseconds=1)),  # last instant of December: out
        ev("t2", JAN),  # the start instant: in
        ev("t3", on(1, 15, 12)),
        ev("t4", FEB - timedelta(microseconds=1)),  # last instant of January: in
        ev("t5", FEB),  # the end instant belongs to February: out
    ]
    # t2 + t3 + t4 = 3 events
    assert reading(API_CALLS, events) == Reading(D(3), 3)


def test_sum_adds_ints_floats_and_numeric_strings_exactly():
    events = [ev("t1", on(1, 2), gb="0.1"), ev("t2", on(1, 3), gb=0.2), ev("t3", on(1, 4), gb=3)]
    # "0.1" + 0.2 + 3 = 3.3 exactly: the float is read as the text the client wrote
    total = reading(STORAGE, events)
    assert total == Reading(D("3.3"), 3)
    assert str(total.value) == "3.3"
    more = [
        ev("t1", on(1, 5), gb=" 1.0005 "),
        ev("t2", on(1, 6), gb="-0.0005"),
        ev("t3", FEB, gb=9),
    ]
    # 1.0005 - 0.0005 = 1.0000; the event on 1 Feb is next period's
    assert reading(STORAGE, more) == Reading(D("1.0000"), 2)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, D(3)),
        (0.2, D("0.2")),
        (" 1.50 ", D("1.50")),
        ("-2e3", D(-2000)),
        ("lots", None),
        (True, None),
        (None, None),
        ("NaN", None),
        (float("inf"), None),
        ([1], None),
    ],
)
def test_property_number_reads_json_numbers_and_numeric_text_only(value, number):
    assert property_number(value) == number


def test_max_is_the_largest_value_in_the_period_even_when_negative():
    events = [ev("t1", on(1, 1), gb=7), ev("t2", on(1, 2), gb="12.5"), ev("t3", FEB, gb=100)]
    # max(7, 12.5) = 12.5; the 100 on 1 Feb is out of the period
    assert reading(PEAK, events) == Reading(D("12.5"), 2)
    negatives = [ev("t1", on(1, 1), gb=-3), ev("t2", on(1, 2), gb="-1.5")]
    # max(-3, -1.5) = -1.5, not 0
    assert reading(PEAK, negatives).value == D("-1.5")


# --- unique count, latest -----------------------------------------------------------------


def test_unique_count_counts_each_user_once():
    users = ["a", "b", "a", "c", "b"]
    events = [ev(f"t{i}", on(1, i + 1), user_id=user) for i, user in enumerate(users)]
    # {a, b, c} = 3 distinct users out of 5 events
    assert reading(ACTIVE_USERS, events) == Reading(D(3), 5)


def test_unique_count_compares_values_as_text():
    events = [
        ev("t1", on(1, 1), user_id=1),
        ev("t2", on(1, 2), user_id="1"),  # renders as "1" too: the same user
        ev("t3", on(1, 3), user_id=1.0),  # renders as "1.0", as PostgreSQL's ->> does
        ev("t4", on(1, 4)),  # no user_id: an event, but no value
    ]
    assert property_text(1) == property_text("1") == "1"
    # {"1", "1.0"} = 2
    assert reading(ACTIVE_USERS, events) == Reading(D(2), 4)


def test_latest_goes_by_timestamp_not_by_arrival():
    arrived = [
        ev("t2", on(1, 20), seats=5),
        ev("t3", on(1, 25), seats=9),  # the latest in January
        ev("t1", on(1, 10), seats=1),
        ev("t4", FEB, seats=100),  # next period
    ]
    assert reading(SEATS, arrived) == Reading(D(9), 3)


def test_latest_breaks_a_timestamp_tie_by_transaction_id():
    arrived = [ev("tx-2", on(1, 25), seats=4), ev("tx-1", on(1, 25), seats=9)]
    # same instant: (timestamp, transaction_id) puts tx-2 last
    assert reading(SEATS, arrived).value == D(4)


# --- time-weighted sum --------------------------------------------------------------------

DISK_CHANGES = [
    ev("t3", on(2, 22, 12), gb=-3),
    ev("t1", on(1, 20), gb=10),  # before February: carried into it
    ev("t2", on(2, 15), gb=5),
]


def test_weighted_sum_carries_the_opening_value_into_the_period():
    # February 2026 is 28 days = 672 hours
    #   10 GB carried in from 20 Jan, for all 672 h        = 6720
    #  + 5 GB from 15 Feb 00:00 to 1 Mar: 14 d x 24 = 336 h = 1680
    #  - 3 GB from 22 Feb 12:00 to 1 Mar: 6.5 d x 24 = 156 h = -468
    #                                                        = 7932 GB-hours
    assert reading(GB_HOURS, DISK_CHANGES, FEB, MAR) == Reading(D(7932), 2)
    # 7932 / 24 = 330.5 GB-days
    assert reading(GB_DAYS, DISK_CHANGES, FEB, MAR).value == D("330.5")


def test_weighted_sum_divides_to_34_significant_digits():
    changes = [ev("t1", on(1, 20), gb=10), ev("t2", on(2, 15, 0, 0, 7), gb=5)]
    # 10 x 2,419,200 s + 5 x (1,209,600 - 7) s = 30,239,965 GB-seconds; / 3600 does not end
    value = reading(GB_HOURS, changes, FEB, MAR).value
    with localcontext() as context:
        context.prec = 34
        assert value == D(30239965) / D(3600)
    assert len(value.as_tuple().digits) == 34
    assert value.quantize(D("0.000001")) == D("8399.990278")


def test_weighted_sum_with_no_changes_in_the_period_bills_the_carried_value():
    # 10 + 5 - 3 = 12 GB carried into March: 31 days x 24 = 744 h; 12 x 744 = 8928 GB-hours
    assert reading(GB_HOURS, DISK_CHANGES, MAR, datetime(2026, 4, 1, tzinfo=UTC)) == Reading(
        D(8928), 0
    )


# --- filters and groups -------------------------------------------------------------------

REGIONAL = [
    ev("t1", on(1, 1), gb=1, region="eu", plan="pro"),
    ev("t2", on(1, 2), gb=2, region="eu", plan="free"),
    ev("t3", on(1, 3), gb=4, region="us", plan="pro"),
    ev("t4", on(1, 4), gb=8),  # no region, no plan
    ev("t5", on(1, 5), gb=16, region="apac", plan="pro"),
]


def test_metric_filters_and_price_filters_narrow_together():
    eu_storage = Metric("eu_gb", "EU storage", A.SUM, "gb", {"region": ("eu",)}).validate()
    assert reading(eu_storage, REGIONAL) == Reading(D(3), 2)  # 1 + 2
    pro = clean_filters({"plan": "pro"}, "usage_filters")
    assert reading(eu_storage, REGIONAL, filters=pro) == Reading(D(1), 1)  # eu and pro: t1
    eu_or_us = clean_filters({"region": ["us", "eu"]}, "filters")
    assert reading(STORAGE, REGIONAL, filters=eu_or_us) == Reading(D(7), 3)  # 1 + 2 + 4


def test_group_by_region_puts_events_without_a_region_under_none():
    readings = aggregate(STORAGE, REGIONAL, JAN, FEB, group_by=("region",))
    assert readings == {
        ("eu",): Reading(D(3), 2),  # 1 + 2
        ("us",): Reading(D(4), 1),
        ("apac",): Reading(D(16), 1),
        (None,): Reading(D(8), 1),
    }
    by_two = aggregate(API_CALLS, REGIONAL, JAN, FEB, group_by=("region", "plan"))
    assert by_two[("eu", "free")] == Reading(D(1), 1)
    assert by_two[(None, None)] == Reading(D(1), 1)
    assert len(by_two) == 5


@pytest.mark.parametrize("metric", [API_CALLS, STORAGE, PEAK, ACTIVE_USERS, SEATS, GB_HOURS])
def test_no_usage_reads_zero_ungrouped_and_no_groups_grouped(metric):
    assert reading(metric, []) == Reading(D(0), 0)
    assert aggregate(metric, [], JAN, FEB, group_by=("region",)) == {}


def test_a_grouped_weighted_sum_keeps_groups_that_only_carry_a_value():
    changes = [ev("t1", on(1, 20), gb=10, region="eu"), ev("t2", on(2, 15), gb=5, region="us")]
    readings = aggregate(GB_HOURS, changes, FEB, MAR, group_by=("region",))
    # eu: 10 x 672 = 6720 with no February event; us: 5 x 336 = 1680
    assert readings == {("eu",): Reading(D(6720), 0), ("us",): Reading(D(1680), 1)}


def test_transactions_are_each_events_value_in_time_order():
    arrived = [ev("t2", on(1, 9), gb="2.50"), ev("t1", on(1, 3), gb=1), ev("t3", on(1, 5), gb=0.3)]
    card_fees = reading(STORAGE, arrived, with_transactions=True)
    assert card_fees == Reading(D("3.80"), 3, (D(1), D("0.3"), D("2.50")))
    assert reading(STORAGE, arrived).transactions == ()


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (Metric("", "No code", A.COUNT), "code: is required"),
        (Metric("m", "M", A.COUNT, "gb"), "field: count counts events and reads no property"),
        (Metric("m", "M", A.SUM), "field: sum needs the property it reads"),
        (Metric("m", "M", A.UNIQUE_COUNT), "field: unique_count needs the property it reads"),
        (
            Metric("m", "M", A.WEIGHTED_SUM, "gb", weighted_unit="week"),
            "weighted_unit: must be one of second, minute, hour, day",
        ),
    ],
)
def test_validate_names_the_field_at_fault(metric, message):
    with pytest.raises(MeteringError) as error:
        metric.validate()
    assert str(error.value).startswith(message)


def test_an_unknown_aggregation_is_refused_and_text_is_read_as_the_enum():
    with pytest.raises(MeteringError, match="^aggregation: must be one of count, sum, max, "):
        Metric("m", "M", "median", "gb")
    as_text = Metric("gb", "GB", "sum", field="gb").validate()
    assert as_text.aggregation is A.SUM
    jan1, feb1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    reading = aggregate(as_text, [Event("t1", jan1, {"gb": 5})], jan1, feb1)[()]
    assert reading.value == 5


def test_a_price_filter_narrows_the_metric_filter_instead_of_replacing_it():
    """EU storage priced for region us matches nothing: both filters must hold."""
    eu = Metric("eu_gb", "EU storage", A.SUM, "gb", {"region": ("eu",)})
    jan1, feb1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    events = [
        Event("t1", jan1, {"gb": 1, "region": "eu"}),
        Event("t2", jan1, {"gb": 4, "region": "us"}),
    ]
    assert aggregate(eu, events, jan1, feb1, filters={"region": ("us",)})[()].value == 0
    assert aggregate(eu, events, jan1, feb1, filters={"region": ("eu", "us")})[()].value == 1


def test_sums_are_exact_beyond_28_digits():
    big = Metric("v", "Value", A.SUM, "v")
    jan1, feb1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    events = [
        Event("a", jan1, {"v": "12345678901234567890.123456789"}),
        Event("b", jan1, {"v": "0.000000001"}),
    ]
    assert aggregate(big, events, jan1, feb1)[()].value == D("12345678901234567890.123456790")


@pytest.mark.parametrize("properties", [{}, {"gb": "lots"}, {"gb": True}, {"gb": None}])
def test_numeric_metrics_refuse_events_without_a_number(properties):
    for metric in (STORAGE, PEAK, GB_HOURS):
        reason = metric.check_event(properties)
        assert reason == f"properties.gb: metric {metric.code} needs a number here"
    assert STORAGE.check_event({"gb": "1.5"}) is None
    assert API_CALLS.check_event(properties) is None


def test_unique_count_refuses_events_without_a_value():
    reason = "properties.user_id: metric active_users counts distinct values of it"
    assert ACTIVE_USERS.check_event({}) == reason
    assert ACTIVE_USERS.check_event({"user_id": {"id": 1}}) == reason
    assert ACTIVE_USERS.check_event({"user_id": 42}) is None


def test_clean_filters_normalises_to_sorted_distinct_text():
    assert clean_filters(None, "filters") == {}
    assert clean_filters({"region": "eu"}, "filters") == {"region": ("eu",)}
    assert clean_filters({"region": ["us", "eu", "us"]}, "filters") == {"region": ("eu", "us")}
    assert clean_filters({"tier": [1, "1", 2.5]}, "filters") == {"tier": ("1", "2.5")}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["region"], "usage_filters: must be an object of property -> allowed values"),
        ({"": "eu"}, "usage_filters: property names must be non-empty text"),
        ({"region": []}, "usage_filters.region: give a value or a list of values"),
        ({"region": None}, "usage_filters.region: give a value or a list of values"),
        ({"region": True}, "usage_filters.region: give a value or a list of values"),
        ({"region": [None]}, "usage_filters.region: values must be text or numbers"),
        ({"region": [{"a": 1}]}, "usage_filters.region: values must be text or numbers"),
    ],
)
def test_clean_filters_errors_name_the_property(data, message):
    with pytest.raises(MeteringError) as error:
        clean_filters(data, "usage_filters")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("metric", "text"),
    [
        (API_CALLS, "count of events"),
        (STORAGE, "sum of gb"),
        (PEAK, "max of gb"),
        (ACTIVE_USERS, "unique count of user_id"),
        (SEATS, "latest of seats"),
        (GB_HOURS, "time-weighted sum of gb (gb-hours)"),
        (GB_DAYS, "time-weighted sum of gb (gb-days)"),
        (
            Metric("m", "M", A.SUM, "gb", {"region": ("eu",), "plan": ("pro", "team")}),
            "sum of gb where plan in (pro, team) and region = eu",
        ),
    ],
)
def test_describe_reads_like_the_invoice_says_it(metric, text):
    assert metric.describe() == text


# --- fingerprint --------------------------------------------------------------------------

WHEN = on(1, 15, 10, 30)


def test_fingerprint_ignores_property_key_order():
    first = fingerprint("cus_1", "sub_1", "storage_gb", WHEN, {"gb": 5, "region": "eu"})
    retry = fingerprint("cus_1", "sub_1", "storage_gb", WHEN, {"region": "eu", "gb": 5})
    assert first == retry
    assert len(first) == 16


@pytest.mark.parametrize(
    "changed",
    [
        ("cus_2", "sub_1", "storage_gb", WHEN, {"gb": 5, "region": "eu"}),
        ("cus_1", None, "storage_gb", WHEN, {"gb": 5, "region": "eu"}),
        ("cus_1", "sub_1", "api_calls", WHEN, {"gb": 5, "region": "eu"}),
        (
            "cus_1",
            "sub_1",
            "storage_gb",
            WHEN + timedelta(microseconds=1),
            {"gb": 5, "region": "eu"},
        ),
        ("cus_1", "sub_1", "storage_gb", WHEN, {"gb": 6, "region": "eu"}),
        ("cus_1", "sub_1", "storage_gb", WHEN, {"gb": "5", "region": "eu"}),
        ("cus_1", "sub_1", "storage_gb", WHEN, {"gb": 5, "region": "us"}),
        ("cus_1", "sub_1", "storage_gb", WHEN, {"gb": 5}),
    ],
)
def test_fingerprint_changes_with_anything_billable(changed):
    original = fingerprint("cus_1", "sub_1", "storage_gb", WHEN, {"gb": 5, "region": "eu"})
    assert fingerprint(*changed) != original


# --- properties ---------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)
amounts = st.decimals(
    min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False
)
# JSON gives numbers as ints, floats or text.
values = st.one_of(amounts.map(str), amounts.map(float), st.integers(-1000, 1000))
# December to March with microseconds, plus a few fixed instants so that ties happen.
instants = st.one_of(
    st.datetimes(datetime(2025, 12, 1), datetime(2026, 3, 31), timezones=st.just(UTC)),
    st.sampled_from([JAN, on(1, 15), FEB, on(2, 15), MAR]),
)
cuts = st.datetimes(datetime(2026, 1, 1), datetime(2026, 3, 1), timezones=st.just(UTC))


@st.composite
def usage(draw) -> list[Event]:
    rows = draw(st.lists(st.tuples(instants, values, st.sampled_from(["eu", "us", None]))))
    return [
        Event(f"tx-{i:03}", when, {"gb": value} | ({"region": region} if region else {}))
        for i, (when, value, region) in enumerate(rows)
    ]


def gb_metric(aggregation: A, unit: str = "hour") -> Metric:
    field = None if aggregation is A.COUNT else "gb"
    return Metric(aggregation.value, "M", aggregation, field, weighted_unit=unit).validate()


@PROPERTY_SETTINGS
@given(usage(), cuts)
def test_count_and_sum_over_a_period_add_up_across_a_split(events, cut):
    for metric in (API_CALLS, STORAGE):
        whole = reading(metric, events, JAN, MAR)
        first, second = reading(metric, events, JAN, cut), reading(metric, events, cut, MAR)
        assert whole.value == first.value + second.value
        assert whole.events == first.events + second.events


@PROPERTY_SETTINGS
@given(usage(), cuts)
def test_weighted_sum_adds_up_across_a_split_with_the_value_carried_over(events, cut):
    # The second half opens with everything before the cut, including December's changes.
    whole = reading(gb_metric(A.WEIGHTED_SUM, "second"), events, JAN, MAR)
    first = reading(gb_metric(A.WEIGHTED_SUM, "second"), events, JAN, cut)
    second = reading(gb_metric(A.WEIGHTED_SUM, "second"), events, cut, MAR)
    assert whole.value == first.value + second.value  # GB-seconds: no division, exact
    hours = [reading(gb_metric(A.WEIGHTED_SUM), events, *p) for p in ((JAN, cut), (cut, MAR))]
    whole_hours = reading(gb_metric(A.WEIGHTED_SUM), events, JAN, MAR).value
    assert abs(whole_hours - hours[0].value - hours[1].value) < D("1e-20")


@PROPERTY_SETTINGS
@given(usage(), st.randoms(use_true_random=False), st.sampled_from(A))
def test_readings_do_not_depend_on_the_order_events_arrive_in(events, rnd, aggregation):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    metric = gb_metric(aggregation)
    for options in ({}, {"group_by": ("region",), "with_transactions": True}):
        assert aggregate(metric, shuffled, JAN, MAR, **options) == aggregate(
            metric, events, JAN, MAR, **options
        )


@PROPERTY_SETTINGS
@given(usage())
def test_per_region_readings_add_up_to_the_ungrouped_reading(events):
    for metric in (API_CALLS, STORAGE, gb_metric(A.WEIGHTED_SUM, "second")):
        whole = reading(metric, events, JAN, MAR)
        groups = aggregate(metric, events, JAN, MAR, group_by=("region",)).values()
        assert sum((group.value for group in groups), D(0)) == whole.value
        assert sum(group.events for group in groups) == whole.events
