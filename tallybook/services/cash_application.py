"""Cash application: import a bank statement, match each incoming line to open invoices, post
the sure matches as payments and queue the rest for a clerk to confirm, split, assign or set aside.

Importing the same file again, or a statement that overlaps one already imported, creates
nothing new: the file's SHA-256 and each line's key are unique per organisation.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tallybook.core import ledger as core_ledger
from tallybook.core.cash_matching import (
    ClosedInvoice,
    IncomingLine,
    OpenInvoice,
    Proposal,
    match_lines,
)
from tallybook.core.money import MoneyError, format_minor, is_currency, to_minor_exact
from tallybook.core.numbering import series_scope
from tallybook.db.bulk import insert_rows
from tallybook.db.models import (
    BankStatement,
    BankStatementLine,
    Customer,
    CustomerCreditEntry,
    Invoice,
    JournalEntry,
    JournalLine,
    Organization,
    Payment,
    PaymentAllocation,
    new_id,
)
from tallybook.formats.bank_statements import (
    CsvMapping,
    StatementError,
    StatementLine,
    parse_statements,
)
from tallybook.runtime import throughput_gc
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    audit_rows,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.invoices import amount_due_and_status, reserve_numbers
from tallybook.services.ledger import JOURNAL_PATTERN, accounts_of
from tallybook.services.payments import OPEN_STATES, apply_received

STATUSES = ("applied", "review", "ignored", "outgoing")
# How far back paid, credited and voided invoices still count as numbers payers may quote.
CLOSED_LOOKBACK = timedelta(days=550)
_CHUNK = 5_000  # ids per IN (...) list: well inside every driver's parameter limit
# Advisory lock namespaces: 7325001 event partitions, 7325002 event claims, 7325003 collection
# runs, 7325004 statement imports and re-matches.
_IMPORT_LOCK = "SELECT pg_advisory_xact_lock(7325004, hashtext(:org))"


@dataclass(frozen=True)
class StatementImport:
    """What an import did. `already_imported`: the same file came before; nothing was written."""

    statement: BankStatement
    already_imported: bool
    lines_in_file: int
    lines_new: int
    lines_known: int
    applied: int
    review: int
    outgoing: int
    ignored: int
    applied_minor: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchRun:
    """A re-match of the review queue."""

    examined: int
    applied: int
    review: int
    applied_minor: dict[str, int] = field(default_factory=dict)


@dataclass
class _Posting:
    """A line to post as one payment: who paid, which invoices it settles, what is left."""

    line_id: str
    customer_id: str
    allocations: list[tuple[str, int]]
    amount_minor: int
    currency: str
    received_on: date
    reference: str | None
    note: str


# -- importing -------------------------------------------------------------------------------


def import_statement(
    db: Database,
    actor: Actor,
    data: bytes,
    *,
    file_name: str,
    format: str | None = None,
    mapping: CsvMapping | dict[str, Any] | None = None,
) -> StatementImport:
    """Read a statement file, keep its new lines, and apply what can be applied safely."""
    actor.require(*WRITERS, action="import bank statements")
    if isinstance(mapping, dict):
        mapping = csv_mapping(mapping)
    with throughput_gc():  # a large statement allocates millions of short-lived objects
        return _import(db, actor, data, file_name=file_name, format=format, mapping=mapping)


def _import(
    db: Database,
    actor: Actor,
    data: bytes,
    *,
    file_name: str,
    format: str | None,
    mapping: CsvMapping | None,
) -> StatementImport:
    try:
        statements = parse_statements(data, format or None, mapping)
    except StatementError as error:
        raise InvalidInput(f"file: {error}", field="file") from None
    lines = [line for statement in statements for line in statement.lines]
    amounts = [_minor(line) for line in lines]
    digest = hashlib.sha256(data).hexdigest()
    with db.transaction() as session:
        if session.get_bind().dialect.name == "postgresql":
            # Two imports of one organisation queue: the second then finds the file imported.
            session.execute(text(_IMPORT_LOCK), {"org": actor.organization_id})
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        before = session.scalars(
            select(BankStatement).where(
                BankStatement.organization_id == org.id, BankStatement.file_sha256 == digest
            )
        ).first()
        if before is not None:
            counts = _status_counts(session, before.id)
            return StatementImport(
                statement=before,
                already_imported=True,
                lines_in_file=len(lines),
                lines_new=0,
                lines_known=len(lines),
                applied=counts.get("applied", 0),
                review=counts.get("review", 0),
                outgoing=counts.get("outgoing", 0),
                ignored=counts.get("ignored", 0),
            )
        known = _known_keys(session, org.id, [line.line_key for line in lines])
        fresh: list[tuple[StatementLine, int]] = []
        for line, amount in zip(lines, amounts, strict=True):
            if line.line_key not in known:
                known.add(line.line_key)
                fresh.append((line, amount))
        now = utcnow()
        statement = BankStatement(
            id=new_id("bst"),
            organization_id=org.id,
            format=str(statements[0].format),
            file_name=file_name[:300],
            file_sha256=digest,
            account=", ".join(dict.fromkeys(s.account for s in statements))[:60] or None,
            statement_ref=", ".join(
                dict.fromkeys(s.statement_id or s.statement_number or "" for s in statements)
            ).strip(", ")[:100]
            or None,
            lines_total=len(lines),
            lines_new=len(fresh),
            created_by=actor.key_id,
            imported_at=now,
        )
        session.add(statement)
        session.flush()
        rows: list[dict[str, Any]] = []
        incoming: list[tuple[dict[str, Any], IncomingLine]] = []
        for line, amount in fresh:
            row = _line_row(statement, line, amount, now)
            rows.append(row)
            if amount > 0:
                incoming.append((row, _incoming(row)))
            else:
                row["status"] = "outgoing" if amount < 0 else "ignored"
                row["resolution_note"] = None if amount < 0 else "a line of no amount"
        applied_minor = _match_and_post(session, actor, org, incoming)
        insert_rows(session, BankStatementLine, rows)
        counts: dict[str, int] = defaultdict(int)
        for row in rows:
            counts[row["status"]] += 1
        audit(
            session,
            actor,
            "bank_statement.imported",
            "bank_statement",
            statement.id,
            {
                "file_name": statement.file_name,
                "format": statement.format,
                "lines": len(lines),
                "new_lines": len(fresh),
                "applied": counts["applied"],
                "review": counts["review"],
                "applied_minor": applied_minor,
            },
        )
        return StatementImport(
            statement=statement,
            already_imported=False,
            lines_in_file=len(lines),
            lines_new=len(fresh),
            lines_known=len(lines) - len(fresh),
            applied=counts["applied"],
            review=counts["review"],
            outgoing=counts["outgoing"],
            ignored=counts["ignored"],
            applied_minor=applied_minor,
        )


def csv_mapping(values: dict[str, Any]) -> CsvMapping:
    """A column mapping from plain values (API body, CLI JSON), refused field by field."""
    known = set(CsvMapping.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(
            f"mapping.{unknown[0]}: not a mapping field (known: {', '.join(sorted(known))})",
            field="mapping",
        )
    values = dict(values)
    if isinstance(values.get("reference"), list):
        values["reference"] = tuple(values["reference"])
    for name, value in values.items():
        if isinstance(value, (list, dict)):
            raise InvalidInput(f"mapping.{name}: must be a column name or number", field="mapping")
    try:
        return CsvMapping(**values)
    except (TypeError, ValueError, StatementError) as error:
        raise InvalidInput(f"mapping: {error}", field="mapping") from None


def _minor(line: StatementLine) -> int:
    if not is_currency(line.currency):
        raise InvalidInput(
            f"file: line {line.position + 1}: {line.currency!r} is not an ISO 4217 currency",
            field="file",
        )
    try:
        return to_minor_exact(line.amount, line.currency, "amount")
    except MoneyError as error:
        raise InvalidInput(f"file: line {line.position + 1}: {error}", field="file") from None


def _known_keys(session: Session, organization_id: str, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _CHUNK):
        found.update(
            session.scalars(
                select(BankStatementLine.line_key).where(
                    BankStatementLine.organization_id == organization_id,
                    BankStatementLine.line_key.in_(unique[start : start + _CHUNK]),
                )
            )
        )
    return found


def _line_row(
    statement: BankStatement, line: StatementLine, amount: int, now: Any
) -> dict[str, Any]:
    return {
        "id": new_id("bsl"),
        "organization_id": statement.organization_id,
        "statement_id": statement.id,
        "line_key": line.line_key,
        "position": line.position,
        "booking_date": line.booking_date,
        "amount_minor": amount,
        "currency": line.currency.upper(),
        "payer_name": (line.payer_name or None) and line.payer_name[:300],
        "payer_account": _account(line.payer_account),
        "remittance_text": line.remittance_text or None,
        "creditor_reference": (line.creditor_reference or None) and line.creditor_reference[:60],
        "referred_documents": [document[:100] for document in line.referred_documents],
        "bank_reference": (line.bank_reference or None) and line.bank_reference[:100],
        "status": "review",
        "confidence": 0,
        "method": "none",
        "proposal": {},
        "customer_id": None,
        "payment_id": None,
        "resolved_by": None,
        "resolved_at": None,
        "resolution_note": None,
    }


def _account(value: str | None) -> str | None:
    if not value:
        return None
    return "".join(value.split()).upper()[:60] or None


def _incoming(row: dict[str, Any]) -> IncomingLine:
    return IncomingLine(
        key=row["id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        booking_date=row["booking_date"],
        payer_name=row["payer_name"],
        payer_account=row["payer_account"],
        remittance_text=row["remittance_text"],
        creditor_reference=row["creditor_reference"],
        referred_documents=tuple(row["referred_documents"]),
    )


def _row_incoming(line: BankStatementLine) -> IncomingLine:
    return IncomingLine(
        key=line.id,
        amount_minor=line.amount_minor,
        currency=line.currency,
        booking_date=line.booking_date,
        payer_name=line.payer_name,
        payer_account=line.payer_account,
        remittance_text=line.remittance_text,
        creditor_reference=line.creditor_reference,
        referred_documents=tuple(line.referred_documents or ()),
    )


# -- matching and posting --------------------------------------------------------------------


def _open_invoices(
    session: Session, organization_id: str, currencies: Iterable[str]
) -> list[OpenInvoice]:
    """Every open invoice in the statement's currencies, with the accounts its customer is
    known to pay from: the customer's own list and the accounts of lines already applied."""
    accounts: dict[str, set[str]] = defaultdict(set)
    for customer_id, listed in session.execute(
        select(Customer.id, Customer.bank_accounts).where(
            Customer.organization_id == organization_id
        )
    ):
        for account in listed or ():
            accounts[customer_id].add(str(account))
    for customer_id, account in session.execute(
        select(BankStatementLine.customer_id, BankStatementLine.payer_account)
        .where(
            BankStatementLine.organization_id == organization_id,
            BankStatementLine.status == "applied",
            BankStatementLine.payer_account.is_not(None),
        )
        .distinct()
    ):
        if customer_id:
            accounts[customer_id].add(account)
    rows = session.execute(
        select(
            Invoice.id,
            Invoice.number,
            Invoice.customer_id,
            Customer.legal_name,
            Invoice.currency,
            Invoice.amount_due_minor,
            Invoice.issue_date,
            Invoice.due_date,
            Invoice.payment_reference,
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.organization_id == organization_id,
            Invoice.status.in_(OPEN_STATES),
            Invoice.amount_due_minor > 0,
            Invoice.currency.in_(sorted(set(currencies))),
        )
    ).all()
    frozen = {customer: frozenset(found) for customer, found in accounts.items()}
    return [
        OpenInvoice(
            id=row.id,
            number=row.number or row.id,
            customer_id=row.customer_id,
            customer_name=row.legal_name,
            currency=row.currency,
            amount_due_minor=row.amount_due_minor,
            issue_date=row.issue_date,
            due_date=row.due_date or row.issue_date,
            reference=row.payment_reference,
            payer_accounts=frozen.get(row.customer_id, frozenset()),
        )
        for row in rows
    ]


def _closed_invoices(
    session: Session, organization_id: str, currencies: Iterable[str], since: date
) -> list[ClosedInvoice]:
    """Invoices issued since `since` that are no longer open: a payer quoting one is paying it
    twice or mistyping another, which the matcher must not take for a typo of an open one."""
    rows = session.execute(
        select(
            Invoice.id,
            Invoice.number,
            Invoice.customer_id,
            Invoice.currency,
            Invoice.total_minor,
            Invoice.payment_reference,
        ).where(
            Invoice.organization_id == organization_id,
            Invoice.number.is_not(None),
            Invoice.issue_date >= since,
            Invoice.currency.in_(sorted(set(currencies))),
            ~(Invoice.status.in_(OPEN_STATES) & (Invoice.amount_due_minor > 0)),
        )
    ).all()
    return [
        ClosedInvoice(
            id=row.id,
            number=row.number,
            customer_id=row.customer_id,
            currency=row.currency,
            total_minor=row.total_minor,
            reference=row.payment_reference,
        )
        for row in rows
    ]


def _match_and_post(
    session: Session,
    actor: Actor,
    org: Organization,
    incoming: list[tuple[dict[str, Any], IncomingLine]],
) -> dict[str, int]:
    """Match the lines (rows still to be written, or loaded rows as dicts), post the sure ones,
    fill each row's status, proposal and payment. Returns the amount applied per currency."""
    if not incoming:
        return {}
    currencies = {line.currency for _, line in incoming}
    invoices = _open_invoices(session, org.id, currencies)
    earliest = min(line.booking_date for _, line in incoming)
    closed = _closed_invoices(session, org.id, currencies, earliest - CLOSED_LOOKBACK)
    numbers = {invoice.id: invoice.number for invoice in invoices}
    proposals = match_lines(
        [line for _, line in incoming],
        invoices,
        threshold=org.cash_match_threshold,
        closed=closed,
    )
    postings: list[_Posting] = []
    by_line: dict[str, dict[str, Any]] = {}
    for (row, line), proposal in zip(incoming, proposals, strict=True):
        by_line[row["id"]] = row
        row["proposal"] = _proposal_json(proposal, numbers)
        row["confidence"] = proposal.confidence
        row["method"] = proposal.method
        row["customer_id"] = proposal.customer_id
        row["status"] = "review"
        if proposal.auto and proposal.customer_id:
            postings.append(
                _Posting(
                    line_id=row["id"],
                    customer_id=proposal.customer_id,
                    allocations=[(a.invoice_id, a.amount_minor) for a in proposal.allocations],
                    amount_minor=line.amount_minor,
                    currency=line.currency,
                    received_on=line.booking_date,
                    reference=_reference_text(line),
                    note=f"applied automatically ({proposal.method}, confidence "
                    f"{proposal.confidence})",
                )
            )
    posted, refused = _post_payments(session, actor, org, postings)
    applied: dict[str, int] = defaultdict(int)
    now = utcnow()
    for line_id, payment_id in posted.items():
        row = by_line[line_id]
        row["status"] = "applied"
        row["payment_id"] = payment_id
        row["resolved_at"] = now
        row["resolution_note"] = "applied automatically"
        applied[row["currency"]] += row["amount_minor"]
    for line_id, reason in refused.items():
        row = by_line[line_id]
        row["proposal"] = {**row["proposal"], "auto": False}
        row["proposal"]["reasons"] = [*row["proposal"]["reasons"], reason]
    return dict(applied)


def _reference_text(line: IncomingLine) -> str | None:
    text_ = line.creditor_reference or line.remittance_text
    return text_[:200] if text_ else None


def _proposal_json(proposal: Proposal, numbers: dict[str, str]) -> dict[str, Any]:
    return {
        "customer_id": proposal.customer_id,
        "allocations": [
            {
                "invoice_id": a.invoice_id,
                "invoice_number": numbers.get(a.invoice_id),
                "amount_minor": a.amount_minor,
            }
            for a in proposal.allocations
        ],
        "unapplied_minor": proposal.unapplied_minor,
        "confidence": proposal.confidence,
        "method": proposal.method,
        "reasons": list(proposal.reasons),
        "auto": proposal.auto,
    }


def _locked(session: Session, model: Any, ids: Iterable[str]) -> dict[str, Any]:
    """Rows locked FOR UPDATE in id order (the order every payment locks in: no deadlocks)."""
    ordered = sorted(set(ids))
    found: dict[str, Any] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        for row in session.scalars(
            select(model).where(model.id.in_(chunk)).order_by(model.id).with_for_update()
        ):
            found[row.id] = row
    return found


def _post_payments(
    session: Session, actor: Actor, org: Organization, postings: list[_Posting]
) -> tuple[dict[str, str], dict[str, str]]:
    """Post many bank lines as payments at once, as `payments.apply_received` posts one: the
    customers, then their invoices, are locked and checked again (a payment recorded by hand
    since the matching may have settled an invoice); what no longer fits goes to review.

    Returns (line -> payment id) for the posted lines and (line -> reason) for the refused."""
    if not postings:
        return {}, {}
    customers = _locked(session, Customer, (p.customer_id for p in postings))
    invoices = _locked(
        session, Invoice, (invoice for p in postings for invoice, _ in p.allocations)
    )
    accepted: list[_Posting] = []
    refused: dict[str, str] = {}
    # What each locked invoice has paid and due as the postings take it, written in one
    # statement below: the unit of work would update tens of thousands of rows one by one.
    paid = {invoice_id: invoice.paid_minor for invoice_id, invoice in invoices.items()}
    due = {invoice_id: invoice.amount_due_minor for invoice_id, invoice in invoices.items()}
    for posting in postings:
        reason = _refusal(posting, customers, invoices, due, org.id)
        if reason:
            refused[posting.line_id] = reason
            continue
        for invoice_id, amount in posting.allocations:
            paid[invoice_id] += amount
            due[invoice_id] -= amount
        accepted.append(posting)
    if not accepted:
        return {}, refused
    _settle_invoices(session, invoices, paid)
    accounts = accounts_of(session, org.id)
    numbers = _numbers(session, org.id, "payment", org.payment_number_pattern, accepted)
    now = utcnow()
    payments: list[dict[str, Any]] = []
    allocations: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    entries: list[tuple[dict[str, Any], core_ledger.Entry]] = []
    events: list[dict[str, Any]] = []
    posted: dict[str, str] = {}
    for posting, number in zip(accepted, numbers, strict=True):
        customer = customers[posting.customer_id]
        applied = sum(amount for _, amount in posting.allocations)
        unapplied = posting.amount_minor - applied
        payment_id = new_id("pay")
        posted[posting.line_id] = payment_id
        payments.append(
            {
                "id": payment_id,
                "organization_id": org.id,
                "customer_id": customer.id,
                "number": number,
                "currency": posting.currency,
                "amount_minor": posting.amount_minor,
                "received_on": posting.received_on,
                "method": "bank_transfer",
                "reference": posting.reference,
                "payment_method_id": None,
                "provider_reference": None,
                "source": "bank",
                "unapplied_minor": unapplied,
                "refunded_minor": 0,
                "status": "completed",
                "reversed_at": None,
                "reversal_reason": None,
                "created_by": actor.key_id,
                "created_at": now,
            }
        )
        for position, (invoice_id, amount) in enumerate(posting.allocations, start=1):
            allocations.append(
                {
                    "id": new_id("pal"),
                    "organization_id": org.id,
                    "payment_id": payment_id,
                    "invoice_id": invoice_id,
                    "position": position,
                    "amount_minor": amount,
                    "undone_minor": 0,
                    "created_at": now,
                }
            )
        if unapplied:
            customer.credit_balance_minor += unapplied
            credits.append(
                {
                    "id": new_id("cce"),
                    "organization_id": org.id,
                    "customer_id": customer.id,
                    "amount_minor": unapplied,
                    "currency": posting.currency,
                    "source": "payment",
                    "source_id": payment_id,
                    "created_at": now,
                }
            )
        entry = core_ledger.payment_received(
            accounts,
            number=number,
            received_on=posting.received_on,
            currency=posting.currency,
            customer=customer.legal_name,
            amount_minor=posting.amount_minor,
            applied_minor=applied,
        )
        entries.append(
            (
                {
                    "id": new_id("je"),
                    "organization_id": org.id,
                    "entry_date": entry.entry_date,
                    "kind": entry.kind,
                    "memo": entry.memo[:500],
                    "currency": entry.currency,
                    "source_type": "payment",
                    "source_id": payment_id,
                    "customer_id": customer.id,
                    "created_at": now,
                },
                entry,
            )
        )
        events.append(
            {
                "id": new_id("aud"),
                "organization_id": org.id,
                "actor": actor.key_id,
                "action": "payment.recorded",
                "entity": "payment",
                "entity_id": payment_id,
                "data": {
                    "number": number,
                    "amount_minor": posting.amount_minor,
                    "currency": posting.currency,
                    "applied": [
                        {"invoice": invoices[i].number, "amount_minor": a}
                        for i, a in posting.allocations
                    ],
                    "unapplied_minor": unapplied,
                    "source": "bank",
                    "bank_statement_line": posting.line_id,
                    "note": posting.note,
                },
                "created_at": now,
            }
        )
    journal_numbers = _journal_numbers(session, org.id, [entry for _, entry in entries])
    entry_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    for (row, entry), number in zip(entries, journal_numbers, strict=True):
        row["number"] = number
        entry_rows.append(row)
        for position, posting in enumerate(entry.postings, start=1):
            line_rows.append(
                {
                    "id": new_id("jl"),
                    "organization_id": org.id,
                    "entry_id": row["id"],
                    "position": position,
                    "account_code": posting.account,
                    "debit_minor": posting.debit_minor,
                    "credit_minor": posting.credit_minor,
                    "description": posting.description[:500],
                    "document": entry.document,
                }
            )
    session.flush()  # invoices and customers first: the new rows refer to them
    insert_rows(session, Payment, payments)
    insert_rows(session, PaymentAllocation, allocations)
    insert_rows(session, CustomerCreditEntry, credits)
    insert_rows(session, JournalEntry, entry_rows)
    insert_rows(session, JournalLine, line_rows)
    audit_rows(session, events)  # chained with the rest of the transaction's events
    # payment.received webhooks, in the same transaction (outbox).
    from tallybook.services.outbox import payments_received

    payments_received(session, org.id, payments)
    return posted, refused


def _settle_invoices(
    session: Session, invoices: dict[str, Invoice], paid: dict[str, int]
) -> None:
    """Write what the postings paid on each invoice (amount due and status follow), in one
    statement, keep the loaded rows in step, and tell webhooks which invoices became paid."""
    from tallybook.services.outbox import invoice_paid

    changed: list[tuple[Invoice, int, int, str]] = []
    for invoice_id, invoice in invoices.items():
        if paid[invoice_id] == invoice.paid_minor:
            continue
        new_due, new_status = amount_due_and_status(invoice, paid[invoice_id])
        changed.append((invoice, paid[invoice_id], new_due, new_status))
    if not changed:
        return
    table = Invoice.__table__
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE invoices SET paid_minor = v.paid, amount_due_minor = v.due, "
                "status = v.status FROM (SELECT unnest(CAST(:ids AS varchar[])) AS id, "
                "unnest(CAST(:paid AS bigint[])) AS paid, unnest(CAST(:due AS bigint[])) AS due, "
                "unnest(CAST(:status AS varchar[])) AS status) AS v WHERE invoices.id = v.id"
            ),
            {
                "ids": [invoice.id for invoice, *_ in changed],
                "paid": [row[1] for row in changed],
                "due": [row[2] for row in changed],
                "status": [row[3] for row in changed],
            },
        )
    else:
        session.execute(
            table.update()
            .where(table.c.id == bindparam("invoice_id"))
            .values(
                paid_minor=bindparam("paid"),
                amount_due_minor=bindparam("due"),
                status=bindparam("new_status"),
            ),
            [
                {"invoice_id": invoice.id, "paid": p, "due": d, "new_status": st}
                for invoice, p, d, st in changed
            ],
        )
    for invoice, new_paid, new_due, new_status in changed:
        was = invoice.status
        set_committed_value(invoice, "paid_minor", new_paid)
        set_committed_value(invoice, "amount_due_minor", new_due)
        set_committed_value(invoice, "status", new_status)
        if new_status == "paid" and was in OPEN_STATES:
            invoice_paid(invoice)


def _refusal(
    posting: _Posting,
    customers: dict[str, Customer],
    invoices: dict[str, Invoice],
    due: dict[str, int],
    organization_id: str,
) -> str | None:
    customer = customers.get(posting.customer_id)
    if customer is None or customer.organization_id != organization_id:
        return "the proposed customer no longer exists"
    applied = 0
    for invoice_id, amount in posting.allocations:
        invoice = invoices.get(invoice_id)
        if invoice is None or invoice.organization_id != organization_id:
            return "a proposed invoice no longer exists"
        if invoice.customer_id != customer.id or invoice.currency != posting.currency:
            return f"invoice {invoice.number} is not the customer's in {posting.currency}"
        if invoice.status not in OPEN_STATES or amount > due[invoice_id]:
            return (
                f"invoice {invoice.number} changed while the statement was matched "
                f"({format_minor(due[invoice_id], invoice.currency)} now due)"
            )
        applied += amount
    if posting.amount_minor - applied and posting.currency != customer.currency:
        return (
            f"the rest would become customer credit, which {customer.legal_name} keeps in "
            f"{customer.currency}, not {posting.currency}"
        )
    return None


def _numbers(
    session: Session, organization_id: str, kind: str, pattern: str, postings: list[_Posting]
) -> list[str]:
    """One number per posting, drawn per series (a yearly pattern restarts each year)."""
    by_scope: dict[str, list[int]] = defaultdict(list)
    for index, posting in enumerate(postings):
        by_scope[series_scope(pattern, posting.received_on)].append(index)
    numbers: list[str] = [""] * len(postings)
    for indices in by_scope.values():
        # Within one scope the numbers follow the lines' order; the date only fills the pattern.
        drawn = reserve_numbers(
            session, organization_id, kind, pattern, postings[indices[0]].received_on, len(indices)
        )
        for index, number in zip(indices, drawn, strict=True):
            numbers[index] = number
    return numbers


def _journal_numbers(
    session: Session, organization_id: str, entries: list[core_ledger.Entry]
) -> list[str]:
    by_scope: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        by_scope[series_scope(JOURNAL_PATTERN, entry.entry_date)].append(index)
    numbers: list[str] = [""] * len(entries)
    for indices in by_scope.values():
        drawn = reserve_numbers(
            session,
            organization_id,
            "journal",
            JOURNAL_PATTERN,
            entries[indices[0]].entry_date,
            len(indices),
        )
        for index, number in zip(indices, drawn, strict=True):
            numbers[index] = number
    return numbers


# -- the review queue ------------------------------------------------------------------------


def _review_line(session: Session, actor: Actor, line_id: str) -> BankStatementLine:
    line = get_owned(session, BankStatementLine, line_id, actor, lock=True, label="statement line")
    if line.status != "review":
        raise Conflict(
            f"statement line {line.id} is {line.status}, not waiting for review", field="line"
        )
    return line


# What the audit trail compares before and after a clerk decides on a statement line.
_LINE_AUDITED = ("status", "customer_id", "payment_id", "resolved_by", "resolution_note")


def confirm_line(db: Database, actor: Actor, line_id: str, note: str | None = None) -> Payment:
    """Post a line as the matcher proposed it."""
    actor.require(*WRITERS, action="apply bank statement lines")
    with db.transaction() as session:
        line = _review_line(session, actor, line_id)
        proposal = line.proposal or {}
        if not proposal.get("customer_id") or not proposal.get("allocations"):
            raise Conflict(
                f"statement line {line.id} has no proposal to confirm; assign it to a customer",
                field="line",
            )
        explicit = {a["invoice_id"]: int(a["amount_minor"]) for a in proposal["allocations"]}
        return _apply(session, actor, line, proposal["customer_id"], explicit, None, note)


def apply_line(
    db: Database,
    actor: Actor,
    line_id: str,
    customer_id: str,
    allocations: list[dict[str, Any]] | None = None,
    *,
    note: str | None = None,
    remember_account: bool = True,
) -> Payment:
    """A clerk's decision: the line is this customer's payment, split over the invoices given
    (amounts in the line's currency) or, with none given, applied oldest first; the rest
    becomes customer credit. The payer's account is remembered for the next statement."""
    actor.require(*WRITERS, action="apply bank statement lines")
    with db.transaction() as session:
        line = _review_line(session, actor, line_id)
        customer = get_owned(session, Customer, customer_id, actor, lock=True)
        explicit: dict[str, int] | None = None
        if allocations:
            explicit = {}
            for index, allocation in enumerate(allocations):
                invoice_id = allocation.get("invoice_id")
                if not invoice_id:
                    raise InvalidInput(
                        f"allocations[{index}].invoice_id: is required", field="allocations"
                    )
                if invoice_id in explicit:
                    raise InvalidInput(
                        f"allocations[{index}]: invoice {invoice_id} is named twice",
                        field="allocations",
                    )
                explicit[invoice_id] = _allocation_amount(allocation, line.currency, index)
            if sum(explicit.values()) > line.amount_minor:
                raise InvalidInput(
                    f"allocations: {format_minor(sum(explicit.values()), line.currency)} is "
                    f"more than the line brings ({format_minor(line.amount_minor, line.currency)})",
                    field="allocations",
                )
        if remember_account and line.payer_account:
            known = list(customer.bank_accounts or [])
            if line.payer_account not in known:
                customer.bank_accounts = [*known, line.payer_account]
        return _apply(session, actor, line, customer.id, explicit, None, note)


def _allocation_amount(allocation: dict[str, Any], currency: str, index: int) -> int:
    from tallybook.core.money import parse_decimal

    name = f"allocations[{index}].amount"
    try:
        return to_minor_exact(parse_decimal(allocation.get("amount"), name), currency, name)
    except MoneyError as error:
        raise InvalidInput(str(error), field="allocations") from None


def _apply(
    session: Session,
    actor: Actor,
    line: BankStatementLine,
    customer_id: str,
    explicit: dict[str, int] | None,
    only: list[str] | None,
    note: str | None,
) -> Payment:
    customer = get_owned(session, Customer, customer_id, actor, lock=True)
    payment = apply_received(
        session,
        actor,
        customer,
        amount_minor=line.amount_minor,
        currency=line.currency,
        received_on=line.booking_date,
        method="bank_transfer",
        reference=(line.creditor_reference or line.remittance_text or "")[:200] or None,
        explicit=explicit,
        only=only,
        source="bank",
    )
    was = snapshot(line, *_LINE_AUDITED)
    line.status = "applied"
    line.customer_id = customer.id
    line.payment_id = payment.id
    line.resolved_by = actor.key_id
    line.resolved_at = utcnow()
    line.resolution_note = (note or "").strip() or "applied by a clerk"
    audit(
        session,
        actor,
        "bank_statement_line.applied",
        "bank_statement_line",
        line.id,
        {"payment": payment.number, "customer": customer.id, "note": line.resolution_note},
        before=was,
        after=line,
    )
    return payment


def ignore_line(db: Database, actor: Actor, line_id: str, reason: str) -> BankStatementLine:
    """Set a line aside: not a customer's payment (interest, a transfer between own accounts)."""
    actor.require(*WRITERS, action="set bank statement lines aside")
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why the line is set aside", field="reason")
    with db.transaction() as session:
        line = _review_line(session, actor, line_id)
        was = snapshot(line, *_LINE_AUDITED)
        line.status = "ignored"
        line.resolved_by = actor.key_id
        line.resolved_at = utcnow()
        line.resolution_note = reason.strip()
        audit(
            session,
            actor,
            "bank_statement_line.ignored",
            "bank_statement_line",
            line.id,
            {"reason": line.resolution_note},
            before=was,
            after=line,
        )
        session.flush()
        return line


def reopen_line(db: Database, actor: Actor, line_id: str) -> BankStatementLine:
    """Put a line that was set aside back in the review queue."""
    actor.require(*WRITERS, action="reopen bank statement lines")
    with db.transaction() as session:
        line = get_owned(
            session, BankStatementLine, line_id, actor, lock=True, label="statement line"
        )
        if line.status != "ignored":
            raise Conflict(
                f"statement line {line.id} is {line.status}; only a line set aside reopens "
                "(reverse the payment of an applied line instead)",
                field="line",
            )
        was = snapshot(line, *_LINE_AUDITED)
        line.status = "review"
        line.resolved_by = None
        line.resolved_at = None
        audit(
            session,
            actor,
            "bank_statement_line.reopened",
            "bank_statement_line",
            line.id,
            before=was,
            after=line,
        )
        session.flush()
        return line


def rematch(db: Database, actor: Actor, statement_id: str | None = None) -> MatchRun:
    """Match the review queue again (new invoices issued, customers' accounts added since) and
    post what is now sure."""
    actor.require(*WRITERS, action="match bank statement lines")
    with db.transaction() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(_IMPORT_LOCK), {"org": actor.organization_id})
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        query = (
            select(BankStatementLine)
            .where(
                BankStatementLine.organization_id == org.id,
                BankStatementLine.status == "review",
            )
            .order_by(BankStatementLine.booking_date, BankStatementLine.id)
            .with_for_update()
        )
        if statement_id:
            get_owned(session, BankStatement, statement_id, actor, label="bank statement")
            query = query.where(BankStatementLine.statement_id == statement_id)
        lines = list(session.scalars(query))
        rows = [
            {
                "id": line.id,
                "amount_minor": line.amount_minor,
                "currency": line.currency,
                "proposal": {},
            }
            for line in lines
        ]
        pairs = [(row, _row_incoming(line)) for row, line in zip(rows, lines, strict=True)]
        applied = _match_and_post(session, actor, org, pairs)
        count = 0
        for row, line in zip(rows, lines, strict=True):
            line.proposal = row["proposal"]
            line.confidence = row["confidence"]
            line.method = row["method"]
            line.customer_id = row["customer_id"]
            if row["status"] == "applied":
                count += 1
                line.status = "applied"
                line.payment_id = row["payment_id"]
                line.resolved_at = row["resolved_at"]
                line.resolution_note = row["resolution_note"]
        audit(
            session,
            actor,
            "bank_statement.rematched",
            "bank_statement",
            statement_id or "all",
            {"examined": len(lines), "applied": count, "applied_minor": applied},
        )
        return MatchRun(len(lines), count, len(lines) - count, applied)


# -- reading ---------------------------------------------------------------------------------


def _status_counts(session: Session, statement_id: str) -> dict[str, int]:
    return dict(
        session.execute(
            select(BankStatementLine.status, func.count())
            .where(BankStatementLine.statement_id == statement_id)
            .group_by(BankStatementLine.status)
        ).all()
    )


@dataclass(frozen=True)
class StatementView:
    statement: BankStatement
    counts: dict[str, int]


def get_statement(db: Database, actor: Actor, statement_id: str) -> StatementView:
    with db.reading() as session:
        statement = get_owned(session, BankStatement, statement_id, actor, label="bank statement")
        return StatementView(statement, _status_counts(session, statement.id))


def list_statements(
    db: Database, actor: Actor, *, limit: int = 100, after: str | None = None
) -> tuple[list[BankStatement], str | None]:
    with db.reading() as session:
        query = select(BankStatement).where(
            BankStatement.organization_id == actor.organization_id
        )
        return keyset_page(session, query, BankStatement, limit, after)


def get_line(db: Database, actor: Actor, line_id: str) -> BankStatementLine:
    with db.reading() as session:
        return get_owned(session, BankStatementLine, line_id, actor, label="statement line")


def list_lines(
    db: Database,
    actor: Actor,
    *,
    status: str | None = None,
    statement_id: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[BankStatementLine], str | None]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"status: {status!r} is not one of {', '.join(STATUSES)}", field="status"
        )
    with db.reading() as session:
        query = select(BankStatementLine).where(
            BankStatementLine.organization_id == actor.organization_id
        )
        if status:
            query = query.where(BankStatementLine.status == status)
        if statement_id:
            get_owned(session, BankStatement, statement_id, actor, label="bank statement")
            query = query.where(BankStatementLine.statement_id == statement_id)
        return keyset_page(session, query, BankStatementLine, limit, after)
