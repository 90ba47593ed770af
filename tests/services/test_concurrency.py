"""Concurrency on PostgreSQL: runs and issues racing each other stay correct."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

from conftest import make_org
from sqlalchemy import func, select
from test_billing_flow import setup_seat_plan

from tallybook.db.models import Invoice, InvoiceLine, SubscriptionPeriodInvoice, new_id
from tallybook.services import billing, customers, invoices, subscriptions
from tallybook.services.base import Database


def test_two_billing_runs_at_once_bill_each_period_once(postgres_db: Database) -> None:
    db = postgres_db
    actor = make_org(db)
    customer, plan = setup_seat_plan(db, actor)
    customer_ids = [customer.id]
    for index in range(39):
        extra = customers.create_customer(
            db, actor, {"legal_name": f"Customer {index}", "country": "DE", "currency": "EUR"}
        )
        customer_ids.append(extra.id)
    for customer_id in customer_ids:
        subscriptions.create_subscription(
            db,
            actor,
            {
                "customer_id": customer_id,
                "plan_id": plan.id,
                "quantity": 2,
                "start_at": datetime(2026, 1, 1, tzinfo=UTC),
                "anchor": "calendar",
            },
        )
    as_of = datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda _: billing.run_billing(db, actor, as_of, batch_size=7), range(2))
        )
    with db.reading() as session:
        guards = session.execute(
            select(
                SubscriptionPeriodInvoice.subscription_id,
                SubscriptionPeriodInvoice.period_start,
                func.count(),
            )
            .where(SubscriptionPeriodInvoice.organization_id == actor.organization_id)
            .group_by(
                SubscriptionPeriodInvoice.subscription_id, SubscriptionPeriodInvoice.period_start
            )
        ).all()
        invoice_count = session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.organization_id == actor.organization_id)
        )
    # 40 subscriptions x 3 periods (January, February, March), each billed exactly once.
    assert len(guards) == 120 and all(count == 1 for *_, count in guards)
    assert invoice_count == 120
    assert sum(r.invoices_created for r in results) == 120


def test_a_thousand_concurrent_issues_give_gapless_unique_numbers(postgres_db: Database) -> None:
    db = postgres_db
    actor = make_org(db)
    # A hundred customers with ten drafts each: issuing verifies every draft against its
    # customer's other invoices, and numbering is what this test is about.
    customer_ids = [
        customers.create_customer(
            db, actor, {"legal_name": f"Bulk {n} Ltd", "country": "GB", "currency": "GBP"}
        ).id
        for n in range(100)
    ]
    draft_ids = []
    with db.transaction() as session:
        for n in range(1000):
            invoice = Invoice(
                id=new_id("inv"),
                organization_id=actor.organization_id,
                customer_id=customer_ids[n % 100],
                status="draft",
                currency="GBP",
                billing_date=date(2026, 5, 1),
                created_at=datetime.now(UTC),
                total_minor=1000,
                subtotal_minor=1000,
                amount_due_minor=1000,
            )
            session.add(invoice)
            session.add(
                InvoiceLine(
                    id=new_id("line"),
                    organization_id=actor.organization_id,
                    invoice_id=invoice.id,
                    position=0,
                    kind="manual",
                    description="Service",
                    quantity=Decimal(1),
                    unit_price=Decimal("10.00"),
                    amount=Decimal("10.00"),
                    subtotal_minor=1000,
                    total_minor=1000,
                )
            )
            draft_ids.append(invoice.id)
    with ThreadPoolExecutor(max_workers=16) as pool:
        issued = list(
            pool.map(
                lambda invoice_id: invoices.issue_invoice(
                    db, actor, invoice_id, issue_date=date(2026, 5, 1)
                ),
                draft_ids,
            )
        )
    numbers = sorted(invoice.number for invoice in issued)
    sequences = [int(re.fullmatch(r"INV-2026-(\d{6})", n).group(1)) for n in numbers]
    assert sequences == list(range(1, 1001))
