"""Automatic collection rules: the retry schedule after a failed charge, and what decides
when an invoice is charged. Pure: the service hands in dates, nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

MAX_RETRIES = 10
MAX_RETRY_DAY = 365


class RetryScheduleError(ValueError):
    pass


def check_retry_days(value: Any) -> list[int]:
    """A valid `collection_retry_days`: whole days after the first attempt, each at least 1,
    strictly increasing, at most ten retries within a year. [] means: never retry."""
    if not isinstance(value, list | tuple):
        raise RetryScheduleError("collection_retry_days: give a list of days, e.g. [1, 3, 7]")
    if len(value) > MAX_RETRIES:
        raise RetryScheduleError(
            f"collection_retry_days: at most {MAX_RETRIES} retries ({len(value)} given)"
        )
    days: list[int] = []
    for position, day in enumerate(value):
        if not isinstance(day, int) or isinstance(day, bool):
            raise RetryScheduleError(
                f"collection_retry_days[{position}]: {day!r} is not a whole number of days"
            )
        if not 1 <= day <= MAX_RETRY_DAY:
            raise RetryScheduleError(
                f"collection_retry_days[{position}]: {day} is not between 1 and {MAX_RETRY_DAY}"
            )
        if days and day <= days[-1]:
            raise RetryScheduleError(
                f"collection_retry_days[{position}]: {day} must come after {days[-1]} "
                "(days count from the first attempt, so they increase)"
            )
        days.append(day)
    return days


def next_attempt_on(
    retry_days: Sequence[int], first_attempted_on: date, attempted_on: date, attempt: int
) -> date | None:
    """The day to try again after attempt number `attempt` (1 is the first charge) failed.

    Retry days count from the FIRST attempt, so a [1, 3, 7] schedule charges on days 0, +1, +3
    and +7 whatever the outcome times were: the customer's bank sees the rhythm the organisation
    announced. A run that was late (attempt 2 made on day +5) never schedules the next try on
    or before today: it moves to the next day. None: the schedule is used up.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt > len(retry_days):
        return None
    planned = first_attempted_on + timedelta(days=retry_days[attempt - 1])
    return max(planned, attempted_on + timedelta(days=1))


def collectable_from(due_date: date | None, issue_date: date | None) -> date | None:
    """The first day an issued invoice may be charged: its due date.

    Charging on the due date keeps the payment terms agreed with the customer; a customer who
    pays by card on issue has payment terms of 0 days, so the due date is the issue date.
    """
    return due_date or issue_date
