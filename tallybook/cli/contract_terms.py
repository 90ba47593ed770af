"""`tallybook contracts`: contracts with their contracted price versions and the discounts they
allow, which verification checks invoices against."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tallybook.api.routes.contract_terms import contract_json, contract_price_json
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _compact,
    _dec,
    _emit_json,
    _fail,
    _fields,
    _group,
    _session,
    _table,
    command,
)
from tallybook.services import contracts

contracts_app = _group("contracts", "Contracts: dates, contracted prices, allowed discounts.")

PRICE_KEYS = ("product", "unit_price", "valid_from", "valid_to")


def _price(spec: str) -> dict[str, Any]:
    """'product=consulting,unit_price=95.00,valid_from=2026-01-01'."""
    price: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in PRICE_KEYS:
            _fail(
                f"--price {spec!r}: expected KEY=VALUE pairs of {', '.join(PRICE_KEYS)}, e.g. "
                "product=consulting,unit_price=95.00,valid_from=2026-01-01"
            )
        price["product_id" if key == "product" else key] = value.strip()
    return price


def _product_ids(db: Any, actor: Any, prices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from tallybook.cli.main import _product_id

    return [
        {**p, "product_id": _product_id(db, actor, p["product_id"])} if p.get("product_id") else p
        for p in prices
    ]


def _show(contract: Any, prices: list[Any]) -> None:
    _fields(
        [
            ("Contract", contract.reference),
            ("ID", contract.id),
            ("Name", contract.name),
            ("Customer", contract.customer_id),
            ("Dates", f"{contract.start_date} to {contract.end_date or 'open end'}"),
            (
                "Percent discount up to",
                "none allowed"
                if contract.discount_percent_max is None
                else f"{_dec(contract.discount_percent_max)}%",
            ),
            ("Allowed coupons", ", ".join(contract.allowed_coupon_codes or []) or "none"),
        ]
    )
    if prices:
        _table(
            ["Product", "Unit price", "From", "To"],
            [[p.product_id, p.unit_price, p.valid_from, p.valid_to or "open end"] for p in prices],
            title="Contracted prices",
            right=("Unit price",),
        )


@command(contracts_app, "create")
def contract_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    reference: Annotated[str, typer.Option("--reference", help="E.g. MSA-2026-04.")],
    name: Annotated[str, typer.Option("--name")],
    start: Annotated[str, typer.Option("--start", help="YYYY-MM-DD.")],
    end: Annotated[str | None, typer.Option("--end", help="YYYY-MM-DD.")] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price", help="product=CODE,unit_price=P[,valid_from=D][,valid_to=D]; repeat."
        ),
    ] = None,
    discount_max: Annotated[
        str | None, typer.Option("--discount-max", help="Largest percent discount allowed.")
    ] = None,
    coupon: Annotated[
        list[str] | None, typer.Option("--coupon", help="A coupon code the contract allows.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a contract with its prices and allowed discounts."""
    values = _compact(
        {
            "customer_id": customer,
            "reference": reference,
            "name": name,
            "start_date": start,
            "end_date": end,
            "discount_percent_max": discount_max,
            "allowed_coupon_codes": coupon or None,
        }
    )
    with _session(api_key) as (db, actor):
        values["prices"] = _product_ids(db, actor, [_price(spec) for spec in price or []])
        contract = contracts.create_contract(db, actor, values)
        prices = contracts.list_contract_prices(db, actor, contract.id)
    if as_json:
        _emit_json(contract_json(contract, prices))
        return
    typer.echo(f"Contract {contract.reference} created as {contract.id} ({len(prices)} prices)")


@command(contracts_app, "list")
def contract_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Contracts."""
    with _session(api_key) as (db, actor):
        rows = contracts.list_contracts(db, actor, customer)
    if as_json:
        _emit_json([contract_json(c) for c in rows])
        return
    _table(
        ["ID", "Reference", "Name", "Customer", "Start", "End"],
        [[c.id, c.reference, c.name, c.customer_id, c.start_date, c.end_date] for c in rows],
    )


@command(contracts_app, "show")
def contract_show(
    ref: Annotated[str, typer.Argument(help="Contract id or reference.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A contract with its price versions and allowed discounts."""
    with _session(api_key) as (db, actor):
        contract = contracts.get_contract(db, actor, ref)
        prices = contracts.list_contract_prices(db, actor, contract.id)
        milestones = contracts.list_milestones(db, actor, contract.id)
    if as_json:
        _emit_json(contract_json(contract, prices, milestones))
        return
    _show(contract, prices)


@command(contracts_app, "add-price")
def contract_add_price(
    ref: Annotated[str, typer.Argument(help="Contract id or reference.")],
    product: Annotated[str, typer.Option("--product", help="Product id or code.")],
    unit_price: Annotated[str, typer.Option("--unit-price", help="Exact: 95.005.")],
    valid_from: Annotated[
        str | None, typer.Option("--from", help="YYYY-MM-DD (default: the contract's start).")
    ] = None,
    valid_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new contracted price version; the open one ends the day before it starts."""
    from tallybook.cli.main import _product_id

    with _session(api_key) as (db, actor):
        contract = contracts.get_contract(db, actor, ref)
        values = _compact(
            {
                "product_id": _product_id(db, actor, product),
                "unit_price": unit_price,
                "valid_from": valid_from,
                "valid_to": valid_to,
            }
        )
        row = contracts.add_contract_price(db, actor, contract.id, values)
    if as_json:
        _emit_json(contract_price_json(row))
        return
    typer.echo(
        f"{contract.reference}: {product} at {_dec(row.unit_price)} {contract.currency} from "
        f"{row.valid_from} to {row.valid_to or 'open end'}"
    )


@command(contracts_app, "discounts")
def contract_discounts(
    ref: Annotated[str, typer.Argument(help="Contract id or reference.")],
    discount_max: Annotated[
        str | None, typer.Option("--max", help="Largest percent discount allowed.")
    ] = None,
    no_discount: Annotated[
        bool, typer.Option("--no-percent", help="Allow no percent discount.")
    ] = False,
    coupon: Annotated[
        list[str] | None,
        typer.Option("--coupon", help="Allowed coupon code (repeat; replaces the list)."),
    ] = None,
    no_coupons: Annotated[bool, typer.Option("--no-coupons", help="Allow no coupon.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the discounts a contract allows."""
    if discount_max is not None and no_discount:
        _fail("give --max or --no-percent, not both")
    if coupon and no_coupons:
        _fail("give --coupon or --no-coupons, not both")
    values: dict[str, Any] = {}
    if discount_max is not None or no_discount:
        values["discount_percent_max"] = discount_max
    if coupon or no_coupons:
        values["allowed_coupon_codes"] = coupon or []
    if not values:
        _fail("nothing to change: give --max, --no-percent, --coupon or --no-coupons")
    with _session(api_key) as (db, actor):
        contract = contracts.get_contract(db, actor, ref)
        contract = contracts.set_contract_discounts(db, actor, contract.id, values)
        prices = contracts.list_contract_prices(db, actor, contract.id)
    if as_json:
        _emit_json(contract_json(contract, prices))
        return
    _show(contract, prices)
