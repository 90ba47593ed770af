"""Pre-flight verification through the services, on SQLite and PostgreSQL: findings kept as
discrepancies, issuing refused by a blocking finding unless another billing manager approved an
override, verification runs over all drafts with the organisation's revenue leakage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import make_org
from sqlalchemy import func, select

from tallybook.db.models import Discrepancy, Invoice
from tallybook.services import (
    approvals,
    billing,
    catalog,
    contracts,
    customers,
    discrepancies,
    events,
    invoices,
    metering,
    organizations,
    purchase_orders,
    subscriptions,
    time_sheets,
    verification,
)
from tallybook.services.base import Actor, Conflict, Database, Forbidden, NotFound, Role
from tallybook.services.verification import VerificationBlocked


class World:
    """An organisation (USD, UTC) with an admin, a billing manager, a clerk, products and one
    customer who orders by purchase order."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.admin = make_org(db)
        org = self.admin.organization_id
        self.manager = self.key("lead", Role.BILLING_MANAGER)
        self.clerk = self.key("clerk", Role.BILLING_CLERK)
        self.other_manager = self.key("controller", Role.BILLING_MANAGER)
        assert self.manager.organization_id == org
        self.consulting = catalog.create_product(
            db, self.admin, {"code": "consulting", "name": "Consulting", "unit_label": "hours"}
        )
        self.licence = catalog.create_product(
            db, self.admin, {"code": "licence", "name": "Licence"}
        )
        self.repair = catalog.create_product(db, self.admin, {"code": "repair", "name": "Repair"})
        self.customer = self.new_customer("Kunde AG", "K-1")

    def key(self, name: str, role: Role) -> Actor:
        key = organizations.create_api_key(self.db, self.admin, name, role.value)
        return Actor(self.admin.organization_id, key.id, role)

    def new_customer(self, name: str, external_id: str):  # type: ignore[no-untyped-def]
        return customers.create_customer(
            self.db,
            self.admin,
            {"legal_name": name, "country": "US", "currency": "USD", "external_id": external_id},
        )

    def po(self, **extra: object):  # type: ignore[no-untyped-def]
        values = {
            "customer_id": self.customer.id,
            "number": "PO-7",
            "valid_from": "2020-01-01",
            "ceiling": "10000.00",
            "lines": [{"product": self.licence.id, "quantity": "20", "unit_price": "250.00"}],
            **extra,
        }
        return purchase_orders.create_purchase_order(self.db, self.admin, values)

    def draft(self, actor: Actor, *lines: dict, po_number: str | None = "PO-7", customer=None):  # type: ignore[no-untyped-def]
        customer = customer or self.customer
        draft = invoices.create_draft(self.db, actor, customer.id, {"po_number": po_number})
        for line in lines:
            invoices.add_line(self.db, actor, draft.id, line)
        return draft

    def licences(self, quantity: str = "4", price: str = "250.00") -> dict:
        return {
            "description": "Licence",
            "product_id": self.licence.id,
            "quantity": quantity,
            "unit_price": price,
        }


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def open_discrepancies(db: Database, actor: Actor, invoice_id: str) -> list[Discrepancy]:
    rows, _ = discrepancies.list_discrepancies(db, actor, invoice_id=invoice_id, limit=500)
    return [r for r in rows if r.status in ("open", "investigating")]


def test_a_clean_draft_passes_and_is_issued(world: World) -> None:
    world.po()
    draft = world.draft(world.clerk, world.licences())
    result = verification.verify_invoice(world.db, world.clerk, draft.id)
    assert (result.status, result.findings) == ("passed", ())
    issued = invoices.issue_invoice(world.db, world.clerk, draft.id)
    assert issued.status == "issued"
    view = purchase_orders.get_purchase_order(world.db, world.admin, "PO-7")
    assert view.order.consumed_minor == 100_000


def test_a_blocking_finding_is_kept_and_refuses_the_issue(world: World) -> None:
    world.po()
    draft = world.draft(world.clerk, world.licences(price="275.00"))
    result = verification.verify_invoice(world.db, world.clerk, draft.id)
    assert result.status == "blocked"
    [finding] = result.findings
    assert finding.check == "po_price"
    assert finding.what == "line 1 (Licence) is priced 275.00 but PO PO-7 line 1 says 250.00"
    [row] = open_discrepancies(world.db, world.clerk, draft.id)
    assert (row.check, row.severity, row.status) == ("po_price", "blocking", "open")
    assert (row.expected, row.actual, row.purchase_order_id) == (
        "250.00",
        "275.00",
        finding.where.purchase_order_id,
    )
    assert row.location["line_position"] == 1
    with pytest.raises(VerificationBlocked) as refused:
        invoices.issue_invoice(world.db, world.manager, draft.id)
    assert refused.value.status == 409
    assert (
        "1 blocking finding: [po_price] line 1 (Licence) is priced 275.00" in refused.value.detail
    )
    # The refused issue kept its findings, and verifying again opens nothing new.
    verification.verify_invoice(world.db, world.clerk, draft.id)
    assert [r.id for r in open_discrepancies(world.db, world.clerk, draft.id)] == [row.id]
    invoice, _ = invoices.get_invoice(world.db, world.clerk, draft.id)
    assert (invoice.status, invoice.number) == ("draft", None)


def test_correcting_the_draft_resolves_its_discrepancy(world: World) -> None:
    world.po()
    draft = world.draft(world.clerk, world.licences(price="275.00"))
    verification.verify_invoice(world.db, world.clerk, draft.id)
    [row] = open_discrepancies(world.db, world.clerk, draft.id)
    _, [line] = invoices.get_invoice(world.db, world.clerk, draft.id)
    invoices.remove_line(world.db, world.clerk, draft.id, line.id)
    invoices.add_line(world.db, world.clerk, draft.id, world.licences())
    assert verification.verify_invoice(world.db, world.clerk, draft.id).status == "passed"
    shown = discrepancies.get_discrepancy(world.db, world.clerk, row.id).discrepancy
    assert (shown.status, shown.resolution) == ("resolved", "adjust_draft")
    assert "corrected on the draft" in shown.resolution_note
    assert invoices.issue_invoice(world.db, world.clerk, draft.id).status == "issued"


def test_an_override_needs_another_managers_approval(world: World) -> None:
    db = world.db
    world.po(ceiling="500.00")
    draft = world.draft(world.clerk, world.licences())  # 1000.00 against a 500.00 ceiling
    with pytest.raises(VerificationBlocked, match="po_ceiling"):
        invoices.issue_invoice(db, world.clerk, draft.id)
    with pytest.raises(Forbidden):
        [row] = open_discrepancies(db, world.clerk, draft.id)
        discrepancies.waive(db, world.clerk, row.id, "the customer agreed by phone")
    asked = verification.request_override(db, world.clerk, draft.id, "PO increase is on its way")
    [request] = asked["requests"]
    assert request["finding"].check == "po_ceiling"
    # Not approved yet: still refused, and the message says what it waits for.
    with pytest.raises(VerificationBlocked, match="waiting for a billing manager's approval"):
        invoices.issue_invoice(db, world.clerk, draft.id)
    # A clerk cannot approve; the one who asked cannot either.
    with pytest.raises(Forbidden):
        approvals.decide_approval(db, world.clerk, request["approval_id"], "approved", "fine")
    approvals.decide_approval(db, world.manager, request["approval_id"], "approved", "PO on file")
    issued = invoices.issue_invoice(db, world.clerk, draft.id)
    assert issued.status == "issued"
    waived = discrepancies.get_discrepancy(db, world.clerk, request["discrepancy_id"]).discrepancy
    assert (waived.status, waived.resolution) == ("waived", "waive")
    assert world.manager.key_id in waived.resolution_note and "PO on file" in waived.resolution_note


def test_the_asker_cannot_approve_their_own_override(world: World) -> None:
    db = world.db
    world.po(ceiling="500.00")
    draft = world.draft(world.manager, world.licences())
    asked = verification.request_override(db, world.manager, draft.id, "agreed with the buyer")
    approval_id = asked["requests"][0]["approval_id"]
    with pytest.raises(Forbidden):
        approvals.decide_approval(db, world.manager, approval_id, "approved", "mine")
    with pytest.raises(VerificationBlocked):
        invoices.issue_invoice(db, world.manager, draft.id)
    approvals.decide_approval(db, world.other_manager, approval_id, "approved", "checked")
    assert invoices.issue_invoice(db, world.manager, draft.id).status == "issued"


def test_an_override_covers_only_the_findings_it_was_asked_for(world: World) -> None:
    db = world.db
    world.po(ceiling="500.00")
    draft = world.draft(world.clerk, world.licences())
    asked = verification.request_override(db, world.clerk, draft.id, "increase coming")
    approvals.decide_approval(
        db, world.manager, asked["requests"][0]["approval_id"], "approved", "ok"
    )
    # A new mistake after the approval: the wrong price is not covered.
    invoices.add_line(db, world.clerk, draft.id, world.licences("1", "260.00"))
    with pytest.raises(VerificationBlocked) as refused:
        invoices.issue_invoice(db, world.clerk, draft.id)
    assert [f.check for f in refused.value.findings] == ["po_price"]
    with pytest.raises(Conflict, match="no blocking finding"):
        clean = world.draft(world.clerk, world.licences("1"), po_number=None)
        verification.request_override(db, world.clerk, clean.id, "nothing to override")


def test_po_required_and_closed_po(world: World) -> None:
    db = world.db
    strict = customers.create_customer(
        db,
        world.admin,
        {"legal_name": "Strict Inc", "country": "US", "currency": "USD", "po_required": True},
    )
    draft = world.draft(world.clerk, world.licences(), po_number=None, customer=strict)
    with pytest.raises(VerificationBlocked, match=r"\[po_missing\] draft .* has no purchase order"):
        invoices.issue_invoice(db, world.clerk, draft.id)
    world.po()
    purchase_orders.close_purchase_order(db, world.admin, "PO-7", "delivered")
    closed = world.draft(world.clerk, world.licences())
    result = verification.verify_invoice(db, world.clerk, closed.id)
    assert [f.check for f in result.findings] == ["po_closed"]
    assert result.findings[0].what == "purchase order PO-7 is closed"


def test_time_sheets_three_way_match(world: World) -> None:
    db = world.db
    day = date.today() - timedelta(days=3)
    entries = [
        time_sheets.create_time_entry(
            db,
            world.clerk,
            {
                "customer_id": world.customer.id,
                "worker": worker,
                "work_date": day.isoformat(),
                "hours": hours,
                "product_id": world.consulting.id,
            },
        )
        for worker, hours in (("Ana", "6"), ("Ben", "2.5"))
    ]
    time_sheets.approve_time_entries(db, world.manager, [e.id for e in entries])
    time_sheets.bill_time(db, world.clerk, world.customer.id, rate="120.00")
    [draft_id] = billing.run_billing(
        db, world.clerk, datetime.now(UTC) + timedelta(minutes=1)
    ).invoice_ids
    clean = verification.verify_invoice(db, world.clerk, draft_id)
    assert clean.status == "passed", clean.findings
    # Hours typed in beside the time sheets: nothing approved backs them.
    invoices.add_line(
        db,
        world.clerk,
        draft_id,
        {
            "description": "Consulting (extra)",
            "product_id": world.consulting.id,
            "quantity": "3",
            "unit_price": "120.00",
        },
    )
    found = verification.verify_invoice(db, world.clerk, draft_id)
    [finding] = found.findings
    assert (finding.check, finding.severity.value) == ("time_hours", "blocking")
    assert finding.what.startswith("line 2 (Consulting (extra)) bills 3 hours but the approved")
    # Approved time nobody billed yet is revenue leakage.
    later = time_sheets.create_time_entry(
        db,
        world.clerk,
        {
            "customer_id": world.customer.id,
            "worker": "Ana",
            "work_date": day.isoformat(),
            "hours": "3",
            "product_id": world.consulting.id,
        },
    )
    time_sheets.approve_time_entries(db, world.manager, [later.id])
    again = verification.verify_invoice(db, world.clerk, draft_id)
    assert [f.check for f in again.findings] == ["unbilled_time"]
    assert again.findings[0].where.time_entry_ids == (later.id,)
    assert again.status == "warnings"


def test_contract_price_dates_and_discounts(world: World) -> None:
    db = world.db
    contracts.create_contract(
        db,
        world.admin,
        {
            "customer_id": world.customer.id,
            "reference": "MSA-1",
            "name": "Master agreement",
            "start_date": "2020-01-01",
            "discount_percent_max": "5",
            "prices": [{"product_id": world.licence.id, "unit_price": "240.00"}],
        },
    )
    draft = world.draft(world.clerk, world.licences("2", "250.00"), po_number=None)
    invoices.update_draft(
        db,
        world.clerk,
        draft.id,
        {"discounts": [{"kind": "percent", "value": "10", "name": "Goodwill"}]},
    )
    result = verification.verify_invoice(db, world.clerk, draft.id)
    assert sorted(f.check for f in result.findings) == ["contract_discount", "contract_price"]
    price = next(f for f in result.findings if f.check == "contract_price")
    assert price.what.startswith("line 1 (Licence) is priced 250.00 but contract MSA-1 says 240.00")
    discount = next(f for f in result.findings if f.check == "contract_discount")
    assert discount.what == "discount Goodwill (10%) is not in contract MSA-1"
    [row] = [
        r for r in open_discrepancies(db, world.clerk, draft.id) if r.check == "contract_price"
    ]
    assert (row.subject_type, row.subject_id) == ("contract", price.where.contract_id)


def test_a_service_without_a_report_and_a_charge_entered_twice(world: World) -> None:
    db = world.db
    other = world.new_customer("Other LLC", "K-2")
    report = time_sheets.create_service_report(
        db,
        world.clerk,
        {
            "customer_id": other.id,
            "product_id": world.repair.id,
            "service_date": (date.today() - timedelta(days=2)).isoformat(),
            "quantity": "1",
        },
    )
    assert report.status == "draft"
    day = (date.today() - timedelta(days=1)).isoformat()
    for _ in range(2):
        contracts.create_charge(
            db,
            world.clerk,
            {
                "customer_id": world.customer.id,
                "description": "Repair visit",
                "product_id": world.repair.id,
                "unit_price": "180.00",
                "service_date": day,
                "billable_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            },
        )
    [draft_id] = billing.run_billing(db, world.clerk, datetime.now(UTC)).invoice_ids
    result = verification.verify_invoice(db, world.clerk, draft_id)
    checks = sorted((f.check, f.where.line_position) for f in result.findings)
    assert checks == [("duplicate_charge", 2), ("service_report", 1), ("service_report", 2)]
    duplicate = next(f for f in result.findings if f.check == "duplicate_charge")
    assert (
        duplicate.what == f"line 2 (Repair visit) bills repair for {day} again: line 1 already does"
    )


def test_near_duplicate_and_anomaly_are_warnings_and_do_not_block(world: World) -> None:
    db = world.db
    first = world.draft(world.clerk, world.licences("1"), po_number=None)
    invoices.issue_invoice(db, world.clerk, first.id)
    second = world.draft(world.clerk, world.licences("1"), po_number=None)
    result = verification.verify_invoice(db, world.clerk, second.id)
    assert [(f.check, f.severity.value) for f in result.findings] == [("near_duplicate", "warning")]
    organizations.update_settings(db, world.admin, {"near_duplicate_days": 0})
    invoices.issue_invoice(db, world.clerk, second.id)
    for _ in range(2):
        invoices.issue_invoice(
            db, world.clerk, world.draft(world.clerk, world.licences("1"), po_number=None).id
        )
    big = world.draft(world.clerk, world.licences("3"), po_number=None)
    [anomaly] = verification.verify_invoice(db, world.clerk, big.id).findings
    assert anomaly.check == "anomaly"
    assert anomaly.what == (
        f"draft {big.id} totals 750.00 USD, 200% above Kunde AG's trailing average of 250.00 "
        "USD (the median of the last 4 invoices)"
    )
    organizations.update_settings(db, world.admin, {"anomaly_percent": None})
    assert verification.verify_invoice(db, world.clerk, big.id).findings == ()
    assert invoices.issue_invoice(db, world.clerk, big.id).status == "issued"


def test_a_run_verifies_every_draft_and_finds_revenue_leakage(world: World) -> None:
    db = world.db
    world.po()
    good = world.draft(world.clerk, world.licences())
    bad = world.draft(world.clerk, world.licences("30"))
    # A subscription whose period is due but was never billed.
    catalog.create_price(
        db,
        world.admin,
        {
            "code": "licence-monthly",
            "product_id": world.licence.id,
            "currency": "USD",
            "terms": {"model": "flat", "amount": "99"},
            "effective_from": datetime(2020, 1, 1, tzinfo=UTC),
        },
    )
    plan = catalog.create_plan(
        db,
        world.admin,
        {"code": "basic", "name": "Basic", "currency": "USD", "price_codes": ["licence-monthly"]},
    )
    quiet = world.new_customer("Quiet Co", "K-3")
    subscription = subscriptions.create_subscription(
        db,
        world.admin,
        {
            "customer_id": quiet.id,
            "plan_id": plan.id,
            "quantity": 1,
            "start_at": datetime.now(UTC) - timedelta(days=3),
        },
    )
    # A completed milestone not invoiced.
    contract = contracts.create_contract(
        db,
        world.admin,
        {
            "customer_id": quiet.id,
            "reference": "PRJ-9",
            "name": "Project",
            "start_date": "2020-01-01",
            "milestones": [{"name": "Go-live", "amount": "5000.00"}],
        },
    )
    [milestone] = contracts.list_milestones(db, world.admin, contract.id)
    contracts.complete_milestone(
        db, world.admin, milestone.id, datetime.now(UTC) - timedelta(days=1)
    )
    # Usage events of a customer that does not exist yet.
    metering.create_metric(
        db, world.admin, {"code": "api_calls", "name": "API calls", "aggregation": "count"}
    )
    events.ingest_events(
        db,
        world.admin,
        [
            {
                "transaction_id": f"tx-{i}",
                "customer": "K-404",
                "metric": "api_calls",
                "timestamp": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            }
            for i in range(3)
        ],
    )
    run = verification.verify_run(db, world.clerk)
    assert {v.invoice_id: v.status for v in run.invoices} == {
        good.id: "passed",
        bad.id: "blocked",
    }, [v.findings for v in run.invoices]
    assert [v.invoice_id for v in run.failing] == [bad.id]
    assert [f.check for f in run.failing[0].findings] == ["po_quantity"]
    leaks = {f.check: f for f in run.unattached}
    assert set(leaks) == {"unbilled_subscription", "unbilled_milestone", "unbilled_usage"}
    assert leaks["unbilled_subscription"].where.subject_id == subscription.id
    assert leaks["unbilled_milestone"].what.startswith("Project: milestone Go-live: completed on")
    assert "3 usage events of metric api_calls for customer K-404 wait in quarantine" in (
        leaks["unbilled_usage"].what
    )
    assert (run.blocking, run.warnings) == (1, 3)
    count = _discrepancy_count(db, world.admin)
    assert count == 4
    again = verification.verify_run(db, world.clerk)
    assert (again.blocking, again.warnings) == (1, 3)
    assert _discrepancy_count(db, world.admin) == count
    # Billing the subscription and the milestone closes their discrepancies on the next run.
    billing.run_billing(db, world.admin, datetime.now(UTC))
    after = verification.verify_run(db, world.clerk)
    assert {f.check for f in after.unattached} == {"unbilled_usage"}
    sub_row = discrepancies.get_discrepancy(
        db, world.admin, run.discrepancies[leaks["unbilled_subscription"].key]
    )
    assert sub_row.discrepancy.status == "resolved"


def test_verifying_names_bad_invoice_ids_and_respects_tenancy(world: World) -> None:
    db = world.db
    draft = world.draft(world.clerk, world.licences(), po_number=None)
    stranger = make_org(db)
    with pytest.raises(NotFound):
        verification.verify_invoice(db, stranger, draft.id)
    with pytest.raises(NotFound):
        verification.request_override(db, stranger, draft.id, "x")
    with pytest.raises(NotFound, match="invoice_ids: invoice inv_nope not found"):
        verification.verify_run(db, world.clerk, ["inv_nope"])
    with pytest.raises(NotFound, match="invoice_ids"):
        verification.verify_run(db, stranger, [draft.id])
    viewer = world.key("auditor", Role.VIEWER)
    with pytest.raises(Forbidden):
        verification.verify_invoice(db, viewer, draft.id)
    assert verification.verify_run(db, stranger).invoices == ()


def test_issued_invoices_can_be_verified_again(world: World) -> None:
    db = world.db
    world.po()
    draft = world.draft(world.clerk, world.licences("20"))
    issued = invoices.issue_invoice(db, world.clerk, draft.id)
    # Checked again, the invoice is compared with the PO as it was before it used it.
    result = verification.verify_invoice(db, world.clerk, issued.id)
    assert result.status == "passed" and result.invoice_number == issued.number


def _discrepancy_count(db: Database, actor: Actor) -> int:
    with db.reading() as session:
        return session.scalar(
            select(func.count())
            .select_from(Discrepancy)
            .where(Discrepancy.organization_id == actor.organization_id)
        )


def test_amounts_on_discrepancies_are_exact(world: World) -> None:
    db = world.db
    world.po(
        lines=[{"product": world.licence.id, "quantity": "1000000", "unit_price": "0.0006"}],
        ceiling=None,
    )
    draft = world.draft(world.clerk, world.licences("100000", "0.00061"))
    [finding] = verification.verify_invoice(db, world.clerk, draft.id).findings
    assert (finding.expected, finding.actual) == ("0.0006", "0.00061")
    with db.reading() as session:
        total = session.scalar(select(Invoice.total_minor).where(Invoice.id == draft.id))
    assert total == 6100  # 100000 x 0.00061 = 61.00
    assert Decimal("100000") * Decimal("0.00061") == Decimal("61.00000")


def test_usage_that_arrived_after_its_period_was_invoiced_is_unbilled(world: World) -> None:
    db = world.db
    catalog.create_price(
        db,
        world.admin,
        {
            "code": "licence-monthly",
            "product_id": world.licence.id,
            "currency": "USD",
            "terms": {"model": "flat", "amount": "99"},
            "effective_from": datetime(2020, 1, 1, tzinfo=UTC),
        },
    )
    plan = catalog.create_plan(
        db,
        world.admin,
        {"code": "basic", "name": "Basic", "currency": "USD", "price_codes": ["licence-monthly"]},
    )
    subscription = subscriptions.create_subscription(
        db,
        world.admin,
        {
            "customer_id": world.customer.id,
            "plan_id": plan.id,
            "quantity": 1,
            "start_at": datetime.now(UTC) - timedelta(days=2),
        },
    )
    [draft_id] = billing.run_billing(db, world.admin, datetime.now(UTC)).invoice_ids
    issued = invoices.issue_invoice(db, world.admin, draft_id)
    from tallybook.db.models import LateUsagePeriod, SubscriptionPeriodInvoice

    with db.transaction() as session:
        guard = session.scalars(
            select(SubscriptionPeriodInvoice).where(
                SubscriptionPeriodInvoice.subscription_id == subscription.id
            )
        ).one()
        # What ingestion records when an event lands in a period already invoiced.
        session.add(
            LateUsagePeriod(
                subscription_id=subscription.id,
                period_start=guard.period_start,
                organization_id=world.admin.organization_id,
                period_end=guard.period_end,
                detected_at=datetime.now(UTC),
            )
        )
    run = verification.verify_run(db, world.clerk)
    [late] = [f for f in run.unattached if f.check == "unbilled_usage"]
    assert late.severity.value == "warning"
    assert f"usage events of subscription {subscription.id} arrived after" in late.what
    assert f"was invoiced ({issued.number}) and are not billed yet" in late.what


def test_hours_are_matched_only_where_time_sheets_are_kept(world: World) -> None:
    db = world.db
    advisory = catalog.create_product(
        db, world.admin, {"code": "advisory", "name": "Advisory", "unit_label": "hours"}
    )
    draft = world.draft(
        world.clerk,
        {
            "description": "Advisory",
            "product_id": advisory.id,
            "quantity": "14.5",
            "unit_price": "150",
        },
        po_number=None,
    )
    # Nobody records time for advisory work: nothing to match the 14.5 hours with.
    assert verification.verify_invoice(db, world.clerk, draft.id).findings == ()
    entry = time_sheets.create_time_entry(
        db,
        world.clerk,
        {
            "customer_id": world.customer.id,
            "worker": "Ana",
            "work_date": (date.today() - timedelta(days=40)).isoformat(),
            "hours": "2",
            "product_id": advisory.id,
        },
    )
    assert entry.status == "draft"
    # Once time is kept for it, typed-in hours must match the month's approved time.
    [finding] = verification.verify_invoice(db, world.clerk, draft.id).findings
    assert (finding.check, finding.severity.value) == ("time_hours", "blocking")
    assert "bills 14.5 hours but the approved time sheets show 0" in finding.what
