"""Double-entry bookkeeping: the default chart of accounts, the journal entry each financial
event posts, and the trial balance.

Postings are built from accounting *roles* (receivable, bank, tax payable, customer credit...)
and revenue account codes; the service maps roles to the organisation's chart. Amounts are
integer minor units of one currency per entry. A signed amount on a role is netted and put on
the side its sign says (positive = debit), so negative invoices and corrections need no special
cases, and every entry built here is balanced or refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from tallybook.core.money import allocate

ACCOUNT_TYPES = ("asset", "liability", "equity", "revenue", "expense")
# Roles every chart must fill: postings look accounts up by role.
ROLES = (
    "bank",
    "receivable",
    "tax_payable",
    "customer_credit",
    "revenue",
    "late_fee_income",
    "bad_debt",
)


class LedgerError(ValueError):
    """An entry that would not balance, or a chart that lacks an account a posting needs."""


@dataclass(frozen=True)
class ChartAccount:
    code: str
    name: str
    type: str
    role: str | None = None


DEFAULT_CHART: tuple[ChartAccount, ...] = (
    ChartAccount("1000", "Bank", "asset", "bank"),
    ChartAccount("1100", "Accounts receivable", "asset", "receivable"),
    ChartAccount("2100", "Sales tax payable", "liability", "tax_payable"),
    ChartAccount("2200", "Customer credit balances", "liability", "customer_credit"),
    ChartAccount("3000", "Retained earnings", "equity"),
    ChartAccount("4000", "Revenue", "revenue", "revenue"),
    ChartAccount("4800", "Late fee income", "revenue", "late_fee_income"),
    ChartAccount("6100", "Bad debt expense", "expense", "bad_debt"),
)


@dataclass(frozen=True)
class Posting:
    """One line of an entry: an account code and exactly one positive side."""

    account: str
    debit_minor: int
    credit_minor: int
    description: str = ""


@dataclass(frozen=True)
class Entry:
    kind: str
    entry_date: date
    currency: str
    memo: str
    postings: tuple[Posting, ...]
    document: str | None = None

    @property
    def debits(self) -> int:
        return sum(p.debit_minor for p in self.postings)

    @property
    def credits(self) -> int:
        return sum(p.credit_minor for p in self.postings)


def build_entry(
    kind: str,
    entry_date: date,
    currency: str,
    memo: str,
    amounts: Iterable[tuple[str, int, str]],
    document: str | None = None,
) -> Entry:
    """An entry from signed amounts (account, +debit/-credit, description), netted per account
    and description. Refuses an entry that does not balance; drops zero lines."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    for account, signed, description in amounts:
        net[(account, description)] += signed
    if sum(net.values()) != 0:
        raise LedgerError(
            f"{kind} {document or ''}: debits and credits differ by {sum(net.values())} minor units"
        )
    postings = tuple(
        Posting(account, max(signed, 0), max(-signed, 0), description)
        for (account, description), signed in net.items()
        if signed
    )
    return Entry(kind, entry_date, currency, memo, postings, document)


@dataclass(frozen=True)
class Accounts:
    """The codes of the roles in one organisation's chart."""

    codes: Mapping[str, str]

    def __getitem__(self, role: str) -> str:
        try:
            return self.codes[role]
        except KeyError:
            raise LedgerError(f"the chart of accounts has no {role} account") from None


def _revenue_split(
    net_minor: int, revenue_lines: Sequence[tuple[str | None, int]], default: str
) -> list[tuple[str, int]]:
    """`net_minor` (total less tax) over revenue accounts in proportion to the lines' net
    amounts; exact to the minor unit, so the entry balances whatever the discounts did."""
    by_account: dict[str, int] = defaultdict(int)
    for account, amount in revenue_lines:
        by_account[account or default] += amount
    accounts = sorted(by_account)
    if not accounts:
        return [(default, net_minor)] if net_minor else []
    weights = [abs(by_account[a]) for a in accounts]
    if sum(by_account.values()) == net_minor:
        return [(a, by_account[a]) for a in accounts]
    shares = allocate(net_minor, weights)
    return list(zip(accounts, shares, strict=True))


def invoice_issued(
    accounts: Accounts,
    *,
    number: str,
    issue_date: date,
    currency: str,
    customer: str,
    total_minor: int,
    tax_minor: int,
    revenue_lines: Sequence[tuple[str | None, int]],
    credit_applied_minor: int = 0,
    late_fee: bool = False,
) -> Entry:
    """Dr receivable / Cr revenue per account / Cr tax payable. A negative invoice moves to
    customer credit; customer credit used on the invoice moves off the receivable."""
    revenue = accounts["late_fee_income" if late_fee else "revenue"]
    amounts: list[tuple[str, int, str]] = [(accounts["receivable"], total_minor, customer)]
    for account, share in _revenue_split(total_minor - tax_minor, revenue_lines, revenue):
        amounts.append((account, -share, "revenue"))
    if tax_minor:
        amounts.append((accounts["tax_payable"], -tax_minor, "tax"))
    if total_minor < 0:
        amounts.append((accounts["receivable"], -total_minor, customer))
        amounts.append((accounts["customer_credit"], total_minor, customer))
    if credit_applied_minor:
        amounts.append((accounts["customer_credit"], credit_applied_minor, customer))
        amounts.append((accounts["receivable"], -credit_applied_minor, customer))
    kind = "late_fee" if late_fee else "invoice_issued"
    return build_entry(
        kind, issue_date, currency, f"{number} issued to {customer}", amounts, number
    )


def invoice_voided(issued: Entry, *, number: str, void_date: date) -> Entry:
    """The issuing entry, reversed."""
    amounts = [(p.account, p.credit_minor - p.debit_minor, p.description) for p in issued.postings]
    return build_entry(
        "invoice_voided", void_date, issued.currency, f"{number} voided", amounts, number
    )


def credit_note_issued(
    accounts: Accounts,
    *,
    number: str,
    invoice_number: str,
    issue_date: date,
    currency: str,
    customer: str,
    total_minor: int,
    tax_minor: int,
    revenue_lines: Sequence[tuple[str | None, int]],
    to_invoice_minor: int,
    to_credit_minor: int,
    written_off_minor: int = 0,
) -> Entry:
    """Dr revenue / Dr tax payable / Cr receivable (what it takes off the invoice) and Cr
    customer credit (what it gives back as credit); crediting an amount already written off
    takes it back out of bad debt instead."""
    if to_invoice_minor + to_credit_minor + written_off_minor != total_minor:
        raise LedgerError(f"credit note {number}: settlement does not add up to its total")
    amounts: list[tuple[str, int, str]] = []
    for account, share in _revenue_split(
        total_minor - tax_minor, revenue_lines, accounts["revenue"]
    ):
        amounts.append((account, share, "revenue"))
    if tax_minor:
        amounts.append((accounts["tax_payable"], tax_minor, "tax"))
    amounts.append((accounts["receivable"], -to_invoice_minor, customer))
    amounts.append((accounts["customer_credit"], -to_credit_minor, customer))
    if written_off_minor:
        amounts.append((accounts["bad_debt"], -written_off_minor, f"{invoice_number} written off"))
    return build_entry(
        "credit_note_issued",
        issue_date,
        currency,
        f"{number} credits {invoice_number} for {customer}",
        amounts,
        number,
    )


def payment_received(
    accounts: Accounts,
    *,
    number: str,
    received_on: date,
    currency: str,
    customer: str,
    amount_minor: int,
    applied_minor: int,
) -> Entry:
    """Dr bank / Cr receivable (applied to invoices) / Cr customer credit (the rest)."""
    if not 0 <= applied_minor <= amount_minor:
        raise LedgerError(f"payment {number}: applies more than it brings")
    amounts = [
        (accounts["bank"], amount_minor, "received"),
        (accounts["receivable"], -applied_minor, customer),
        (accounts["customer_credit"], applied_minor - amount_minor, customer),
    ]
    return build_entry(
        "payment_received", received_on, currency, f"{number} from {customer}", amounts, number
    )


def money_returned(
    accounts: Accounts,
    *,
    kind: str,
    number: str,
    on: date,
    currency: str,
    customer: str,
    from_invoices_minor: int,
    from_credit_minor: int,
    memo: str,
) -> Entry:
    """A refund or a reversed payment: Dr receivable (reopened on invoices) / Dr customer
    credit (taken from the balance) / Cr bank."""
    amounts = [
        (accounts["receivable"], from_invoices_minor, customer),
        (accounts["customer_credit"], from_credit_minor, customer),
        (accounts["bank"], -(from_invoices_minor + from_credit_minor), "paid out"),
    ]
    return build_entry(kind, on, currency, memo, amounts, number)


def written_off(
    accounts: Accounts, *, number: str, on: date, currency: str, customer: str, amount_minor: int
) -> Entry:
    """Dr bad debt / Cr receivable."""
    amounts = [
        (accounts["bad_debt"], amount_minor, f"{number} written off"),
        (accounts["receivable"], -amount_minor, customer),
    ]
    return build_entry(
        "write_off", on, currency, f"{number} written off ({customer})", amounts, number
    )


@dataclass(frozen=True)
class BalanceRow:
    account: str
    currency: str
    debit_minor: int
    credit_minor: int

    @property
    def balance_minor(self) -> int:
        """Debit balance positive, credit balance negative."""
        return self.debit_minor - self.credit_minor


def trial_balance(lines: Iterable[tuple[str, str, int, int]]) -> list[BalanceRow]:
    """Totals per (account, currency) of (account, currency, debit, credit) lines, by account
    code. Each currency's debits equal its credits when every entry balanced."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for account, currency, debit, credit in lines:
        pair = totals[(account, currency)]
        pair[0] += debit
        pair[1] += credit
    return [
        BalanceRow(account, currency, debit, credit)
        for (account, currency), (debit, credit) in sorted(totals.items())
    ]
