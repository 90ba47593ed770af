"""Contracts and pending charges: milestones, one-off fees and time-and-materials lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tallybook.db.models import Charge, Contract, Customer, Milestone, Product, new_id
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    get_owned,
    utcnow,
)
from tallybook.services.catalog import _decimal
from tallybook.services.subscriptions import _instant

CHARGE_KINDS = ("one_off", "time_and_materials", "milestone")


def _date(value: Any, field: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not an ISO date", field=field) from None


def create_contract(db: Database, actor: Actor, values: dict[str, Any]) -> Contract:
    actor.require(*WRITERS, action="create contracts")
    for name in ("customer_id", "reference", "name", "start_date"):
        if not values.get(name):
            raise InvalidInput(f"{name}: is required", field=name)
    start = _date(values["start_date"], "start_date")
    end = _date(values.get("end_date"), "end_date")
    if end is not None and end < start:
        raise InvalidInput("end_date: before start_date", field="end_date")
    try:
        return _create_contract(db, actor, values, start, end)
    except IntegrityError:
        raise Conflict(
            f"reference: a contract {values['reference']!r} already exists", field="reference"
        ) from None


def _create_contract(
    db: Database, actor: Actor, values: dict[str, Any], start: date, end: date | None
) -> Contract:
    with db.transaction() as session:
        customer = get_owned(session, Customer, values["customer_id"], actor)
        contract = Contract(
            id=new_id("ctr"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            reference=values["reference"],
            name=values["name"],
            currency=customer.currency,
            start_date=start,
            end_date=end,
            created_at=utcnow(),
        )
        session.add(contract)
        for index, milestone in enumerate(values.get("milestones") or []):
            if not milestone.get("name"):
                raise InvalidInput(f"milestones[{index}].name: is required", field="milestones")
            amount = _decimal(milestone.get("amount"), f"milestones[{index}].amount")
            if milestone.get("product_id"):
                get_owned(session, Product, milestone["product_id"], actor)
            if amount <= 0:
                raise InvalidInput(
                    f"milestones[{index}].amount: must be positive", field="milestones"
                )
            session.add(
                Milestone(
                    id=new_id("ms"),
                    organization_id=actor.organization_id,
                    contract_id=contract.id,
                    name=milestone["name"],
                    product_id=milestone.get("product_id"),
                    amount=amount,
                    created_at=utcnow(),
                )
            )
        session.flush()
        audit(
            session,
            actor,
            "contract.created",
            "contract",
            contract.id,
            {"reference": contract.reference},
        )
    return contract


def list_milestones(db: Database, actor: Actor, contract_id: str) -> list[Milestone]:
    with db.reading() as session:
        get_owned(session, Contract, contract_id, actor)
        return list(
            session.scalars(
                select(Milestone)
                .where(Milestone.contract_id == contract_id)
                .order_by(Milestone.created_at)
            )
        )


def complete_milestone(
    db: Database, actor: Actor, milestone_id: str, completed_at: Any = None
) -> Charge:
    """Mark a milestone complete: its fixed amount becomes a charge for the next run."""
    actor.require(*WRITERS, action="complete milestones")
    at = _instant(completed_at, "completed_at") or utcnow()
    with db.transaction() as session:
        milestone = get_owned(session, Milestone, milestone_id, actor, lock=True)
        if milestone.completed_at is not None:
            raise Conflict(f"milestone {milestone.name!r} is already complete")
        contract = session.get(Contract, milestone.contract_id)
        milestone.completed_at = at
        charge = Charge(
            id=new_id("chg"),
            organization_id=actor.organization_id,
            customer_id=contract.customer_id,
            contract_id=contract.id,
            kind="milestone",
            description=f"{contract.name}: milestone {milestone.name}",
            product_id=milestone.product_id,
            currency=contract.currency,
            quantity=Decimal(1),
            unit_price=milestone.amount,
            service_date=at.date(),
            billable_at=at,
            details={
                "reference": f"contract {contract.reference}, milestone {milestone.name}",
                "quantity_source": "milestone marked complete",
            },
            created_at=utcnow(),
        )
        session.add(charge)
        milestone.charge_id = charge.id
        session.flush()
        audit(
            session,
            actor,
            "milestone.completed",
            "milestone",
            milestone.id,
            {"charge": charge.id, "amount": str(milestone.amount)},
        )
    return charge


def create_charge(db: Database, actor: Actor, values: dict[str, Any]) -> Charge:
    """A one-off fee or a time-and-materials line (quantity x rate) for the next invoice."""
    actor.require(*WRITERS, action="create charges")
    kind = values.get("kind", "one_off")
    if kind not in ("one_off", "time_and_materials"):
        raise InvalidInput("kind: must be one_off or time_and_materials", field="kind")
    for name in ("customer_id", "description", "unit_price"):
        if values.get(name) in (None, ""):
            raise InvalidInput(f"{name}: is required", field=name)
    quantity = _decimal(values.get("quantity", 1), "quantity")
    unit_price = _decimal(values["unit_price"], "unit_price")
    if quantity <= 0:
        raise InvalidInput("quantity: must be positive", field="quantity")
    billable_at = _instant(values.get("billable_at"), "billable_at") or utcnow()
    with db.transaction() as session:
        customer = get_owned(session, Customer, values["customer_id"], actor)
        contract_id = None
        if values.get("contract_id"):
            contract_id = get_owned(session, Contract, values["contract_id"], actor).id
        if values.get("product_id"):
            get_owned(session, Product, values["product_id"], actor)
        source = (
            ("time entries: " + str(values.get("reference")))
            if kind == ("time_and_materials")
            else "entered on the charge"
        )
        charge = Charge(
            id=new_id("chg"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            contract_id=contract_id,
            kind=kind,
            description=values["description"],
            product_id=values.get("product_id"),
            currency=customer.currency,
            quantity=quantity,
            unit_price=unit_price,
            service_date=_date(values.get("service_date"), "service_date"),
            billable_at=billable_at,
            details={"reference": values.get("reference"), "quantity_source": source},
            created_at=utcnow(),
        )
        session.add(charge)
        session.flush()
        audit(
            session,
            actor,
            "charge.created",
            "charge",
            charge.id,
            {"kind": kind, "amount": str(quantity * unit_price)},
        )
    return charge


def list_charges(
    db: Database,
    actor: Actor,
    customer_id: str | None = None,
    pending_only: bool = False,
    *,
    limit: int | None = None,
    after: str | None = None,
) -> list[Charge]:
    """Charges in creation order; with `limit`, one page in id order after the cursor."""
    with db.reading() as session:
        query = select(Charge).where(Charge.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(Charge.customer_id == customer_id)
        if pending_only:
            query = query.where(Charge.invoice_id.is_(None))
        if limit is None:
            return list(session.scalars(query.order_by(Charge.created_at)))
        if after:
            query = query.where(Charge.id > after)
        return list(session.scalars(query.order_by(Charge.id).limit(limit)))
