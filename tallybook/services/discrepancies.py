"""The discrepancy workflow: verification findings and customers' disputes, worked from open
through investigating to resolved (the draft adjusted, a credit note, a debit note) or waived
with a reason, with an assignee and comments. Resolving an issued invoice's discrepancy issues
the adjusting document in the same transaction and keeps a message for the customer saying
what changed and why. A disputed invoice pauses dunning (`Invoice.disputed_at`) until its last
open dispute is closed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tallybook.core.money import format_minor
from tallybook.db.models import (
    ApiKey,
    CreditNote,
    Customer,
    DebitNote,
    Discrepancy,
    DiscrepancyComment,
    Invoice,
    InvoiceLine,
    new_id,
)
from tallybook.services import approvals
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)

STATUSES = ("open", "investigating", "resolved", "waived")
OPEN_STATES = ("open", "investigating")
RESOLUTIONS = ("adjust_draft", "credit_note", "debit_note")
DISPUTABLE_STATES = ("issued", "partially_paid", "paid", "uncollectible")
AGE_BUCKETS = (
    ("0-7 days", 0, 7),
    ("8-30 days", 8, 30),
    ("31-90 days", 31, 90),
    ("over 90 days", 91, None),
)
OVERRIDE = "finding_override"


@dataclass(frozen=True)
class DiscrepancyView:
    discrepancy: Discrepancy
    comments: list[DiscrepancyComment]
    invoice_number: str | None


# -- reading ---------------------------------------------------------------------------------------


def list_discrepancies(
    db: Database,
    actor: Actor,
    *,
    status: str | None = None,
    assignee: str | None = None,
    invoice_id: str | None = None,
    check: str | None = None,
    severity: str | None = None,
    source: str | None = None,
    older_than_days: int | None = None,
    as_of: datetime | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Discrepancy], str | None]:
    """Discrepancies by status (`open` also means investigating when asked as 'active'),
    assignee (a key id, or 'none'), invoice, check, severity, source and age."""
    if status is not None and status not in (*STATUSES, "active"):
        raise InvalidInput(f"status: one of {', '.join(STATUSES)} or active", field="status")
    if severity is not None and severity not in ("blocking", "warning"):
        raise InvalidInput("severity: blocking or warning", field="severity")
    if source is not None and source not in ("verification", "dispute"):
        raise InvalidInput("source: verification or dispute", field="source")
    if older_than_days is not None and older_than_days < 0:
        raise InvalidInput("older_than_days: must not be negative", field="older_than_days")
    with db.reading() as session:
        query = select(Discrepancy).where(Discrepancy.organization_id == actor.organization_id)
        if status == "active":
            query = query.where(Discrepancy.status.in_(OPEN_STATES))
        elif status:
            query = query.where(Discrepancy.status == status)
        if assignee == "none":
            query = query.where(Discrepancy.assignee_key_id.is_(None))
        elif assignee:
            query = query.where(Discrepancy.assignee_key_id == assignee)
        if invoice_id:
            query = query.where(Discrepancy.invoice_id == _invoice_ref(session, actor, invoice_id))
        if check:
            query = query.where(Discrepancy.check == check)
        if severity:
            query = query.where(Discrepancy.severity == severity)
        if source:
            query = query.where(Discrepancy.source == source)
        if older_than_days is not None:
            cutoff = (as_of or utcnow()) - timedelta(days=older_than_days)
            query = query.where(Discrepancy.first_seen_at <= cutoff)
        return keyset_page(session, query, Discrepancy, limit, after)


def get_discrepancy(db: Database, actor: Actor, discrepancy_id: str) -> DiscrepancyView:
    with db.reading() as session:
        return _view(session, get_owned(session, Discrepancy, discrepancy_id, actor))


def _view(session: Session, row: Discrepancy) -> DiscrepancyView:
    comments = list(
        session.scalars(
            select(DiscrepancyComment)
            .where(DiscrepancyComment.discrepancy_id == row.id)
            .order_by(DiscrepancyComment.created_at, DiscrepancyComment.id)
        )
    )
    number = None
    if row.invoice_id:
        number = session.scalar(select(Invoice.number).where(Invoice.id == row.invoice_id))
    return DiscrepancyView(row, comments, number)


def _invoice_ref(session: Session, actor: Actor, ref: str) -> str:
    invoice_id = session.scalar(
        select(Invoice.id).where(
            Invoice.organization_id == actor.organization_id,
            (Invoice.id == ref) | (Invoice.number == ref),
        )
    )
    if invoice_id is None:
        raise NotFound(f"invoice {ref} not found")
    return invoice_id


# -- the workflow ----------------------------------------------------------------------------------


def _active(session: Session, actor: Actor, discrepancy_id: str) -> Discrepancy:
    row = get_owned(session, Discrepancy, discrepancy_id, actor, lock=True)
    if row.status not in OPEN_STATES:
        raise Conflict(f"discrepancy {row.id} is already {row.status}")
    return row


def assign(
    db: Database, actor: Actor, discrepancy_id: str, assignee: str | None
) -> DiscrepancyView:
    """Give the discrepancy to an API key (a person) of the organisation; None: nobody."""
    actor.require(*WRITERS, action="assign discrepancies")
    with db.transaction() as session:
        row = _active(session, actor, discrepancy_id)
        if assignee is not None:
            key = session.scalars(
                select(ApiKey).where(
                    ApiKey.organization_id == actor.organization_id,
                    (ApiKey.id == assignee) | (ApiKey.name == assignee),
                    ApiKey.revoked_at.is_(None),
                )
            ).first()
            if key is None:
                raise InvalidInput(
                    f"assignee: no active API key {assignee!r} in this organisation",
                    field="assignee",
                )
            assignee = key.id
        before = snapshot(row, "assignee_key_id")
        row.assignee_key_id = assignee
        row.updated_at = utcnow()
        audit(
            session, actor, "discrepancy.assigned", "discrepancy", row.id, before=before, after=row
        )
        return _view(session, row)


def comment(db: Database, actor: Actor, discrepancy_id: str, body: str) -> DiscrepancyView:
    actor.require(*WRITERS, action="comment on discrepancies")
    body = (body or "").strip()
    if not body:
        raise InvalidInput("body: say something", field="body")
    with db.transaction() as session:
        row = get_owned(session, Discrepancy, discrepancy_id, actor, lock=True)
        note = DiscrepancyComment(
            id=new_id("dcm"),
            organization_id=actor.organization_id,
            discrepancy_id=row.id,
            author_key_id=actor.key_id,
            body=body,
            created_at=utcnow(),
        )
        session.add(note)
        row.updated_at = utcnow()
        session.flush()
        audit(
            session,
            actor,
            "discrepancy.commented",
            "discrepancy",
            row.id,
            {"comment": note.id, "body": body},
        )
        return _view(session, row)


def investigate(
    db: Database, actor: Actor, discrepancy_id: str, note: str | None = None
) -> DiscrepancyView:
    """Someone is on it: open -> investigating (taking it, if nobody has it)."""
    actor.require(*WRITERS, action="investigate discrepancies")
    with db.transaction() as session:
        row = _active(session, actor, discrepancy_id)
        if row.status == "investigating":
            raise Conflict(f"discrepancy {row.id} is already being investigated")
        before = snapshot(row, "status", "assignee_key_id")
        row.status = "investigating"
        if row.assignee_key_id is None:
            row.assignee_key_id = actor.key_id
        row.updated_at = utcnow()
        if note and note.strip():
            session.add(_comment(actor, row, note.strip()))
        audit(
            session,
            actor,
            "discrepancy.investigating",
            "discrepancy",
            row.id,
            before=before,
            after=row,
        )
        return _view(session, row)


def resolve(
    db: Database, actor: Actor, discrepancy_id: str, values: dict[str, Any]
) -> DiscrepancyView:
    """Close a discrepancy by correcting what was wrong.

    resolution: adjust_draft (the draft was corrected; verifying it again must not find the
    mistake), credit_note (issue one now with `lines` as credit_notes takes them, or link
    `credit_note_id`, one already issued on the invoice, e.g. after its approval), debit_note
    (issue one with `lines`, or link `debit_note_id`). note: what was done, required.
    customer_message: what the customer is told; written from the note when not given."""
    actor.require(*WRITERS, action="resolve discrepancies")
    resolution = values.get("resolution")
    if resolution not in RESOLUTIONS:
        raise InvalidInput(f"resolution: one of {', '.join(RESOLUTIONS)}", field="resolution")
    note = (values.get("note") or "").strip()
    if not note:
        raise InvalidInput("note: say what was corrected and why", field="note")
    if resolution in ("credit_note", "debit_note"):
        actor.require(*MANAGERS, action=f"resolve with a {resolution.replace('_', ' ')}")
    held: approvals.ApprovalRequired | None = None
    with db.transaction() as session:
        row = _active(session, actor, discrepancy_id)
        invoice = _locked_invoice(session, actor, row)
        before = snapshot(row, "status", "resolution", "credit_note_id", "debit_note_id")
        document = None
        if resolution == "adjust_draft":
            if invoice is None or invoice.status != "draft":
                raise Conflict(
                    "resolution: adjust_draft is for a draft; an issued invoice is corrected "
                    "with a credit note or a debit note",
                    field="resolution",
                )
            from tallybook.services.verification import current_findings

            still = current_findings(session, actor, invoice.id)
            if row.source == "verification" and any(f.key == row.fingerprint for f in still):
                raise Conflict(
                    f"the draft still shows this mistake ({row.what}); correct the draft first"
                )
        else:
            if invoice is None or invoice.status not in DISPUTABLE_STATES:
                raise Conflict(
                    f"resolution: a {resolution.replace('_', ' ')} corrects an issued invoice; "
                    + (
                        "this discrepancy has none"
                        if invoice is None
                        else f"this one is {invoice.status}"
                    ),
                    field="resolution",
                )
            try:
                document = _adjusting_document(
                    session, actor, row, invoice, resolution, values, note
                )
            except approvals.ApprovalRequired as error:
                held = error
                session.add(
                    _comment(
                        actor,
                        row,
                        f"{resolution.replace('_', ' ')} waiting for approval: {error.detail}",
                    )
                )
                if row.status == "open":
                    row.status = "investigating"
                row.updated_at = utcnow()
        if held is None:
            now = utcnow()
            row.status = "resolved"
            row.resolution = resolution
            row.resolution_note = note
            row.resolved_by = actor.key_id
            row.resolved_at = now
            row.updated_at = now
            if isinstance(document, CreditNote):
                row.credit_note_id = document.id
            elif isinstance(document, DebitNote):
                row.debit_note_id = document.id
            row.customer_message = (values.get("customer_message") or "").strip() or _message(
                row, invoice, resolution, document, note, session
            )
            _close_dispute(session, actor, row, invoice)
            audit(
                session,
                actor,
                "discrepancy.resolved",
                "discrepancy",
                row.id,
                {"note": note, "customer_message": row.customer_message},
                before=before,
                after=row,
            )
        view = _view(session, row)
    if held is not None:
        raise held
    return view


def waive(db: Database, actor: Actor, discrepancy_id: str, reason: str) -> DiscrepancyView:
    """Close a discrepancy as not a mistake (or accepted), with the reason. A blocking finding
    on a draft is only waived with a billing manager's approved override (request one with
    POST /v1/invoices/{id}/override)."""
    actor.require(*WRITERS, action="waive discrepancies")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say why this is not to be corrected", field="reason")
    with db.transaction() as session:
        row = _active(session, actor, discrepancy_id)
        invoice = _locked_invoice(session, actor, row)
        if (
            row.source == "verification"
            and row.severity == "blocking"
            and not approvals.is_approved(session, actor, OVERRIDE, row.id)
        ):
            raise Forbidden(
                f"discrepancy {row.id} is a blocking finding: waiving it is an override and "
                "needs a billing manager's approval; request an override of the draft first"
            )
        before = snapshot(row, "status", "resolution")
        now = utcnow()
        row.status = "waived"
        row.resolution = "waive"
        row.resolution_note = reason
        row.resolved_by = actor.key_id
        row.resolved_at = now
        row.updated_at = now
        if row.source == "dispute":
            row.customer_message = _message(row, invoice, "waive", None, reason, session)
        _close_dispute(session, actor, row, invoice)
        audit(
            session,
            actor,
            "discrepancy.waived",
            "discrepancy",
            row.id,
            {"reason": reason},
            before=before,
            after=row,
        )
        return _view(session, row)


# -- disputes --------------------------------------------------------------------------------------


def open_dispute(
    db: Database, actor: Actor, invoice_id: str, reason: str, line: str | None = None
) -> DiscrepancyView:
    """A customer disputes an issued invoice, or one of its lines (id or 1-based position): a
    discrepancy to work, and dunning on the invoice pauses until it is closed."""
    actor.require(*WRITERS, action="record disputes")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say what the customer disputes", field="reason")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        row = open_dispute_in(session, actor, invoice, reason, line)
        return _view(session, row)


def open_dispute_in(
    session: Session, actor: Actor, invoice: Invoice, reason: str, line: str | None = None
) -> Discrepancy:
    """The dispute, in the caller's transaction on the locked invoice."""
    if invoice.status not in DISPUTABLE_STATES:
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; only an issued "
            "invoice can be disputed"
        )
    disputed_line = None
    if line is not None and str(line).strip():
        disputed_line = _line_of(session, invoice, str(line).strip())
    customer = session.get(Customer, invoice.customer_id)
    now = utcnow()
    where = f"invoice {invoice.number}"
    location: dict[str, Any] = {
        "customer_id": invoice.customer_id,
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
    }
    if disputed_line is not None:
        position, line_row = disputed_line
        where += f" line {position} ({line_row.description})"
        location.update(line_id=line_row.id, line_position=position)
    row = Discrepancy(
        id=new_id("dsc"),
        organization_id=actor.organization_id,
        fingerprint="dispute:" + hashlib.sha256(new_id("d").encode()).hexdigest()[:48],
        source="dispute",
        check="customer_dispute",
        severity="blocking",
        status="open",
        what=f"{customer.legal_name if customer else 'the customer'} disputes {where}: {reason}",
        why="the customer does not accept the charge; dunning on the invoice is paused until "
        "the dispute is resolved",
        expected=None,
        actual=reason,
        location=location,
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        invoice_line_id=disputed_line[1].id if disputed_line else None,
        opened_by=actor.key_id,
        first_seen_at=now,
        last_seen_at=now,
        updated_at=now,
    )
    session.add(row)
    if invoice.disputed_at is None:
        before = snapshot(invoice, "disputed_at", "dispute_reason")
        invoice.disputed_at = now
        invoice.dispute_reason = reason
        audit(
            session,
            actor,
            "invoice.disputed",
            "invoice",
            invoice.id,
            {"number": invoice.number},
            before=before,
            after=invoice,
        )
    session.flush()
    audit(session, actor, "discrepancy.opened", "discrepancy", row.id, after=row)
    return row


def close_disputes_in(
    session: Session, actor: Actor, invoice: Invoice, resolution: str | None
) -> int:
    """Lifting an invoice's dispute (services.dunning.resolve_dispute) closes its open dispute
    discrepancies as waived with that resolution; returns how many."""
    rows = list(
        session.scalars(
            select(Discrepancy)
            .where(
                Discrepancy.organization_id == actor.organization_id,
                Discrepancy.invoice_id == invoice.id,
                Discrepancy.source == "dispute",
                Discrepancy.status.in_(OPEN_STATES),
            )
            .with_for_update()
        )
    )
    now = utcnow()
    for row in rows:
        before = snapshot(row, "status", "resolution")
        row.status = "waived"
        row.resolution = "waive"
        row.resolution_note = resolution or "dispute lifted"
        row.resolved_by = actor.key_id
        row.resolved_at = now
        row.updated_at = now
        row.customer_message = _message(row, invoice, "waive", None, row.resolution_note, session)
        audit(session, actor, "discrepancy.waived", "discrepancy", row.id, before=before, after=row)
    return len(rows)


def _close_dispute(
    session: Session, actor: Actor, row: Discrepancy, invoice: Invoice | None
) -> None:
    """The last open dispute of an invoice closed: dunning resumes."""
    if row.source != "dispute" or invoice is None or invoice.disputed_at is None:
        return
    still = session.scalar(
        select(func.count()).where(
            Discrepancy.organization_id == actor.organization_id,
            Discrepancy.invoice_id == invoice.id,
            Discrepancy.source == "dispute",
            Discrepancy.status.in_(OPEN_STATES),
            Discrepancy.id != row.id,
        )
    )
    if still:
        return
    before = snapshot(invoice, "disputed_at", "dispute_reason")
    invoice.disputed_at = None
    invoice.dispute_reason = None
    audit(
        session,
        actor,
        "invoice.dispute_resolved",
        "invoice",
        invoice.id,
        {"number": invoice.number, "discrepancy": row.id},
        before=before,
        after=invoice,
    )


def _line_of(session: Session, invoice: Invoice, ref: str) -> tuple[int, InvoiceLine]:
    lines = list(
        session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice.id)
            .order_by(InvoiceLine.position)
        )
    )
    for position, line in enumerate(lines, start=1):
        if line.id == ref or str(position) == ref:
            return position, line
    raise InvalidInput(
        f"line: invoice {invoice.number} has no line {ref} (it has {len(lines)})", field="line"
    )


# -- adjusting documents and the customer's message ---------------------------------------------


def _locked_invoice(session: Session, actor: Actor, row: Discrepancy) -> Invoice | None:
    if row.invoice_id is None:
        return None
    return get_owned(session, Invoice, row.invoice_id, actor, lock=True)


class _InTransaction:
    """The caller's open transaction, handed to a service that opens its own: the service's
    work becomes a savepoint of it, so the document and the resolution commit together."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.session.begin_nested():
            yield self.session

    reading = transaction


def _adjusting_document(
    session: Session,
    actor: Actor,
    row: Discrepancy,
    invoice: Invoice,
    resolution: str,
    values: dict[str, Any],
    note: str,
) -> CreditNote | DebitNote:
    model = CreditNote if resolution == "credit_note" else DebitNote
    linked = values.get(f"{resolution}_id")
    if linked:
        document = session.scalars(
            select(model).where(
                model.organization_id == actor.organization_id,
                (model.id == linked) | (model.number == linked),
            )
        ).first()
        if document is None or document.invoice_id != invoice.id:
            raise InvalidInput(
                f"{resolution}_id: no {resolution.replace('_', ' ')} {linked} on invoice "
                f"{invoice.number}",
                field=f"{resolution}_id",
            )
        return document
    reason = f"{note} (discrepancy {row.id})"
    if resolution == "credit_note":
        from tallybook.services.credit_notes import create_credit_note

        request: dict[str, Any] = {"reason": reason}
        if values.get("lines"):
            request["lines"] = values["lines"]
        elif row.invoice_line_id:
            request["lines"] = [{"line_id": row.invoice_line_id}]
        if values.get("settlement"):
            request["settlement"] = values["settlement"]
        return create_credit_note(_InTransaction(session), actor, invoice.id, request)  # type: ignore[arg-type]
    from tallybook.services.credit_notes import issue_debit_note

    if not values.get("lines"):
        raise InvalidInput("lines: a debit note needs the lines it charges", field="lines")
    return issue_debit_note(session, actor, invoice, {"reason": reason, "lines": values["lines"]})


def _message(
    row: Discrepancy,
    invoice: Invoice | None,
    resolution: str,
    document: CreditNote | DebitNote | None,
    note: str,
    session: Session,
) -> str:
    """What the customer is told: what changed, by which document, and why."""
    note = note.rstrip(". ")
    sentence = note[:1].upper() + note[1:]
    subject = (
        f"invoice {invoice.number}" if invoice is not None and invoice.number else "your invoice"
    )
    position = (row.location or {}).get("line_position")
    if position:
        subject += f" (line {position})"
    asked = "your query about " if row.source == "dispute" else ""
    if resolution == "credit_note" and isinstance(document, CreditNote):
        session.flush()
        due = format_minor(invoice.amount_due_minor, invoice.currency) if invoice else ""
        return (
            f"We reviewed {asked}{subject}. {sentence}. We have issued credit note "
            f"{document.number} for {format_minor(document.total_minor, document.currency)}"
            + (f"; the amount now due on the invoice is {due}." if invoice else ".")
        )
    if resolution == "debit_note" and isinstance(document, DebitNote):
        return (
            f"We reviewed {asked}{subject}. {sentence}. We have issued debit note "
            f"{document.number} for {format_minor(document.total_minor, document.currency)}, "
            f"due on {document.due_date.isoformat()}."
        )
    if resolution == "adjust_draft":
        return f"Before sending {subject}, we corrected it: {note}."
    return f"We reviewed {asked}{subject} and found it correct: {note}. Nothing changes."


def _comment(actor: Actor, row: Discrepancy, body: str) -> DiscrepancyComment:
    return DiscrepancyComment(
        id=new_id("dcm"),
        organization_id=actor.organization_id,
        discrepancy_id=row.id,
        author_key_id=actor.key_id,
        body=body,
        created_at=utcnow(),
    )


def age_bucket(days: int) -> str:
    for name, low, high in AGE_BUCKETS:
        if days >= low and (high is None or days <= high):
            return name
    return AGE_BUCKETS[-1][0]
