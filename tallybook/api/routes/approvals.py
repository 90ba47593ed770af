"""Approvals over HTTP: pending requests, approve or reject them with a reason, ask for one,
and the organisation's approval rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tallybook.api import render
from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.services import approvals

router = APIRouter(prefix="/v1")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, description="why you approve or reject")


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: Literal["invoice", "finding_override"]
    subject_id: str = Field(description="the draft invoice, or the blocking finding's id")
    reason: str = Field(min_length=1, description="why approval is asked for")


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoice: dict[str, str] | None = Field(None, description='{"EUR": "5000.00"}')
    credit_note: dict[str, str] | None = None
    write_off: dict[str, str] | None = Field(None, description='"0": every write-off')


@router.get("/approvals", tags=["approvals"])
def get_approvals(
    db: Db,
    who: Who,
    status: Annotated[
        Literal["pending", "approved", "rejected", "withdrawn"] | None, Query()
    ] = None,
    subject_type: Annotated[
        Literal["invoice", "credit_note", "write_off", "finding_override"] | None, Query()
    ] = None,
    subject_id: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Approval requests; `?status=pending` is what waits for a billing manager."""
    rows, next_cursor = approvals.list_approvals(
        db,
        who,
        status=status,
        subject_type=subject_type,
        subject_id=subject_id,
        limit=limit,
        after=cursor,
    )
    return {"data": [render.approval(r) for r in rows], "next_cursor": next_cursor}


@router.post("/approvals", tags=["approvals"], status_code=201)
def post_approval(body: ApprovalIn, db: Db, who: Who, idem: Idem = None) -> dict[str, Any]:
    """Ask for approval of a draft invoice or of overriding a blocking finding (a credit note or
    write-off above the limit asks for itself when it is tried: 403 naming the request)."""
    row = approvals.ask_for_approval(db, who, body.subject_type, body.subject_id, body.reason)
    return render.approval(row)


@router.get("/approvals/{approval_id}", tags=["approvals"])
def get_approval(approval_id: str, db: Db, who: Who) -> dict[str, Any]:
    return render.approval(approvals.get_approval(db, who, approval_id))


@router.post("/approvals/{approval_id}/approve", tags=["approvals"])
def post_approve(
    approval_id: str, body: DecisionIn, db: Db, who: Who, idem: Idem = None
) -> dict[str, Any]:
    """Approve, as a billing manager or admin who neither asked nor created the document: a held
    credit note or write-off is carried out now (`result_type`, `result_id`)."""
    row = approvals.decide_approval(db, who, approval_id, "approved", body.reason)
    return render.approval(row)


@router.post("/approvals/{approval_id}/reject", tags=["approvals"])
def post_reject(
    approval_id: str, body: DecisionIn, db: Db, who: Who, idem: Idem = None
) -> dict[str, Any]:
    row = approvals.decide_approval(db, who, approval_id, "rejected", body.reason)
    return render.approval(row)


@router.get("/approval-rules", tags=["approvals"])
def get_approval_rules(db: Db, who: Who) -> dict[str, Any]:
    """Amounts per currency above which an invoice, credit note or write-off needs approval."""
    return approvals.approval_rules(db, who)


@router.put("/approval-rules", tags=["approvals"])
def put_approval_rules(body: RulesIn, db: Db, who: Who) -> dict[str, Any]:
    """Replace the amounts of the rules given (admins); `{}` removes a rule."""
    return approvals.set_approval_rules(db, who, body.model_dump(exclude_none=True))
