"""Billing health: what a billing specialist should look at today. Unbilled due items (revenue
leakage), drafts waiting for an approval, open discrepancies by age, and invoices failing
verification (blocking findings not corrected or overridden)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tallybook.core.verification import DueItem
from tallybook.db.models import ApprovalRequest, Customer, Discrepancy, Invoice, Organization
from tallybook.services.base import Actor, Database, utcnow
from tallybook.services.discrepancies import AGE_BUCKETS, OPEN_STATES, age_bucket
from tallybook.services.verification import due_items


@dataclass(frozen=True)
class WaitingDraft:
    invoice_id: str
    customer_id: str
    customer_name: str
    currency: str
    total_minor: int
    waiting_for: str  # approval over the threshold | override of blocking findings
    approval_ids: tuple[str, ...]
    since: datetime


@dataclass(frozen=True)
class FailingInvoice:
    invoice_id: str
    number: str | None
    status: str
    customer_id: str
    customer_name: str
    currency: str
    total_minor: int
    blocking: int
    checks: tuple[str, ...]
    discrepancy_ids: tuple[str, ...]


@dataclass(frozen=True)
class BillingHealth:
    as_of: date
    unbilled: tuple[DueItem, ...]
    waiting: tuple[WaitingDraft, ...]
    # bucket -> {"blocking": n, "warning": n}, for discrepancies still open or investigating.
    discrepancies_by_age: dict[str, dict[str, int]]
    failing: tuple[FailingInvoice, ...]

    @property
    def unbilled_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for item in self.unbilled:
            counts[item.kind] += 1
        return dict(sorted(counts.items()))

    @property
    def unbilled_amounts(self) -> dict[str, Decimal]:
        """Known amounts of the unbilled items per currency (subscription periods and usage
        have theirs only once rated)."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for item in self.unbilled:
            if item.amount is not None and item.currency:
                totals[item.currency] += item.amount
        return dict(sorted(totals.items()))


def billing_health(db: Database, actor: Actor, *, now: datetime | None = None) -> BillingHealth:
    """Read-only: any role may look."""
    now = now or utcnow()
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        as_of, unbilled = due_items(session, org, now)
        names = dict(
            session.execute(
                select(Customer.id, Customer.legal_name).where(Customer.organization_id == org.id)
            ).all()
        )
        waiting = _waiting(session, org.id, names)
        by_age: dict[str, dict[str, int]] = {
            name: {"blocking": 0, "warning": 0} for name, _, _ in AGE_BUCKETS
        }
        open_rows = session.execute(
            select(
                Discrepancy.id,
                Discrepancy.severity,
                Discrepancy.first_seen_at,
                Discrepancy.invoice_id,
                Discrepancy.check,
                Discrepancy.source,
                Discrepancy.override_approval_id,
            ).where(Discrepancy.organization_id == org.id, Discrepancy.status.in_(OPEN_STATES))
        ).all()
        blocking_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for row in open_rows:
            days = max((now - row.first_seen_at).days, 0)
            by_age[age_bucket(days)][row.severity] += 1
            if row.source == "verification" and row.severity == "blocking" and row.invoice_id:
                blocking_of[row.invoice_id].append((row.id, row.check))
        failing = []
        if blocking_of:
            approved = set(
                session.scalars(
                    select(ApprovalRequest.subject_id).where(
                        ApprovalRequest.organization_id == org.id,
                        ApprovalRequest.subject_type == "finding_override",
                        ApprovalRequest.status == "approved",
                    )
                )
            )
            invoices = {
                row.id: row
                for row in session.execute(
                    select(
                        Invoice.id,
                        Invoice.number,
                        Invoice.status,
                        Invoice.customer_id,
                        Invoice.currency,
                        Invoice.total_minor,
                    ).where(
                        Invoice.organization_id == org.id,
                        Invoice.id.in_(sorted(blocking_of)),
                        Invoice.status != "void",
                    )
                )
            }
            for invoice_id in sorted(invoices):
                found = [(i, c) for i, c in blocking_of[invoice_id] if i not in approved]
                if not found:
                    continue
                invoice = invoices[invoice_id]
                failing.append(
                    FailingInvoice(
                        invoice_id=invoice.id,
                        number=invoice.number,
                        status=invoice.status,
                        customer_id=invoice.customer_id,
                        customer_name=names.get(invoice.customer_id, ""),
                        currency=invoice.currency,
                        total_minor=invoice.total_minor,
                        blocking=len(found),
                        checks=tuple(sorted({c for _, c in found})),
                        discrepancy_ids=tuple(sorted(i for i, _ in found)),
                    )
                )
    return BillingHealth(
        as_of=as_of,
        unbilled=tuple(sorted(unbilled, key=lambda i: (i.due_on, i.kind, i.id))),
        waiting=tuple(waiting),
        discrepancies_by_age=by_age,
        failing=tuple(failing),
    )


def _waiting(session: Session, organization_id: str, names: dict[str, str]) -> list[WaitingDraft]:
    drafts = {
        row.id: row
        for row in session.execute(
            select(
                Invoice.id,
                Invoice.customer_id,
                Invoice.currency,
                Invoice.total_minor,
                Invoice.approval_status,
                Invoice.created_at,
            ).where(Invoice.organization_id == organization_id, Invoice.status == "draft")
        )
    }
    pending = session.execute(
        select(
            ApprovalRequest.id,
            ApprovalRequest.subject_type,
            ApprovalRequest.subject_id,
            ApprovalRequest.requested_at,
            Discrepancy.invoice_id,
        )
        .outerjoin(
            Discrepancy,
            (Discrepancy.id == ApprovalRequest.subject_id)
            & (ApprovalRequest.subject_type == "finding_override"),
        )
        .where(
            ApprovalRequest.organization_id == organization_id,
            ApprovalRequest.status == "pending",
            ApprovalRequest.subject_type.in_(("invoice", "finding_override")),
        )
    ).all()
    requests: dict[str, list[tuple[str, str, datetime]]] = defaultdict(list)
    for row in pending:
        invoice_id = row.subject_id if row.subject_type == "invoice" else row.invoice_id
        if invoice_id in drafts:
            requests[invoice_id].append((row.id, row.subject_type, row.requested_at))
    result = []
    for invoice_id, draft in sorted(drafts.items()):
        asks = requests.get(invoice_id, [])
        reasons = []
        if draft.approval_status == "pending" or any(kind == "invoice" for _, kind, _ in asks):
            reasons.append("approval over the threshold")
        if any(kind == "finding_override" for _, kind, _ in asks):
            reasons.append("override of blocking findings")
        if not reasons:
            continue
        result.append(
            WaitingDraft(
                invoice_id=invoice_id,
                customer_id=draft.customer_id,
                customer_name=names.get(draft.customer_id, ""),
                currency=draft.currency,
                total_minor=draft.total_minor,
                waiting_for=" and ".join(reasons),
                approval_ids=tuple(sorted(i for i, _, _ in asks)),
                since=min([draft.created_at, *(at for _, _, at in asks)]),
            )
        )
    return result
