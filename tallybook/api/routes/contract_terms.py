"""Contract terms over HTTP: contracts with their contracted price versions and the discounts
they allow (what verification checks invoices against)."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

from fastapi import APIRouter
from pydantic import Field

from tallybook.api.deps import Db, Idem, Who
from tallybook.api.render import CONTRACT, MILESTONE, row
from tallybook.api.schemas import Body
from tallybook.services import contracts

router = APIRouter(prefix="/v1", tags=["contracts"])

CONTRACT_PRICE = ("id", "contract_id", "product_id", "unit_price", "valid_from", "valid_to")


def contract_price_json(price: Any) -> dict[str, Any]:
    return row(price, CONTRACT_PRICE)


def contract_json(
    contract: Any, prices: list[Any] | None = None, milestones: list[Any] | None = None
) -> dict[str, Any]:
    data = row(contract, CONTRACT)
    data["discount_percent_max"] = (
        None
        if contract.discount_percent_max is None
        else format(contract.discount_percent_max, "f")
    )
    data["allowed_coupon_codes"] = list(contract.allowed_coupon_codes or [])
    if prices is not None:
        data["prices"] = [contract_price_json(p) for p in prices]
    if milestones is not None:
        data["milestones"] = [row(m, MILESTONE) for m in milestones]
    return data


class ContractPriceIn(Body):
    product_id: str
    unit_price: str | int = Field(description='exact, may be sub-cent: "95.005"')
    valid_from: date | None = Field(default=None, description="default: the contract's start")
    valid_to: date | None = Field(default=None, description="default: until the next version")


class ContractDiscountsIn(Body):
    clearable: ClassVar[frozenset[str]] = frozenset({"discount_percent_max"})
    discount_percent_max: str | int | None = Field(
        default=None, description="largest percent discount allowed; null: none"
    )
    allowed_coupon_codes: list[str] | None = None


@router.get("/contracts")
def get_contracts(db: Db, who: Who, customer_id: str | None = None) -> dict:
    return {"data": [contract_json(c) for c in contracts.list_contracts(db, who, customer_id)]}


@router.get("/contracts/{contract_id}")
def get_contract(contract_id: str, db: Db, who: Who) -> dict:
    """A contract (by id or reference) with its price versions, milestones and discounts."""
    contract = contracts.get_contract(db, who, contract_id)
    return contract_json(
        contract,
        contracts.list_contract_prices(db, who, contract.id),
        contracts.list_milestones(db, who, contract.id),
    )


@router.post("/contracts/{contract_id}/prices", status_code=201)
def post_contract_price(
    contract_id: str, body: ContractPriceIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """A contracted price version; the version still open ends the day before it starts."""
    return contract_price_json(contracts.add_contract_price(db, who, contract_id, body.values()))


@router.get("/contracts/{contract_id}/prices")
def get_contract_prices(contract_id: str, db: Db, who: Who) -> dict:
    return {
        "data": [
            contract_price_json(p) for p in contracts.list_contract_prices(db, who, contract_id)
        ]
    }


@router.patch("/contracts/{contract_id}/discounts")
def patch_contract_discounts(contract_id: str, body: ContractDiscountsIn, db: Db, who: Who) -> dict:
    """Change the discounts the contract allows: a percent cap (null: none) and coupon codes."""
    return contract_json(contracts.set_contract_discounts(db, who, contract_id, body.values()))
