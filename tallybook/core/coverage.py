"""Service coverage: which (price, quantity) was charged for which stretch of time.

Re-rating compares what a subscription is entitled to with what was already billed and turns
the difference into adjustment lines: a credit for unused time, a charge for the new plan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Coverage:
    price_id: str
    quantity: Decimal
    start: datetime
    end: datetime
    weight: int = 1  # +1 charged, -1 credited back


def difference(entitled: Iterable[Coverage], billed: Iterable[Coverage]) -> list[Coverage]:
    """What must be added to `billed` so that it equals `entitled`, as merged windows.

    Works per (price, quantity): the signed sum of windows is a step function of time; the
    difference of the two step functions, merged where adjacent steps are equal, is the answer.
    """
    deltas: dict[tuple[str, Decimal], dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for item in entitled:
        if item.end > item.start:
            steps = deltas[(item.price_id, item.quantity)]
            steps[item.start] += item.weight
            steps[item.end] -= item.weight
    for item in billed:
        if item.end > item.start:
            steps = deltas[(item.price_id, item.quantity)]
            steps[item.start] -= item.weight
            steps[item.end] += item.weight
    result: list[Coverage] = []
    for (price_id, quantity), steps in deltas.items():
        level = 0
        open_at: datetime | None = None
        for instant in sorted(steps):
            new_level = level + steps[instant]
            if new_level != level:
                if level != 0 and open_at is not None:
                    result.append(Coverage(price_id, quantity, open_at, instant, level))
                open_at = instant if new_level != 0 else None
                level = new_level
    result.sort(key=lambda c: (c.start, c.weight, c.price_id, c.quantity))
    return result
