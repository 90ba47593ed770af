"""Corrections to issued invoices: credit notes (never more than invoiced) and debit notes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tallybook.core import ledger as core_ledger
from tallybook.core.credit import (
    CreditedSoFar,
    CreditError,
    CreditRequest,
    InvoicedLine,
    LineCredit,
    credit_line,
)
from tallybook.core.money import RoundingMode, format_minor, round_to_minor
from tallybook.core.periods import local_date
from tallybook.db.models import (
    CreditNote,
    CreditNoteLine,
    Customer,
    CustomerCreditEntry,
    DebitNote,
    Invoice,
    InvoiceLine,
    Organization,
    Product,
    TaxRate,
    new_id,
)
from tallybook.services.approvals import (
    CREDIT_NOTE,
    Decision,
    carried_out,
    check_held_action,
    holds_for_approval,
)
from tallybook.services.base import (
    MANAGERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    changes,
    get_owned,
    snapshot,
    utcnow,
)
from tallybook.services.catalog import _decimal
from tallybook.services.invoices import AUDITED, ISSUED_STATES, _refresh_amount_due, next_number
from tallybook.services.ledger import accounts_of, post
from tallybook.services.rating import TaxTable, rate_invoice, treatment_of


@holds_for_approval
def create_credit_note(
    db: Database,
    actor: Actor,
    invoice_id: str,
    values: dict[str, Any],
    *,
    approval: Decision | None = None,
) -> CreditNote:
    """Credit an issued invoice, whole (no lines given) or per line by quantity or amount.

    issue_date (optional, default today in the customer's time zone) dates and numbers the note;
    it may not precede the invoice's issue date.

    settlement: reduce_amount_due (default) lowers what the customer owes on the invoice; any
    part above what is still due, or customer_credit, goes to the customer's credit balance.

    Above the organisation's credit-note limit the note is held for another billing manager's
    approval (services.approvals); approving it calls this again with the decision.
    """
    actor.require(*MANAGERS, action="issue credit notes")
    reason = (values.get("reason") or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the invoice is credited", field="reason")
    settlement = values.get("settlement", "reduce_amount_due")
    if settlement not in ("reduce_amount_due", "customer_credit"):
        raise InvalidInput(
            "settlement: must be reduce_amount_due or customer_credit", field="settlement"
        )
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status not in ISSUED_STATES:
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status}; only "
                "issued invoices can be credited"
            )
        invoice_before = snapshot(invoice, *AUDITED)
        org = session.get(Organization, actor.organization_id)
        lines = {
            line.id: line
            for line in session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.position)
            )
        }
        positions = {str(i): lid for i, lid in enumerate(lines, start=1)}
        credited = _credited_so_far(session, invoice.id)
        prior_total, prior_to_balance = _prior_credits(session, invoice.id)
        creditable = invoice.total_minor - prior_total
        if creditable <= 0:
            raise Conflict(
                f"invoice {invoice.number} has nothing left to credit (total "
                f"{invoice.total_minor}, credited {prior_total} minor units)"
            )
        requests = values.get("lines")
        results: list[tuple[InvoiceLine, LineCredit]] = []
        if not requests:
            requests = [
                {"line_id": lid}
                for lid, line in lines.items()
                if line.total_minor > 0 and _remaining(line, credited.get(lid))
            ]
            # Crediting the whole invoice also reverses its negative (adjustment) lines, so the
            # note never credits more than the invoice's own total.
            results += [
                (line, _reversal(line))
                for lid, line in lines.items()
                if line.total_minor < 0 and lid not in credited
            ]
            if not requests:
                raise Conflict("invoice is already fully credited")
        for index, request in enumerate(requests):
            prefix = f"lines[{index}]."
            ref = str(request.get("line_id") or request.get("line") or "")
            line_id = positions.get(ref, ref)
            line = lines.get(line_id)
            if line is None:
                raise InvalidInput(
                    f"{prefix}line_id: no line {ref!r} on this invoice", field="lines"
                )
            if line.total_minor < 0:
                raise InvalidInput(f"{prefix}line_id: line {ref} is itself a credit", field="lines")
            quantity = (
                None
                if request.get("quantity") is None
                else _decimal(request["quantity"], f"{prefix}quantity")
            )
            amount_minor = None
            if request.get("amount") is not None:
                amount = _decimal(request["amount"], f"{prefix}amount")
                amount_minor = round_to_minor(
                    amount, invoice.currency, RoundingMode(org.rounding_mode)
                )
            invoiced = InvoicedLine(
                key=line.id,
                quantity=line.quantity if line.quantity > 0 else Decimal(1),
                taxable_minor=line.subtotal_minor - line.discount_minor,
                taxes=tuple((t["code"], t["amount_minor"]) for t in _line_taxes(line)),
            )
            try:
                credit = credit_line(
                    invoiced,
                    credited.get(line.id, CreditedSoFar()),
                    CreditRequest(line.id, quantity, amount_minor),
                    invoice.currency,
                    RoundingMode(org.rounding_mode),
                    field_prefix=prefix,
                )
            except CreditError as error:
                raise InvalidInput(str(error), field="lines") from None
            prior = credited.get(line.id, CreditedSoFar())
            credited[line.id] = CreditedSoFar(
                prior.quantity + credit.quantity,
                prior.taxable_minor + credit.taxable_minor,
                _merge_taxes(prior.taxes, credit.taxes),
            )
            results.append((line, credit))
        subtotal = sum(c.taxable_minor for _, c in results)
        tax = sum(c.tax_minor for _, c in results)
        total = subtotal + tax
        if total <= 0:
            raise InvalidInput("lines: the credit note would credit nothing", field="lines")
        if total > creditable:
            raise InvalidInput(
                f"lines: the credit note would credit {total} minor units but only "
                f"{creditable} of the invoice remain creditable",
                field="lines",
            )
        held = check_held_action(
            session,
            actor,
            org,
            CREDIT_NOTE,
            invoice.id,
            total,
            invoice.currency,
            action={"values": values},
            decision=approval,
            message=f"a credit note of {format_minor(total, invoice.currency)} on invoice "
            f"{invoice.number} is above the organisation's credit-note approval limit",
        )
        customer = session.get(Customer, invoice.customer_id, with_for_update=True)
        day = _issue_date(values.get("issue_date")) or local_date(utcnow(), customer.timezone)
        if invoice.issue_date is not None and day < invoice.issue_date:
            raise InvalidInput(
                f"issue_date: {day} is before the invoice's issue date {invoice.issue_date}",
                field="issue_date",
            )
        note = CreditNote(
            id=new_id("cn"),
            organization_id=org.id,
            invoice_id=invoice.id,
            customer_id=customer.id,
            number=next_number(session, org.id, "credit_note", org.credit_note_number_pattern, day),
            currency=invoice.currency,
            reason=reason,
            settlement=settlement,
            issue_date=day,
            subtotal_minor=subtotal,
            tax_minor=tax,
            total_minor=total,
            created_by=actor.key_id,
            created_at=utcnow(),
        )
        session.add(note)
        session.flush()
        carried_out(held, "credit_note", note.id)
        for line, credit in results:
            tax_names = {t["code"]: t for t in _line_taxes(line)}
            session.add(
                CreditNoteLine(
                    id=new_id("cnl"),
                    organization_id=org.id,
                    credit_note_id=note.id,
                    invoice_line_id=line.id,
                    description=line.description,
                    quantity=credit.quantity,
                    subtotal_minor=credit.taxable_minor,
                    tax_minor=credit.tax_minor,
                    total_minor=credit.total_minor,
                    taxes=[
                        {
                            "code": code,
                            "name": tax_names[code]["name"],
                            "percent": tax_names[code]["percent"],
                            "amount_minor": amount,
                        }
                        for code, amount in credit.taxes
                    ],
                )
            )
        # Credits reduce what is still owed. Only money the customer actually paid on this
        # invoice (in cash or with earlier credit) can come back as customer credit.
        refundable = max(invoice.paid_minor + invoice.credit_applied_minor - prior_to_balance, 0)
        if settlement == "customer_credit":
            to_balance = min(total, refundable)
        else:
            to_balance = min(max(total - invoice.amount_due_minor, 0), refundable)
        to_invoice = total - to_balance
        owed_before = invoice.amount_due_minor
        # Crediting more than is still owed on a written-off invoice takes back part of the
        # write-off (the ledger moves it out of bad debt), never a negative balance.
        invoice.written_off_minor -= min(
            max(to_invoice - owed_before, 0), invoice.written_off_minor
        )
        invoice.credited_minor += to_invoice
        if to_balance:
            customer.credit_balance_minor += to_balance
            session.add(
                CustomerCreditEntry(
                    id=new_id("cce"),
                    organization_id=org.id,
                    customer_id=customer.id,
                    amount_minor=to_balance,
                    currency=invoice.currency,
                    source="credit_note",
                    source_id=note.id,
                    created_at=utcnow(),
                )
            )
        _refresh_amount_due(invoice)
        # The credited part of the invoice no longer uses its purchase order.
        from tallybook.services.purchase_orders import give_back_for_credit_note

        give_back_for_credit_note(
            session,
            actor,
            invoice,
            note.id,
            [(line.id, credit.quantity, credit.taxable_minor) for line, credit in results],
        )
        off_receivable = owed_before - invoice.amount_due_minor
        post(
            session,
            org.id,
            core_ledger.credit_note_issued(
                accounts_of(session, org.id),
                number=note.number,
                invoice_number=invoice.number or invoice.id,
                issue_date=day,
                currency=invoice.currency,
                customer=customer.legal_name,
                total_minor=total,
                tax_minor=tax,
                revenue_lines=_credited_revenue(session, results),
                to_invoice_minor=off_receivable,
                to_credit_minor=to_balance,
                written_off_minor=to_invoice - off_receivable,
            ),
            source_type="credit_note",
            source_id=note.id,
            customer_id=customer.id,
        )
        audit(
            session,
            actor,
            "credit_note.issued",
            "credit_note",
            note.id,
            {
                "number": note.number,
                "invoice": invoice.number,
                "total_minor": total,
                "reason": reason,
                "to_invoice_minor": to_invoice,
                "to_credit_minor": to_balance,
                "approval_request": held.id if held else None,
                "invoice_changes": changes(invoice_before, invoice),
            },
            after=note,
        )
        from tallybook.services.outbox import credit_note_issued

        credit_note_issued(session, note, invoice, customer)
    return note


def _credited_revenue(session: Any, results: list[Any]) -> list[tuple[str | None, int]]:
    """(revenue account, credited net amount) per credited line: revenue is reversed on the
    accounts the invoice line posted to."""
    product_ids = {line.product_id for line, _ in results if line.product_id}
    accounts = dict(
        session.execute(
            select(Product.id, Product.revenue_account).where(Product.id.in_(product_ids))
        ).all()
        if product_ids
        else []
    )
    return [(accounts.get(line.product_id), credit.taxable_minor) for line, credit in results]


def _issue_date(value: Any) -> date | None:
    """An explicit issue date (a date or an ISO date string), as issue_invoice takes one."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(
            f"issue_date: {value!r} is not an ISO date", field="issue_date"
        ) from None


def _reversal(line: InvoiceLine) -> LineCredit:
    """The whole of a negative line, credited back (a negative credit-note line)."""
    taxes = tuple((t["code"], t["amount_minor"]) for t in _line_taxes(line))
    taxable = line.subtotal_minor - line.discount_minor
    tax = sum(amount for _, amount in taxes)
    return LineCredit(line.id, line.quantity, taxable, taxes, tax, taxable + tax)


def _prior_credits(session: Any, invoice_id: str) -> tuple[int, int]:
    """Total of earlier credit notes on the invoice, and how much of it went to the balance."""
    notes = list(session.scalars(select(CreditNote.id).where(CreditNote.invoice_id == invoice_id)))
    total = session.scalar(
        select(func.coalesce(func.sum(CreditNote.total_minor), 0)).where(
            CreditNote.invoice_id == invoice_id
        )
    )
    to_balance = 0
    if notes:
        to_balance = session.scalar(
            select(func.coalesce(func.sum(CustomerCreditEntry.amount_minor), 0)).where(
                CustomerCreditEntry.source == "credit_note",
                CustomerCreditEntry.source_id.in_(notes),
            )
        )
    return int(total), int(to_balance)


def _line_taxes(line: InvoiceLine) -> list[dict[str, Any]]:
    """Tax amounts actually charged on a line, per code (from its explanation)."""
    return [t for t in line.explanation.get("taxes", [])]


def _merge_taxes(
    a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, int], ...]:
    merged: dict[str, int] = dict(a)
    for code, amount in b:
        merged[code] = merged.get(code, 0) + amount
    return tuple(sorted(merged.items()))


def _credited_so_far(session: Any, invoice_id: str) -> dict[str, CreditedSoFar]:
    result: dict[str, CreditedSoFar] = {}
    rows = session.scalars(
        select(CreditNoteLine)
        .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
        .where(CreditNote.invoice_id == invoice_id)
    )
    for row in rows:
        prior = result.get(row.invoice_line_id, CreditedSoFar())
        result[row.invoice_line_id] = CreditedSoFar(
            prior.quantity + row.quantity,
            prior.taxable_minor + row.subtotal_minor,
            _merge_taxes(prior.taxes, tuple((t["code"], t["amount_minor"]) for t in row.taxes)),
        )
    return result


def _remaining(line: InvoiceLine, so_far: CreditedSoFar | None) -> bool:
    credited = 0 if so_far is None else so_far.taxable_minor + sum(a for _, a in so_far.taxes)
    return credited < line.total_minor


def list_credit_notes(
    db: Database,
    actor: Actor,
    invoice_id: str | None = None,
    *,
    limit: int | None = None,
    after: str | None = None,
) -> list[CreditNote]:
    """Credit notes in issue order; with `limit`, one page in id order after the cursor."""
    with db.reading() as session:
        query = select(CreditNote).where(CreditNote.organization_id == actor.organization_id)
        if invoice_id:
            query = query.where(CreditNote.invoice_id == invoice_id)
        if limit is None:
            return list(session.scalars(query.order_by(CreditNote.created_at)))
        if after:
            query = query.where(CreditNote.id > after)
        return list(session.scalars(query.order_by(CreditNote.id).limit(limit)))


def get_credit_note(
    db: Database, actor: Actor, credit_note_id: str
) -> tuple[CreditNote, list[CreditNoteLine]]:
    with db.reading() as session:
        note = session.scalars(
            select(CreditNote).where(
                CreditNote.organization_id == actor.organization_id,
                (CreditNote.id == credit_note_id) | (CreditNote.number == credit_note_id),
            )
        ).first()
        if note is None:
            from tallybook.services.base import NotFound

            raise NotFound(f"credit note {credit_note_id} not found")
        lines = list(
            session.scalars(select(CreditNoteLine).where(CreditNoteLine.credit_note_id == note.id))
        )
    return note, lines


def create_debit_note(
    db: Database, actor: Actor, invoice_id: str, values: dict[str, Any]
) -> DebitNote:
    """Add charges to an issued invoice without editing it: a debit note with its own number."""
    actor.require(*MANAGERS, action="issue debit notes")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        return issue_debit_note(session, actor, invoice, values)


def issue_debit_note(
    session: Session,
    actor: Actor,
    invoice: Invoice,
    values: dict[str, Any],
    *,
    late_fee: bool = False,
    day: date | None = None,
) -> DebitNote:
    """A debit note on a locked invoice, in the caller's transaction; a late fee posts to the
    late fee income account and carries no tax. `day` dates it (default: today for the
    customer), as a dunning run dates its late fees with the run's date."""
    reason = (values.get("reason") or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the customer is charged more", field="reason")
    requested = values.get("lines") or []
    if not requested:
        raise InvalidInput("lines: give at least one line", field="lines")
    invoice_before = snapshot(invoice, *AUDITED)
    if invoice.status not in ISSUED_STATES or invoice.status == "uncollectible":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; debit "
            "notes apply to open issued invoices"
        )
    org = session.get(Organization, actor.organization_id)
    customer = session.get(Customer, invoice.customer_id)
    table = TaxTable.build(
        session.scalars(select(TaxRate).where(TaxRate.organization_id == org.id))
    )
    entries = []
    described = []
    for index, line in enumerate(requested):
        prefix = f"lines[{index}]"
        if not line.get("description"):
            raise InvalidInput(f"{prefix}.description: is required", field="lines")
        quantity = _decimal(line.get("quantity", 1), f"{prefix}.quantity")
        unit_price = _decimal(line.get("unit_price"), f"{prefix}.unit_price")
        if quantity <= 0 or unit_price <= 0:
            raise InvalidInput(f"{prefix}: a debit note adds a positive charge", field="lines")
        category = "standard"
        if line.get("product_id"):
            category = get_owned(session, Product, line["product_id"], actor).tax_category
        # A late fee is compensation for paying late, not the price of a supply: no VAT.
        rates = () if late_fee else table.for_customer(customer, category)
        entries.append((f"d{index}", quantity * unit_price, rates, line.get("product_id")))
        described.append(
            {
                "description": line["description"],
                "quantity": str(quantity),
                "unit_price": str(unit_price),
            }
        )
    totals = rate_invoice(org, invoice.currency, treatment_of(customer), entries, [])
    for entry, line_totals in zip(described, totals.lines, strict=True):
        entry.update(
            subtotal_minor=line_totals.subtotal_minor,
            tax_minor=line_totals.tax_minor,
            total_minor=line_totals.total_minor,
        )
    if day is None:
        day = local_date(utcnow(), customer.timezone)
    elif invoice.issue_date is not None and day < invoice.issue_date:
        raise InvalidInput(
            f"issue_date: {day} is before the invoice's issue date {invoice.issue_date}",
            field="issue_date",
        )
    note = DebitNote(
        id=new_id("dn"),
        organization_id=org.id,
        invoice_id=invoice.id,
        customer_id=customer.id,
        number=next_number(session, org.id, "debit_note", org.debit_note_number_pattern, day),
        currency=invoice.currency,
        reason=reason,
        issue_date=day,
        due_date=day + timedelta(days=customer.payment_terms_days),
        lines=described,
        subtotal_minor=totals.subtotal_minor,
        tax_minor=totals.tax_minor,
        total_minor=totals.total_minor,
        created_by=actor.key_id,
        created_at=utcnow(),
    )
    session.add(note)
    invoice.debited_minor += totals.total_minor
    _refresh_amount_due(invoice)
    session.flush()
    post(
        session,
        org.id,
        core_ledger.invoice_issued(
            accounts_of(session, org.id),
            number=note.number,
            issue_date=day,
            currency=invoice.currency,
            customer=customer.legal_name,
            total_minor=totals.total_minor,
            tax_minor=totals.tax_minor,
            revenue_lines=[
                (
                    session.get(Product, entry[3]).revenue_account if entry[3] else None,
                    line_totals.subtotal_minor - line_totals.discount_minor,
                )
                for entry, line_totals in zip(entries, totals.lines, strict=True)
            ],
            late_fee=late_fee,
        ),
        source_type="debit_note",
        source_id=note.id,
        customer_id=customer.id,
    )
    audit(
        session,
        actor,
        "debit_note.issued",
        "debit_note",
        note.id,
        {
            "number": note.number,
            "invoice": invoice.number,
            "total_minor": totals.total_minor,
            "reason": reason,
            "invoice_changes": changes(invoice_before, invoice),
        },
        after=note,
    )
    from tallybook.services.outbox import debit_note_issued

    debit_note_issued(session, note, invoice, customer, late_fee=late_fee)
    return note


def count_credit_notes(db: Database, actor: Actor) -> int:
    with db.reading() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(CreditNote)
                .where(CreditNote.organization_id == actor.organization_id)
            )
            or 0
        )
