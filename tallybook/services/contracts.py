"""Contracts and pending charges: milestones, one-off fees and time-and-materials lines."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.db.models import (
    Charge,
    Contract,
    ContractPrice,
    Coupon,
    Customer,
    Milestone,
    Product,
    new_id,
)
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
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
    values = {**values, **_discount_terms(values)}
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
            discount_percent_max=values.get("discount_percent_max"),
            allowed_coupon_codes=values.get("allowed_coupon_codes") or [],
            created_at=utcnow(),
        )
        session.add(contract)
        session.flush()
        if contract.allowed_coupon_codes:
            _check_coupons(session, actor, contract.allowed_coupon_codes)
        for index, price in enumerate(values.get("prices") or []):
            _add_price(session, actor, contract, price, f"prices[{index}]")
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
            after=contract,
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
            before={"completed_at": None, "charge_id": None},
            after=milestone,
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
            after=charge,
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


# -- contract terms: contracted price versions and allowed discounts --------------------------


def _discount_terms(values: dict[str, Any]) -> dict[str, Any]:
    """The contract's allowed discounts, checked: a percent cap and coupon codes."""
    terms: dict[str, Any] = {}
    if "discount_percent_max" in values:
        cap = values["discount_percent_max"]
        if cap is not None:
            cap = _decimal(cap, "discount_percent_max")
            if cap < 0 or cap > 100:
                raise InvalidInput(
                    "discount_percent_max: must be between 0 and 100",
                    field="discount_percent_max",
                )
        terms["discount_percent_max"] = cap
    if "allowed_coupon_codes" in values:
        codes = values["allowed_coupon_codes"] or []
        if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
            raise InvalidInput(
                "allowed_coupon_codes: give a list of coupon codes", field="allowed_coupon_codes"
            )
        terms["allowed_coupon_codes"] = sorted(set(codes))
    return terms


def _check_coupons(session: Session, actor: Actor, codes: list[str]) -> None:
    known = set(
        session.scalars(
            select(Coupon.code).where(
                Coupon.organization_id == actor.organization_id, Coupon.code.in_(codes)
            )
        )
    )
    for code in codes:
        if code not in known:
            raise InvalidInput(
                f"allowed_coupon_codes: no coupon {code!r}", field="allowed_coupon_codes"
            )


def _add_price(
    session: Session, actor: Actor, contract: Contract, values: dict[str, Any], prefix: str
) -> ContractPrice:
    """A contracted price version. A version still open when a later one starts ends the day
    before it; versions of one product never overlap."""
    if not values.get("product_id"):
        raise InvalidInput(f"{prefix}.product_id: is required", field="product_id")
    if values.get("unit_price") in (None, ""):
        raise InvalidInput(f"{prefix}.unit_price: is required", field="unit_price")
    product = get_owned(session, Product, values["product_id"], actor)
    unit_price = _decimal(values["unit_price"], f"{prefix}.unit_price")
    if unit_price < 0:
        raise InvalidInput(f"{prefix}.unit_price: must not be negative", field="unit_price")
    start = _date(values.get("valid_from"), f"{prefix}.valid_from") or contract.start_date
    end = _date(values.get("valid_to"), f"{prefix}.valid_to")
    if end is not None and end < start:
        raise InvalidInput(f"{prefix}.valid_to: before valid_from", field="valid_to")
    if start < contract.start_date or (
        contract.end_date is not None and (start > contract.end_date)
    ):
        raise InvalidInput(
            f"{prefix}.valid_from: {start} is outside the contract "
            f"({contract.start_date} to {contract.end_date or 'open end'})",
            field="valid_from",
        )
    versions = list(
        session.scalars(
            select(ContractPrice)
            .where(
                ContractPrice.contract_id == contract.id,
                ContractPrice.product_id == product.id,
            )
            .order_by(ContractPrice.valid_from)
            .with_for_update()
        )
    )
    for version in versions:
        if version.valid_to is None and version.valid_from < start:
            version.valid_to = start - timedelta(days=1)
        version_end = version.valid_to or date.max
        if version.valid_from <= (end or date.max) and start <= version_end:
            raise Conflict(
                f"{prefix}.valid_from: {product.code} already has the contracted price "
                f"{version.unit_price} from {version.valid_from} to "
                f"{version.valid_to or 'open end'}",
                field="valid_from",
            )
    price = ContractPrice(
        id=new_id("cpr"),
        organization_id=actor.organization_id,
        contract_id=contract.id,
        product_id=product.id,
        unit_price=unit_price,
        valid_from=start,
        valid_to=end,
        created_at=utcnow(),
    )
    session.add(price)
    session.flush()
    audit(
        session,
        actor,
        "contract.price_added",
        "contract",
        contract.id,
        {
            "price": price.id,
            "product": product.code,
            "unit_price": str(unit_price),
            "valid_from": start.isoformat(),
            "valid_to": end.isoformat() if end else None,
        },
        after=price,
    )
    return price


def add_contract_price(
    db: Database, actor: Actor, contract_id: str, values: dict[str, Any]
) -> ContractPrice:
    """Agree a price for a product from a day on (the previous open version ends the day
    before)."""
    actor.require(*WRITERS, action="change contract prices")
    with db.transaction() as session:
        contract = get_owned(session, Contract, contract_id, actor, lock=True)
        return _add_price(session, actor, contract, values, "price")


def list_contract_prices(db: Database, actor: Actor, contract_id: str) -> list[ContractPrice]:
    with db.reading() as session:
        get_owned(session, Contract, contract_id, actor)
        return list(
            session.scalars(
                select(ContractPrice)
                .where(ContractPrice.contract_id == contract_id)
                .order_by(ContractPrice.product_id, ContractPrice.valid_from)
            )
        )


def set_contract_discounts(
    db: Database, actor: Actor, contract_id: str, values: dict[str, Any]
) -> Contract:
    """Change the discounts a contract allows (a percent cap, coupon codes)."""
    actor.require(*WRITERS, action="change contract terms")
    unknown = set(values) - {"discount_percent_max", "allowed_coupon_codes"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name}: not a discount term of a contract", field=name)
    terms = _discount_terms(values)
    with db.transaction() as session:
        contract = get_owned(session, Contract, contract_id, actor, lock=True)
        if terms.get("allowed_coupon_codes"):
            _check_coupons(session, actor, terms["allowed_coupon_codes"])
        before = {
            "discount_percent_max": None
            if contract.discount_percent_max is None
            else str(contract.discount_percent_max),
            "allowed_coupon_codes": list(contract.allowed_coupon_codes or []),
        }
        for key, value in terms.items():
            setattr(contract, key, value)
        after = {
            "discount_percent_max": None
            if contract.discount_percent_max is None
            else str(contract.discount_percent_max),
            "allowed_coupon_codes": list(contract.allowed_coupon_codes or []),
        }
        audit(
            session,
            actor,
            "contract.discounts_changed",
            "contract",
            contract.id,
            {"before": before, "after": after},
        )
    return contract


def contract_price_on(
    session: Session, contract_id: str, product_id: str, day: date
) -> ContractPrice | None:
    """The contracted price version of a product in force on a day, if any (for the caller's
    transaction: billing time, verifying drafts)."""
    return session.scalars(
        select(ContractPrice)
        .where(
            ContractPrice.contract_id == contract_id,
            ContractPrice.product_id == product_id,
            ContractPrice.valid_from <= day,
            (ContractPrice.valid_to.is_(None)) | (ContractPrice.valid_to >= day),
        )
        .order_by(ContractPrice.valid_from.desc())
    ).first()


def list_contracts(db: Database, actor: Actor, customer_id: str | None = None) -> list[Contract]:
    with db.reading() as session:
        query = select(Contract).where(Contract.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(Contract.customer_id == customer_id)
        return list(session.scalars(query.order_by(Contract.reference)))


def get_contract(db: Database, actor: Actor, contract_ref: str) -> Contract:
    """A contract by id or by reference."""
    with db.reading() as session:
        contract = session.scalars(
            select(Contract).where(
                Contract.organization_id == actor.organization_id,
                (Contract.id == contract_ref) | (Contract.reference == contract_ref),
            )
        ).first()
        if contract is None:
            raise NotFound(f"contract {contract_ref} not found")
        return contract
