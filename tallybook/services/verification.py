"""Pre-flight verification of invoices: load each invoice and everything it is checked against
as plain rows (in bulk for a whole run), ask `core.verification` for the findings, and keep
them as discrepancies (services.discrepancies works them).

Issuing verifies first (`before_issue`, its own transaction, so the findings of a refused
issue are kept) and again inside the issuing transaction (`check_at_issue`, against the locked
draft): a blocking finding refuses the issue unless a billing manager approved an override.
"""

from __future__ import annotations

import functools
import hashlib
import time as clock
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from tallybook.core import verification as core
from tallybook.core.periods import local_date
from tallybook.db.bulk import insert_rows
from tallybook.db.models import (
    ApprovalRequest,
    Charge,
    Contract,
    ContractPrice,
    CreditNote,
    CreditNoteLine,
    Customer,
    Discrepancy,
    Invoice,
    InvoiceLine,
    LateUsagePeriod,
    Organization,
    Plan,
    Product,
    PurchaseOrder,
    PurchaseOrderConsumption,
    PurchaseOrderLine,
    QuarantinedEvent,
    ServiceReport,
    Subscription,
    SubscriptionPeriodInvoice,
    TimeEntry,
    VerificationRun,
    new_id,
)
from tallybook.services import approvals
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    audit,
    audit_rows,
    get_owned,
    snapshot,
    utcnow,
)

OVERRIDE = "finding_override"
_LOCK = "SELECT pg_advisory_xact_lock(7325005, hashtext(:org))"
_CHUNK = 5000
# A line whose product is sold by the hour (and has time sheets) bills time: hours worked.
HOUR_UNITS = frozenset({"h", "hr", "hrs", "hour", "hours"})
# Issued invoices further back than this are not compared with (duplicates, anomaly).
HISTORY_DAYS = 400
OPEN_STATES = ("open", "investigating")


@dataclass(frozen=True)
class InvoiceVerification:
    """What verifying one invoice found; `discrepancies` maps a finding's key to its
    discrepancy id."""

    invoice_id: str
    invoice_number: str | None
    customer_id: str
    status: str  # passed | warnings | blocked
    findings: tuple[core.Finding, ...]
    discrepancies: dict[str, str] = field(default_factory=dict)

    @property
    def blocking(self) -> tuple[core.Finding, ...]:
        return tuple(f for f in self.findings if f.blocking)


@dataclass(frozen=True)
class VerificationRunResult:
    id: str
    as_of: date
    invoices: tuple[InvoiceVerification, ...]
    # Revenue leakage of customers with no invoice in the run.
    unattached: tuple[core.Finding, ...]
    discrepancies: dict[str, str]
    seconds: float

    @property
    def blocking(self) -> int:
        return sum(len(v.blocking) for v in self.invoices)

    @property
    def warnings(self) -> int:
        findings = [f for v in self.invoices for f in v.findings] + list(self.unattached)
        return sum(1 for f in findings if not f.blocking)

    @property
    def failing(self) -> tuple[InvoiceVerification, ...]:
        return tuple(v for v in self.invoices if v.status == "blocked")


class VerificationBlocked(Conflict):
    """An issue refused by blocking findings (409), each listed in the detail."""

    def __init__(
        self, label: str, findings: Sequence[core.Finding], pending: str | None = None
    ) -> None:
        self.findings = tuple(findings)
        listed = "; ".join(f"[{f.check}] {f.what}" for f in self.findings)
        if pending:
            hint = f"an override is waiting for a billing manager's approval ({pending})"
        else:
            hint = (
                "correct the draft, or request an override with a reason for a billing "
                "manager to approve"
            )
        super().__init__(
            f"{label} cannot be issued: {len(self.findings)} blocking finding"
            f"{'s' if len(self.findings) != 1 else ''}: {listed}. {hint}"
        )


# -- entry points ----------------------------------------------------------------------------------


def verify_invoice(
    db: Database, actor: Actor, invoice_id: str, *, as_of: datetime | date | None = None
) -> InvoiceVerification:
    """Verify one invoice now and keep its findings as discrepancies."""
    actor.require(*WRITERS, action="verify invoices")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status == "void":
            raise Conflict(f"invoice {invoice.number or invoice.id} is void; nothing to verify")
        _lock(session, actor)
        now = _instant(session, actor, as_of)
        result = _verify(session, actor, [invoice.id], now, leakage="customers")
        [verification] = result.invoices
        audit(
            session,
            actor,
            "invoice.verified",
            "invoice",
            invoice.id,
            {
                "status": verification.status,
                "blocking": len(verification.blocking),
                "warnings": len(verification.findings) - len(verification.blocking),
                "checks": sorted({f.check for f in verification.findings}),
            },
        )
    return verification


def verify_run(
    db: Database,
    actor: Actor,
    invoice_ids: Sequence[str] | None = None,
    *,
    as_of: datetime | date | None = None,
) -> VerificationRunResult:
    """Verify many invoices at once (default: every draft of the organisation), loading what
    they are checked against in bulk, with the organisation's revenue leakage; one run row
    and one audit event for all of it."""
    actor.require(*WRITERS, action="verify invoices")
    started = utcnow()
    ticks = clock.perf_counter()
    with db.transaction() as session:
        if invoice_ids is None:
            ids = list(
                session.scalars(
                    select(Invoice.id)
                    .where(
                        Invoice.organization_id == actor.organization_id,
                        Invoice.status == "draft",
                    )
                    .order_by(Invoice.id)
                )
            )
        else:
            ids = sorted(set(invoice_ids))
            found = set()
            for chunk in _chunks(ids):
                found |= set(
                    session.scalars(
                        select(Invoice.id).where(
                            Invoice.organization_id == actor.organization_id,
                            _among(session, Invoice.id, chunk),
                            Invoice.status != "void",
                        )
                    )
                )
            missing = [i for i in ids if i not in found]
            if missing:
                # Another organisation's invoice is simply not found, as everywhere.
                raise NotFound(
                    f"invoice_ids: invoice {missing[0]} not found (or void)", field="invoice_ids"
                )
        _lock(session, actor)
        run_id = new_id("vrun")
        now = _instant(session, actor, as_of)
        result = _verify(session, actor, ids, now, leakage="organization", run_id=run_id)
        seconds = clock.perf_counter() - ticks
        result = VerificationRunResult(
            run_id, result.as_of, result.invoices, result.unattached, result.discrepancies, seconds
        )
        session.add(
            VerificationRun(
                id=run_id,
                organization_id=actor.organization_id,
                as_of=result.as_of,
                invoices=len(result.invoices),
                failing_invoices=len(result.failing),
                blocking=result.blocking,
                warnings=result.warnings,
                created_by=actor.key_id,
                started_at=started,
                finished_at=utcnow(),
            )
        )
        audit(
            session,
            actor,
            "verification.run",
            "verification_run",
            run_id,
            {
                "invoices": len(result.invoices),
                "failing_invoices": len(result.failing),
                "blocking": result.blocking,
                "warnings": result.warnings,
            },
        )
    return result


def before_issue(db: Database, actor: Actor, invoice_id: str) -> None:
    """The pre-flight check issuing starts with, in its own transaction so the findings are
    kept even when the issue is refused (VerificationBlocked)."""
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status != "draft":
            return  # issuing reports that itself
        result = _verify(
            session, actor, [invoice.id], utcnow(), leakage="none", lock_to_record=True
        )
        [verification] = result.invoices
        uncovered, pending = _uncovered(session, actor, verification)
    if uncovered:
        raise VerificationBlocked(_label(invoice), uncovered, pending)


def check_at_issue(session: Session, actor: Actor, invoice: Invoice) -> None:
    """Inside the issuing transaction, on the locked draft: refuse if a blocking finding is not
    covered by an approved override; waive the ones that are, with the approver's reason."""
    verification = _verify(
        session, actor, [invoice.id], utcnow(), leakage="none", record=False
    ).invoices[0]
    uncovered, pending = _uncovered(session, actor, verification)
    if uncovered:
        raise VerificationBlocked(_label(invoice), uncovered, pending)
    blocking = {f.key for f in verification.blocking}
    if not blocking:
        return
    rows = list(
        session.scalars(
            select(Discrepancy)
            .where(
                Discrepancy.organization_id == actor.organization_id,
                Discrepancy.fingerprint.in_(blocking),
                Discrepancy.status.in_(OPEN_STATES),
            )
            .with_for_update()
        )
    )
    now = utcnow()
    for row in rows:
        decision = approvals.approval_of(session, actor, OVERRIDE, row.id)
        before = snapshot(row, "status", "resolution", "resolution_note")
        row.status = "waived"
        row.resolution = "waive"
        row.resolution_note = (
            f"overridden when {_label(invoice)} was issued: approved by "
            f"{decision.decided_by if decision else '?'}"
            + (f" ({decision.decision_reason})" if decision and decision.decision_reason else "")
        )
        row.resolved_by = decision.decided_by if decision else actor.key_id
        row.resolved_at = now
        row.updated_at = now
        audit(
            session,
            actor,
            "discrepancy.waived",
            "discrepancy",
            row.id,
            {"approval_id": decision.id if decision else None},
            before=before,
            after=row,
        )


def current_findings(session: Session, actor: Actor, invoice_id: str) -> tuple[core.Finding, ...]:
    """What the invoice shows now, in the caller's transaction, recording nothing."""
    return (
        _verify(session, actor, [invoice_id], utcnow(), leakage="none", record=False)
        .invoices[0]
        .findings
    )


def request_override(db: Database, actor: Actor, invoice_id: str, reason: str) -> dict[str, Any]:
    """Ask a billing manager (not the asker, not the draft's creator) to approve issuing a
    draft despite its blocking findings: one approval request per blocking finding, as it is
    now; a finding that appears later needs its own approval."""
    actor.require(*WRITERS, action="request overrides")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the draft should go out as it is", field="reason")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status != "draft":
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status}, not a draft"
            )
        _lock(session, actor)
        verification = _verify(session, actor, [invoice.id], utcnow(), leakage="none").invoices[0]
        if not verification.blocking:
            raise Conflict(f"{_label(invoice)} has no blocking finding; it can be issued as it is")
        uncovered, _ = _uncovered(session, actor, verification)
        if not uncovered:
            raise Conflict(f"the blocking findings of {_label(invoice)} are already overridden")
        requests = []
        for finding in uncovered:
            discrepancy = session.get(Discrepancy, verification.discrepancies[finding.key])
            assert discrepancy is not None
            request = approvals.request_approval(
                session,
                actor,
                subject_type=OVERRIDE,
                subject_id=discrepancy.id,
                reason=reason,
                amount_minor=invoice.total_minor,
                currency=invoice.currency,
                action={"invoice_id": invoice.id, "check": finding.check},
                created_by=invoice.created_by,
            )
            before = snapshot(discrepancy, "override_approval_id")
            discrepancy.override_approval_id = request.id
            discrepancy.updated_at = utcnow()
            audit(
                session,
                actor,
                "discrepancy.override_requested",
                "discrepancy",
                discrepancy.id,
                {"reason": reason},
                before=before,
                after=discrepancy,
            )
            requests.append(
                {"approval_id": request.id, "discrepancy_id": discrepancy.id, "finding": finding}
            )
    return {"invoice_id": invoice.id, "requests": requests}


def _uncovered(
    session: Session, actor: Actor, verification: InvoiceVerification
) -> tuple[list[core.Finding], str | None]:
    """Blocking findings no approved override covers, and a pending override request if any."""
    blocking = verification.blocking
    if not blocking:
        return [], None
    rows = {
        row.fingerprint: row
        for row in session.execute(
            select(
                Discrepancy.id,
                Discrepancy.fingerprint,
                Discrepancy.status,
                Discrepancy.override_approval_id,
            ).where(
                Discrepancy.organization_id == actor.organization_id,
                Discrepancy.fingerprint.in_([f.key for f in blocking]),
            )
        )
    }
    uncovered, pending = [], None
    for finding in blocking:
        row = rows.get(finding.key)
        if row is not None and (
            row.status == "waived" or approvals.is_approved(session, actor, OVERRIDE, row.id)
        ):
            continue
        if row is not None and row.override_approval_id:
            request = session.get(ApprovalRequest, row.override_approval_id)
            if request is not None and request.status == "pending":
                pending = request.id
        uncovered.append(finding)
    return uncovered, pending


# -- verifying: load, check, record ----------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    as_of: date
    invoices: tuple[InvoiceVerification, ...]
    unattached: tuple[core.Finding, ...]
    discrepancies: dict[str, str]


def _verify(
    session: Session,
    actor: Actor,
    invoice_ids: Sequence[str],
    now: datetime,
    *,
    leakage: str,
    run_id: str | None = None,
    record: bool = True,
    lock_to_record: bool = False,
) -> _Result:
    """leakage: 'organization' (a run: every customer's unbilled items), 'customers' (those of
    the invoices' customers) or 'none' (issuing: leakage never blocks)."""
    org = session.get(Organization, actor.organization_id)
    assert org is not None
    settings = core.VerificationSettings(
        anomaly_percent=None if org.anomaly_percent is None else Decimal(org.anomaly_percent),
        near_duplicate_days=org.near_duplicate_days,
    )
    loaded = _Loader(session, org, invoice_ids, now).load(leakage)
    verifications = []
    for invoice_id in sorted(loaded.drafts):
        draft = loaded.drafts[invoice_id]
        findings = core.verify_invoice(draft, loaded.contexts[invoice_id], settings)
        verifications.append((draft, findings))
    by_customer = {d.customer_id: d for d, _ in verifications if d.status == "draft"}
    leaks = core.unbilled_findings(loaded.due, loaded.as_of, by_customer)
    attached: dict[str, list[core.Finding]] = defaultdict(list)
    unattached = []
    for finding in leaks:
        if finding.where.invoice_id:
            attached[finding.where.invoice_id].append(finding)
        else:
            unattached.append(finding)
    results = []
    for draft, findings in verifications:
        everything = core.ordered([*findings, *attached.get(draft.id, ())])
        status = (
            "blocked"
            if any(f.blocking for f in everything)
            else ("warnings" if everything else "passed")
        )
        results.append(
            InvoiceVerification(draft.id, draft.number, draft.customer_id, status, everything)
        )
    ids: dict[str, str] = {}
    if record:
        if lock_to_record:
            # Loading and checking run side by side; only writing discrepancies queues.
            _lock(session, actor)
        ids = _record(
            session,
            actor,
            results,
            unattached,
            invoice_ids=[d.id for d, _ in verifications],
            leakage_customers=None if leakage == "organization" else loaded.customer_ids,
            leakage=leakage != "none",
            run_id=run_id,
        )
        results = [
            InvoiceVerification(
                r.invoice_id,
                r.invoice_number,
                r.customer_id,
                r.status,
                r.findings,
                {f.key: ids[f.key] for f in r.findings},
            )
            for r in results
        ]
    return _Result(loaded.as_of, tuple(results), tuple(unattached), ids)


def _record(
    session: Session,
    actor: Actor,
    results: list[InvoiceVerification],
    unattached: list[core.Finding],
    *,
    invoice_ids: list[str],
    leakage_customers: set[str] | None,
    leakage: bool,
    run_id: str | None,
) -> dict[str, str]:
    """Findings become discrepancies: a new key opens one, a key seen again refreshes it (and
    reopens it if it had been corrected), and an open one no longer found is resolved as
    corrected on the draft. Waived ones stay waived."""
    now = utcnow()
    findings = {f.key: f for r in results for f in r.findings}
    findings.update({f.key: f for f in unattached})
    existing: dict[str, Any] = {}
    columns = (
        Discrepancy.id,
        Discrepancy.fingerprint,
        Discrepancy.status,
        Discrepancy.resolution,
        Discrepancy.check,
        Discrepancy.invoice_id,
        Discrepancy.customer_id,
    )
    for chunk in _chunks(invoice_ids):
        for row in session.execute(
            select(*columns).where(
                Discrepancy.organization_id == actor.organization_id,
                Discrepancy.source == "verification",
                _among(session, Discrepancy.invoice_id, chunk),
            )
        ):
            existing[row.fingerprint] = row
    if leakage:
        query = select(*columns).where(
            Discrepancy.organization_id == actor.organization_id,
            Discrepancy.source == "verification",
            Discrepancy.invoice_id.is_(None),
        )
        for row in session.execute(query):
            if leakage_customers is None or row.customer_id in leakage_customers:
                existing[row.fingerprint] = row
    for chunk in _chunks([k for k in findings if k not in existing]):
        for row in session.execute(
            select(*columns).where(
                Discrepancy.organization_id == actor.organization_id,
                _among(session, Discrepancy.fingerprint, chunk),
            )
        ):
            existing[row.fingerprint] = row
    new_rows, seen, reopened, gone = [], [], [], []
    for key, finding in findings.items():
        row = existing.get(key)
        if row is None:
            new_rows.append(_discrepancy_row(actor, finding, run_id, now))
            continue
        seen.append((row, finding))
        if row.status == "resolved" and row.resolution == "adjust_draft":
            reopened.append(row.id)
    for key, row in existing.items():
        if key in findings or row.status not in OPEN_STATES:
            continue
        if not leakage and row.check.startswith("unbilled_"):
            continue  # issuing does not look for leakage: not seen is not gone
        gone.append(row.id)
    insert_rows(session, Discrepancy, new_rows)
    for row, finding in seen:
        session.execute(
            update(Discrepancy)
            .where(Discrepancy.id == row.id)
            .values(
                severity=finding.severity.value,
                what=finding.what,
                why=finding.why,
                expected=finding.expected,
                actual=finding.actual,
                location=finding.where.as_dict(),
                last_seen_at=now,
                run_id=run_id,
                updated_at=now,
            )
        )
    for chunk in _chunks(reopened):
        session.execute(
            update(Discrepancy)
            .where(_among(session, Discrepancy.id, chunk))
            .values(
                status="open",
                resolution=None,
                resolution_note=None,
                resolved_at=None,
                resolved_by=None,
                updated_at=now,
            )
        )
    note = f"no longer found when verified on {now.date().isoformat()}: corrected on the draft"
    for chunk in _chunks(gone):
        session.execute(
            update(Discrepancy)
            .where(_among(session, Discrepancy.id, chunk))
            .values(
                status="resolved",
                resolution="adjust_draft",
                resolution_note=note,
                resolved_at=now,
                resolved_by=actor.key_id,
                updated_at=now,
            )
        )
    events = [
        {
            "id": new_id("aud"),
            "organization_id": actor.organization_id,
            "actor": actor.key_id,
            "action": action,
            "entity": "discrepancy",
            "entity_id": discrepancy_id,
            "data": data,
            "created_at": now,
        }
        for action, discrepancy_id, data in (
            *(
                (
                    "discrepancy.opened",
                    r["id"],
                    {"after": {"check": r["check"], "severity": r["severity"], "status": "open"}},
                )
                for r in new_rows
            ),
            *(
                (
                    "discrepancy.reopened",
                    i,
                    {"before": {"status": "resolved"}, "after": {"status": "open"}},
                )
                for i in reopened
            ),
            *(
                (
                    "discrepancy.resolved",
                    i,
                    {
                        "before": {"status": "open"},
                        "after": {"status": "resolved", "resolution": "adjust_draft"},
                    },
                )
                for i in gone
            ),
        )
    ]
    audit_rows(session, events)
    ids = {key: row.id for key, row in existing.items() if key in findings}
    ids.update({r["fingerprint"]: r["id"] for r in new_rows})
    return ids


def _discrepancy_row(
    actor: Actor, finding: core.Finding, run_id: str | None, now: datetime
) -> dict[str, Any]:
    where = finding.where
    subject_type, subject_id = where.subject_kind, where.subject_id
    if subject_type is None and where.contract_id:
        subject_type, subject_id = "contract", where.contract_id
    return {
        "id": new_id("dsc"),
        "organization_id": actor.organization_id,
        "fingerprint": finding.key,
        "source": "verification",
        "check": finding.check,
        "severity": finding.severity.value,
        "status": "open",
        "what": finding.what,
        "why": finding.why,
        "expected": finding.expected,
        "actual": finding.actual,
        "location": where.as_dict(),
        "customer_id": where.customer_id,
        "invoice_id": where.invoice_id,
        "invoice_line_id": where.line_id,
        "purchase_order_id": where.purchase_order_id,
        "time_entry_id": where.time_entry_ids[0] if where.time_entry_ids else None,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "assignee_key_id": None,
        "resolution": None,
        "resolution_note": None,
        "customer_message": None,
        "credit_note_id": None,
        "debit_note_id": None,
        "override_approval_id": None,
        "run_id": run_id,
        "opened_by": actor.key_id,
        "resolved_by": None,
        "first_seen_at": now,
        "last_seen_at": now,
        "resolved_at": None,
        "updated_at": now,
    }


# -- loading ---------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    as_of: date
    drafts: dict[str, core.DraftInvoice]
    contexts: dict[str, core.InvoiceContext]
    due: list[core.DueItem]
    customer_ids: set[str]


class _Loader:
    """Everything the invoices are checked against, a few queries per table for all of them."""

    def __init__(
        self, session: Session, org: Organization, invoice_ids: Sequence[str], now: datetime
    ) -> None:
        self.session = session
        self.org = org
        self.invoice_ids = list(invoice_ids)
        self.now = now
        self.as_of = local_date(now, org.timezone)

    def _select(
        self,
        columns: Sequence[Any],
        column: Any,
        values: Iterable[Any],
        *where: Any,
        join: Sequence[tuple[Any, Any]] = (),
    ) -> list[Any]:
        """Rows of the organisation whose `column` is among `values`, a chunk at a time."""
        values = sorted({v for v in values if v is not None})
        rows = []
        for chunk in _chunks(values):
            query = select(*columns)
            for model, onclause in join:
                query = query.join(model, onclause)
            query = query.where(
                _org_of(columns[0]) == self.org.id, _among(self.session, column, chunk), *where
            )
            rows += self.session.execute(query).all()
        return rows

    def load_products(self) -> None:
        self.products = {
            row.id: row
            for row in self.session.execute(
                select(Product.id, Product.code, Product.unit_label).where(
                    Product.organization_id == self.org.id
                )
            )
        }

    def load(self, leakage: str) -> _Loaded:
        targets = self._select(_INVOICE, Invoice.id, self.invoice_ids, Invoice.status != "void")
        customer_ids = {row.customer_id for row in targets}
        self.customers = {
            row.id: row
            for row in self._select(
                (Customer.id, Customer.legal_name, Customer.po_required, Customer.timezone),
                Customer.id,
                customer_ids,
            )
        }
        earliest = min((row.billing_date for row in targets), default=self.as_of)
        since = earliest - timedelta(days=HISTORY_DAYS)
        others = [
            row
            for row in self._select(
                _INVOICE, Invoice.customer_id, customer_ids, Invoice.status != "void"
            )
            if row.status == "draft" or (row.issue_date or row.billing_date) >= since
        ]
        invoices = {row.id: row for row in [*others, *targets]}
        # An invoice credited in full bills nothing any more: re-billing it is no duplicate.
        wanted = set(self.invoice_ids)
        invoices = {
            i: row
            for i, row in invoices.items()
            if i in wanted or not (0 < row.total_minor <= row.credited_minor)
        }
        # Lines, charges and credits are found through the customers (a few thousand ids)
        # rather than through tens of thousands of invoice ids.
        of_invoices = (
            Invoice.status != "void",
            (Invoice.status == "draft")
            | (func.coalesce(Invoice.issue_date, Invoice.billing_date) >= since)
            | _among(self.session, Invoice.id, self.invoice_ids or [""]),
        )
        to_invoice = ((Invoice, Invoice.id == InvoiceLine.invoice_id),)
        lines = [
            line
            for line in self._select(
                _LINE, Invoice.customer_id, customer_ids, *of_invoices, join=to_invoice
            )
            if line.invoice_id in invoices
        ]
        lines_of: dict[str, list[Any]] = defaultdict(list)
        for line in lines:
            lines_of[line.invoice_id].append(line)
        charges = {
            row.id: row
            for row in self._select(
                (
                    Charge.id,
                    Charge.kind,
                    Charge.details,
                    Charge.contract_id,
                    Charge.service_date,
                    Charge.organization_id,
                ),
                Invoice.customer_id,
                customer_ids,
                *of_invoices,
                join=(
                    (InvoiceLine, InvoiceLine.charge_id == Charge.id),
                    (Invoice, Invoice.id == InvoiceLine.invoice_id),
                ),
            )
        }
        self.load_products()
        report_products = frozenset(
            self.session.scalars(
                select(ServiceReport.product_id)
                .where(ServiceReport.organization_id == self.org.id)
                .distinct()
            )
        )
        # Products the organisation keeps time sheets for: hours typed in for one of them are
        # matched with the time sheets; where nobody records time, there is nothing to match.
        self.time_products = frozenset(
            self.session.scalars(
                select(TimeEntry.product_id)
                .where(TimeEntry.organization_id == self.org.id, TimeEntry.product_id.is_not(None))
                .distinct()
            )
        )
        credited: dict[str, Decimal] = defaultdict(Decimal)
        for row in self._select(
            (
                CreditNoteLine.invoice_line_id,
                CreditNoteLine.organization_id,
                CreditNoteLine.quantity,
            ),
            CreditNote.customer_id,
            customer_ids,
            join=((CreditNote, CreditNote.id == CreditNoteLine.credit_note_id),),
        ):
            credited[row.invoice_line_id] += row.quantity
        orders = self._select(_ORDER, PurchaseOrder.customer_id, customer_ids)
        order_lines: dict[str, list[Any]] = defaultdict(list)
        for row in self._select(
            _ORDER_LINE, PurchaseOrderLine.purchase_order_id, (o.id for o in orders)
        ):
            order_lines[row.purchase_order_id].append(row)
        own_use = self._own_consumption(targets)
        pos_by_customer: dict[str, list[core.PurchaseOrder]] = defaultdict(list)
        for row in orders:
            pos_by_customer[row.customer_id].append(
                self._purchase_order(row, order_lines[row.id], {})
            )
        consumed_lines = {
            row.invoice_line_id: row.purchase_order_line_id
            for row in self._select(
                (
                    PurchaseOrderConsumption.invoice_line_id,
                    PurchaseOrderConsumption.purchase_order_line_id,
                    PurchaseOrderConsumption.organization_id,
                ),
                PurchaseOrderConsumption.purchase_order_id,
                (o.id for o in orders),
                PurchaseOrderConsumption.kind == "invoice_issued",
            )
        }
        contracts = self._contracts(customer_ids)
        # What the invoices being verified say they bill, looked up even when billed elsewhere.
        wanted_ids = {row.id for row in targets}
        own_charges = [
            charges[line.charge_id]
            for line in lines
            if line.invoice_id in wanted_ids and line.charge_id in charges
        ]
        entries = self._time_entries(customer_ids, own_charges, invoices, since)
        reports = self._service_reports(customer_ids, own_charges, invoices, since)
        self.days = {
            pooled.value.id: getattr(pooled.value, "work_date", None)
            or getattr(pooled.value, "service_date", None)
            for pooled in (*_flat(entries), *_flat(reports))
        }
        facts = {line.id: self._facts(line, invoices[line.invoice_id], charges) for line in lines}

        drafts: dict[str, core.DraftInvoice] = {}
        contexts: dict[str, core.InvoiceContext] = {}
        others_of: dict[str, list[core.OtherInvoice]] = defaultdict(list)
        for invoice in invoices.values():
            po = self._po_of(invoice, pos_by_customer)
            other_lines = []
            for line in sorted(lines_of[invoice.id], key=lambda x: x.position):
                fact = facts[line.id]
                if line.id in credited and credited[line.id] >= line.quantity:
                    continue
                po_line = consumed_lines.get(line.id)
                if invoice.status == "draft" and po is not None:
                    matched = core.match_po_line(fact, po)
                    po_line = matched.id if matched else None
                other_lines.append(
                    core.OtherLine(
                        id=line.id,
                        position=fact.position,
                        amount=line.amount,
                        kind=line.kind,
                        product_id=line.product_id,
                        period=fact.period,
                        subscription_id=line.subscription_id,
                        usage_key=line.usage_key,
                        time_entry_ids=fact.time_entry_ids,
                        purchase_order_line_id=po_line,
                        quantity=line.quantity,
                    )
                )
            others_of[invoice.customer_id].append(
                core.OtherInvoice(
                    id=invoice.id,
                    status=invoice.status,
                    currency=invoice.currency,
                    total_minor=invoice.total_minor,
                    day=invoice.issue_date or invoice.billing_date,
                    number=invoice.number,
                    po_number=invoice.po_number,
                    lines=tuple(other_lines),
                )
            )
        for invoice in targets:
            customer = self.customers[invoice.customer_id]
            own_lines = tuple(facts[line.id] for line in lines_of[invoice.id])
            drafts[invoice.id] = core.DraftInvoice(
                id=invoice.id,
                customer_id=invoice.customer_id,
                customer_name=customer.legal_name,
                currency=invoice.currency,
                billing_date=invoice.issue_date or invoice.billing_date,
                subtotal_minor=invoice.subtotal_minor,
                total_minor=invoice.total_minor,
                discount_minor=invoice.discount_minor,
                lines=own_lines,
                number=invoice.number,
                status=invoice.status,
                po_number=(invoice.po_number or "").strip() or None,
                po_required=customer.po_required,
                discounts=tuple(_discount(d) for d in invoice.discounts or ()),
            )
            charge_ids = {line.charge_id for line in lines_of[invoice.id] if line.charge_id}
            named_entries = {i for f in own_lines for i in f.time_entry_ids}
            named_reports = {i for f in own_lines for i in f.service_report_ids}
            if invoice.id in own_use:
                purchase_orders = tuple(
                    self._purchase_order(row, order_lines[row.id], own_use[invoice.id])
                    for row in orders
                    if row.customer_id == invoice.customer_id
                )
            else:
                purchase_orders = tuple(pos_by_customer.get(invoice.customer_id, ()))
            contexts[invoice.id] = core.InvoiceContext(
                purchase_orders=purchase_orders,
                contracts=contracts.get(invoice.customer_id, ()),
                time_entries=tuple(
                    e.value
                    for e in entries.get(invoice.customer_id, ())
                    if e.value.id in named_entries
                    or (
                        e.value.billed_invoice_id in (None, invoice.id)
                        and (e.charge_id is None or e.charge_id in charge_ids)
                    )
                ),
                service_reports=tuple(
                    r.value
                    for r in reports.get(invoice.customer_id, ())
                    if r.value.id in named_reports
                    or (
                        r.value.billed_invoice_id in (None, invoice.id)
                        and (r.charge_id is None or r.charge_id in charge_ids)
                    )
                ),
                report_products=report_products,
                other_invoices=tuple(
                    o for o in others_of[invoice.customer_id] if o.id != invoice.id
                ),
            )
        due = (
            []
            if leakage == "none"
            else self._due(None if leakage == "organization" else customer_ids)
        )
        return _Loaded(self.as_of, drafts, contexts, due, customer_ids)

    # -- pieces --

    def _po_of(
        self, invoice: Any, pos_by_customer: dict[str, list[core.PurchaseOrder]]
    ) -> core.PurchaseOrder | None:
        number = (invoice.po_number or "").strip().casefold()
        if not number:
            return None
        return next(
            (
                po
                for po in pos_by_customer.get(invoice.customer_id, ())
                if po.number.strip().casefold() == number
            ),
            None,
        )

    def _own_consumption(self, targets: list[Any]) -> dict[str, dict[str, tuple[Decimal, int]]]:
        """What issued invoices being verified consumed of their PO: checked again, an invoice
        is compared with its PO as it was before the invoice used it."""
        issued = [row.id for row in targets if row.status != "draft"]
        use: dict[str, dict[str, tuple[Decimal, int]]] = defaultdict(dict)
        for row in self._select(
            (
                PurchaseOrderConsumption.invoice_id,
                PurchaseOrderConsumption.purchase_order_id,
                PurchaseOrderConsumption.purchase_order_line_id,
                PurchaseOrderConsumption.quantity,
                PurchaseOrderConsumption.amount_minor,
                PurchaseOrderConsumption.organization_id,
            ),
            PurchaseOrderConsumption.invoice_id,
            issued,
        ):
            for key in (row.purchase_order_id, row.purchase_order_line_id):
                if key is None:
                    continue
                quantity, amount = use[row.invoice_id].get(key, (Decimal(0), 0))
                use[row.invoice_id][key] = (quantity + row.quantity, amount + row.amount_minor)
        return use

    def _purchase_order(
        self, row: Any, lines: list[Any], own_use: dict[str, tuple[Decimal, int]]
    ) -> core.PurchaseOrder:
        return core.PurchaseOrder(
            id=row.id,
            number=row.number,
            currency=row.currency,
            valid_from=row.valid_from,
            valid_to=row.valid_to,
            ceiling_minor=row.ceiling_minor,
            consumed_minor=row.consumed_minor - own_use.get(row.id, (0, 0))[1],
            status=row.status,
            lines=tuple(
                core.PurchaseOrderLine(
                    id=line.id,
                    position=line.position,
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    consumed_quantity=line.consumed_quantity
                    - own_use.get(line.id, (Decimal(0), 0))[0],
                    product_id=line.product_id,
                )
                for line in sorted(lines, key=lambda x: x.position)
            ),
        )

    def _contracts(self, customer_ids: set[str]) -> dict[str, tuple[core.ContractTerms, ...]]:
        rows = self._select(
            (
                Contract.id,
                Contract.organization_id,
                Contract.customer_id,
                Contract.reference,
                Contract.start_date,
                Contract.end_date,
                Contract.discount_percent_max,
                Contract.allowed_coupon_codes,
            ),
            Contract.customer_id,
            customer_ids,
        )
        prices: dict[str, list[core.ContractPrice]] = defaultdict(list)
        for row in self._select(
            (
                ContractPrice.contract_id,
                ContractPrice.organization_id,
                ContractPrice.product_id,
                ContractPrice.unit_price,
                ContractPrice.valid_from,
                ContractPrice.valid_to,
            ),
            ContractPrice.contract_id,
            (r.id for r in rows),
        ):
            prices[row.contract_id].append(
                core.ContractPrice(row.product_id, row.unit_price, row.valid_from, row.valid_to)
            )
        result: dict[str, list[core.ContractTerms]] = defaultdict(list)
        for row in rows:
            result[row.customer_id].append(
                core.ContractTerms(
                    id=row.id,
                    reference=row.reference,
                    start_date=row.start_date,
                    end_date=row.end_date,
                    prices=tuple(
                        sorted(prices[row.id], key=lambda p: (p.product_id, p.valid_from))
                    ),
                    discount_percent_max=row.discount_percent_max,
                    allowed_coupon_codes=tuple(row.allowed_coupon_codes or ()),
                )
            )
        return {k: tuple(v) for k, v in result.items()}

    def _time_entries(
        self,
        customer_ids: set[str],
        charges: list[Any],
        invoices: dict[str, Any],
        since: date,
    ) -> dict[str, list[_Pooled]]:
        named = {i for c in charges for i in (c.details or {}).get("time_entry_ids", ())}
        columns = (
            TimeEntry.id,
            TimeEntry.organization_id,
            TimeEntry.customer_id,
            TimeEntry.work_date,
            TimeEntry.hours,
            TimeEntry.status,
            TimeEntry.product_id,
            TimeEntry.worker,
            TimeEntry.reference,
            TimeEntry.billed_invoice_id,
            TimeEntry.charge_id,
        )
        # Unbilled entries, and those billed on the invoices compared (recent work).
        rows = {
            row.id: row
            for row in self._select(
                columns,
                TimeEntry.customer_id,
                customer_ids,
                TimeEntry.billed_invoice_id.is_(None)
                | (TimeEntry.work_date >= since - timedelta(days=62)),
            )
            if row.billed_invoice_id is None or row.billed_invoice_id in invoices
        }
        rows.update({row.id: row for row in self._select(columns, TimeEntry.id, named - set(rows))})
        result: dict[str, list[_Pooled]] = defaultdict(list)
        for row in rows.values():
            result[row.customer_id].append(
                _Pooled(
                    core.TimeEntry(
                        id=row.id,
                        work_date=row.work_date,
                        hours=row.hours,
                        status=row.status,
                        product_id=row.product_id,
                        worker=row.worker,
                        reference=row.reference,
                        billed_invoice_id=row.billed_invoice_id,
                    ),
                    row.charge_id,
                )
            )
        return result

    def _service_reports(
        self,
        customer_ids: set[str],
        charges: list[Any],
        invoices: dict[str, Any],
        since: date,
    ) -> dict[str, list[_Pooled]]:
        named = {i for c in charges for i in (c.details or {}).get("service_report_ids", ())}
        columns = (
            ServiceReport.id,
            ServiceReport.organization_id,
            ServiceReport.customer_id,
            ServiceReport.product_id,
            ServiceReport.service_date,
            ServiceReport.quantity,
            ServiceReport.status,
            ServiceReport.reference,
            ServiceReport.billed_invoice_id,
            ServiceReport.charge_id,
        )
        rows = {
            row.id: row
            for row in self._select(
                columns,
                ServiceReport.customer_id,
                customer_ids,
                ServiceReport.billed_invoice_id.is_(None)
                | (ServiceReport.service_date >= since - timedelta(days=62)),
            )
            if row.billed_invoice_id is None or row.billed_invoice_id in invoices
        }
        rows.update(
            {row.id: row for row in self._select(columns, ServiceReport.id, named - set(rows))}
        )
        result: dict[str, list[_Pooled]] = defaultdict(list)
        for row in rows.values():
            result[row.customer_id].append(
                _Pooled(
                    core.ServiceReport(
                        id=row.id,
                        product_id=row.product_id,
                        service_date=row.service_date,
                        quantity=row.quantity,
                        status=row.status,
                        reference=row.reference,
                        billed_invoice_id=row.billed_invoice_id,
                    ),
                    row.charge_id,
                )
            )
        return result

    def _facts(self, line: Any, invoice: Any, charges: dict[str, Any]) -> core.DraftLine:
        timezone = self.customers.get(invoice.customer_id)
        zone = timezone.timezone if timezone else "UTC"
        charge = charges.get(line.charge_id) if line.charge_id else None
        details = (charge.details or {}) if charge else {}
        product = self.products.get(line.product_id) if line.product_id else None
        period = None
        if line.period_start is not None and line.period_end is not None:
            period = core.Period(_day(line.period_start, zone), _day(line.period_end, zone))
            if period.end <= period.start:
                period = core.Period.day(period.start)
        elif charge is not None and charge.service_date is not None:
            period = core.Period.day(charge.service_date)
        entry_ids = tuple(details.get("time_entry_ids") or ())
        report_ids = tuple(details.get("service_report_ids") or ())
        worked = [self.days[i] for i in (*entry_ids, *report_ids) if self.days.get(i)]
        if worked and line.period_start is None:
            # A charge of time entries or service reports covers the days they were done.
            period = core.Period(min(worked), max(worked) + timedelta(days=1))
        by_the_hour = (
            product is not None
            and (product.unit_label or "").strip().casefold() in HOUR_UNITS
            and product.id in self.time_products
        )
        bills_time = bool(entry_ids) or (
            not report_ids
            and by_the_hour
            and line.kind in ("time_and_materials", "manual", "one_off")
        )
        if bills_time and not entry_ids:
            # Hours typed in without their time entries: matched with the month's time sheets.
            day = period.start if period else invoice.billing_date - timedelta(days=1)
            period = _month(day)
        return core.DraftLine(
            id=line.id,
            position=line.position + 1,
            description=line.description,
            quantity=line.quantity,
            amount=line.amount,
            unit_price=line.unit_price,
            kind=line.kind,
            product_id=line.product_id,
            product_code=product.code if product else None,
            period=period,
            subscription_id=line.subscription_id,
            charge_id=line.charge_id,
            contract_id=charge.contract_id if charge else None,
            usage_key=line.usage_key,
            bills_time=bills_time,
            time_entry_ids=entry_ids,
            service_report_ids=report_ids,
        )

    def _due(self, customer_ids: set[str] | None) -> list[core.DueItem]:
        """Everything due by now and on no invoice: subscription periods the run has not billed,
        pending charges (milestones among them), approved time with no charge, usage events
        that arrived after their period was invoiced or wait in quarantine."""
        session, org = self.session, self.org
        items: list[core.DueItem] = []

        def scoped(query: Any, column: Any) -> Any:
            if customer_ids is None:
                return query
            return query.where(_among(session, column, sorted(customer_ids) or [""]))

        subscriptions = session.execute(
            scoped(
                select(
                    Subscription.id,
                    Subscription.customer_id,
                    Subscription.next_billing_at,
                    Plan.name,
                )
                .join(Plan, Plan.id == Subscription.plan_id)
                .where(
                    Subscription.organization_id == org.id,
                    Subscription.status != "ended",
                    Subscription.next_billing_at <= self.now,
                    (Subscription.end_at.is_(None))
                    | (Subscription.end_at > Subscription.next_billing_at),
                ),
                Subscription.customer_id,
            )
        ).all()
        charges = session.execute(
            scoped(
                select(
                    Charge.id,
                    Charge.customer_id,
                    Charge.kind,
                    Charge.description,
                    Charge.billable_at,
                    Charge.currency,
                    Charge.quantity,
                    Charge.unit_price,
                    Charge.contract_id,
                ).where(
                    Charge.organization_id == org.id,
                    Charge.invoice_id.is_(None),
                    Charge.billable_at <= self.now,
                ),
                Charge.customer_id,
            )
        ).all()
        time_rows = session.execute(
            scoped(
                select(
                    TimeEntry.id,
                    TimeEntry.customer_id,
                    TimeEntry.product_id,
                    TimeEntry.work_date,
                    TimeEntry.hours,
                ).where(
                    TimeEntry.organization_id == org.id,
                    TimeEntry.status == "approved",
                    TimeEntry.charge_id.is_(None),
                    TimeEntry.billed_invoice_id.is_(None),
                    TimeEntry.work_date < self.as_of,
                ),
                TimeEntry.customer_id,
            )
        ).all()
        late = session.execute(
            scoped(
                select(
                    LateUsagePeriod.subscription_id,
                    LateUsagePeriod.period_start,
                    LateUsagePeriod.period_end,
                    LateUsagePeriod.detected_at,
                    Subscription.customer_id,
                    Invoice.number,
                )
                .join(Subscription, Subscription.id == LateUsagePeriod.subscription_id)
                .join(
                    SubscriptionPeriodInvoice,
                    (SubscriptionPeriodInvoice.subscription_id == LateUsagePeriod.subscription_id)
                    & (SubscriptionPeriodInvoice.period_start == LateUsagePeriod.period_start),
                )
                .join(Invoice, Invoice.id == SubscriptionPeriodInvoice.invoice_id)
                .where(LateUsagePeriod.organization_id == org.id, Invoice.status != "draft"),
                Subscription.customer_id,
            )
        ).all()
        quarantine = session.execute(
            select(
                QuarantinedEvent.customer_external_id,
                QuarantinedEvent.metric_code,
                func.count().label("events"),
                func.min(QuarantinedEvent.occurred_at).label("since"),
            )
            .where(QuarantinedEvent.organization_id == org.id)
            .group_by(QuarantinedEvent.customer_external_id, QuarantinedEvent.metric_code)
        ).all()
        externals = {
            row.external_id: row.id
            for row in self._select(
                (Customer.external_id, Customer.organization_id, Customer.id),
                Customer.external_id,
                (q.customer_external_id for q in quarantine),
            )
        }
        names = {
            row.id: row.legal_name
            for row in self._select(
                (Customer.id, Customer.organization_id, Customer.legal_name),
                Customer.id,
                {
                    *(r.customer_id for r in (*subscriptions, *charges, *time_rows, *late)),
                    *externals.values(),
                },
            )
        }
        contracts = {
            row.id: row.reference
            for row in self._select(
                (Contract.id, Contract.organization_id, Contract.reference),
                Contract.id,
                (c.contract_id for c in charges),
            )
        }
        zone = self.org.timezone
        for row in subscriptions:
            items.append(
                core.DueItem(
                    kind="subscription",
                    id=row.id,
                    customer_id=row.customer_id,
                    customer_name=names.get(row.customer_id, ""),
                    description=f"subscription {row.id} to {row.name}",
                    due_on=local_date(row.next_billing_at, zone),
                )
            )
        for row in charges:
            items.append(
                core.DueItem(
                    kind="milestone" if row.kind == "milestone" else "charge",
                    id=row.id,
                    customer_id=row.customer_id,
                    customer_name=names.get(row.customer_id, ""),
                    description=row.description,
                    due_on=local_date(row.billable_at, zone),
                    currency=row.currency,
                    amount=row.quantity * row.unit_price,
                    contract_id=row.contract_id,
                    contract_reference=contracts.get(row.contract_id),
                )
            )
        grouped: dict[tuple[str, str | None, str], list[Any]] = defaultdict(list)
        for row in time_rows:
            grouped[(row.customer_id, row.product_id, row.work_date.strftime("%Y-%m"))].append(row)
        for (customer_id, product_id, month), rows in sorted(grouped.items(), key=str):
            hours = sum((r.hours for r in rows), Decimal(0))
            product = self.products.get(product_id)
            what = product.code if product else "time"
            items.append(
                core.DueItem(
                    kind="time",
                    id=due_item_id("time", customer_id, product_id or "", month),
                    customer_id=customer_id,
                    customer_name=names.get(customer_id, ""),
                    description=f"{format(hours.normalize(), 'f')} hours of {what} in {month} "
                    f"({len(rows)} time entries)",
                    due_on=min(r.work_date for r in rows),
                    time_entry_ids=tuple(sorted(r.id for r in rows)),
                )
            )
        for row in late:
            period = core.Period(
                local_date(row.period_start, zone), local_date(row.period_end, zone)
            )
            items.append(
                core.DueItem(
                    kind="usage",
                    id=due_item_id("late", row.subscription_id, row.period_start.isoformat()),
                    customer_id=row.customer_id,
                    customer_name=names.get(row.customer_id, ""),
                    description=f"usage events of subscription {row.subscription_id} arrived "
                    f"after {period.text()} was invoiced ({row.number}) and are not billed yet",
                    due_on=local_date(row.detected_at, zone),
                )
            )
        for row in quarantine:
            customer_id = externals.get(row.customer_external_id)
            if customer_ids is not None and customer_id not in customer_ids:
                continue
            items.append(
                core.DueItem(
                    kind="usage",
                    id=due_item_id("quarantine", row.customer_external_id or "", row.metric_code),
                    customer_id=customer_id,
                    customer_name=names.get(customer_id, "") if customer_id else "",
                    description=f"{row.events} usage events of metric {row.metric_code} for "
                    f"customer {row.customer_external_id or '(none)'} wait in quarantine since "
                    f"{local_date(row.since, zone).isoformat()}: the customer or the metric "
                    "does not exist",
                    due_on=local_date(row.since, zone),
                )
            )
        return items


def due_items(
    session: Session, organization: Organization, now: datetime
) -> tuple[date, list[core.DueItem]]:
    """Everything of the organisation due by `now` and on no invoice (billing health)."""
    loader = _Loader(session, organization, [], now)
    loader.load_products()
    return loader.as_of, loader._due(None)


@dataclass(frozen=True)
class _Pooled:
    value: Any
    charge_id: str | None


_INVOICE = (
    Invoice.id,
    Invoice.organization_id,
    Invoice.customer_id,
    Invoice.number,
    Invoice.status,
    Invoice.currency,
    Invoice.billing_date,
    Invoice.issue_date,
    Invoice.po_number,
    Invoice.discounts,
    Invoice.subtotal_minor,
    Invoice.discount_minor,
    Invoice.total_minor,
    Invoice.credited_minor,
)
_LINE = (
    InvoiceLine.id,
    InvoiceLine.organization_id,
    InvoiceLine.invoice_id,
    InvoiceLine.position,
    InvoiceLine.kind,
    InvoiceLine.description,
    InvoiceLine.product_id,
    InvoiceLine.subscription_id,
    InvoiceLine.charge_id,
    InvoiceLine.period_start,
    InvoiceLine.period_end,
    InvoiceLine.quantity,
    InvoiceLine.unit_price,
    InvoiceLine.amount,
    InvoiceLine.usage_key,
)
_ORDER = (
    PurchaseOrder.id,
    PurchaseOrder.organization_id,
    PurchaseOrder.customer_id,
    PurchaseOrder.number,
    PurchaseOrder.currency,
    PurchaseOrder.valid_from,
    PurchaseOrder.valid_to,
    PurchaseOrder.ceiling_minor,
    PurchaseOrder.consumed_minor,
    PurchaseOrder.status,
)
_ORDER_LINE = (
    PurchaseOrderLine.id,
    PurchaseOrderLine.organization_id,
    PurchaseOrderLine.purchase_order_id,
    PurchaseOrderLine.position,
    PurchaseOrderLine.product_id,
    PurchaseOrderLine.description,
    PurchaseOrderLine.quantity,
    PurchaseOrderLine.unit_price,
    PurchaseOrderLine.consumed_quantity,
)


@functools.lru_cache(maxsize=8192)
def _day(instant: datetime, timezone: str) -> date:
    """A period boundary as the customer's day: a run's lines share a few boundaries."""
    return local_date(instant, timezone)


def _flat(pools: dict[str, list[_Pooled]]) -> list[_Pooled]:
    return [pooled for values in pools.values() for pooled in values]


def _discount(entry: dict[str, Any]) -> core.Discount:
    return core.Discount(
        key=str(entry.get("key") or ""),
        name=str(entry.get("name") or entry.get("key") or "discount"),
        kind=str(entry.get("kind") or "percent"),
        value=Decimal(str(entry.get("value") or 0)),
        coupon_code=str(entry["key"]) if entry.get("coupon_id") else None,
    )


def _month(day: date) -> core.Period:
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return core.Period(start, end)


def due_item_id(*parts: str) -> str:
    return "due_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _label(invoice: Any) -> str:
    return f"invoice {invoice.number}" if invoice.number else f"draft {invoice.id}"


def _org_of(column: Any) -> Any:
    return column.class_.organization_id


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    values = list(values)
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _among(session: Session, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`; on PostgreSQL the values are written into the statement (as the
    billing run does: thousands of bound ids cost more than the query)."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(list(values))
    return column.in_(bindparam(None, list(values), expanding=True, literal_execute=True))


def _lock(session: Session, actor: Actor) -> None:
    """One verification of an organisation writes discrepancies at a time (PostgreSQL; SQLite
    writers queue anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(_LOCK), {"org": actor.organization_id})


def _instant(session: Session, actor: Actor, as_of: datetime | date | None) -> datetime:
    """Verifying as of a day counts what fell due by the end of that day, in the organisation's
    time zone; no day: now."""
    if as_of is None:
        return utcnow()
    if isinstance(as_of, datetime):
        if as_of.tzinfo is None:
            raise InvalidInput("as_of: give a time zone", field="as_of")
        return as_of
    org = session.get(Organization, actor.organization_id)
    assert org is not None
    return day_end(as_of, org.timezone)


def day_end(day: date, timezone: str) -> datetime:
    """The instant a day ends in a time zone: verifying 'as of' a day counts what fell due on it."""
    return datetime.combine(
        day + timedelta(days=1), time.min, tzinfo=ZoneInfo(timezone)
    ).astimezone(UTC)
