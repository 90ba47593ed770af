"""What a subscription owes at a billing date: advance charges, arrears, usage and adjustments.

Pure: the caller loads the catalog, the subscription's history, usage totals and what was already
billed; this module returns draft lines, each with the structured explanation of its amount.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson

from tallybook.core.coverage import Coverage, difference
from tallybook.core.metering import GroupKey, Reading, UsageCharge
from tallybook.core.periods import BillingPeriod, Interval, period_at, period_containing
from tallybook.core.pricing import PriceTerms, PricingModel, Rating, commitment_true_up, rate
from tallybook.core.proration import ProrationPolicy, prorate
from tallybook.core.timeline import Change, Segment, billable_segments, end_of_life

RECURRING = "recurring"
USAGE = "usage"
IN_ADVANCE = "in_advance"
IN_ARREARS = "in_arrears"
# Distinct questions to the catalog are few; the cap only keeps memory flat in odd catalogs.
_MEMO_LIMIT = 10_000


@dataclass(frozen=True)
class PriceVersion:
    id: str
    code: str
    version: int
    product_id: str
    product_name: str
    kind: str  # recurring | usage
    timing: str  # in_advance | in_arrears
    terms: PriceTerms
    effective_from: datetime
    unit_label: str | None = None
    # Usage prices: the metric they bill and how (filters, groups).
    usage: UsageCharge | None = None


@dataclass(frozen=True)
class PlanInfo:
    id: str
    code: str
    name: str
    price_codes: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """Price versions by code (oldest first) and plans by id, as loaded for one billing run."""

    prices: Mapping[str, tuple[PriceVersion, ...]]
    plans: Mapping[str, PlanInfo]
    by_id: Mapping[str, PriceVersion] = field(default_factory=dict)
    # Plan ids offering each price code, in plan order.
    plans_by_code: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    # Memos for `rate` and `plan_prices_at`: a billing run builds its catalog once, and most of
    # its subscriptions ask the same questions of it.
    _ratings: dict[tuple[str, str, str], tuple[Rating, Mapping[str, Any]]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _in_force: dict[tuple[str, datetime], tuple[PriceVersion, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        by_code: dict[str, list[str]] = {}
        for plan in self.plans.values():
            for code in plan.price_codes:
                by_code.setdefault(code, []).append(plan.id)
        object.__setattr__(
            self, "plans_by_code", {code: tuple(ids) for code, ids in by_code.items()}
        )

    @classmethod
    def build(cls, prices: Sequence[PriceVersion], plans: Sequence[PlanInfo]) -> Catalog:
        grouped: dict[str, list[PriceVersion]] = {}
        for price in prices:
            grouped.setdefault(price.code, []).append(price)
        return cls(
            prices={
                code: tuple(sorted(versions, key=lambda p: (p.effective_from, p.version)))
                for code, versions in grouped.items()
            },
            plans={plan.id: plan for plan in plans},
            by_id={price.id: price for price in prices},
        )

    def rate(
        self, price: PriceVersion, quantity: Decimal, currency: str
    ) -> tuple[Rating, Mapping[str, Any]]:
        """`pricing.rate(price.terms, quantity)` and the price and rating part of a line's
        explanation, remembered for this catalog.

        Keyed by the quantity's exact text: 5 and 5.0 are equal but explain differently. Lines
        share the explanation part, so it must be read, never changed.
        """
        key = (price.id, str(quantity), currency)
        rated = self._ratings.get(key)
        if rated is None:
            rating = rate(price.terms, quantity)
            rated = (rating, _price_explanation(price, rating, currency))
            if len(self._ratings) < _MEMO_LIMIT:
                self._ratings[key] = rated
        return rated

    def plan_prices_at(self, plan_id: str, instant: datetime) -> tuple[PriceVersion, ...]:
        """`price_at` for each of the plan's price codes, in the plan's order; remembered for
        this catalog, since every subscription of a plan asks it for the same period starts."""
        key = (plan_id, instant)
        prices = self._in_force.get(key)
        if prices is None:
            prices = tuple(self.price_at(code, instant) for code in self.plans[plan_id].price_codes)
            if len(self._in_force) < _MEMO_LIMIT:
                self._in_force[key] = prices
        return prices

    def price_at(self, code: str, instant: datetime) -> PriceVersion:
        """The version in force at `instant`; before the first version, the first one."""
        versions = self.prices[code]
        chosen = versions[0]
        for version in versions:
            if version.effective_from <= instant:
                chosen = version
        return chosen


# A period's usage: price code -> group -> reading.
PeriodUsage = Mapping[str, Mapping[GroupKey, Reading]]


@dataclass(frozen=True)
class SubscriptionContext:
    id: str
    plan_names: Mapping[str, str]
    interval: Interval
    timezone: str
    currency: str
    policy: ProrationPolicy


@dataclass(frozen=True)
class DraftLine:
    kind: str  # subscription | usage | commitment_true_up | adjustment | one_off | milestone | ...
    description: str
    amount: Decimal  # exact, unrounded
    quantity: Decimal
    unit_price: Decimal | None
    product_id: str | None
    price_id: str | None = None
    subscription_id: str | None = None
    charge_id: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    service_from: datetime | None = None
    service_to: datetime | None = None
    coverage_weight: int = 0
    explanation: Mapping[str, Any] = field(default_factory=dict)
    # Usage lines: which charge and group of which period, for re-rating late usage.
    usage_key: str | None = None


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _rated_quantity(price: PriceVersion, seats: Decimal) -> Decimal:
    # A flat fee is per subscription, not per seat.
    return Decimal(1) if price.terms.model is PricingModel.FLAT else seats


def _unit_price(price: PriceVersion, rating: Rating) -> Decimal | None:
    if price.terms.model in (PricingModel.PER_UNIT, PricingModel.FLAT):
        return price.terms.amount
    return None


def _price_explanation(price: PriceVersion, rating: Rating, currency: str) -> dict[str, Any]:
    return {
        "price": {
            "id": price.id,
            "code": price.code,
            "version": price.version,
            "model": price.terms.model.value,
            "product": price.product_name,
            "timing": price.timing,
        },
        "rating": {
            "amount": str(rating.amount),
            "summary": rating.describe(currency),
            "tiers": [
                {
                    "tier": t.tier,
                    "first_unit": str(t.first_unit),
                    "last_unit": None if t.last_unit is None else str(t.last_unit),
                    "units": str(t.units),
                    "unit_price": str(t.unit_price),
                    "flat_fee": str(t.flat_fee),
                    "amount": str(t.amount),
                }
                for t in rating.tiers
            ],
            "packages": None if rating.packages is None else str(rating.packages),
            "transactions": rating.transactions,
        },
    }


@lru_cache(maxsize=4096)
def _period_explanation(period: BillingPeriod, interval: Interval) -> Mapping[str, Any]:
    """The period part of a line's explanation; shared between lines, so read-only."""
    return {
        "start": _iso(period.start),
        "end": _iso(period.end),
        "label": period.label(),
        "interval": interval.label(),
    }


def entitled_coverage(
    segments: Sequence[Segment],
    catalog: Catalog,
    period: BillingPeriod,
    timing: str,
) -> list[Coverage]:
    """The recurring service a subscription is entitled to in `period`, for prices of `timing`."""
    result: list[Coverage] = []
    for segment in segments:
        window = segment.overlap(period.start, period.end)
        if window is None:
            continue
        for price in catalog.plan_prices_at(segment.plan_id, period.start):
            if price.kind != RECURRING or price.timing != timing:
                continue
            quantity = _rated_quantity(price, segment.quantity)
            result.append(Coverage(price.id, quantity, window[0], window[1], 1))
    return result


def coverage_lines(
    context: SubscriptionContext,
    items: Sequence[Coverage],
    catalog: Catalog,
    period: BillingPeriod,
    *,
    adjustment: bool = False,
) -> list[DraftLine]:
    """Price each coverage window, prorated when it is less than the whole period."""
    lines: list[DraftLine] = []
    if not items:
        return lines
    period_part = _period_explanation(period, context.interval)
    label = period_part["label"]
    for item in items:
        price = catalog.by_id[item.price_id]
        rating, priced = catalog.rate(price, item.quantity, context.currency)
        fraction = prorate(period, item.start, item.end, context.policy, context.interval)
        full = fraction.is_full
        amount = rating.amount if full else fraction.apply(rating.amount)
        amount = amount * item.weight
        plan_name = price.product_name
        for plan_id in catalog.plans_by_code.get(price.code, ()):
            if plan_id in context.plan_names:
                plan_name = context.plan_names[plan_id]
                break
        what = price.product_name
        if adjustment:
            verb = "Unused time on" if item.weight < 0 else "Remaining time on"
            description = (
                f"{verb} {what} ({_quantity_text(item.quantity)}) "
                f"{_short(fraction.used_from, context.timezone)} to "
                f"{_short_end(fraction.used_to, context.timezone)}"
                f", adjusting {label}"
            )
        else:
            description = f"{what} ({_quantity_text(item.quantity)}), {label}"
            if not full:
                description += " (prorated)"
        explanation = {
            "source": "adjustment" if adjustment else "subscription",
            "subscription_id": context.id,
            "plan": plan_name,
            "quantity": {"value": str(item.quantity), "source": _seat_source(price)},
            **priced,
            "period": period_part,
            "proration": None
            if full
            else {
                "numerator": fraction.numerator,
                "denominator": fraction.denominator,
                "unit": fraction.unit,
                "policy": fraction.policy.value,
                "from": _iso(fraction.used_from),
                "to": _iso(fraction.used_to),
                "description": fraction.describe(),
            },
            "weight": item.weight,
            "exact_amount": str(amount),
        }
        lines.append(
            DraftLine(
                kind="adjustment" if adjustment else "subscription",
                description=description,
                amount=amount,
                quantity=item.quantity,
                unit_price=_unit_price(price, rating),
                product_id=price.product_id,
                price_id=price.id,
                subscription_id=context.id,
                period_start=period.start,
                period_end=period.end,
                service_from=item.start,
                service_to=item.end,
                coverage_weight=item.weight,
                explanation=explanation,
            )
        )
    return lines


def recurring_lines(
    context: SubscriptionContext,
    segments: Sequence[Segment],
    catalog: Catalog,
    period: BillingPeriod,
    timing: str,
) -> list[DraftLine]:
    items = entitled_coverage(segments, catalog, period, timing)
    return coverage_lines(context, items, catalog, period)


def adjustment_lines(
    context: SubscriptionContext,
    segments: Sequence[Segment],
    catalog: Catalog,
    period: BillingPeriod,
    timing: str,
    billed: Sequence[Coverage],
) -> list[DraftLine]:
    """Re-rate an already billed period: credit what is no longer owed, charge what is new."""
    entitled = entitled_coverage(segments, catalog, period, timing)
    return coverage_lines(context, difference(entitled, billed), catalog, period, adjustment=True)


def usage_key(code: str, group: GroupKey | str) -> str:
    """'api_calls|["eu"]' for a usage line, 'api_calls|true_up' for its commitment true-up."""
    if isinstance(group, str):
        return f"{code}|{group}"
    return f"{code}|{orjson.dumps(list(group)).decode()}"


def usage_codes(segments: Sequence[Segment], catalog: Catalog, period: BillingPeriod) -> list[str]:
    """Usage price codes of the plans active in `period`, in plan order."""
    codes: list[str] = []
    for segment in segments:
        if segment.overlap(period.start, period.end) is None:
            continue
        for price in catalog.plan_prices_at(segment.plan_id, period.start):
            if price.code not in codes and price.kind == USAGE:
                codes.append(price.code)
    return codes


def _group_label(charge: UsageCharge | None, group: GroupKey) -> str:
    if charge is None or not charge.group_by:
        return ""
    parts = [
        f"{name} {value if value is not None else '(none)'}"
        for name, value in zip(charge.group_by, group, strict=True)
    ]
    return f" ({', '.join(parts)})"


def _group_order(group: GroupKey) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, value or "") for value in group)


def usage_lines(
    context: SubscriptionContext,
    segments: Sequence[Segment],
    catalog: Catalog,
    period: BillingPeriod,
    usage: PeriodUsage,
) -> list[DraftLine]:
    """Usage prices of the plans active in `period`, rated on the period's readings, in
    arrears: one line per group (one line when ungrouped, even with no usage)."""
    lines: list[DraftLine] = []
    for code in usage_codes(segments, catalog, period):
        price = catalog.price_at(code, period.start)
        charge = price.usage
        readings = dict(usage.get(code, {}))
        if not readings:
            width = len(charge.group_by) if charge is not None else 0
            readings = {(None,) * width if width else (): Reading(Decimal(0), 0)}
        period_amount = Decimal(0)
        base: dict[str, Any] = {}
        for group in sorted(readings, key=_group_order):
            reading = readings[group]
            rating = rate(price.terms, reading.value, reading.transactions)
            period_amount += rating.amount
            metric = charge.metric if charge is not None else None
            source = (
                f"metric {metric.code}: {metric.describe()}, {reading.events} events in the period"
                if metric is not None
                else f"usage: {reading.events} events in the period"
            )
            base = {
                "source": "usage",
                "subscription_id": context.id,
                "quantity": {
                    "value": str(reading.value),
                    "source": source,
                    "events": reading.events,
                },
                "metric": None
                if metric is None
                else {
                    "code": metric.code,
                    "name": metric.name,
                    "aggregation": metric.aggregation.value,
                    "field": metric.field,
                    "filters": {k: list(v) for k, v in charge.all_filters.items()},  # type: ignore[union-attr]
                    "weighted_unit": metric.weighted_unit
                    if metric.aggregation.value == "weighted_sum"
                    else None,
                },
                "group": None
                if charge is None or not charge.group_by
                else dict(zip(charge.group_by, group, strict=True)),
                **_price_explanation(price, rating, context.currency),
                "period": {
                    "start": _iso(period.start),
                    "end": _iso(period.end),
                    "label": period.label(),
                    "interval": context.interval.label(),
                },
                "proration": None,
                "weight": 0,
                "exact_amount": str(rating.amount),
            }
            unit = price.unit_label or "units"
            lines.append(
                DraftLine(
                    kind="usage",
                    description=f"{price.product_name}{_group_label(charge, group)}: "
                    f"{_number(reading.value)} {unit}, {period.label()}",
                    amount=rating.amount,
                    quantity=reading.value,
                    unit_price=_unit_price(price, rating),
                    product_id=price.product_id,
                    price_id=price.id,
                    subscription_id=context.id,
                    period_start=period.start,
                    period_end=period.end,
                    explanation=base,
                    usage_key=usage_key(code, group),
                )
            )
        shortfall = commitment_true_up(price.terms, period_amount)
        if shortfall > 0:
            lines.append(
                DraftLine(
                    kind="commitment_true_up",
                    description=f"{price.product_name}: minimum commitment true-up, "
                    f"{period.label()}",
                    amount=shortfall,
                    quantity=Decimal(1),
                    unit_price=shortfall,
                    product_id=price.product_id,
                    price_id=price.id,
                    subscription_id=context.id,
                    period_start=period.start,
                    period_end=period.end,
                    explanation={
                        **base,
                        "source": "commitment_true_up",
                        "group": None,
                        "commitment": {
                            "minimum": str(price.terms.minimum_commitment),
                            "usage_amount": str(period_amount),
                            "shortfall": str(shortfall),
                        },
                        "exact_amount": str(shortfall),
                    },
                    usage_key=usage_key(code, "true_up"),
                )
            )
    return lines


def late_usage_lines(
    fresh: Sequence[DraftLine],
    billed: Mapping[str, tuple[Decimal, Decimal]],
    invoices: Sequence[str],
    period: BillingPeriod,
) -> list[DraftLine]:
    """Late usage of an invoiced period: what the period owes now minus what was billed.

    `fresh` are the period's usage lines re-rated on every event known now; `billed` holds the
    (quantity, exact amount) already billed per usage key; `invoices` are their numbers.
    """
    by_key = {line.usage_key: line for line in fresh if line.usage_key}
    lines: list[DraftLine] = []
    for key in sorted(set(by_key) | set(billed)):
        line = by_key.get(key)
        billed_quantity, billed_amount = billed.get(key, (Decimal(0), Decimal(0)))
        amount = (line.amount if line else Decimal(0)) - billed_amount
        if amount == 0:
            continue
        quantity = (line.quantity if line else Decimal(0)) - billed_quantity
        named = ", ".join(invoices) or "an earlier invoice"
        subject = line.description if line else f"{key.split('|')[0]}, {period.label()}"
        explanation = {
            **(line.explanation if line else {}),
            "source": "late_usage",
            "late_usage": {
                "period": period.label(),
                "original_invoices": list(invoices),
                "billed_quantity": str(billed_quantity),
                "billed_amount": str(billed_amount),
                "quantity_now": str(line.quantity if line else 0),
                "amount_now": str(line.amount if line else 0),
                "difference": str(amount),
            },
            "exact_amount": str(amount),
        }
        lines.append(
            DraftLine(
                kind="usage_adjustment",
                description=f"Late usage for {period.label()} (after {named}): {subject}",
                amount=amount,
                quantity=quantity,
                unit_price=None,
                product_id=line.product_id if line else None,
                price_id=line.price_id if line else None,
                subscription_id=line.subscription_id if line else None,
                period_start=period.start,
                period_end=period.end,
                explanation=explanation,
                usage_key=key,
            )
        )
    return lines


def usage_periods(
    anchor_date: date, interval: Interval, timezone: str, cursor: datetime, as_of: datetime
) -> list[BillingPeriod]:
    """The periods whose usage `bill_subscription` may rate between `cursor` and `as_of`."""
    periods: list[BillingPeriod] = []
    while cursor <= as_of:
        period = period_containing(anchor_date, interval, cursor, timezone)
        if cursor == period.start:
            periods.append(period_at(anchor_date, interval, period.index - 1, timezone))
        cursor = period.end
    return periods


def _seat_source(price: PriceVersion) -> str:
    if price.terms.model is PricingModel.FLAT:
        return "flat fee per subscription"
    return "seats on the subscription"


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return text


def _quantity_text(quantity: Decimal) -> str:
    return f"x {_number(quantity)}"


def _short(instant: datetime, timezone: str) -> str:
    from tallybook.core.periods import local_date

    return local_date(instant, timezone).isoformat()


def _short_end(instant: datetime, timezone: str) -> str:
    """Windows end exclusive; people read the last day that was included."""
    from datetime import timedelta

    from tallybook.core.periods import local_date

    return (local_date(instant, timezone) - timedelta(days=1)).isoformat()


# -- one subscription at one billing run -------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionState:
    """What the billing run knows about a subscription when it reaches it."""

    id: str
    anchor_date: date
    changes: tuple[Change, ...]
    trial_end: datetime | None
    next_billing_at: datetime
    rerate_from: datetime | None


@dataclass(frozen=True)
class PeriodGuard:
    period_start: datetime
    period_end: datetime
    timing: str


@dataclass(frozen=True)
class SubscriptionBill:
    """The lines a subscription contributes to its customer's invoice for one billing date."""

    billing_at: datetime
    lines: tuple[DraftLine, ...]
    guards: tuple[PeriodGuard, ...]


@dataclass(frozen=True)
class SubscriptionOutcome:
    bills: tuple[SubscriptionBill, ...]
    next_billing_at: datetime
    ended: bool


def bill_subscription(
    context: SubscriptionContext,
    state: SubscriptionState,
    catalog: Catalog,
    as_of: datetime,
    billed: Mapping[tuple[datetime, str], Sequence[Coverage]],
    usage_for: Callable[[BillingPeriod], PeriodUsage],
) -> SubscriptionOutcome:
    """Everything due for one subscription from its cursor up to `as_of`.

    At each billing date (a period start, or the first billable instant): re-rate periods that
    were billed before a later change (once), bill the previous period's arrears and usage,
    and bill the new period in advance. `billed` holds coverage already invoiced, keyed by
    (period start, timing).
    """
    segments = billable_segments(state.changes, state.trial_end)
    end = end_of_life(state.changes)
    first_start = segments[0].start if segments else None
    bills: list[SubscriptionBill] = []
    cursor = state.next_billing_at
    rerate_from = state.rerate_from
    ended = False
    while cursor <= as_of:
        period = period_containing(state.anchor_date, context.interval, cursor, context.timezone)
        lines: list[DraftLine] = []
        guards: list[PeriodGuard] = []
        if rerate_from is not None:
            for (period_start, timing), coverage in sorted(billed.items()):
                if period_start >= cursor:
                    continue
                billed_period = period_containing(
                    state.anchor_date, context.interval, period_start, context.timezone
                )
                if billed_period.end <= rerate_from:
                    continue
                lines += adjustment_lines(
                    context, segments, catalog, billed_period, timing, coverage
                )
            rerate_from = None
        if cursor == period.start and first_start is not None and first_start < period.start:
            previous = period_at(
                state.anchor_date, context.interval, period.index - 1, context.timezone
            )
            if _active_in(segments, previous) and (previous.start, IN_ARREARS) not in billed:
                arrears = recurring_lines(context, segments, catalog, previous, IN_ARREARS)
                arrears += usage_lines(context, segments, catalog, previous, usage_for(previous))
                if arrears:
                    lines += arrears
                    guards.append(PeriodGuard(previous.start, previous.end, IN_ARREARS))
        if _active_in(segments, period) and (period.start, IN_ADVANCE) not in billed:
            advance = recurring_lines(context, segments, catalog, period, IN_ADVANCE)
            if advance:
                lines += advance
                guards.append(PeriodGuard(period.start, period.end, IN_ADVANCE))
        if lines:
            bills.append(SubscriptionBill(cursor, tuple(lines), tuple(guards)))
        if not segments or (end is not None and period.start >= end):
            ended = True
            cursor = period.end
            break
        cursor = period.end
    return SubscriptionOutcome(tuple(bills), cursor, ended)


def _active_in(segments: Sequence[Segment], period: BillingPeriod) -> bool:
    return any(s.overlap(period.start, period.end) is not None for s in segments)
