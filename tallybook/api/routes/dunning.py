"""Dunning over HTTP: reminder policies and their assignment to customers, dunning runs, the
reminders recorded, invoice disputes that pause dunning, and the collections worklist."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Db, Idem, Who
from tallybook.api.schemas import Body, Decimal_
from tallybook.services import dunning

router = APIRouter(prefix="/v1")


class DunningStepIn(Body):
    offset_days: int = Field(description="days after the due date (-3: three days before)")
    name: str = Field(description='"friendly reminder", "final notice"')
    level: int | None = Field(default=None, ge=1, description="escalation; default: position")
    late_fee: bool = Field(default=False, description="sending this step charges the late fee")


class LateFeeIn(Body):
    kind: str = Field(description="fixed or percent")
    percent: Decimal_ | None = Field(default=None, description='percent of what is open: "1.5"')
    fixed: dict[str, Decimal_] | None = Field(
        default=None, description='fixed fee per currency: {"EUR": "10.00"}'
    )
    cap: dict[str, Decimal_] | None = Field(
        default=None, description='most an invoice is charged in late fees: {"EUR": "40.00"}'
    )


class DunningPolicyIn(Body):
    name: str
    steps: list[DunningStepIn]
    late_fee: LateFeeIn | None = None
    is_default: bool = False


class DunningPolicyPatch(Body):
    clearable: ClassVar[frozenset[str]] = frozenset({"late_fee"})
    name: str | None = None
    steps: list[DunningStepIn] | None = None
    late_fee: LateFeeIn | None = Field(default=None, description="null removes the late fee")
    is_default: bool | None = None


class PolicyAssignmentIn(Body):
    policy_id: str | None = Field(
        description="a policy id or name; null: the organisation's default policy"
    )


class DunningRunIn(Body):
    as_of: date | None = Field(default=None, description="the run's day; default: today")
    dry_run: bool = False


class DisputeIn(Body):
    reason: str = Field(description="what the customer disputes")


class ResolveDisputeIn(Body):
    resolution: str | None = Field(default=None, description="how it was settled")


def _policy_values(values: dict[str, Any]) -> dict[str, Any]:
    """Amounts as strings (the service parses them exactly); steps as plain objects."""
    if values.get("steps") is not None:
        values["steps"] = [
            {k: v for k, v in step.items() if v is not None} for step in values["steps"]
        ]
    fee = values.get("late_fee")
    if fee:
        if fee.get("percent") is not None:
            fee["percent"] = str(fee["percent"])
        for key in ("fixed", "cap"):
            if fee.get(key):
                fee[key] = {code: str(amount) for code, amount in fee[key].items()}
    return values


# -- policies ------------------------------------------------------------------------------------


@router.post("/dunning-policies", status_code=201, tags=["dunning"])
def post_dunning_policy(body: DunningPolicyIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """A reminder schedule (steps relative to the due date) with an optional late fee, charged
    as a debit note. The organisation's first policy is its default."""
    values = _policy_values(body.model_dump(exclude_none=True))
    return render.dunning_policy(dunning.create_policy(db, who, values))


@router.get("/dunning-policies", tags=["dunning"])
def get_dunning_policies(db: Db, who: Who) -> dict:
    return {"data": [render.dunning_policy(p) for p in dunning.list_policies(db, who)]}


@router.get("/dunning-policies/{policy_id}", tags=["dunning"])
def get_dunning_policy(policy_id: str, db: Db, who: Who) -> dict:
    return render.dunning_policy(dunning.get_policy(db, who, policy_id))


@router.patch("/dunning-policies/{policy_id}", tags=["dunning"])
def patch_dunning_policy(policy_id: str, body: DunningPolicyPatch, db: Db, who: Who) -> dict:
    values = _policy_values(body.values())
    return render.dunning_policy(dunning.update_policy(db, who, policy_id, values))


@router.delete("/dunning-policies/{policy_id}", tags=["dunning"])
def delete_dunning_policy(policy_id: str, db: Db, who: Who) -> dict:
    return {"id": dunning.delete_policy(db, who, policy_id), "deleted": True}


@router.put("/customers/{customer_id}/dunning-policy", tags=["dunning"])
def put_customer_dunning_policy(
    customer_id: str, body: PolicyAssignmentIn, db: Db, who: Who
) -> dict:
    """Give the customer its own dunning policy, or (null) put it back on the default."""
    customer = dunning.assign_policy(db, who, customer_id, body.policy_id)
    return {"customer_id": customer.id, "dunning_policy_id": customer.dunning_policy_id}


# -- runs and reminders --------------------------------------------------------------------------


@router.post("/dunning-runs", tags=["dunning"])
def post_dunning_run(body: DunningRunIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Record the reminder each open invoice is due (re-running repeats nothing), charging
    late fees as debit notes; disputed invoices are reported as paused. A dry run writes
    nothing."""
    run = dunning.run_dunning(db, who, body.as_of, dry_run=body.dry_run)
    return render.dunning_run(run)


@router.get("/dunning/reminders", tags=["dunning"])
def get_dunning_reminders(
    db: Db,
    who: Who,
    invoice_id: str | None = None,
    customer_id: str | None = None,
    include_skipped: Annotated[
        bool, Query(description="also the steps passed over after days without a run")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict:
    """Reminders recorded, newest first, with the text a reminder e-mail will carry."""
    views = dunning.list_reminders(
        db,
        who,
        invoice_id=invoice_id,
        customer_id=customer_id,
        include_skipped=include_skipped,
        limit=limit,
    )
    return {"data": [render.dunning_reminder(v) for v in views]}


# -- disputes ------------------------------------------------------------------------------------


@router.post("/invoices/{invoice_id}/dispute", tags=["dunning"])
def post_dispute(invoice_id: str, body: DisputeIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """The customer disputes the invoice: dunning pauses until the dispute is resolved."""
    return render.disputed_invoice(dunning.dispute_invoice(db, who, invoice_id, body.reason))


@router.post("/invoices/{invoice_id}/resolve-dispute", tags=["dunning"])
def post_resolve_dispute(
    invoice_id: str, db: Db, who: Who, body: ResolveDisputeIn | None = None, idem: Idem = None
) -> dict:
    resolution = body.resolution if body else None
    return render.disputed_invoice(dunning.resolve_dispute(db, who, invoice_id, resolution))


# -- collections ---------------------------------------------------------------------------------


@router.get("/collections/worklist", tags=["dunning"])
def get_worklist(
    db: Db,
    who: Who,
    as_of: Annotated[date | None, Query(description="default: today")] = None,
) -> dict:
    """Customers with overdue invoices, riskiest first (amount due x days overdue) within each
    currency, with their last reminder level, disputes and failed automatic charges."""
    return {
        "data": [render.worklist_customer(c) for c in dunning.collections_worklist(db, who, as_of)]
    }
