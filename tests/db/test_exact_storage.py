"""No float near money: exact decimals and big minor amounts survive a round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tallybook.db.models import Charge, Customer, InvoiceLine, new_id
from tallybook.services.base import Database

VALUES = [
    Decimal("0.0006"),
    Decimal("0.000000001"),
    Decimal("123456789012345.678901234"),
    Decimal("-0.01"),
    Decimal("99999999999999999.99"),
    Decimal("0.1") + Decimal("0.2"),
]


def _customer(db: Database, org_id: str) -> str:
    with db.transaction() as session:
        customer = Customer(
            id=new_id("cus"),
            organization_id=org_id,
            legal_name="x",
            country="DE",
            currency="EUR",
            created_at=datetime.now(UTC),
        )
        session.add(customer)
    return customer.id


def test_exact_round_trip_of_sub_cent_and_large_values(db: Database) -> None:
    actor = make_org(db)
    customer_id = _customer(db, actor.organization_id)
    ids = {}
    with db.transaction() as session:
        for value in VALUES:
            charge = Charge(
                id=new_id("chg"),
                organization_id=actor.organization_id,
                customer_id=customer_id,
                kind="one_off",
                description="x",
                currency="EUR",
                quantity=value,
                unit_price=value,
                billable_at=datetime.now(UTC),
                created_at=datetime.now(UTC),
                service_date=date(2026, 1, 1),
            )
            session.add(charge)
            ids[charge.id] = value
    with db.reading() as session:
        for charge in session.scalars(select(Charge).where(Charge.id.in_(list(ids)))):
            assert charge.unit_price == ids[charge.id]
            assert isinstance(charge.unit_price, Decimal)
            assert format(charge.quantity, "f") == format(ids[charge.id], "f")
    # Minor units beyond 2**53 (where a double would lose cents) stay exact.
    big = 2**62 - 1
    with db.transaction() as session:
        session.add(
            InvoiceLine(
                id=new_id("line"),
                organization_id=actor.organization_id,
                invoice_id=_invoice(session, actor.organization_id, customer_id),
                position=0,
                kind="manual",
                description="big",
                quantity=Decimal(1),
                amount=Decimal(big),
                subtotal_minor=big,
                total_minor=big,
            )
        )
    with db.reading() as session:
        line = session.scalars(
            select(InvoiceLine).where(InvoiceLine.organization_id == actor.organization_id)
        ).one()
        assert line.total_minor == big and line.amount == Decimal(big)


def _invoice(session, org_id: str, customer_id: str) -> str:  # type: ignore[no-untyped-def]
    from tallybook.db.models import Invoice

    invoice = Invoice(
        id=new_id("inv"),
        organization_id=org_id,
        customer_id=customer_id,
        status="draft",
        currency="EUR",
        billing_date=date(2026, 1, 1),
        created_at=datetime.now(UTC),
    )
    session.add(invoice)
    session.flush()
    return invoice.id


_ORGS: dict[str, tuple[str, str]] = {}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.decimals(
        allow_nan=False,
        allow_infinity=False,
        places=12,
        min_value=Decimal("-1e15"),
        max_value=Decimal("1e15"),
    )
)
def test_any_decimal_round_trips(db: Database, value: Decimal) -> None:
    if db.url not in _ORGS:
        actor = make_org(db)
        _ORGS[db.url] = (actor.organization_id, _customer(db, actor.organization_id))
    org_id, customer_id = _ORGS[db.url]
    with db.transaction() as session:
        charge = Charge(
            id=new_id("chg"),
            organization_id=org_id,
            customer_id=customer_id,
            kind="one_off",
            description="x",
            currency="EUR",
            quantity=Decimal(1),
            unit_price=value,
            billable_at=datetime.now(UTC),
            created_at=datetime.now(UTC),
        )
        session.add(charge)
    with db.reading() as session:
        assert session.get(Charge, charge.id).unit_price == value
