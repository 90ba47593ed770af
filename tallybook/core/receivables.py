"""Accounts receivable reports: aging, days sales outstanding and customer statements.

Amounts are integer minor units and are only ever added within one currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from tallybook.core.money import MoneyError, currency_exponent

__all__ = [
    "AGING_BUCKETS",
    "CREDITED_KINDS",
    "INVOICED_KINDS",
    "PAID_KINDS",
    "WRITTEN_OFF_KINDS",
    "AgingReport",
    "AgingRow",
    "AgingTotal",
    "CustomerStatement",
    "ReceivableItem",
    "ReceivablesError",
    "StatementEntry",
    "StatementLine",
    "age",
    "aging_bucket",
    "customer_statement",
    "days_overdue",
    "dso",
]

# Days past due. "current" is not yet due (due today included); "90+" means 91 days or more.
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")

# How statement entries count in the period totals. Any other kind (an adjustment, a late fee
# posted on its own) still moves the balance and is summed in `other_minor`.
INVOICED_KINDS = frozenset({"invoice", "debit_note"})
PAID_KINDS = frozenset({"payment", "refund", "payment_reversal"})
CREDITED_KINDS = frozenset({"credit_note", "credit_applied"})
WRITTEN_OFF_KINDS = frozenset({"write_off"})


class ReceivablesError(ValueError):
    """Input a receivables report cannot be built from; the message starts with the field."""


def _currency(code: str, field: str) -> str:
    try:
        currency_exponent(code)
    except MoneyError as error:
        raise ReceivablesError(f"{field}: {error}") from None
    return code.upper()


@dataclass(frozen=True)
class ReceivableItem:
    """One open document (invoice or debit note) as of the report date."""

    document_id: str
    number: str
    customer_id: str
    customer_name: str
    currency: str
    issue_date: date
    due_date: date
    open_minor: int  # still owed as of the report date

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", _currency(self.currency, "currency"))
        if isinstance(self.open_minor, bool) or not isinstance(self.open_minor, int):
            raise ReceivablesError(f"open_minor: {self.number} needs an integer of minor units")
        if self.open_minor <= 0:
            # Settled documents are not receivables; a report that listed them would age zeros.
            raise ReceivablesError(f"open_minor: {self.number} is not open ({self.open_minor})")


class _HasDueDate(Protocol):
    @property
    def due_date(self) -> date: ...


def days_overdue(item: _HasDueDate, as_of: date) -> int:
    """Whole days past the due date on `as_of`; 0 while not yet due (due today is not late)."""
    return max((as_of - item.due_date).days, 0)


def aging_bucket(days_past_due: int) -> str:
    """The aging bucket of a number of days past due (0 or less: current)."""
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "90+"


@dataclass(frozen=True)
class AgingRow:
    """What one customer owes in one currency, spread over the aging buckets."""

    customer_id: str
    customer_name: str
    currency: str
    buckets_minor: tuple[int, ...]  # aligned with AGING_BUCKETS
    total_minor: int
    oldest_days_overdue: int  # 0 when nothing is overdue
    document_count: int

    def amount(self, bucket: str) -> int:
        return self.buckets_minor[AGING_BUCKETS.index(bucket)]


@dataclass(frozen=True)
class AgingTotal:
    """Column totals of the aging report for one currency."""

    currency: str
    buckets_minor: tuple[int, ...]  # aligned with AGING_BUCKETS
    total_minor: int
    document_count: int

    def amount(self, bucket: str) -> int:
        return self.buckets_minor[AGING_BUCKETS.index(bucket)]


@dataclass(frozen=True)
class AgingReport:
    """Rows by (currency, customer name, customer id); totals by currency. Never cross-currency."""

    as_of: date
    rows: tuple[AgingRow, ...]
    totals: tuple[AgingTotal, ...]

    def total_for(self, currency: str) -> AgingTotal | None:
        code = currency.upper()
        return next((t for t in self.totals if t.currency == code), None)


def age(items: Iterable[ReceivableItem], as_of: date) -> AgingReport:
    """Age open documents on `as_of`.

    A customer's name on its row is the one on its most recently issued document, because
    documents carry a snapshot of the name at issue and the newest is the one to show.
    """
    seen: set[str] = set()
    groups: dict[tuple[str, str], list[ReceivableItem]] = {}
    for item in items:
        if item.document_id in seen:
            raise ReceivablesError(f"document_id: {item.document_id} is listed twice")
        seen.add(item.document_id)
        if item.issue_date > as_of:
            raise ReceivablesError(
                f"issue_date: {item.number} was issued {item.issue_date}, after the report date"
            )
        groups.setdefault((item.customer_id, item.currency), []).append(item)

    rows = []
    totals: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    for (customer_id, currency), group in groups.items():
        buckets = [0] * len(AGING_BUCKETS)
        oldest = 0
        for item in group:
            days = days_overdue(item, as_of)
            buckets[AGING_BUCKETS.index(aging_bucket(days))] += item.open_minor
            oldest = max(oldest, days)
        column = totals.setdefault(currency, [0] * len(AGING_BUCKETS))
        for index, amount in enumerate(buckets):
            column[index] += amount
        counts[currency] = counts.get(currency, 0) + len(group)
        newest = max(enumerate(group), key=lambda pair: (pair[1].issue_date, pair[0]))[1]
        rows.append(
            AgingRow(
                customer_id=customer_id,
                customer_name=newest.customer_name,
                currency=currency,
                buckets_minor=tuple(buckets),
                total_minor=sum(buckets),
                oldest_days_overdue=oldest,
                document_count=len(group),
            )
        )
    rows.sort(key=lambda r: (r.currency, r.customer_name.casefold(), r.customer_id))
    return AgingReport(
        as_of=as_of,
        rows=tuple(rows),
        totals=tuple(
            AgingTotal(currency, tuple(column), sum(column), counts[currency])
            for currency, column in sorted(totals.items())
        ),
    )


def dso(receivables_minor: int, credit_sales_minor: int, days: int) -> Decimal | None:
    """Days sales outstanding: receivables / credit sales x days, to 0.1 day, half up.

    Receivables are what is open at the end of the period; credit sales are what was invoiced
    on credit during the `days` of that period, in the same currency. An example: 45,000.00
    open after 30 days of 100,000.00 credit sales is 0.45 x 30 = 13.5 days. There is no DSO
    without sales, so zero (or net negative) credit sales give None.
    """
    if days <= 0:
        raise ReceivablesError(f"days: the period must last at least one day, not {days}")
    if credit_sales_minor <= 0:
        return None
    # Integer arithmetic, so the half-up rounding sees the exact quotient in tenths of a day.
    numerator = abs(receivables_minor) * days * 10
    tenths, remainder = divmod(numerator, credit_sales_minor)
    if 2 * remainder >= credit_sales_minor:
        tenths += 1
    if receivables_minor < 0:
        tenths = -tenths
    return Decimal(tenths).scaleb(-1)


@dataclass(frozen=True)
class StatementEntry:
    """One movement on a customer's account. A debit raises what the customer owes.

    `kind` is invoice, debit_note, payment, credit_note, refund, payment_reversal, write_off,
    credit_applied or any other word; see the *_KINDS sets for how kinds are totalled.
    """

    date: date
    kind: str
    reference: str
    description: str
    debit_minor: int = 0
    credit_minor: int = 0


@dataclass(frozen=True)
class StatementLine:
    """A statement entry in the period with the account balance after it."""

    date: date
    kind: str
    reference: str
    description: str
    debit_minor: int
    credit_minor: int
    balance_minor: int


@dataclass(frozen=True)
class CustomerStatement:
    """A customer's account over a period. A positive balance is owed by the customer.

    closing = opening + invoiced - paid - credited - written_off + other
            = opening + debits - credits
    """

    customer_id: str
    customer_name: str
    currency: str
    period_start: date
    period_end: date
    opening_balance_minor: int
    lines: tuple[StatementLine, ...]
    closing_balance_minor: int
    debits_minor: int
    credits_minor: int
    invoiced_minor: int  # invoices and debit notes, net
    paid_minor: int  # payments less refunds and reversed payments
    credited_minor: int  # credit notes and customer credit applied
    written_off_minor: int
    other_minor: int  # net debit of every other kind


def customer_statement(
    customer_id: str,
    customer_name: str,
    currency: str,
    period_start: date,
    period_end: date,
    entries: Sequence[StatementEntry],
) -> CustomerStatement:
    """Build a statement from the customer's entries in one currency (any order, any dates).

    Entries before the period make up the opening balance; entries after it are ignored.
    Lines are in date order; entries of the same day keep the order they were given in.
    """
    code = _currency(currency, "currency")
    if period_start > period_end:
        raise ReceivablesError(
            f"period_end: {period_end} is before the period start {period_start}"
        )
    for index, entry in enumerate(entries):
        for field in ("debit_minor", "credit_minor"):
            value = getattr(entry, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ReceivablesError(
                    f"entries[{index}].{field}: {entry.reference} needs a non-negative integer"
                    f" of minor units, not {value!r}"
                )
        if not entry.kind:
            raise ReceivablesError(f"entries[{index}].kind: {entry.reference} has no kind")

    opening = sum(e.debit_minor - e.credit_minor for e in entries if e.date < period_start)
    # sorted() is stable, so same-day entries keep their input order.
    in_period = sorted(
        (e for e in entries if period_start <= e.date <= period_end), key=lambda e: e.date
    )
    balance = opening
    lines = []
    net_by_group = {"invoiced": 0, "paid": 0, "credited": 0, "written_off": 0, "other": 0}
    for entry in in_period:
        balance += entry.debit_minor - entry.credit_minor
        lines.append(
            StatementLine(
                date=entry.date,
                kind=entry.kind,
                reference=entry.reference,
                description=entry.description,
                debit_minor=entry.debit_minor,
                credit_minor=entry.credit_minor,
                balance_minor=balance,
            )
        )
        net_debit = entry.debit_minor - entry.credit_minor
        if entry.kind in INVOICED_KINDS:
            net_by_group["invoiced"] += net_debit
        elif entry.kind in PAID_KINDS:
            net_by_group["paid"] -= net_debit
        elif entry.kind in CREDITED_KINDS:
            net_by_group["credited"] -= net_debit
        elif entry.kind in WRITTEN_OFF_KINDS:
            net_by_group["written_off"] -= net_debit
        else:
            net_by_group["other"] += net_debit
    return CustomerStatement(
        customer_id=customer_id,
        customer_name=customer_name,
        currency=code,
        period_start=period_start,
        period_end=period_end,
        opening_balance_minor=opening,
        lines=tuple(lines),
        closing_balance_minor=balance,
        debits_minor=sum(e.debit_minor for e in in_period),
        credits_minor=sum(e.credit_minor for e in in_period),
        invoiced_minor=net_by_group["invoiced"],
        paid_minor=net_by_group["paid"],
        credited_minor=net_by_group["credited"],
        written_off_minor=net_by_group["written_off"],
        other_minor=net_by_group["other"],
    )
