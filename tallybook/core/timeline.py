"""A subscription's history as billable segments: which plan and quantity, from when to when.

Trials and pauses are not billable; a cancellation ends the timeline. Changes may be backdated:
the timeline is always rebuilt from the whole history, ordered by effective time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class ChangeKind(StrEnum):
    START = "start"
    PLAN = "plan"  # upgrade or downgrade
    QUANTITY = "quantity"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    effective_at: datetime
    plan_id: str | None = None
    quantity: Decimal | None = None
    sequence: int = 0  # tie-break for changes at the same instant: order of recording


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime | None  # None: open-ended
    plan_id: str
    quantity: Decimal

    def overlap(self, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
        lo = max(self.start, start)
        hi = end if self.end is None else min(self.end, end)
        return (lo, hi) if hi > lo else None


def billable_segments(
    changes: Sequence[Change], trial_end: datetime | None = None
) -> list[Segment]:
    """Billable segments in time order. The history must begin with a START change."""
    ordered = sorted(changes, key=lambda c: (c.effective_at, c.sequence))
    if not ordered or ordered[0].kind is not ChangeKind.START:
        raise ValueError("a subscription history starts with a start change")
    plan_id = ordered[0].plan_id
    quantity = ordered[0].quantity
    paused = False
    segments: list[Segment] = []
    cursor = ordered[0].effective_at
    for change in ordered[1:] + [None]:  # type: ignore[list-item]
        at = change.effective_at if change is not None else None
        if not paused and plan_id is not None and quantity is not None:
            if at is None or at > cursor:
                segments.append(Segment(cursor, at, plan_id, quantity))
        if change is None:
            break
        cursor = max(cursor, at)  # type: ignore[type-var]
        if change.kind is ChangeKind.PLAN:
            plan_id = change.plan_id or plan_id
            if change.quantity is not None:
                quantity = change.quantity
        elif change.kind is ChangeKind.QUANTITY:
            quantity = change.quantity
        elif change.kind is ChangeKind.PAUSE:
            paused = True
        elif change.kind is ChangeKind.RESUME:
            paused = False
        elif change.kind is ChangeKind.CANCEL:
            break
    merged = _merge(segments)
    if trial_end is not None:
        merged = [
            Segment(max(s.start, trial_end), s.end, s.plan_id, s.quantity)
            for s in merged
            if s.end is None or s.end > trial_end
        ]
    return merged


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.end == segment.start
            and last.plan_id == segment.plan_id
            and last.quantity == segment.quantity
        ):
            merged[-1] = Segment(last.start, segment.end, last.plan_id, last.quantity)
        else:
            merged.append(segment)
    return merged


def end_of_life(changes: Sequence[Change]) -> datetime | None:
    """When the subscription stops for good (its cancellation), if it does."""
    cancels = [c.effective_at for c in changes if c.kind is ChangeKind.CANCEL]
    return min(cancels) if cancels else None
