"""Accounts receivable reports: aging as of any date, days sales outstanding, customer statements.

Balances are rebuilt for the report date from dated events, so a report for a past date shows
what was open on that date: the journal entries of invoices, debit notes, credit notes, voids
and write-offs (dated with the documents' dates), payment allocations (dated with the day the
money was received) and what refunds and reversals took back from them (dated with their day).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tallybook.core import receivables as core
from tallybook.core.money import MoneyError, currency_exponent
from tallybook.core.periods import local_date
from tallybook.db.models import (
    AuditEvent,
    CreditNote,
    Customer,
    DebitNote,
    Invoice,
    JournalEntry,
    JournalLine,
    LedgerAccount,
    Organization,
    Payment,
    PaymentAllocation,
    Refund,
)
from tallybook.services.base import Actor, Database, InvalidInput, get_owned, utcnow

__all__ = [
    "AgingView",
    "DsoFigure",
    "StatementView",
    "aging_report",
    "customer_statement",
    "dso",
    "open_documents",
    "organization_today",
]

# How a journal entry shows on a customer's statement, by (source, entry kind); the source
# alone when the kind does not matter. Anything else keeps its journal kind ("other").
_STATEMENT_KINDS = {
    ("invoice", "invoice_issued"): "invoice",
    ("invoice", "invoice_voided"): "invoice_void",
    ("invoice", "write_off"): "write_off",
    ("payment", "payment_received"): "payment",
    ("payment", "payment_reversed"): "payment_reversal",
    "debit_note": "debit_note",
    "credit_note": "credit_note",
    "refund": "refund",
}


@dataclass(frozen=True)
class AgingView:
    """The aging report and the open documents it was built from."""

    report: core.AgingReport
    documents: tuple[core.ReceivableItem, ...]


@dataclass(frozen=True)
class StatementView:
    """A statement and how its closing balance splits: open documents less unapplied credit."""

    statement: core.CustomerStatement
    open_receivables_minor: int
    unapplied_credit_minor: int


@dataclass(frozen=True)
class DsoFigure:
    currency: str
    receivables_minor: int  # open at the end of the period
    credit_sales_minor: int  # invoiced in the period, less credit notes and voids
    days: int
    dso: Decimal | None  # None without credit sales


def organization_today(session: Session, organization_id: str) -> date:
    """Today in the organisation's time zone: the default report date."""
    org = session.get(Organization, organization_id)
    return local_date(utcnow(), org.timezone if org else "UTC")


def _currency(value: str | None, field: str = "currency") -> str | None:
    if value is None or value == "":
        return None
    try:
        currency_exponent(value)
    except MoneyError as error:
        raise InvalidInput(f"{field}: {error}", field=field) from None
    return value.upper()


def _role_codes(session: Session, organization_id: str, role: str) -> set[str]:
    """Every account code that holds or held a posting role (a role can move to another
    account; entries posted before the move stay on the old one)."""
    codes = set(
        session.scalars(
            select(LedgerAccount.code).where(
                LedgerAccount.organization_id == organization_id, LedgerAccount.role == role
            )
        )
    )
    for data in session.scalars(
        select(AuditEvent.data).where(
            AuditEvent.organization_id == organization_id,
            AuditEvent.action == "ledger_account.saved",
        )
    ):
        if isinstance(data, dict) and data.get("role") == role and data.get("code"):
            codes.add(data["code"])
    return codes


def _receivable_by_source(
    session: Session,
    organization_id: str,
    codes: set[str],
    source_type: str,
    as_of: date,
    kind: str | None = None,
) -> dict[str, int]:
    """Net debit on the receivable account of each document's entries dated up to `as_of`."""
    if not codes:
        return {}
    query = (
        select(
            JournalEntry.source_id,
            func.sum(JournalLine.debit_minor - JournalLine.credit_minor),
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.organization_id == organization_id,
            JournalEntry.source_type == source_type,
            JournalEntry.entry_date <= as_of,
            JournalLine.account_code.in_(codes),
        )
        .group_by(JournalEntry.source_id)
    )
    if kind is not None:
        query = query.where(JournalEntry.kind == kind)
    return {source_id: int(amount) for source_id, amount in session.execute(query).all()}


def _undone_by_invoice(
    session: Session, organization_id: str, as_of: date, customer_id: str | None = None
) -> dict[str, int]:
    """What refunds and reversals dated up to `as_of` took back from payments, per invoice.

    Only the total taken back is stored on an allocation, so the takings are replayed in the
    order they happened, as `services.payments` made them: each refund takes its
    `from_invoices_minor` from the payment's allocations latest first, and a reversal takes
    all that was left.
    """
    query = select(Payment).where(
        Payment.organization_id == organization_id,
        (Payment.status == "reversed") | (Payment.refunded_minor > 0),
    )
    if customer_id is not None:
        query = query.where(Payment.customer_id == customer_id)
    touched = list(session.scalars(query))
    if not touched:
        return {}
    ids = [p.id for p in touched]
    allocations: dict[str, list[PaymentAllocation]] = defaultdict(list)
    for allocation in session.scalars(
        select(PaymentAllocation)
        .where(PaymentAllocation.payment_id.in_(ids))
        .order_by(PaymentAllocation.position.desc())
    ):
        allocations[allocation.payment_id].append(allocation)
    refunds: dict[str, list[Refund]] = defaultdict(list)
    for refund in session.scalars(
        select(Refund)
        .where(Refund.payment_id.in_(ids), Refund.from_invoices_minor > 0)
        .order_by(Refund.created_at, Refund.id)
    ):
        refunds[refund.payment_id or ""].append(refund)
    reversed_on = dict(
        session.execute(
            select(JournalEntry.source_id, func.min(JournalEntry.entry_date))
            .where(
                JournalEntry.organization_id == organization_id,
                JournalEntry.source_type == "payment",
                JournalEntry.kind == "payment_reversed",
                JournalEntry.source_id.in_(ids),
            )
            .group_by(JournalEntry.source_id)
        ).all()
    )
    undone: dict[str, int] = defaultdict(int)
    for payment in touched:
        left = {a.id: a.amount_minor for a in allocations[payment.id]}
        takings: list[tuple[date, int | None]] = [
            (r.refunded_on, r.from_invoices_minor) for r in refunds[payment.id]
        ]
        if payment.status == "reversed":
            day = reversed_on.get(payment.id) or payment.received_on
            takings.append((day, None))  # None: everything still applied
        for day, amount in takings:
            wanted = sum(left.values()) if amount is None else amount
            for allocation in allocations[payment.id]:
                if wanted <= 0:
                    break
                take = min(wanted, left[allocation.id])
                if take <= 0:
                    continue
                left[allocation.id] -= take
                wanted -= take
                if day <= as_of:
                    undone[allocation.invoice_id] += take
    return undone


def open_documents(
    session: Session,
    organization_id: str,
    as_of: date,
    *,
    customer_id: str | None = None,
    currency: str | None = None,
) -> list[core.ReceivableItem]:
    """Invoices and debit notes with something open at the end of `as_of`.

    An invoice and its debit notes are one account: payments and credit notes lower the
    invoice's amount due, which includes its debit notes. What was settled of that account
    settles its oldest document first (the invoice, then its debit notes by date), so the
    newest documents are the ones still open, each aged from its own due date.
    """
    query = (
        select(Invoice, Customer.legal_name)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.organization_id == organization_id,
            Invoice.status != "draft",
            Invoice.issue_date.is_not(None),
            Invoice.issue_date <= as_of,
        )
    )
    if customer_id is not None:
        query = query.where(Invoice.customer_id == customer_id)
    if currency is not None:
        query = query.where(Invoice.currency == currency)
    invoices = session.execute(query).all()
    if not invoices:
        return []
    codes = _role_codes(session, organization_id, "receivable")
    issued = _receivable_by_source(
        session, organization_id, codes, "invoice", as_of, kind="invoice_issued"
    )
    on_invoice = _receivable_by_source(session, organization_id, codes, "invoice", as_of)
    on_debit_notes = _receivable_by_source(session, organization_id, codes, "debit_note", as_of)
    on_credit_notes = _receivable_by_source(session, organization_id, codes, "credit_note", as_of)
    paid_query = (
        select(PaymentAllocation.invoice_id, func.sum(PaymentAllocation.amount_minor))
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(
            PaymentAllocation.organization_id == organization_id,
            Payment.received_on <= as_of,
        )
        .group_by(PaymentAllocation.invoice_id)
    )
    if customer_id is not None:
        paid_query = paid_query.where(Payment.customer_id == customer_id)
    paid = {invoice_id: int(amount) for invoice_id, amount in session.execute(paid_query).all()}
    undone = _undone_by_invoice(session, organization_id, as_of, customer_id)
    debit_notes: dict[str, list[DebitNote]] = defaultdict(list)
    for note in session.scalars(
        select(DebitNote)
        .where(DebitNote.organization_id == organization_id, DebitNote.issue_date <= as_of)
        .order_by(DebitNote.issue_date, DebitNote.number)
    ):
        debit_notes[note.invoice_id].append(note)
    credited: dict[str, int] = defaultdict(int)
    if on_credit_notes:
        for note_id, invoice_id in session.execute(
            select(CreditNote.id, CreditNote.invoice_id).where(
                CreditNote.organization_id == organization_id,
                CreditNote.id.in_(list(on_credit_notes)),
            )
        ).all():
            credited[invoice_id] += on_credit_notes[note_id]

    items: list[core.ReceivableItem] = []
    for invoice, name in invoices:
        notes = debit_notes.get(invoice.id, [])
        documents = [
            (
                invoice.id,
                invoice.number or invoice.id,
                invoice.issue_date,
                invoice.due_date,
                max(issued.get(invoice.id, 0), 0),
            )
        ] + [
            (n.id, n.number, n.issue_date, n.due_date, max(on_debit_notes.get(n.id, 0), 0))
            for n in notes
        ]
        open_total = (
            on_invoice.get(invoice.id, 0)
            + sum(on_debit_notes.get(n.id, 0) for n in notes)
            + credited.get(invoice.id, 0)
            - paid.get(invoice.id, 0)
            + undone.get(invoice.id, 0)
        )
        if open_total <= 0:
            continue
        settled = sum(d[4] for d in documents) - open_total
        # More open than was ever charged can only come from takings dated before what they
        # took back; the invoice carries it.
        surplus = max(-settled, 0)
        settled = max(settled, 0)
        for index, (doc_id, number, issue_day, due_day, gross) in enumerate(documents):
            share = min(settled, gross)
            settled -= share
            still_open = gross - share + (surplus if index == 0 else 0)
            if still_open > 0:
                items.append(
                    core.ReceivableItem(
                        document_id=doc_id,
                        number=number,
                        customer_id=invoice.customer_id,
                        customer_name=name,
                        currency=invoice.currency,
                        issue_date=issue_day,
                        due_date=due_day or issue_day,
                        open_minor=still_open,
                    )
                )
    return items


def aging_report(
    db: Database,
    actor: Actor,
    as_of: date | None = None,
    *,
    customer_id: str | None = None,
    currency: str | None = None,
) -> AgingView:
    """What each customer owes by aging bucket at the end of `as_of` (default: today in the
    organisation's time zone), with totals per currency."""
    code = _currency(currency)
    with db.reading() as session:
        if customer_id is not None:
            get_owned(session, Customer, customer_id, actor)
        day = as_of or organization_today(session, actor.organization_id)
        items = open_documents(
            session, actor.organization_id, day, customer_id=customer_id, currency=code
        )
    items.sort(key=lambda i: (i.currency, i.customer_name.casefold(), i.due_date, i.number))
    return AgingView(core.age(items, day), tuple(items))


def _statement_entries(
    session: Session, organization_id: str, customer_id: str, currency: str, until: date
) -> list[core.StatementEntry]:
    """The customer's movements up to `until`: each journal entry's net effect on what the
    customer owes (receivable less customer credit), in the order they were posted."""
    codes = _role_codes(session, organization_id, "receivable") | _role_codes(
        session, organization_id, "customer_credit"
    )
    if not codes:
        return []
    rows = session.execute(
        select(
            JournalEntry.id,
            JournalEntry.entry_date,
            JournalEntry.number,
            JournalEntry.kind,
            JournalEntry.source_type,
            JournalEntry.memo,
            JournalEntry.created_at,
            func.min(JournalLine.document),
            func.sum(JournalLine.debit_minor - JournalLine.credit_minor),
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.organization_id == organization_id,
            JournalEntry.customer_id == customer_id,
            JournalEntry.currency == currency,
            JournalEntry.entry_date <= until,
            JournalLine.account_code.in_(codes),
        )
        .group_by(
            JournalEntry.id,
            JournalEntry.entry_date,
            JournalEntry.number,
            JournalEntry.kind,
            JournalEntry.source_type,
            JournalEntry.memo,
            JournalEntry.created_at,
        )
        .order_by(JournalEntry.entry_date, JournalEntry.created_at, JournalEntry.number)
    ).all()
    entries = []
    for _id, day, number, kind, source, memo, _created, document, net in rows:
        net = int(net)
        if net == 0:
            continue
        shown = _STATEMENT_KINDS.get((source, kind)) or _STATEMENT_KINDS.get(source) or kind
        entries.append(
            core.StatementEntry(
                date=day,
                kind=shown,
                reference=document or number,
                description=memo,
                debit_minor=max(net, 0),
                credit_minor=max(-net, 0),
            )
        )
    return entries


def _credit_held(
    session: Session, organization_id: str, customer_id: str, currency: str, until: date
) -> int:
    codes = _role_codes(session, organization_id, "customer_credit")
    if not codes:
        return 0
    net = session.scalar(
        select(func.coalesce(func.sum(JournalLine.credit_minor - JournalLine.debit_minor), 0))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(
            JournalEntry.organization_id == organization_id,
            JournalEntry.customer_id == customer_id,
            JournalEntry.currency == currency,
            JournalEntry.entry_date <= until,
            JournalLine.account_code.in_(codes),
        )
    )
    return int(net or 0)


def customer_statement(
    db: Database,
    actor: Actor,
    customer_id: str,
    date_from: date | None,
    date_to: date | None,
    *,
    currency: str | None = None,
) -> StatementView:
    """A customer's account for a period (default: the month to date) in one currency
    (default: the customer's).

    Opening balance, then each invoice, debit note, payment, credit note, refund, reversal and
    write-off with its running balance, then the closing balance: what the customer owes on
    open documents less the credit it holds, at the end of the period.
    """
    code = _currency(currency)
    with db.reading() as session:
        customer = get_owned(session, Customer, customer_id, actor)
        date_to = date_to or organization_today(session, actor.organization_id)
        date_from = date_from or date_to.replace(day=1)
        if date_from > date_to:
            raise InvalidInput(f"from: {date_from} is after the period end {date_to}", field="from")
        code = code or customer.currency
        entries = _statement_entries(session, actor.organization_id, customer.id, code, date_to)
        documents = open_documents(
            session, actor.organization_id, date_to, customer_id=customer.id, currency=code
        )
        credit = _credit_held(session, actor.organization_id, customer.id, code, date_to)
        name = customer.legal_name
    statement = core.customer_statement(customer.id, name, code, date_from, date_to, entries)
    return StatementView(statement, sum(d.open_minor for d in documents), credit)


def _credit_sales(
    session: Session, organization_id: str, date_from: date, date_to: date
) -> dict[str, int]:
    """Per currency: invoices and debit notes issued in the period less credit notes and voids
    (their totals: the receivable and customer-credit sides of their entries)."""
    codes = _role_codes(session, organization_id, "receivable") | _role_codes(
        session, organization_id, "customer_credit"
    )
    if not codes:
        return {}
    rows = session.execute(
        select(
            JournalEntry.currency,
            func.sum(JournalLine.debit_minor - JournalLine.credit_minor),
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.organization_id == organization_id,
            JournalEntry.source_type.in_(("invoice", "debit_note", "credit_note")),
            JournalEntry.kind != "write_off",
            JournalEntry.entry_date >= date_from,
            JournalEntry.entry_date <= date_to,
            JournalLine.account_code.in_(codes),
        )
        .group_by(JournalEntry.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def dso(db: Database, actor: Actor, date_from: date, date_to: date) -> list[DsoFigure]:
    """Days sales outstanding per currency over a period: receivables open at its end over the
    credit sales of the period, times its days."""
    if date_from > date_to:
        raise InvalidInput(f"from: {date_from} is after the period end {date_to}", field="from")
    days = (date_to - date_from).days + 1
    with db.reading() as session:
        sales = _credit_sales(session, actor.organization_id, date_from, date_to)
        open_at_end: dict[str, int] = defaultdict(int)
        for item in open_documents(session, actor.organization_id, date_to):
            open_at_end[item.currency] += item.open_minor
    return [
        DsoFigure(
            currency=currency,
            receivables_minor=open_at_end.get(currency, 0),
            credit_sales_minor=sales.get(currency, 0),
            days=days,
            dso=core.dso(open_at_end.get(currency, 0), sales.get(currency, 0), days),
        )
        for currency in sorted(set(sales) | set(open_at_end))
    ]
