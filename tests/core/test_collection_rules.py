"""The retry schedule of automatic collection: which schedules are valid, when to try again."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.core.collection import (
    MAX_RETRIES,
    RetryScheduleError,
    check_retry_days,
    collectable_from,
    next_attempt_on,
)

DAY0 = date(2026, 3, 1)

schedules = st.lists(st.integers(1, 365), max_size=MAX_RETRIES, unique=True).map(sorted)


def test_the_default_schedule_retries_on_day_1_3_and_7_after_the_first_attempt() -> None:
    schedule = check_retry_days([1, 3, 7])
    days = []
    first = DAY0
    on, attempt = DAY0, 1
    while on is not None:
        days.append((on - first).days)
        on = next_attempt_on(schedule, first, on, attempt)
        attempt += 1
    assert days == [0, 1, 3, 7]


def test_a_late_run_never_schedules_the_next_try_today_or_earlier() -> None:
    # Attempt 2 was due on day +1 but the run only came on day +5: attempt 3 (planned +3) moves
    # to day +6, and attempt 4 keeps its planned day +7.
    assert next_attempt_on([1, 3, 7], DAY0, DAY0 + timedelta(days=5), 2) == DAY0 + timedelta(6)
    assert next_attempt_on([1, 3, 7], DAY0, DAY0 + timedelta(days=6), 3) == DAY0 + timedelta(7)
    assert next_attempt_on([1, 3, 7], DAY0, DAY0 + timedelta(days=7), 4) is None


def test_an_empty_schedule_means_a_single_attempt() -> None:
    assert check_retry_days([]) == []
    assert next_attempt_on([], DAY0, DAY0, 1) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([0, 3], "between 1 and 365"),
        ([-1], "between 1 and 365"),
        ([3, 1], "must come after 3"),
        ([2, 2], "must come after 2"),
        (list(range(1, 12)), "at most 10 retries"),
        ([1.5], "not a whole number"),
        (["1"], "not a whole number"),
        ([True], "not a whole number"),
        ([400], "between 1 and 365"),
        ("1,3,7", "give a list"),
        (None, "give a list"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason(value: object, reason: str) -> None:
    with pytest.raises(RetryScheduleError) as error:
        check_retry_days(value)
    assert reason in str(error.value)
    assert str(error.value).startswith("collection_retry_days")


def test_an_invoice_is_collectable_from_its_due_date() -> None:
    assert collectable_from(date(2026, 3, 31), date(2026, 3, 1)) == date(2026, 3, 31)
    assert collectable_from(None, date(2026, 3, 1)) == date(2026, 3, 1)


@given(schedules)
def test_every_valid_schedule_is_accepted_as_is(schedule: list[int]) -> None:
    assert check_retry_days(schedule) == schedule


@given(schedules, st.lists(st.integers(0, 30), min_size=12, max_size=12))
def test_attempts_are_bounded_and_each_comes_after_the_last_and_not_before_its_plan(
    schedule: list[int], delays: list[int]
) -> None:
    """Whatever delays the runs have, a schedule of n retries gives at most n + 1 attempts,
    each on a later day than the one before and never before its planned day."""
    first = DAY0
    attempted_on = first
    attempts = [first]
    attempt = 1
    while True:
        planned = next_attempt_on(schedule, first, attempted_on, attempt)
        if planned is None:
            break
        assert planned > attempted_on
        assert planned >= first + timedelta(days=schedule[attempt - 1])
        attempted_on = planned + timedelta(days=delays[attempt - 1])
        attempts.append(attempted_on)
        attempt += 1
    assert len(attempts) == len(schedule) + 1
    assert attempts == sorted(set(attempts))
