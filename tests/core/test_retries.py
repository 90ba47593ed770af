"""The delivery retry schedule: exponential, capped, spread steadily per delivery, and it gives
up after the last attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.core.retries import (
    Backoff,
    RetryScheduleError,
    delay_after,
    next_attempt,
    spread_fraction,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
keys = st.text(min_size=1, max_size=40)
backoffs = st.builds(
    lambda base, factor, attempts, spread: Backoff(base, base * factor, attempts, spread),
    st.floats(min_value=0, max_value=3600, allow_nan=False),
    st.floats(min_value=1, max_value=1000, allow_nan=False),
    st.integers(min_value=1, max_value=30),
    st.floats(min_value=0, max_value=0.99, allow_nan=False),
)


def test_the_default_schedule_doubles_from_a_minute() -> None:
    plain = Backoff(spread=0)
    assert [delay_after(plain, n, "dlv_1").total_seconds() for n in range(1, 9)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        7680,
    ]
    assert next_attempt(plain, 8, "dlv_1", NOW) is None  # eight failures: give up
    assert next_attempt(plain, 1, "dlv_1", NOW) == NOW + timedelta(minutes=1)


@given(backoffs, keys, st.integers(min_value=1, max_value=200))
def test_delays_never_shrink_and_stay_under_the_cap(backoff: Backoff, key: str, n: int) -> None:
    now_delay = delay_after(backoff, n, key)
    assert delay_after(backoff, n + 1, key) >= now_delay
    assert timedelta(0) <= now_delay
    assert now_delay.total_seconds() <= backoff.cap_seconds * (1 + backoff.spread) + 1e-6


@given(backoffs, keys, st.integers(min_value=1, max_value=60))
def test_give_up_exactly_after_the_last_attempt(backoff: Backoff, key: str, n: int) -> None:
    when = next_attempt(backoff, n, key, NOW)
    assert (when is None) == (n >= backoff.max_attempts)
    if when is not None:
        assert when >= NOW


@given(keys)
def test_the_spread_is_a_steady_fraction(key: str) -> None:
    assert 0 <= spread_fraction(key) < 1
    assert spread_fraction(key) == spread_fraction(key)


def test_nonsense_schedules_are_refused() -> None:
    with pytest.raises(RetryScheduleError):
        Backoff(base_seconds=10, cap_seconds=5)
    with pytest.raises(RetryScheduleError):
        Backoff(max_attempts=0)
    with pytest.raises(RetryScheduleError):
        delay_after(Backoff(), 0, "x")
