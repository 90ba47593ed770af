"""End-to-end billing through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import make_org

from tallybook.services import billing, catalog, customers, invoices, subscriptions
from tallybook.services.base import Actor, Conflict, Database


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def setup_seat_plan(db: Database, actor: Actor, unit_price: str = "10.00"):
    catalog.create_tax_rate(
        db, actor, {"code": "DE-VAT-19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    product = catalog.create_product(db, actor, {"code": "seat", "name": "Team seat"})
    catalog.create_price(
        db,
        actor,
        {
            "code": "seat-monthly",
            "product_id": product.id,
            "currency": "EUR",
            "terms": {"model": "per_unit", "amount": unit_price},
            "effective_from": at(2020, 1, 1),
        },
    )
    plan = catalog.create_plan(
        db,
        actor,
        {"code": "team", "name": "Team", "currency": "EUR", "price_codes": ["seat-monthly"]},
    )
    customer = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Müller Maschinenbau GmbH",
            "country": "DE",
            "currency": "EUR",
            "timezone": "UTC",
            "tax_ids": ["DE136695976"],
            "emails": ["ap@mueller.example"],
        },
    )
    return customer, plan


def test_month_in_advance_then_backdated_upgrade_becomes_adjustment(db: Database) -> None:
    actor = make_org(db)
    customer, plan = setup_seat_plan(db, actor)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 5,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    run = billing.run_billing(db, actor, at(2026, 1, 1, 0, 0, 1))
    assert run.invoices_created == 1
    invoice, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    # 5 seats x 10.00 = 50.00; VAT 19 % = 9.50; total 59.50
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (5000, 950, 5950)
    assert len(lines) == 1 and lines[0].description.startswith("Team seat")

    # Re-running for the same instant creates nothing.
    again = billing.run_billing(db, actor, at(2026, 1, 1, 0, 0, 1))
    assert again.invoices_created == 0

    invoices.issue_invoice(db, actor, invoice.id)
    # Backdated quantity change: 8 seats from 16 January.
    subscriptions.change_subscription(
        db, actor, sub.id, {"quantity": 8, "effective_at": "2026-01-16T00:00:00+00:00"}
    )
    run = billing.run_billing(db, actor, at(2026, 2, 1, 0, 0, 1))
    assert run.invoices_created == 1
    feb, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    amounts = sorted(line.subtotal_minor for line in lines)
    # credit 5 seats x 10.00 x 16/31 = -25.806 -> -25.81; charge 8 x 10 x 16/31 = 41.290 -> 41.29;
    # February in advance: 8 x 10.00 = 80.00
    assert amounts == [-2581, 4129, 8000]
    assert feb.subtotal_minor == 8000 + 4129 - 2581


def test_issued_invoice_cannot_be_edited(db: Database) -> None:
    actor = make_org(db)
    customer, plan = setup_seat_plan(db, actor)
    subscriptions.create_subscription(
        db,
        actor,
        {"customer_id": customer.id, "plan_id": plan.id, "quantity": 1, "start_at": at(2026, 3, 1)},
    )
    run = billing.run_billing(db, actor, at(2026, 3, 1, 1))
    invoice = invoices.issue_invoice(db, actor, run.invoice_ids[0])
    assert invoice.number.startswith("INV-")
    with pytest.raises(Conflict, match="cannot be changed"):
        invoices.add_line(db, actor, invoice.id, {"description": "x", "unit_price": "1"})
