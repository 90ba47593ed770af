"""When to try a failed delivery (an e-mail, a webhook) again: exponential backoff with a cap,
a steady per-delivery spread so a thousand failures do not all come back in the same second,
and when to give up. Pure: the clock is a parameter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta


class RetryScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Backoff:
    """base * 2^(n-1) seconds after the n-th failed attempt, at most `cap`; after
    `max_attempts` failed attempts the delivery has failed for good."""

    base_seconds: float = 60.0
    cap_seconds: float = 6 * 3600.0
    max_attempts: int = 8
    # Up to this fraction is added to each delay, the same for every attempt of a delivery.
    spread: float = 0.1

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < self.base_seconds:
            raise RetryScheduleError("backoff: 0 <= base <= cap")
        if self.max_attempts < 1:
            raise RetryScheduleError("backoff: at least one attempt")
        if not 0 <= self.spread < 1:
            raise RetryScheduleError("backoff: the spread is a fraction below 1")


def spread_fraction(key: str) -> float:
    """A fraction in [0, 1) that depends only on the key (the delivery's id)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def delay_after(backoff: Backoff, failed_attempts: int, key: str) -> timedelta:
    """How long to wait after `failed_attempts` (>= 1) failed attempts."""
    if failed_attempts < 1:
        raise RetryScheduleError("delay_after: counts failed attempts from 1")
    # 2**60 is far beyond any cap: no overflow however many attempts are counted.
    exponent = min(failed_attempts - 1, 60)
    seconds = min(backoff.cap_seconds, backoff.base_seconds * 2**exponent)
    return timedelta(seconds=seconds * (1 + backoff.spread * spread_fraction(key)))


def next_attempt(
    backoff: Backoff, failed_attempts: int, key: str, now: datetime
) -> datetime | None:
    """When to try again after `failed_attempts` failed attempts, or None: give up."""
    if failed_attempts >= backoff.max_attempts:
        return None
    return now + delay_after(backoff, failed_attempts, key)
