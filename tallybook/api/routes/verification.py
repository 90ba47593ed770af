"""Pre-flight verification, the discrepancy workflow, disputes and billing health over HTTP:
verify an invoice or every draft, ask for an override of blocking findings, work discrepancies
(assign, comment, investigate, resolve, waive), record a customer's dispute on an invoice or a
line, and see what needs attention."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.schemas import Body, Decimal_
from tallybook.services import billing_health, discrepancies, verification

router = APIRouter(prefix="/v1")


class VerificationRunIn(Body):
    invoice_ids: list[str] | None = Field(
        default=None, description="the invoices to verify; default: every draft"
    )
    as_of: date | None = Field(
        default=None, description="count what fell due by the end of this day; default: now"
    )
    include_passed: bool = Field(default=False, description="also list invoices that passed")


class VerifyIn(Body):
    as_of: date | None = None


class OverrideIn(Body):
    reason: str = Field(description="why the draft should go out despite its blocking findings")


class DisputeIn(Body):
    reason: str = Field(description="what the customer disputes")
    line: str | None = Field(
        default=None, description="the disputed line: its id or 1-based position"
    )


class AssignIn(Body):
    assignee: str | None = Field(description="an API key id or name; null: nobody")


class CommentIn(Body):
    body: str


class InvestigateIn(Body):
    note: str | None = None


class ResolutionLineIn(Body):
    """A credit note line (line_id with quantity or amount) or a debit note line
    (description, quantity, unit_price, product_id)."""

    line_id: str | None = None
    quantity: Decimal_ | None = None
    amount: Decimal_ | None = None
    description: str | None = None
    unit_price: Decimal_ | None = None
    product_id: str | None = None


class ResolveIn(Body):
    resolution: Literal["adjust_draft", "credit_note", "debit_note"]
    note: str = Field(description="what was corrected and why")
    customer_message: str | None = Field(
        default=None, description="what the customer is told; default: written from the note"
    )
    lines: list[ResolutionLineIn] | None = None
    settlement: Literal["reduce_amount_due", "customer_credit"] | None = None
    credit_note_id: str | None = Field(
        default=None, description="link a credit note already issued (e.g. after its approval)"
    )
    debit_note_id: str | None = None


class WaiveIn(Body):
    reason: str


def _lines(lines: list[ResolutionLineIn] | None) -> list[dict[str, Any]] | None:
    if not lines:
        return None
    return [
        {
            k: (str(v) if isinstance(v, int) else v)
            for k, v in line.model_dump().items()
            if v is not None
        }
        for line in lines
    ]


# -- verification --------------------------------------------------------------------------------


@router.post("/invoices/{invoice_id}/verify", tags=["verification"])
def post_verify(
    invoice_id: str, db: Db, who: Who, body: VerifyIn | None = None, idem: Idem = None
) -> dict:
    """Check the invoice against its PO, contracts, time sheets, service reports and the
    customer's other invoices; every finding is kept as a discrepancy."""
    result = verification.verify_invoice(db, who, invoice_id, as_of=body.as_of if body else None)
    return render.invoice_verification(result)


@router.post("/verification-runs", tags=["verification"])
def post_verification_run(
    db: Db, who: Who, body: VerificationRunIn | None = None, idem: Idem = None
) -> dict:
    """Verify the given invoices, or every draft, with the organisation's revenue leakage."""
    body = body or VerificationRunIn()
    run = verification.verify_run(db, who, body.invoice_ids, as_of=body.as_of)
    return render.verification_run(run, passed=body.include_passed)


@router.post("/invoices/{invoice_id}/override", tags=["verification"])
def post_override(invoice_id: str, body: OverrideIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Ask a billing manager (not you, not the draft's creator) to approve issuing the draft
    despite its blocking findings: one approval request per finding, decided under
    /v1/approvals."""
    asked = verification.request_override(db, who, invoice_id, body.reason)
    return {
        "invoice_id": asked["invoice_id"],
        "requests": [
            {
                "approval_id": r["approval_id"],
                "discrepancy_id": r["discrepancy_id"],
                "finding": render.finding(r["finding"], r["discrepancy_id"]),
            }
            for r in asked["requests"]
        ],
    }


# -- disputes and discrepancies ------------------------------------------------------------------


@router.post("/invoices/{invoice_id}/disputes", status_code=201, tags=["discrepancies"])
def post_invoice_dispute(
    invoice_id: str, body: DisputeIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """The customer disputes the invoice or one line: a discrepancy to work; dunning pauses
    until the invoice's last open dispute is closed."""
    view = discrepancies.open_dispute(db, who, invoice_id, body.reason, body.line)
    return render.discrepancy_view(view)


@router.get("/discrepancies", tags=["discrepancies"])
def get_discrepancies(
    db: Db,
    who: Who,
    status: Annotated[
        str | None, Query(description="open, investigating, resolved, waived or active")
    ] = None,
    assignee: Annotated[str | None, Query(description="an API key id, or none")] = None,
    invoice_id: Annotated[str | None, Query(description="invoice id or number")] = None,
    check: str | None = None,
    severity: str | None = None,
    source: Annotated[str | None, Query(description="verification or dispute")] = None,
    older_than_days: Annotated[int | None, Query(ge=0)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = discrepancies.list_discrepancies(
        db,
        who,
        status=status,
        assignee=assignee,
        invoice_id=invoice_id,
        check=check,
        severity=severity,
        source=source,
        older_than_days=older_than_days,
        limit=limit,
        after=cursor,
    )
    return {"data": [render.discrepancy(r) for r in rows], "next_cursor": next_cursor}


@router.get("/discrepancies/{discrepancy_id}", tags=["discrepancies"])
def get_discrepancy(discrepancy_id: str, db: Db, who: Who) -> dict:
    return render.discrepancy_view(discrepancies.get_discrepancy(db, who, discrepancy_id))


@router.post("/discrepancies/{discrepancy_id}/assign", tags=["discrepancies"])
def post_assign(discrepancy_id: str, body: AssignIn, db: Db, who: Who, idem: Idem = None) -> dict:
    return render.discrepancy_view(discrepancies.assign(db, who, discrepancy_id, body.assignee))


@router.post("/discrepancies/{discrepancy_id}/comments", status_code=201, tags=["discrepancies"])
def post_comment(discrepancy_id: str, body: CommentIn, db: Db, who: Who, idem: Idem = None) -> dict:
    return render.discrepancy_view(discrepancies.comment(db, who, discrepancy_id, body.body))


@router.post("/discrepancies/{discrepancy_id}/investigate", tags=["discrepancies"])
def post_investigate(
    discrepancy_id: str, db: Db, who: Who, body: InvestigateIn | None = None, idem: Idem = None
) -> dict:
    note = body.note if body else None
    return render.discrepancy_view(discrepancies.investigate(db, who, discrepancy_id, note))


@router.post("/discrepancies/{discrepancy_id}/resolve", tags=["discrepancies"])
def post_resolve(discrepancy_id: str, body: ResolveIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Resolve by correcting: the draft adjusted, or a credit or debit note issued (or linked)
    on the invoice, with the message for the customer."""
    values = body.values()
    values["lines"] = _lines(body.lines)
    return render.discrepancy_view(discrepancies.resolve(db, who, discrepancy_id, values))


@router.post("/discrepancies/{discrepancy_id}/waive", tags=["discrepancies"])
def post_waive(discrepancy_id: str, body: WaiveIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Close as not a mistake, with the reason; a blocking finding needs an approved override."""
    return render.discrepancy_view(discrepancies.waive(db, who, discrepancy_id, body.reason))


# -- billing health ------------------------------------------------------------------------------


@router.get("/billing-health", tags=["verification"])
def get_billing_health(db: Db, who: Who) -> dict:
    """Unbilled due items, drafts waiting for approval, open discrepancies by age, invoices
    failing verification."""
    return render.billing_health(billing_health.billing_health(db, who))
