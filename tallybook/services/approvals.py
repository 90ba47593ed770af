"""Approvals and segregation of duties: actions one person may not do alone.

Rules per organisation: a draft invoice above `approval_thresholds`, a credit note above
`credit_note_approval_thresholds`, a write-off above `write_off_approval_thresholds` (per
currency; "0" means every one) and overriding a blocking verification finding (always). Each
needs a billing manager or admin other than the key that asked (and than the document's
creator) to approve it, with a reason. "Who" is the API key: keys carry a person's name.

A refused action is held: the call that needed approval answers 403 "approval required" naming
a pending approval request (the same request when it is asked again unchanged). Approving a held
credit note or write-off carries it out in the approver's transaction, so the decision and the
document are written together or not at all; approving an invoice marks the draft approved for
issuing; approving a finding override is what `is_approved` answers for the verification engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core.money import MoneyError, RoundingMode, parse_decimal, round_to_minor
from tallybook.db.models import ApprovalRequest, Invoice, Organization, new_id
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    Role,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)

F = TypeVar("F", bound=Callable[..., Any])

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
WRITE_OFF = "write_off"
FINDING_OVERRIDE = "finding_override"
RULES = {
    INVOICE: "invoice_total_above_threshold",
    CREDIT_NOTE: "credit_note_above_threshold",
    WRITE_OFF: "write_off_above_threshold",
    FINDING_OVERRIDE: "blocking_finding_override",
}
SUBJECT_TYPES = tuple(RULES)
STATUSES = ("pending", "approved", "rejected", "withdrawn")
# Which organisation setting holds each rule's amounts.
THRESHOLD_SETTINGS = {
    INVOICE: "approval_thresholds",
    CREDIT_NOTE: "credit_note_approval_thresholds",
    WRITE_OFF: "write_off_approval_thresholds",
}
SUBJECT_WORDS = {
    INVOICE: "invoice",
    CREDIT_NOTE: "credit note",
    WRITE_OFF: "write-off",
    FINDING_OVERRIDE: "override of a blocking finding",
}


class ApprovalRequired(Forbidden):
    """The action needs a second person; the detail names the approval request waiting."""

    title = "Approval required"
    type_suffix = "approval-required"

    def __init__(self, detail: str, *, approval_id: str | None = None) -> None:
        super().__init__(detail)
        self.approval_id = approval_id


@dataclass(frozen=True)
class Decision:
    """An approver's yes to a held action, carried into the transaction that performs it."""

    approval_id: str
    reason: str


class NeedsApproval(Exception):
    """Raised inside a service's transaction when a rule applies and nobody has approved: the
    transaction rolls back and `holds_for_approval` records the request in a new one."""

    def __init__(
        self,
        actor: Actor,
        subject_type: str,
        subject_id: str,
        message: str,
        *,
        amount_minor: int | None = None,
        currency: str | None = None,
        action: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> None:
        super().__init__(message)
        self.actor = actor
        self.subject_type = subject_type
        self.subject_id = subject_id
        self.message = message
        self.amount_minor = amount_minor
        self.currency = currency
        self.action = action or {}
        self.created_by = created_by


def holds_for_approval(func: F) -> F:
    """Turn a service's NeedsApproval into a pending approval request and a 403 naming it."""

    @functools.wraps(func)
    def wrapper(db: Database, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(db, *args, **kwargs)
        except NeedsApproval as held:
            with db.transaction() as session:
                request = request_approval(
                    session,
                    held.actor,
                    subject_type=held.subject_type,
                    subject_id=held.subject_id,
                    reason=held.message,
                    amount_minor=held.amount_minor,
                    currency=held.currency,
                    action=held.action,
                    created_by=held.created_by,
                )
            raise ApprovalRequired(
                f"{held.message}; approval request {request.id} waits for a billing manager "
                "or admin other than you to approve it",
                approval_id=request.id,
            ) from None

    return wrapper  # type: ignore[return-value]


# -- the rules -------------------------------------------------------------------------------


def threshold_minor(org: Organization, subject_type: str, currency: str) -> int | None:
    """The amount above which the rule applies, in minor units (None: no rule)."""
    setting = THRESHOLD_SETTINGS.get(subject_type)
    value = (getattr(org, setting) or {}).get(currency) if setting else None
    if value is None:
        return None
    return round_to_minor(Decimal(value), currency, RoundingMode.HALF_UP)


def needs_approval(org: Organization, subject_type: str, currency: str, amount_minor: int) -> bool:
    if subject_type == FINDING_OVERRIDE:
        return True
    limit = threshold_minor(org, subject_type, currency)
    return limit is not None and amount_minor > limit


def check_held_action(
    session: Session,
    actor: Actor,
    org: Organization,
    subject_type: str,
    subject_id: str,
    amount_minor: int,
    currency: str,
    *,
    action: dict[str, Any],
    decision: Decision | None,
    message: str,
) -> ApprovalRequest | None:
    """Inside the transaction of a credit note or write-off: raise NeedsApproval when the rule
    applies and there is no decision; with a decision, lock its request, check who decides and
    that the action is still the one asked for, and mark it approved. The caller links the
    document it writes with `carried_out`."""
    if decision is None:
        if needs_approval(org, subject_type, currency, amount_minor):
            raise NeedsApproval(
                actor,
                subject_type,
                subject_id,
                message,
                amount_minor=amount_minor,
                currency=currency,
                action=action,
            )
        return None
    request = _locked(session, actor, decision.approval_id)
    if request.subject_type != subject_type or request.subject_id != subject_id:
        raise Conflict(
            f"approval request {request.id} is for {SUBJECT_WORDS[request.subject_type]} "
            f"{request.subject_id}, not this one"
        )
    _check_decider(actor, request)
    if request.amount_minor is not None and amount_minor > request.amount_minor:
        raise Conflict(
            f"the {SUBJECT_WORDS[subject_type]} now comes to {amount_minor} minor units, more "
            f"than the {request.amount_minor} asked for in {request.id}; ask again"
        )
    _decide(session, actor, request, "approved", decision.reason)
    return request


def carried_out(request: ApprovalRequest | None, result_type: str, result_id: str) -> None:
    """Link an approved held request to the document approving it produced."""
    if request is not None:
        request.result_type = result_type
        request.result_id = result_id


def check_invoice_issue(
    session: Session, actor: Actor, org: Organization, invoice: Invoice
) -> None:
    """Issuing a draft the rule holds: refused until someone other than its creator approved it
    (raises NeedsApproval, or Conflict when it was rejected)."""
    if invoice.approval_status == "rejected":
        rejected = _latest(session, actor, INVOICE, invoice.id, "rejected")
        why = f": {rejected.decision_reason}" if rejected and rejected.decision_reason else ""
        raise Conflict(
            f"invoice {invoice.id} was rejected{why}; change the draft (which asks for approval "
            "again) or void it"
        )
    if invoice.approval_status != "pending":
        return
    raise NeedsApproval(
        actor,
        INVOICE,
        invoice.id,
        f"invoice total is above the {invoice.currency} approval threshold "
        f"({(org.approval_thresholds or {}).get(invoice.currency)}); a billing manager other "
        "than its creator must approve it before it is issued",
        amount_minor=invoice.total_minor,
        currency=invoice.currency,
        created_by=invoice.created_by,
    )


# -- requests and decisions --------------------------------------------------------------------


def request_approval(
    session: Session,
    actor: Actor,
    *,
    subject_type: str,
    subject_id: str,
    reason: str,
    amount_minor: int | None = None,
    currency: str | None = None,
    action: dict[str, Any] | None = None,
    created_by: str | None = None,
) -> ApprovalRequest:
    """Ask for approval inside the caller's transaction; returns the pending request.

    subject_type: invoice, credit_note, write_off or finding_override (subject_id: the
    discrepancy id of the blocking finding). reason: why it is asked. created_by: a key that
    may not approve besides the asker (the document's creator). Asking again for the same
    subject with the same amount and action returns the request already pending; a changed
    one replaces it (the old one is withdrawn).

        request = request_approval(session, actor, subject_type="finding_override",
                                   subject_id=discrepancy.id, reason="PO raised by phone")
        ...later, when issuing:
        if not is_approved(session, actor, "finding_override", discrepancy.id): refuse
    """
    actor.require(*WRITERS, action="ask for approvals")
    if subject_type not in RULES:
        raise InvalidInput(f"subject_type: one of {', '.join(SUBJECT_TYPES)}", field="subject_type")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the approval is asked for", field="reason")
    action = dict(action or {})
    if created_by and created_by != actor.key_id:
        action["document_created_by"] = created_by
    for pending in session.scalars(
        select(ApprovalRequest)
        .where(
            ApprovalRequest.organization_id == actor.organization_id,
            ApprovalRequest.subject_type == subject_type,
            ApprovalRequest.subject_id == subject_id,
            ApprovalRequest.status == "pending",
        )
        .with_for_update()
    ):
        if (
            pending.amount_minor == amount_minor
            and pending.action == _json(action)
            and pending.requested_by == actor.key_id
        ):
            return pending
        before = snapshot(pending, "status")
        pending.status = "withdrawn"
        pending.decided_at = utcnow()
        audit(
            session,
            actor,
            "approval.withdrawn",
            "approval_request",
            pending.id,
            {"replaced": True},
            before=before,
            after=pending,
        )
    request = ApprovalRequest(
        id=new_id("apr"),
        organization_id=actor.organization_id,
        subject_type=subject_type,
        subject_id=subject_id,
        rule=RULES[subject_type],
        amount_minor=amount_minor,
        currency=currency,
        action=_json(action),
        status="pending",
        requested_by=actor.key_id,
        request_reason=reason,
        requested_at=utcnow(),
    )
    session.add(request)
    session.flush()
    audit(session, actor, "approval.requested", "approval_request", request.id, after=request)
    return request


def is_approved(session: Session, actor: Actor, subject_type: str, subject_id: str) -> bool:
    """Whether someone other than the asker approved this subject (and it was not withdrawn):
    the check the verification engine makes before letting a blocking finding be overridden."""
    if subject_type == INVOICE:
        invoice = session.get(Invoice, subject_id)
        return (
            invoice is not None
            and invoice.organization_id == actor.organization_id
            and invoice.approval_status == "approved"
        )
    return _latest(session, actor, subject_type, subject_id, "approved") is not None


def approval_of(
    session: Session, actor: Actor, subject_type: str, subject_id: str
) -> ApprovalRequest | None:
    """The latest approved request for a subject, if any (who approved, when, why)."""
    return _latest(session, actor, subject_type, subject_id, "approved")


def ask_for_approval(
    db: Database,
    actor: Actor,
    subject_type: str,
    subject_id: str,
    reason: str,
) -> ApprovalRequest:
    """A specialist asks for approval of a draft invoice or of overriding a blocking finding
    (credit notes and write-offs are asked for by trying them)."""
    if subject_type not in (INVOICE, FINDING_OVERRIDE):
        raise InvalidInput(
            "subject_type: ask for invoice or finding_override here; a credit note or "
            "write-off above the limit asks for approval itself when you try it",
            field="subject_type",
        )
    with db.transaction() as session:
        amount = currency = created_by = None
        if subject_type == INVOICE:
            invoice = get_owned(session, Invoice, subject_id, actor)
            if invoice.status != "draft":
                raise Conflict(f"invoice {invoice.number or invoice.id} is {invoice.status}")
            amount, currency, created_by = (
                invoice.total_minor,
                invoice.currency,
                invoice.created_by,
            )
        else:
            _check_finding(session, actor, subject_id)
        return request_approval(
            session,
            actor,
            subject_type=subject_type,
            subject_id=subject_id,
            reason=reason,
            amount_minor=amount,
            currency=currency,
            created_by=created_by,
        )


def _check_finding(session: Session, actor: Actor, discrepancy_id: str) -> None:
    from tallybook.db import models

    model = getattr(models, "Discrepancy", None)
    if model is not None:
        get_owned(session, model, discrepancy_id, actor, label="finding")


def decide_approval(
    db: Database, actor: Actor, approval_id: str, decision: str, reason: str
) -> ApprovalRequest:
    """Approve or reject a pending request, with a reason, as a billing manager or admin who
    neither asked for it nor created the document. Approving a held credit note or write-off
    carries it out in the same transaction."""
    actor.require(*MANAGERS, action="decide approvals")
    if decision not in ("approved", "rejected"):
        raise InvalidInput("decision: approved or rejected", field="decision")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say why you decide so", field="reason")
    with db.reading() as session:
        request = get_owned(session, ApprovalRequest, approval_id, actor, label="approval request")
        subject_type, subject_id, action = request.subject_type, request.subject_id, request.action
    if decision == "approved" and subject_type in (CREDIT_NOTE, WRITE_OFF):
        # The held action runs with the decision, in its own service's transaction.
        _check_decidable(db, actor, approval_id)
        held = Decision(approval_id, reason)
        if subject_type == CREDIT_NOTE:
            from tallybook.services.credit_notes import create_credit_note

            create_credit_note(db, actor, subject_id, action.get("values") or {}, approval=held)
        else:
            from tallybook.services.invoices import mark_uncollectible

            mark_uncollectible(db, actor, subject_id, action.get("reason") or "", approval=held)
        return get_approval(db, actor, approval_id)
    with db.transaction() as session:
        request = _locked(session, actor, approval_id)
        _check_decider(actor, request)
        if request.subject_type == INVOICE:
            invoice = get_owned(session, Invoice, request.subject_id, actor, lock=True)
            _check_invoice_decider(actor, invoice)
            if invoice.status != "draft":
                raise Conflict(
                    f"invoice {invoice.number or invoice.id} is {invoice.status}; only a draft "
                    "is approved or rejected"
                )
            if decision == "approved" and invoice.total_minor != request.amount_minor:
                raise Conflict(
                    f"the draft changed since approval was asked (total {request.amount_minor} "
                    f"then, {invoice.total_minor} now minor units); ask again"
                )
            before = snapshot(invoice, "approval_status", "approved_by")
            invoice.approval_status = decision
            invoice.approved_by = actor.key_id if decision == "approved" else None
            audit(
                session,
                actor,
                f"invoice.{'approved' if decision == 'approved' else 'approval_rejected'}",
                "invoice",
                invoice.id,
                {"approval_request": request.id, "reason": reason},
                before=before,
                after=invoice,
            )
        _decide(session, actor, request, decision, reason)
        return request


def approve_draft(
    db: Database, actor: Actor, invoice_id: str, reason: str | None = None
) -> Invoice:
    """Approve a draft in one step (`invoices approve`): by a billing manager or admin other
    than the draft's creator; the request it answers is recorded as decided."""
    actor.require(*MANAGERS, action="approve invoices")
    reason = (reason or "").strip() or None
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status != "draft":
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status}; an issued "
                "invoice cannot be changed: issue a credit note or a debit note instead"
            )
        _check_invoice_decider(actor, invoice)
        pending = [
            request
            for request in session.scalars(
                select(ApprovalRequest)
                .where(
                    ApprovalRequest.organization_id == actor.organization_id,
                    ApprovalRequest.subject_type == INVOICE,
                    ApprovalRequest.subject_id == invoice.id,
                    ApprovalRequest.status == "pending",
                )
                .with_for_update()
            )
        ]
        for request in pending:
            _check_decider(actor, request)
        if not pending:
            request = ApprovalRequest(
                id=new_id("apr"),
                organization_id=actor.organization_id,
                subject_type=INVOICE,
                subject_id=invoice.id,
                rule=RULES[INVOICE],
                amount_minor=invoice.total_minor,
                currency=invoice.currency,
                action={},
                status="pending",
                requested_by=invoice.created_by,
                request_reason="draft invoice approved directly",
                requested_at=utcnow(),
            )
            session.add(request)
            pending = [request]
        before = snapshot(invoice, "approval_status", "approved_by")
        invoice.approval_status = "approved"
        invoice.approved_by = actor.key_id
        for request in pending:
            _decide(session, actor, request, "approved", reason)
        audit(
            session,
            actor,
            "invoice.approved",
            "invoice",
            invoice.id,
            {
                "total_minor": invoice.total_minor,
                "reason": reason,
                "approval_request": pending[0].id,
            },
            before=before,
            after=invoice,
        )
    return invoice


def _check_decidable(db: Database, actor: Actor, approval_id: str) -> None:
    """Refuse early (and clearly) what the held action's transaction would refuse anyway."""
    with db.reading() as session:
        request = get_owned(session, ApprovalRequest, approval_id, actor, label="approval request")
        _check_pending(request)
        _check_decider(actor, request)


def _locked(session: Session, actor: Actor, approval_id: str) -> ApprovalRequest:
    request = get_owned(
        session, ApprovalRequest, approval_id, actor, lock=True, label="approval request"
    )
    _check_pending(request)
    return request


def _check_pending(request: ApprovalRequest) -> None:
    if request.status != "pending":
        raise Conflict(f"approval request {request.id} is already {request.status}")


def _check_decider(actor: Actor, request: ApprovalRequest) -> None:
    if actor.role not in MANAGERS:
        raise Forbidden(
            f"role {actor.role.value} may not decide approvals; it needs billing_manager or admin"
        )
    if actor.key_id is not None and actor.key_id == request.requested_by:
        raise Forbidden(
            f"you asked for approval request {request.id}: segregation of duties needs a "
            "billing manager or admin other than you to decide it"
        )
    if actor.key_id is not None and actor.key_id == (request.action or {}).get(
        "document_created_by"
    ):
        raise Forbidden(
            f"you created the {SUBJECT_WORDS[request.subject_type]} of approval request "
            f"{request.id}: segregation of duties needs someone else to approve it"
        )


def _check_invoice_decider(actor: Actor, invoice: Invoice) -> None:
    if actor.key_id is not None and actor.key_id == invoice.created_by:
        raise Forbidden(
            f"you created invoice {invoice.number or invoice.id}: segregation of duties needs a "
            "billing manager or admin other than its creator to approve it"
        )


def _decide(
    session: Session, actor: Actor, request: ApprovalRequest, decision: str, reason: str | None
) -> None:
    before = snapshot(request, "status", "decided_by", "decision_reason")
    request.status = decision
    request.decided_by = actor.key_id
    request.decision_reason = reason
    request.decided_at = utcnow()
    session.flush()
    audit(
        session,
        actor,
        f"approval.{decision}",
        "approval_request",
        request.id,
        {"subject_type": request.subject_type, "subject_id": request.subject_id},
        before=before,
        after=request,
    )


def _latest(
    session: Session, actor: Actor, subject_type: str, subject_id: str, status: str
) -> ApprovalRequest | None:
    return session.scalars(
        select(ApprovalRequest)
        .where(
            ApprovalRequest.organization_id == actor.organization_id,
            ApprovalRequest.subject_type == subject_type,
            ApprovalRequest.subject_id == subject_id,
            ApprovalRequest.status == status,
        )
        .order_by(ApprovalRequest.decided_at.desc(), ApprovalRequest.id.desc())
        .limit(1)
    ).first()


def _json(value: dict[str, Any]) -> dict[str, Any]:
    from tallybook.core.audit_chain import canonical_value

    return canonical_value(value)


# -- reading -----------------------------------------------------------------------------------


def get_approval(db: Database, actor: Actor, approval_id: str) -> ApprovalRequest:
    with db.reading() as session:
        return get_owned(session, ApprovalRequest, approval_id, actor, label="approval request")


def list_approvals(
    db: Database,
    actor: Actor,
    *,
    status: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[ApprovalRequest], str | None]:
    """Approval requests (pending ones with status="pending"), oldest id first."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: one of {', '.join(STATUSES)}", field="status")
    if subject_type is not None and subject_type not in RULES:
        raise InvalidInput(f"subject_type: one of {', '.join(SUBJECT_TYPES)}", field="subject_type")
    with db.reading() as session:
        query = select(ApprovalRequest).where(
            ApprovalRequest.organization_id == actor.organization_id
        )
        if status:
            query = query.where(ApprovalRequest.status == status)
        if subject_type:
            query = query.where(ApprovalRequest.subject_type == subject_type)
        if subject_id:
            query = query.where(ApprovalRequest.subject_id == subject_id)
        return keyset_page(session, query, ApprovalRequest, limit, after)


# -- the organisation's rules ------------------------------------------------------------------


def approval_rules(db: Database, actor: Actor) -> dict[str, Any]:
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        return _rules(org)


def _rules(org: Organization) -> dict[str, Any]:
    return {
        INVOICE: dict(org.approval_thresholds or {}),
        CREDIT_NOTE: dict(org.credit_note_approval_thresholds or {}),
        WRITE_OFF: dict(org.write_off_approval_thresholds or {}),
        FINDING_OVERRIDE: "always",
    }


def set_approval_rules(db: Database, actor: Actor, values: dict[str, Any]) -> dict[str, Any]:
    """Replace the amounts of the rules given: {"credit_note": {"EUR": "500.00"}, ...}; an
    empty mapping removes the rule. Admins only."""
    actor.require(Role.ADMIN, action="change approval rules")
    from tallybook.services.organizations import check_currency

    clean: dict[str, dict[str, str]] = {}
    for subject_type, amounts in values.items():
        if subject_type not in THRESHOLD_SETTINGS:
            raise InvalidInput(
                f"{subject_type}: rules are invoice, credit_note and write_off (overriding a "
                "blocking finding always needs approval)",
                field=subject_type,
            )
        if not isinstance(amounts, dict):
            raise InvalidInput(
                f'{subject_type}: map currency codes to amounts, e.g. {{"EUR": "500.00"}}',
                field=subject_type,
            )
        table = {}
        for currency, amount in amounts.items():
            code = check_currency(str(currency), f"{subject_type}.{currency}")
            try:
                parsed = parse_decimal(amount, f"{subject_type}.{currency}")
            except MoneyError as error:
                raise InvalidInput(str(error), field=subject_type) from None
            if parsed < 0:
                raise InvalidInput(
                    f"{subject_type}.{currency}: must not be negative", field=subject_type
                )
            table[code] = format(parsed, "f")
        clean[subject_type] = table
    with db.transaction() as session:
        org = session.get(Organization, actor.organization_id, with_for_update={"key_share": True})
        assert org is not None
        names = [THRESHOLD_SETTINGS[s] for s in clean]
        before = snapshot(org, *names)
        for subject_type, table in clean.items():
            setattr(org, THRESHOLD_SETTINGS[subject_type], table)
        audit(
            session,
            actor,
            "organization.approval_rules_changed",
            "organization",
            org.id,
            before=before,
            after=org,
        )
        return _rules(org)
