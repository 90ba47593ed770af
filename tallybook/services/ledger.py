"""The general ledger: each financial event posts its journal entry in the event's own
transaction; the chart of accounts, journals and the trial balance for any date.

Posting helpers (`post_*`) take the caller's session: an invoice is never issued without its
entry, nor an entry written for an invoice that was not issued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tallybook.core import ledger as core
from tallybook.db.models import (
    Customer,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    LedgerAccount,
    Product,
    new_id,
)
from tallybook.services.base import (
    MANAGERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    snapshot,
    utcnow,
)

JOURNAL_PATTERN = "JE-{seq:08}"


def ensure_chart(session: Session, organization_id: str) -> None:
    """Give an organisation the default chart the first time it posts."""
    present = session.scalar(
        select(func.count())
        .select_from(LedgerAccount)
        .where(LedgerAccount.organization_id == organization_id)
    )
    if present:
        return
    now = utcnow()
    for account in core.DEFAULT_CHART:
        session.add(
            LedgerAccount(
                id=new_id("acc"),
                organization_id=organization_id,
                code=account.code,
                name=account.name,
                type=account.type,
                role=account.role,
                created_at=now,
            )
        )
    session.flush()


def accounts_of(session: Session, organization_id: str) -> core.Accounts:
    ensure_chart(session, organization_id)
    rows = session.execute(
        select(LedgerAccount.role, LedgerAccount.code).where(
            LedgerAccount.organization_id == organization_id, LedgerAccount.role.is_not(None)
        )
    ).all()
    return core.Accounts({role: code for role, code in rows})


def post(
    session: Session,
    organization_id: str,
    entry: core.Entry,
    *,
    source_type: str,
    source_id: str,
    customer_id: str | None = None,
) -> JournalEntry | None:
    """Write a balanced entry with the next journal number; an entry of no amount is skipped."""
    if not entry.postings:
        return None
    if entry.debits != entry.credits:  # build_entry refuses these; this is the last guard
        raise core.LedgerError(f"{entry.kind}: unbalanced entry")
    from tallybook.services.invoices import next_number

    number = next_number(session, organization_id, "journal", JOURNAL_PATTERN, entry.entry_date)
    row = JournalEntry(
        id=new_id("je"),
        organization_id=organization_id,
        number=number,
        entry_date=entry.entry_date,
        kind=entry.kind,
        memo=entry.memo[:500],
        currency=entry.currency,
        source_type=source_type,
        source_id=source_id,
        customer_id=customer_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    for position, posting in enumerate(entry.postings, start=1):
        session.add(
            JournalLine(
                id=new_id("jl"),
                organization_id=organization_id,
                entry_id=row.id,
                position=position,
                account_code=posting.account,
                debit_minor=posting.debit_minor,
                credit_minor=posting.credit_minor,
                description=posting.description[:500],
                document=entry.document,
            )
        )
    return row


def revenue_lines(session: Session, invoice_id: str) -> list[tuple[str | None, int]]:
    """(revenue account, net amount) of each line of an invoice: the product's account."""
    rows = session.execute(
        select(
            Product.revenue_account,
            InvoiceLine.subtotal_minor - InvoiceLine.discount_minor,
        )
        .select_from(InvoiceLine)
        .outerjoin(Product, Product.id == InvoiceLine.product_id)
        .where(InvoiceLine.invoice_id == invoice_id)
    ).all()
    return [(account, int(amount)) for account, amount in rows]


def post_invoice_issued(session: Session, invoice: Invoice, customer: Customer) -> None:
    accounts = accounts_of(session, invoice.organization_id)
    entry = core.invoice_issued(
        accounts,
        number=invoice.number or invoice.id,
        issue_date=invoice.issue_date or utcnow().date(),
        currency=invoice.currency,
        customer=customer.legal_name,
        total_minor=invoice.total_minor,
        tax_minor=invoice.tax_minor,
        revenue_lines=revenue_lines(session, invoice.id),
        credit_applied_minor=invoice.credit_applied_minor,
    )
    post(
        session,
        invoice.organization_id,
        entry,
        source_type="invoice",
        source_id=invoice.id,
        customer_id=customer.id,
    )


def _entry_of(session: Session, row: JournalEntry) -> core.Entry:
    lines = session.scalars(
        select(JournalLine).where(JournalLine.entry_id == row.id).order_by(JournalLine.position)
    ).all()
    return core.Entry(
        row.kind,
        row.entry_date,
        row.currency,
        row.memo,
        tuple(
            core.Posting(x.account_code, x.debit_minor, x.credit_minor, x.description)
            for x in lines
        ),
        lines[0].document if lines else None,
    )


def post_reversal(
    session: Session,
    organization_id: str,
    *,
    source_type: str,
    source_id: str,
    kind: str,
    on: date,
    document: str,
    memo: str,
) -> None:
    """Reverse every entry posted so far for a document (voiding an invoice)."""
    rows = session.scalars(
        select(JournalEntry).where(
            JournalEntry.organization_id == organization_id,
            JournalEntry.source_type == source_type,
            JournalEntry.source_id == source_id,
        )
    ).all()
    for row in rows:
        entry = _entry_of(session, row)
        amounts = [
            (p.account, p.credit_minor - p.debit_minor, p.description) for p in entry.postings
        ]
        reversed_entry = core.build_entry(kind, on, entry.currency, memo, amounts, document)
        post(
            session,
            organization_id,
            reversed_entry,
            source_type=source_type,
            source_id=source_id,
            customer_id=row.customer_id,
        )


# -- reading: chart, journal, trial balance ---------------------------------------------------


def list_accounts(db: Database, actor: Actor) -> list[LedgerAccount]:
    with db.transaction() as session:
        ensure_chart(session, actor.organization_id)
        return list(
            session.scalars(
                select(LedgerAccount)
                .where(LedgerAccount.organization_id == actor.organization_id)
                .order_by(LedgerAccount.code)
            )
        )


def save_account(
    db: Database,
    actor: Actor,
    *,
    code: str,
    name: str,
    type: str,
    role: str | None = None,
) -> LedgerAccount:
    """Add an account to the chart or rename one; giving it a role moves the role to it."""
    actor.require(*MANAGERS, action="change the chart of accounts")
    code = (code or "").strip()
    if not code or len(code) > 20 or not all(c.isalnum() or c in "-." for c in code):
        raise InvalidInput("code: 1 to 20 letters, digits, '-' or '.'", field="code")
    if not name or not name.strip():
        raise InvalidInput("name: give the account a name", field="name")
    if type not in core.ACCOUNT_TYPES:
        raise InvalidInput(f"type: one of {', '.join(core.ACCOUNT_TYPES)}", field="type")
    if role is not None and role not in core.ROLES:
        raise InvalidInput(f"role: one of {', '.join(core.ROLES)}", field="role")
    with db.transaction() as session:
        ensure_chart(session, actor.organization_id)
        account = session.scalars(
            select(LedgerAccount).where(
                LedgerAccount.organization_id == actor.organization_id,
                LedgerAccount.code == code,
            )
        ).first()
        if account is not None and account.type != type:
            used = session.scalar(
                select(func.count())
                .select_from(JournalLine)
                .where(
                    JournalLine.organization_id == actor.organization_id,
                    JournalLine.account_code == code,
                )
            )
            if used:
                raise Conflict(f"account {code} has postings; its type cannot change")
        before = None if account is None else snapshot(account, "name", "type", "role")
        role_taken_from = []
        if role is not None:
            for holder in session.scalars(
                select(LedgerAccount).where(
                    LedgerAccount.organization_id == actor.organization_id,
                    LedgerAccount.role == role,
                )
            ):
                holder.role = None
                role_taken_from.append(holder.code)
        if account is None:
            account = LedgerAccount(
                id=new_id("acc"),
                organization_id=actor.organization_id,
                code=code,
                created_at=utcnow(),
            )
            session.add(account)
        account.name = name.strip()
        account.type = type
        if role is not None:
            account.role = role
        session.flush()
        audit(
            session,
            actor,
            "ledger_account.saved",
            "ledger_account",
            account.id,
            {
                "code": code,
                "name": account.name,
                "type": type,
                "role": role,
                "role_taken_from": [c for c in role_taken_from if c != code],
            },
            before=before,
            after=account,
        )
        return account


@dataclass(frozen=True)
class JournalView:
    entry: JournalEntry
    lines: list[JournalLine]


def list_journal(
    db: Database,
    actor: Actor,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    limit: int | None = None,
) -> list[JournalView]:
    """Entries in date order (then number), with their lines."""
    if date_from and date_to and date_from > date_to:
        raise InvalidInput("from: must not be after to", field="from")
    with db.reading() as session:
        query = select(JournalEntry).where(JournalEntry.organization_id == actor.organization_id)
        if date_from:
            query = query.where(JournalEntry.entry_date >= date_from)
        if date_to:
            query = query.where(JournalEntry.entry_date <= date_to)
        query = query.order_by(JournalEntry.entry_date, JournalEntry.number)
        if limit:
            query = query.limit(limit)
        entries = list(session.scalars(query))
        lines: dict[str, list[JournalLine]] = {e.id: [] for e in entries}
        ids = list(lines)
        for start in range(0, len(ids), 500):
            for line in session.scalars(
                select(JournalLine)
                .where(JournalLine.entry_id.in_(ids[start : start + 500]))
                .order_by(JournalLine.entry_id, JournalLine.position)
            ):
                lines[line.entry_id].append(line)
        return [JournalView(e, lines[e.id]) for e in entries]


@dataclass(frozen=True)
class TrialBalanceRow:
    code: str
    name: str
    type: str
    currency: str
    debit_minor: int
    credit_minor: int

    @property
    def balance_minor(self) -> int:
        return self.debit_minor - self.credit_minor


def trial_balance(db: Database, actor: Actor, as_of: date) -> list[TrialBalanceRow]:
    """Debits and credits per account and currency of every entry dated up to `as_of`."""
    with db.transaction() as session:
        ensure_chart(session, actor.organization_id)
        names = {
            a.code: a
            for a in session.scalars(
                select(LedgerAccount).where(LedgerAccount.organization_id == actor.organization_id)
            )
        }
        rows = session.execute(
            select(
                JournalLine.account_code,
                JournalEntry.currency,
                func.sum(JournalLine.debit_minor),
                func.sum(JournalLine.credit_minor),
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(
                JournalLine.organization_id == actor.organization_id,
                JournalEntry.entry_date <= as_of,
            )
            .group_by(JournalLine.account_code, JournalEntry.currency)
        ).all()
    balances = core.trial_balance((code, cur, int(d), int(c)) for code, cur, d, c in rows)
    result = []
    for row in balances:
        account = names.get(row.account)
        result.append(
            TrialBalanceRow(
                row.account,
                account.name if account else row.account,
                account.type if account else "unknown",
                row.currency,
                row.debit_minor,
                row.credit_minor,
            )
        )
    return result


def account_balance(session: Session, organization_id: str, role: str) -> dict[str, int]:
    """Debit balance per currency of the account holding a role (tests and health checks)."""
    code = accounts_of(session, organization_id)[role]
    rows = session.execute(
        select(
            JournalEntry.currency,
            func.sum(JournalLine.debit_minor - JournalLine.credit_minor),
        )
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(JournalLine.organization_id == organization_id, JournalLine.account_code == code)
        .group_by(JournalEntry.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def summarise(rows: Sequence[TrialBalanceRow]) -> dict[str, Any]:
    """Totals per currency: debits equal credits when the ledger balances."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        t = totals.setdefault(row.currency, {"debit_minor": 0, "credit_minor": 0})
        t["debit_minor"] += row.debit_minor
        t["credit_minor"] += row.credit_minor
    return totals


# -- exports for accounting -------------------------------------------------------------------

EXPORT_FORMATS = ("beancount", "iif", "quickbooks-csv", "xero-csv", "csv")


def export_journal(
    db: Database,
    actor: Actor,
    format: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    currency: str | None = None,
) -> str:
    """The journal of a period in an accounting system's import format.

    IIF and Xero files carry no currency: give `currency` when the books hold several."""
    from tallybook.formats import journals as fmt

    if format not in EXPORT_FORMATS:
        raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}", field="format")
    views = list_journal(db, actor, date_from=date_from, date_to=date_to)
    if currency:
        views = [v for v in views if v.entry.currency == currency.upper()]
    with db.reading() as session:
        chart = {
            a.code: fmt.Account(a.code, a.name, a.type)
            for a in session.scalars(
                select(LedgerAccount).where(LedgerAccount.organization_id == actor.organization_id)
            )
        }
        names = dict(
            session.execute(
                select(Customer.id, Customer.legal_name).where(
                    Customer.organization_id == actor.organization_id,
                    Customer.id.in_({v.entry.customer_id for v in views if v.entry.customer_id}),
                )
            ).all()
        )
    entries = [
        fmt.JournalEntry(
            number=v.entry.number,
            date=v.entry.entry_date,
            currency=v.entry.currency,
            memo=v.entry.memo,
            kind=v.entry.kind,
            lines=tuple(
                fmt.JournalLine(
                    account=chart.get(x.account_code)
                    or fmt.Account(x.account_code, x.account_code, "asset"),
                    debit_minor=x.debit_minor,
                    credit_minor=x.credit_minor,
                    description=x.description,
                    customer=names.get(v.entry.customer_id or ""),
                    document=x.document,
                )
                for x in v.lines
            ),
        )
        for v in views
    ]
    try:
        if format == "beancount":
            return fmt.to_beancount(entries, list(chart.values()))
        if format == "iif":
            return fmt.to_iif(entries)
        if format == "quickbooks-csv":
            return fmt.to_quickbooks_online_csv(entries)
        if format == "xero-csv":
            return fmt.to_xero_csv(entries)
        return fmt.to_generic_csv(entries)
    except fmt.JournalExportError as error:
        raise InvalidInput(str(error), field="currency") from None
