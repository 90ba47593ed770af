"""Dunning: the payment reminder each open invoice is due today, late fees, collections worklist.

Safe to run as often as wanted: a reminder is never repeated, and after days without a run only
the latest step that fell due goes out, not a burst of old ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType

from tallybook.core.money import (
    MoneyError,
    RoundingMode,
    currency_exponent,
    format_minor,
    from_minor,
    round_to_minor,
)
from tallybook.core.receivables import days_overdue

__all__ = [
    "INVOICE_STATUSES",
    "LATE_FEE_KINDS",
    "OPEN_STATUSES",
    "DunningError",
    "DunningInvoice",
    "DunningPolicy",
    "DunningStep",
    "LateFee",
    "PausedReminder",
    "ReminderAction",
    "WorklistRow",
    "late_fee_for",
    "paused_reminders",
    "reminders_due",
    "step_dates",
    "worklist",
]

INVOICE_STATUSES = ("issued", "partially_paid", "paid", "void", "uncollectible")
OPEN_STATUSES = frozenset({"issued", "partially_paid"})
LATE_FEE_KINDS = ("fixed", "percent")


class DunningError(ValueError):
    """A policy or invoice dunning cannot work with; the message starts with the field."""


def _minor(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DunningError(f"{field_name}: needs a non-negative integer of minor units")
    return value


def _per_currency(values: Mapping[str, int], field_name: str) -> Mapping[str, int]:
    cleaned = {}
    for code, amount in values.items():
        try:
            currency_exponent(code)
        except MoneyError as error:
            raise DunningError(f"{field_name}: {error}") from None
        cleaned[code.upper()] = _minor(amount, f"{field_name}[{code}]")
    return MappingProxyType(cleaned)


@dataclass(frozen=True)
class DunningStep:
    """One reminder of a schedule, sent `offset_days` after the due date (negative: before)."""

    offset_days: int
    level: int  # escalation level, 1 for the gentlest reminder
    name: str  # "friendly reminder", "final notice"
    late_fee: bool = False  # sending this step charges the policy's late fee


@dataclass(frozen=True)
class LateFee:
    """A late fee: a fixed amount per currency, or a percent of what is open.

    `cap_minor` (per currency; a currency without an entry is uncapped) bounds each fee and
    the sum of all late fees charged on one invoice.
    """

    kind: str  # "fixed" | "percent"
    amount_minor: Mapping[str, int] = field(default_factory=dict, hash=False)
    percent: Decimal = Decimal(0)  # 1.5 means 1.5 % of the open amount
    cap_minor: Mapping[str, int] = field(default_factory=dict, hash=False)
    rounding: RoundingMode = RoundingMode.HALF_UP

    def __post_init__(self) -> None:
        if self.kind not in LATE_FEE_KINDS:
            raise DunningError(f"kind: must be one of {', '.join(LATE_FEE_KINDS)}")
        if isinstance(self.percent, float) or not isinstance(self.percent, Decimal | int):
            raise DunningError("percent: give a Decimal, not a float")
        percent = Decimal(self.percent)
        if not percent.is_finite() or percent < 0:
            raise DunningError(f"percent: must be zero or more, not {self.percent}")
        object.__setattr__(self, "percent", percent)
        object.__setattr__(self, "amount_minor", _per_currency(self.amount_minor, "amount_minor"))
        object.__setattr__(self, "cap_minor", _per_currency(self.cap_minor, "cap_minor"))
        object.__setattr__(self, "rounding", RoundingMode(self.rounding))
        if self.kind == "fixed" and percent:
            raise DunningError("percent: a fixed late fee takes amount_minor, not a percent")
        if self.kind == "percent" and self.amount_minor:
            raise DunningError("amount_minor: a percent late fee takes a percent, not amounts")


@dataclass(frozen=True)
class DunningPolicy:
    """A reminder schedule. Steps are in the order they are sent (strictly later offsets).

    `min_overdue_minor` leaves small balances alone: one amount for every currency, or a
    mapping per currency (a currency without an entry has no minimum), since 5.00 EUR and
    500 JPY are not the same 500 minor units.
    """

    steps: tuple[DunningStep, ...]
    late_fee: LateFee | None = None
    min_overdue_minor: int | Mapping[str, int] = field(default=0, hash=False)

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        for index, step in enumerate(steps):
            if not step.name:
                raise DunningError(f"steps[{index}].name: a step needs a name")
            if isinstance(step.level, bool) or not isinstance(step.level, int) or step.level < 1:
                raise DunningError(f"steps[{index}].level: must be 1 or more")
            if index and step.offset_days <= steps[index - 1].offset_days:
                raise DunningError(
                    f"steps[{index}].offset_days: {step.offset_days} must come after the"
                    f" previous step's {steps[index - 1].offset_days}"
                )
            if index and step.level < steps[index - 1].level:
                raise DunningError(
                    f"steps[{index}].level: escalation never goes down"
                    f" ({steps[index - 1].level} before {step.level})"
                )
        if isinstance(self.min_overdue_minor, Mapping):
            minimum = _per_currency(self.min_overdue_minor, "min_overdue_minor")
            object.__setattr__(self, "min_overdue_minor", minimum)
        else:
            _minor(self.min_overdue_minor, "min_overdue_minor")

    def minimum_for(self, currency: str) -> int:
        if isinstance(self.min_overdue_minor, Mapping):
            return self.min_overdue_minor.get(currency.upper(), 0)
        return self.min_overdue_minor


@dataclass(frozen=True)
class DunningInvoice:
    """What dunning needs to know about one invoice.

    `steps_done` are indexes into the policy's steps of the reminders already sent;
    `late_fees_charged_minor` is the sum of late fees already charged on the invoice.
    """

    invoice_id: str
    number: str
    customer_id: str
    currency: str
    due_date: date
    open_minor: int
    disputed: bool = False
    status: str = "issued"
    steps_done: frozenset[int] = frozenset()
    late_fees_charged_minor: int = 0

    def __post_init__(self) -> None:
        try:
            currency_exponent(self.currency)
        except MoneyError as error:
            raise DunningError(f"currency: {error}") from None
        object.__setattr__(self, "currency", self.currency.upper())
        if self.status not in INVOICE_STATUSES:
            raise DunningError(
                f"status: {self.number} has status {self.status!r};"
                f" expected one of {', '.join(INVOICE_STATUSES)}"
            )
        _minor(self.open_minor, "open_minor")
        _minor(self.late_fees_charged_minor, "late_fees_charged_minor")
        done = frozenset(self.steps_done)
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in done):
            raise DunningError(f"steps_done: {self.number} lists something that is not a step")
        object.__setattr__(self, "steps_done", done)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES and self.open_minor > 0


@dataclass(frozen=True)
class ReminderAction:
    """Send step `step_index` of the policy for one invoice today.

    After sending, record `step_index` in the invoice's steps_done and add `fee_minor` to its
    late fees. Skipped steps need not be recorded: nothing at or before a sent step is sent.
    """

    invoice_id: str
    number: str
    customer_id: str
    currency: str
    step_index: int
    level: int
    step_name: str
    step_date: date  # the day the step fell due: due date + offset
    days_overdue: int  # negative before the due date
    fee_minor: int
    skipped_steps: tuple[int, ...]  # passed over because the run did not happen on their day
    summary: str


@dataclass(frozen=True)
class PausedReminder:
    """A reminder that would be due but is held back because the invoice is disputed."""

    invoice_id: str
    number: str
    customer_id: str
    step_index: int
    step_name: str
    step_date: date
    summary: str


def step_dates(policy: DunningPolicy, due_date: date) -> tuple[date, ...]:
    """The day each step of the policy falls due for an invoice due on `due_date`."""
    return tuple(due_date + timedelta(days=step.offset_days) for step in policy.steps)


def late_fee_for(fee: LateFee, currency: str, open_minor: int, charged_minor: int = 0) -> int:
    """The late fee on `open_minor`, never taking the invoice's late fees above the cap.

    A fixed fee in a currency the policy has no amount for is 0.
    """
    code = currency.upper()
    if fee.kind == "fixed":
        amount = fee.amount_minor.get(code, 0)
    else:
        # from_minor and scaleb are exact; the single rounding is round_to_minor's.
        amount = round_to_minor(
            from_minor(open_minor, code) * fee.percent.scaleb(-2), code, fee.rounding
        )
    cap = fee.cap_minor.get(code)
    if cap is not None:
        amount = min(amount, cap - charged_minor)
    return max(amount, 0)


def _latest_due_step(
    invoice: DunningInvoice, policy: DunningPolicy, today: date
) -> tuple[int, tuple[int, ...]] | None:
    """The step to send today and the steps it passes over, or None."""
    if any(index >= len(policy.steps) for index in invoice.steps_done):
        raise DunningError(
            f"steps_done: {invoice.number} lists step {max(invoice.steps_done)} but the policy"
            f" has {len(policy.steps)} steps"
        )
    dates = step_dates(policy, invoice.due_date)
    due = [index for index, day in enumerate(dates) if day <= today]
    if not due:
        return None
    latest = due[-1]
    last_sent = max(invoice.steps_done, default=-1)
    # Never repeat a step, and never fall back to a milder one after a later step went out
    # (which can happen when a due date is moved out).
    if latest <= last_sent:
        return None
    return latest, tuple(range(last_sent + 1, latest))


def _chased(invoice: DunningInvoice, policy: DunningPolicy) -> bool:
    return invoice.is_open and invoice.open_minor >= policy.minimum_for(invoice.currency)


def reminders_due(
    invoices: Iterable[DunningInvoice], policy: DunningPolicy, today: date
) -> list[ReminderAction]:
    """At most one reminder per open, undisputed invoice: the latest step due and not yet sent.

    Paid, void, uncollectible and disputed invoices get nothing (see `paused_reminders` for
    the disputed ones), nor do balances under the policy's minimum. Actions keep input order.
    """
    actions = []
    for invoice in invoices:
        if invoice.disputed or not _chased(invoice, policy):
            continue
        found = _latest_due_step(invoice, policy, today)
        if found is None:
            continue
        index, skipped = found
        step = policy.steps[index]
        fee = 0
        if step.late_fee and policy.late_fee is not None:
            fee = late_fee_for(
                policy.late_fee,
                invoice.currency,
                invoice.open_minor,
                invoice.late_fees_charged_minor,
            )
        step_date = invoice.due_date + timedelta(days=step.offset_days)
        actions.append(
            ReminderAction(
                invoice_id=invoice.invoice_id,
                number=invoice.number,
                customer_id=invoice.customer_id,
                currency=invoice.currency,
                step_index=index,
                level=step.level,
                step_name=step.name,
                step_date=step_date,
                days_overdue=(today - invoice.due_date).days,
                fee_minor=fee,
                skipped_steps=skipped,
                summary=_summary(invoice, policy, index, fee, skipped, today),
            )
        )
    return actions


def _when(offset_days: int) -> str:
    if offset_days == 0:
        return "on the due date"
    unit = "day" if abs(offset_days) == 1 else "days"
    side = "before" if offset_days < 0 else "after"
    return f"{abs(offset_days)} {unit} {side} the due date"


def _summary(
    invoice: DunningInvoice,
    policy: DunningPolicy,
    index: int,
    fee: int,
    skipped: tuple[int, ...],
    today: date,
) -> str:
    step = policy.steps[index]
    text = (
        f"{invoice.number}: send {step.name} (level {step.level}, {_when(step.offset_days)})"
        f" for {format_minor(invoice.open_minor, invoice.currency)} open"
    )
    if fee:
        text += f", charging a late fee of {format_minor(fee, invoice.currency)}"
    elif step.late_fee and policy.late_fee is not None:
        text += ", no late fee (cap reached or no amount for this currency)"
    if skipped:
        text += "; skipped " + ", ".join(policy.steps[i].name for i in skipped)
    step_date = invoice.due_date + timedelta(days=step.offset_days)
    if step_date < today:
        text += f"; it fell due on {step_date.isoformat()}"
    return text + "."


def paused_reminders(
    invoices: Iterable[DunningInvoice], policy: DunningPolicy, today: date
) -> list[PausedReminder]:
    """The reminders `reminders_due` holds back today because their invoice is disputed."""
    paused = []
    for invoice in invoices:
        if not invoice.disputed or not _chased(invoice, policy):
            continue
        found = _latest_due_step(invoice, policy, today)
        if found is None:
            continue
        index = found[0]
        step = policy.steps[index]
        paused.append(
            PausedReminder(
                invoice_id=invoice.invoice_id,
                number=invoice.number,
                customer_id=invoice.customer_id,
                step_index=index,
                step_name=step.name,
                step_date=invoice.due_date + timedelta(days=step.offset_days),
                summary=f"{invoice.number}: {step.name} paused while the invoice is disputed.",
            )
        )
    return paused


@dataclass(frozen=True)
class WorklistRow:
    """An overdue open invoice for the collections team."""

    invoice_id: str
    number: str
    customer_id: str
    currency: str
    due_date: date
    open_minor: int
    days_overdue: int
    risk_score: int  # open_minor x days_overdue; comparable only within one currency
    reporting_risk: Decimal | None  # risk in reporting major units x days, with a rate table
    disputed: bool


def worklist(
    invoices: Iterable[DunningInvoice],
    today: date,
    to_reporting: Mapping[str, Decimal] | None = None,
) -> list[WorklistRow]:
    """Overdue open invoices, riskiest first; disputed ones included and flagged.

    Risk is the open amount times the days overdue. Minor units of different currencies do
    not compare, so without `to_reporting` the list is grouped by currency (alphabetical)
    and sorted by risk within each. With `to_reporting` (units of the reporting currency per
    unit of each invoice currency) the whole list is sorted on the converted risk. Ties go to
    the older due date, then the invoice number.
    """
    rows = []
    for invoice in invoices:
        days = days_overdue(invoice, today)
        if not invoice.is_open or days == 0:
            continue
        reporting = None
        if to_reporting is not None:
            rate = to_reporting.get(invoice.currency)
            if rate is None:
                raise DunningError(
                    f"to_reporting: no rate for {invoice.currency} (invoice {invoice.number})"
                )
            if isinstance(rate, float):
                raise DunningError(f"to_reporting[{invoice.currency}]: give a Decimal")
            # A sort key, not an amount: it is never rounded or shown as money.
            reporting = from_minor(invoice.open_minor, invoice.currency) * Decimal(rate) * days
        rows.append(
            WorklistRow(
                invoice_id=invoice.invoice_id,
                number=invoice.number,
                customer_id=invoice.customer_id,
                currency=invoice.currency,
                due_date=invoice.due_date,
                open_minor=invoice.open_minor,
                days_overdue=days,
                risk_score=invoice.open_minor * days,
                reporting_risk=reporting,
                disputed=invoice.disputed,
            )
        )
    if to_reporting is None:
        rows.sort(key=lambda r: (r.currency, -r.risk_score, r.due_date, r.number))
    else:
        rows.sort(key=lambda r: (-(r.reporting_risk or 0), r.due_date, r.number, r.currency))
    return rows
