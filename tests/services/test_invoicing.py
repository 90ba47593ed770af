"""Invoices through the services: coupons, tax treatments, credit and debit notes, numbering."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from conftest import make_org

from tallybook.services import (
    billing,
    catalog,
    contracts,
    credit_notes,
    customers,
    events,
    invoices,
    metering,
    subscriptions,
)
from tallybook.services.base import Conflict, Database, InvalidInput


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def seat_world(db: Database, currency: str = "EUR", unit: str = "100.00", **customer: object):
    actor = make_org(db)
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    catalog.create_tax_rate(
        db, actor, {"code": "NY-STATE", "name": "NY State", "percent": "4", "jurisdiction": "US-NY"}
    )
    catalog.create_tax_rate(
        db,
        actor,
        {"code": "NYC", "name": "NYC", "percent": "4.5", "jurisdiction": "US-NY-NEW YORK"},
    )
    product = catalog.create_product(db, actor, {"code": "seat", "name": "Seat"})
    catalog.create_price(
        db,
        actor,
        {
            "code": "seat-m",
            "product_id": product.id,
            "currency": currency,
            "effective_from": at(2020, 1, 1),
            "terms": {"model": "per_unit", "amount": unit},
        },
    )
    plan = catalog.create_plan(
        db, actor, {"code": "team", "name": "Team", "currency": currency, "price_codes": ["seat-m"]}
    )
    values = {"legal_name": "Customer", "country": "DE", "currency": currency, **customer}
    cust = customers.create_customer(db, actor, values)
    return actor, cust, plan, product


def first_invoice(db: Database, actor, customer, plan, quantity: int = 1):  # type: ignore[no-untyped-def]
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": quantity,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    run = billing.run_billing(db, actor, at(2026, 1, 1, 1))
    return invoices.get_invoice(db, actor, run.invoice_ids[0])


def test_repeating_percent_coupon_applies_to_three_invoices(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    catalog.create_coupon(
        db,
        actor,
        {
            "code": "WELCOME",
            "name": "Welcome 10%",
            "kind": "percent",
            "value": "10",
            "duration": "repeating",
            "duration_periods": 3,
        },
    )
    catalog.apply_coupon(db, actor, customer.id, "WELCOME")
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 1,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    run = billing.run_billing(db, actor, at(2026, 5, 1, 1))
    got = sorted(
        (inv.billing_date, inv.discount_minor, inv.tax_minor, inv.total_minor)
        for inv in (invoices.get_invoice(db, actor, i)[0] for i in run.invoice_ids)
    )
    # 100.00 - 10 % = 90.00; VAT 19 % = 17.10; total 107.10 for three invoices, then 119.00.
    assert [g[1:] for g in got] == [(1000, 1710, 10710)] * 3 + [(0, 1900, 11900)] * 2


def test_reverse_charge_exempt_and_state_plus_city_tax(db: Database) -> None:
    actor, customer, plan, _ = seat_world(
        db, reverse_charge=True, country="FR", tax_ids=["FR40303265045"]
    )
    invoice, _ = first_invoice(db, actor, customer, plan)
    assert (invoice.tax_minor, invoice.total_minor, invoice.tax_treatment) == (
        0,
        10000,
        "reverse_charge",
    )
    assert "Reverse charge" in invoice.legal_note

    actor, customer, plan, _ = seat_world(db, tax_exempt=True)
    invoice, _ = first_invoice(db, actor, customer, plan)
    assert (invoice.tax_minor, invoice.total_minor, invoice.tax_treatment) == (0, 10000, "exempt")

    actor, customer, plan, _ = seat_world(
        db, currency="USD", unit="99.99", country="US", region="NY", city="New York"
    )
    invoice, lines = first_invoice(db, actor, customer, plan)
    # 99.99 x 4 % = 3.9996 -> 4.00; x 4.5 % = 4.49955 -> 4.50; total 108.49
    summary = [(t["code"], t["tax_minor"]) for t in invoice.tax_summary]
    assert summary == [("NY-STATE", 400), ("NYC", 450)]
    assert invoice.total_minor == 10849


def test_zero_decimal_currency(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db, currency="JPY", unit="1234", country="JP")
    invoice, _ = first_invoice(db, actor, customer, plan, quantity=3)
    assert (invoice.subtotal_minor, invoice.total_minor) == (3702, 3702)  # 3 x 1,234 JPY


def test_credit_notes_never_exceed_the_invoice_and_last_absorbs_rounding(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db, unit="33.33")
    invoice, lines = first_invoice(db, actor, customer, plan, quantity=3)
    invoices.issue_invoice(db, actor, invoice.id, issue_date=date(2026, 1, 1))
    # 3 x 33.33 = 99.99; VAT 19 % = 18.9981 -> 19.00; total 118.99
    totals = []
    for _ in range(3):
        note = credit_notes.create_credit_note(
            db,
            actor,
            invoice.id,
            {"reason": "seat returned", "lines": [{"line_id": lines[0].id, "quantity": "1"}]},
        )
        totals.append((note.subtotal_minor, note.tax_minor))
    # Cumulative rounding: 33.33/6.33, 33.33/6.34 (66.66 x .19 = 12.6654 -> 12.67), last takes rest.
    assert sum(t[0] for t in totals) == 9999 and sum(t[1] for t in totals) == 1900
    with pytest.raises((InvalidInput, Conflict)):
        credit_notes.create_credit_note(db, actor, invoice.id, {"reason": "again"})
    refreshed, _ = invoices.get_invoice(db, actor, invoice.id)
    assert refreshed.amount_due_minor == 0 and refreshed.credited_minor == 11899
    numbers = [n.number for n in credit_notes.list_credit_notes(db, actor, invoice.id)]
    assert numbers == ["CN-2026-000001", "CN-2026-000002", "CN-2026-000003"]


def test_credit_on_an_unpaid_invoice_reduces_it_instead_of_creating_spendable_credit(
    db: Database,
) -> None:
    actor, customer, plan, _ = seat_world(db)
    invoice, _ = first_invoice(db, actor, customer, plan)
    invoices.issue_invoice(db, actor, invoice.id)
    credit_notes.create_credit_note(
        db,
        actor,
        invoice.id,
        {
            "reason": "service outage",
            "settlement": "customer_credit",
            "lines": [{"line_id": "1", "amount": "50.00"}],
        },
    )
    # 50.00 + 19 % = 59.50 credited; nothing was paid, so nothing becomes customer credit.
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 0
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert (after.credited_minor, after.amount_due_minor) == (5950, 5950)


def test_a_negative_invoice_becomes_credit_that_pays_the_next_invoice(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 10,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    january = billing.run_billing(db, actor, at(2026, 1, 1, 1)).invoice_ids[0]
    invoices.issue_invoice(db, actor, january)
    # Backdated to the first day: January should have been 1 seat, not 10.
    subscriptions.change_subscription(
        db, actor, sub.id, {"quantity": 1, "effective_at": at(2026, 1, 1)}
    )
    february = billing.run_billing(db, actor, at(2026, 2, 1, 1)).invoice_ids[0]
    issued = invoices.issue_invoice(db, actor, february)
    # -10 seats +1 seat for January + 1 seat for February = -800.00; VAT -152.00
    assert (issued.total_minor, issued.amount_due_minor) == (-95200, 0)
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 95200
    with pytest.raises(Conflict):
        credit_notes.create_credit_note(db, actor, february, {"reason": "nothing to credit"})
    march = billing.run_billing(db, actor, at(2026, 3, 1, 1)).invoice_ids[0]
    paid = invoices.issue_invoice(db, actor, march)
    assert (paid.total_minor, paid.credit_applied_minor, paid.amount_due_minor) == (11900, 11900, 0)
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 95200 - 11900


def test_whole_credit_of_an_invoice_with_negative_lines_credits_exactly_its_total(
    db: Database,
) -> None:
    actor, customer, plan, _ = seat_world(db)
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 10,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    invoices.issue_invoice(
        db, actor, billing.run_billing(db, actor, at(2026, 1, 1, 1)).invoice_ids[0]
    )
    subscriptions.change_subscription(
        db, actor, sub.id, {"quantity": 8, "effective_at": at(2026, 1, 1)}
    )
    february = billing.run_billing(db, actor, at(2026, 2, 1, 1)).invoice_ids[0]
    issued = invoices.issue_invoice(db, actor, february)
    # February 8 x 100 = 800; January -1000 + 800 = -200; net 600.00 + 19 % = 714.00
    assert issued.total_minor == 71400
    note = credit_notes.create_credit_note(db, actor, february, {"reason": "billed in error"})
    assert note.total_minor == 71400
    with pytest.raises(Conflict):
        credit_notes.create_credit_note(db, actor, february, {"reason": "again"})


def test_clerk_cannot_issue_above_a_threshold_lowered_after_rating(db: Database) -> None:
    from tallybook.services.base import Actor, Forbidden, Role
    from tallybook.services.organizations import create_api_key, update_settings

    actor, customer, plan, _ = seat_world(db)
    invoice, _ = first_invoice(db, actor, customer, plan, quantity=100)  # 11,900.00
    update_settings(db, actor, {"approval_thresholds": {"EUR": "5000"}})
    key = create_api_key(db, actor, "clerk", "billing_clerk")
    clerk = Actor(actor.organization_id, key.id, Role.BILLING_CLERK)
    with pytest.raises(Forbidden, match="approval threshold"):
        invoices.issue_invoice(db, clerk, invoice.id)
    # Segregation of duties: not the admin who ran billing (the draft's creator).
    manager_key = create_api_key(db, actor, "manager", "billing_manager")
    manager = Actor(actor.organization_id, manager_key.id, Role.BILLING_MANAGER)
    invoices.approve_invoice(db, manager, invoice.id)
    assert invoices.issue_invoice(db, clerk, invoice.id).status == "issued"


def test_discarding_a_run_draft_lets_the_next_run_bill_it_again(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 1,
            "start_at": at(2026, 1, 15),
            "anchor": "calendar",
        },
    )
    draft = billing.run_billing(db, actor, at(2026, 1, 15, 1)).invoice_ids[0]
    invoices.void_invoice(db, actor, draft, "wrong quantity, regenerate")
    again = billing.run_billing(db, actor, at(2026, 1, 15, 1))
    assert again.invoices_created == 1
    _, lines = invoices.get_invoice(db, actor, again.invoice_ids[0])
    # 17/31 of 100.00 = 54.84 (Jan 15-31), billed again after the draft was discarded
    assert [line.subtotal_minor for line in lines] == [5484]


def test_debit_note_adds_a_charge_without_editing_the_invoice(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    invoice, _ = first_invoice(db, actor, customer, plan)
    issued = invoices.issue_invoice(db, actor, invoice.id)
    note = credit_notes.create_debit_note(
        db,
        actor,
        invoice.id,
        {
            "reason": "extra onsite day",
            "lines": [{"description": "Onsite day", "quantity": "1", "unit_price": "800.00"}],
        },
    )
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (80000, 15200, 95200)
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert after.total_minor == issued.total_minor
    assert after.amount_due_minor == issued.total_minor + 95200
    assert note.number.startswith("DN-")


def test_void_keeps_the_number_and_refuses_paid_or_void(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    invoice, _ = first_invoice(db, actor, customer, plan)
    issued = invoices.issue_invoice(db, actor, invoice.id)
    voided = invoices.void_invoice(db, actor, invoice.id, "billed to the wrong entity")
    assert voided.number == issued.number and voided.status == "void"
    with pytest.raises(Conflict):
        invoices.void_invoice(db, actor, invoice.id, "again")
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Setup", "unit_price": "10.00"})
    second = invoices.issue_invoice(db, actor, draft.id)
    assert int(second.number[-6:]) == int(issued.number[-6:]) + 1


def test_milestone_and_time_and_materials_charges(db: Database) -> None:
    actor, customer, plan, product = seat_world(db)
    contract = contracts.create_contract(
        db,
        actor,
        {
            "customer_id": customer.id,
            "reference": "SOW-7",
            "name": "ERP rollout",
            "start_date": "2026-01-01",
            "milestones": [{"name": "Go-live", "amount": "5000.00"}],
        },
    )
    milestone = contracts.list_milestones(db, actor, contract.id)[0]
    assert billing.run_billing(db, actor, at(2026, 1, 5)).invoices_created == 0
    contracts.complete_milestone(db, actor, milestone.id, at(2026, 1, 10))
    contracts.create_charge(
        db,
        actor,
        {
            "customer_id": customer.id,
            "kind": "time_and_materials",
            "description": "Consulting",
            "quantity": "12.5",
            "unit_price": "120.00",
            "reference": "TS-2026-01",
            "billable_at": at(2026, 1, 20),
        },
    )
    run = billing.run_billing(db, actor, at(2026, 1, 31))
    invoice, lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    # 5000.00 + 12.5 x 120.00 = 1500.00 -> 6500.00 net, VAT 1235.00
    assert sorted(line.subtotal_minor for line in lines) == [150000, 500000]
    assert invoice.total_minor == 773500
    assert billing.run_billing(db, actor, at(2026, 1, 31)).invoices_created == 0
    _, sentence, _ = invoices.explain_invoice_line(db, actor, invoice.id, "2")
    assert "12.5 x 120.00" in sentence or "12.5" in sentence


def test_a_price_change_is_a_new_version_and_issued_invoices_keep_theirs(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    invoice, lines = first_invoice(db, actor, customer, plan)
    invoices.issue_invoice(db, actor, invoice.id)
    v2 = catalog.new_price_version(
        db, actor, "seat-m", {"model": "per_unit", "amount": "120.00"}, "2026-02-01T00:00:00+00:00"
    )
    assert v2.version == 2
    run = billing.run_billing(db, actor, at(2026, 2, 1, 1))
    february, february_lines = invoices.get_invoice(db, actor, run.invoice_ids[0])
    assert february_lines[0].explanation["price"]["version"] == 2
    assert february.subtotal_minor == 12000
    january, january_lines = invoices.get_invoice(db, actor, invoice.id)
    assert january_lines[0].explanation["price"]["version"] == 1
    assert january.subtotal_minor == 10000


def test_dry_run_writes_nothing(db: Database) -> None:
    actor, customer, plan, _ = seat_world(db)
    subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "quantity": 2,
            "start_at": at(2026, 1, 1),
            "anchor": "calendar",
        },
    )
    preview = billing.run_billing(db, actor, at(2026, 1, 1, 1), dry_run=True)
    assert [p.total_minor for p in preview.previews] == [23800]  # 2 x 100 + 19 %
    assert invoices.list_invoices(db, actor)[0] == []
    real = billing.run_billing(db, actor, at(2026, 1, 1, 1))
    assert real.invoices_created == 1


def test_usage_on_a_plan_scheduled_for_later_is_accepted_and_billed(db: Database) -> None:
    actor, customer, plan, product = seat_world(db)
    api = catalog.create_product(
        db, actor, {"code": "api", "name": "API calls", "unit_label": "calls"}
    )
    metering.create_metric(db, actor, {"code": "api_calls", "aggregation": "sum", "field": "calls"})
    catalog.create_price(
        db,
        actor,
        {
            "code": "api-m",
            "product_id": api.id,
            "currency": "EUR",
            "kind": "usage",
            "metric_code": "api_calls",
            "effective_from": at(2020, 1, 1),
            "terms": {
                "model": "graduated",
                "tiers": [
                    {"up_to": "1000", "unit_price": "0"},
                    {"up_to": None, "unit_price": "0.002"},
                ],
            },
        },
    )
    metered = catalog.create_plan(
        db,
        actor,
        {
            "code": "team-api",
            "name": "Team + API",
            "currency": "EUR",
            "price_codes": ["seat-m", "api-m"],
        },
    )
    # Dates after today's clock: the upgrade is scheduled, not yet in force.
    sub = subscriptions.create_subscription(
        db,
        actor,
        {
            "customer_id": customer.id,
            "plan_id": plan.id,
            "start_at": at(2031, 1, 1),
            "anchor": "calendar",
        },
    )
    subscriptions.change_subscription(
        db, actor, sub.id, {"plan_id": metered.id, "effective_at": at(2031, 1, 16)}
    )
    sent = events.ingest_events(
        db,
        actor,
        [
            {
                "transaction_id": "t-1",
                "subscription_id": sub.id,
                "metric": "api_calls",
                "properties": {"calls": "3500"},
                "timestamp": "2031-01-20T10:00:00+00:00",
            }
        ],
    )
    assert sent.accepted == 1 and sent.quarantined == 0
    run = billing.run_billing(db, actor, at(2031, 2, 1, 1))
    lines = [line for i in run.invoice_ids for line in invoices.get_invoice(db, actor, i)[1]]
    usage = [line for line in lines if line.kind == "usage"]
    # 3,500 calls: first 1,000 free, 2,500 x 0.002 = 5.00
    assert [line.subtotal_minor for line in usage] == [500]
