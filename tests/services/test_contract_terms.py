"""Contract terms: contracted price versions and the discounts a contract allows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from conftest import make_org

from tallybook.services import catalog, contracts, customers
from tallybook.services.base import Conflict, Database, InvalidInput, NotFound


def setup(db: Database):  # type: ignore[no-untyped-def]
    actor = make_org(db)
    product = catalog.create_product(db, actor, {"code": "consulting", "name": "Consulting"})
    customer = customers.create_customer(
        db, actor, {"legal_name": "Kunde AG", "country": "DE", "currency": "EUR"}
    )
    contract = contracts.create_contract(
        db,
        actor,
        {
            "customer_id": customer.id,
            "reference": "MSA-9",
            "name": "Framework agreement",
            "start_date": "2026-01-01",
            "end_date": "2026-12-31",
            "discount_percent_max": "10",
            "prices": [{"product_id": product.id, "unit_price": "95.00"}],
        },
    )
    return actor, product, customer, contract


def test_price_versions_follow_each_other(db: Database) -> None:
    actor, product, _, contract = setup(db)
    contracts.add_contract_price(
        db,
        actor,
        contract.id,
        {"product_id": product.id, "unit_price": "99.5", "valid_from": "2026-07-01"},
    )
    versions = contracts.list_contract_prices(db, actor, contract.id)
    assert [(v.unit_price, v.valid_from, v.valid_to) for v in versions] == [
        (Decimal("95.00"), date(2026, 1, 1), date(2026, 6, 30)),
        (Decimal("99.5"), date(2026, 7, 1), None),
    ]
    with db.reading() as session:
        assert contracts.contract_price_on(
            session, contract.id, product.id, date(2026, 6, 30)
        ).unit_price == Decimal("95.00")
        assert contracts.contract_price_on(
            session, contract.id, product.id, date(2026, 7, 1)
        ).unit_price == Decimal("99.5")
        assert (
            contracts.contract_price_on(session, contract.id, product.id, date(2025, 12, 31))
            is None
        )
    with pytest.raises(Conflict, match="already has the contracted price"):
        contracts.add_contract_price(
            db,
            actor,
            contract.id,
            {
                "product_id": product.id,
                "unit_price": "90",
                "valid_from": "2026-03-01",
                "valid_to": "2026-03-31",
            },
        )
    for values, field in (
        ({"unit_price": "90", "valid_from": "2025-06-01"}, "valid_from"),
        ({"unit_price": "-1", "valid_from": "2026-08-01"}, "unit_price"),
        ({"unit_price": "90", "valid_from": "2026-08-01", "valid_to": "2026-07-01"}, "valid_to"),
    ):
        with pytest.raises(InvalidInput) as error:
            contracts.add_contract_price(
                db, actor, contract.id, {"product_id": product.id, **values}
            )
        assert error.value.field == field


def test_allowed_discounts(db: Database) -> None:
    actor, _, _, contract = setup(db)
    assert contract.discount_percent_max == Decimal(10) and contract.allowed_coupon_codes == []
    with pytest.raises(InvalidInput, match="no coupon 'LOYAL5'"):
        contracts.set_contract_discounts(
            db, actor, contract.id, {"allowed_coupon_codes": ["LOYAL5"]}
        )
    catalog.create_coupon(
        db,
        actor,
        {
            "code": "LOYAL5",
            "name": "Loyalty",
            "kind": "percent",
            "value": "5",
            "duration": "forever",
        },
    )
    changed = contracts.set_contract_discounts(
        db, actor, contract.id, {"allowed_coupon_codes": ["LOYAL5"], "discount_percent_max": None}
    )
    assert (changed.discount_percent_max, changed.allowed_coupon_codes) == (None, ["LOYAL5"])
    with pytest.raises(InvalidInput):
        contracts.set_contract_discounts(db, actor, contract.id, {"discount_percent_max": "120"})
    with pytest.raises(InvalidInput):
        contracts.set_contract_discounts(db, actor, contract.id, {"name": "x"})
    assert contracts.get_contract(db, actor, "MSA-9").allowed_coupon_codes == ["LOYAL5"]


def test_another_organisation_cannot_touch_the_terms(db: Database) -> None:
    actor, product, _, contract = setup(db)
    intruder = make_org(db)
    with pytest.raises(NotFound):
        contracts.add_contract_price(
            db, intruder, contract.id, {"product_id": product.id, "unit_price": "1"}
        )
    with pytest.raises(NotFound):
        contracts.list_contract_prices(db, intruder, contract.id)
    with pytest.raises(NotFound):
        contracts.set_contract_discounts(db, intruder, contract.id, {"discount_percent_max": "50"})
    with pytest.raises(NotFound):
        contracts.get_contract(db, intruder, contract.id)
    assert contracts.list_contracts(db, intruder) == []
