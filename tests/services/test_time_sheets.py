"""Time sheets and service reports through the services: entry, import, approval by another
manager, and billing through charges up to the issued invoice."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import make_org
from sqlalchemy import func, select

from tallybook.db.models import Charge, ServiceReport, TimeEntry
from tallybook.services import (
    billing,
    catalog,
    contracts,
    customers,
    invoices,
    time_sheets,
)
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
)
from tallybook.services.organizations import create_api_key


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.admin = make_org(db)
        org = self.admin.organization_id
        self.manager = Actor(
            org, create_api_key(db, self.admin, "lead", "billing_manager").id, Role.BILLING_MANAGER
        )
        self.clerk = Actor(
            org, create_api_key(db, self.admin, "clerk", "billing_clerk").id, Role.BILLING_CLERK
        )
        catalog.create_tax_rate(
            db,
            self.admin,
            {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"},
        )
        self.consulting = catalog.create_product(
            db, self.admin, {"code": "consulting", "name": "Consulting"}
        )
        self.repair = catalog.create_product(db, self.admin, {"code": "repair", "name": "Repair"})
        catalog.create_price(
            db,
            self.admin,
            {
                "code": "repair-visit",
                "product_id": self.repair.id,
                "currency": "EUR",
                "effective_from": datetime(2020, 1, 1, tzinfo=UTC),
                "terms": {"model": "per_unit", "amount": "180.00"},
            },
        )
        self.customer = customers.create_customer(
            db,
            self.admin,
            {"legal_name": "Kunde AG", "country": "DE", "currency": "EUR", "external_id": "K-1"},
        )
        self.contract = contracts.create_contract(
            db,
            self.admin,
            {
                "customer_id": self.customer.id,
                "reference": "SOW-1",
                "name": "Rollout",
                "start_date": "2026-01-01",
                "prices": [
                    {
                        "product_id": self.consulting.id,
                        "unit_price": "95.00",
                        "valid_from": "2026-01-01",
                    },
                    {
                        "product_id": self.consulting.id,
                        "unit_price": "99.50",
                        "valid_from": "2026-02-01",
                    },
                ],
            },
        )

    def time(self, actor: Actor, on: str, amount: str, **extra: object) -> TimeEntry:
        values = {
            "customer_id": self.customer.id,
            "contract_id": "SOW-1",
            "worker": "Jana Novak",
            "work_date": on,
            "hours": amount,
            "product_id": "consulting",
            **extra,
        }
        return time_sheets.create_time_entry(self.db, actor, values)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def after_now() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


def test_entry_approval_by_another_manager(world: World) -> None:
    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "7.5", reference="TICKET-11")
    assert (entry.status, entry.hours, entry.entered_by) == (
        "draft",
        Decimal("7.5"),
        world.clerk.key_id,
    )
    with pytest.raises(Forbidden):
        time_sheets.approve_time_entries(db, world.clerk, [entry.id])
    own = world.time(world.manager, "2026-01-06", "2")
    with pytest.raises(Forbidden, match="another manager"):
        time_sheets.approve_time_entries(db, world.manager, [entry.id, own.id])
    # All or none: the clerk's entry was not approved by the refused call.
    assert time_sheets.get_time_entry(db, world.manager, entry.id).status == "draft"
    [approved] = time_sheets.approve_time_entries(db, world.manager, [entry.id], "checked")
    assert (approved.status, approved.approved_by) == ("approved", world.manager.key_id)
    with pytest.raises(Conflict, match="already approved"):
        time_sheets.reject_time_entries(db, world.admin, [entry.id], "late")
    with pytest.raises(InvalidInput, match="reason"):
        time_sheets.reject_time_entries(db, world.admin, [own.id], "")
    [rejected] = time_sheets.reject_time_entries(db, world.admin, [own.id], "not for this client")
    assert (rejected.status, rejected.review_note) == ("rejected", "not for this client")


def test_bad_entries_name_the_field(world: World) -> None:
    cases = [
        ({"hours": "0"}, "hours"),
        ({"hours": "24.5"}, "hours"),
        ({"hours": 7.5}, "hours"),
        ({"work_date": "5.1.2026"}, "work_date"),
        ({"worker": " "}, "worker"),
        ({"product_id": "nope"}, "product"),
        ({"contract_id": "SOW-404"}, "contract"),
    ]
    for extra, field in cases:
        with pytest.raises(InvalidInput) as error:
            world.time(world.clerk, "2026-01-05", "1", **extra)
        assert error.value.field == field, (extra, error.value.detail)


def test_list_by_customer_contract_period_and_status(world: World) -> None:
    db = world.db
    a = world.time(world.clerk, "2026-01-05", "1")
    b = world.time(world.clerk, "2026-01-20", "2")
    c = world.time(world.clerk, "2026-02-03", "3", contract_id=None)
    time_sheets.approve_time_entries(db, world.manager, [b.id])
    january, _ = time_sheets.list_time_entries(
        db, world.clerk, date_from="2026-01-01", date_to="2026-01-31"
    )
    assert {e.id for e in january} == {a.id, b.id}
    approved, _ = time_sheets.list_time_entries(db, world.clerk, status="approved")
    assert [e.id for e in approved] == [b.id]
    on_contract, _ = time_sheets.list_time_entries(db, world.clerk, contract_id=world.contract.id)
    assert {e.id for e in on_contract} == {a.id, b.id}
    for_customer, _ = time_sheets.list_time_entries(db, world.clerk, customer_id=world.customer.id)
    assert {e.id for e in for_customer} == {a.id, b.id, c.id}
    page, cursor = time_sheets.list_time_entries(db, world.clerk, limit=2)
    rest, end = time_sheets.list_time_entries(db, world.clerk, limit=2, after=cursor)
    assert len(page) == 2 and len(rest) == 1 and end is None
    with pytest.raises(InvalidInput):
        time_sheets.list_time_entries(db, world.clerk, status="done")


def test_approved_time_is_billed_at_the_contract_price_and_the_invoice_recorded(
    world: World,
) -> None:
    db = world.db
    january = [world.time(world.clerk, f"2026-01-{d:02d}", "7.5") for d in (5, 6)]
    february = world.time(world.clerk, "2026-02-02", "4.25")
    pending = world.time(world.clerk, "2026-02-03", "8")
    time_sheets.approve_time_entries(db, world.manager, [e.id for e in [*january, february]])
    charges = time_sheets.bill_time(db, world.clerk, world.customer.id)
    assert sorted((c.quantity, c.unit_price) for c in charges) == [
        (Decimal("4.25"), Decimal("99.50")),
        (Decimal("15.0"), Decimal("95.00")),
    ]
    assert {c.contract_id for c in charges} == {world.contract.id}
    with pytest.raises(Conflict, match="no approved, unbilled"):
        time_sheets.bill_time(db, world.clerk, world.customer.id)
    run = billing.run_billing(db, world.clerk, after_now())
    [invoice_id] = run.invoice_ids
    invoice, lines = invoices.get_invoice(db, world.clerk, invoice_id)
    # 15 h x 95.00 + 4.25 h x 99.50 = 1425.00 + 422.875 -> 422.88; 1847.88 net
    assert sorted(line.subtotal_minor for line in lines) == [42_288, 142_500]
    assert time_sheets.get_time_entry(db, world.clerk, january[0].id).billed_invoice_id is None
    invoices.issue_invoice(db, world.manager, invoice_id)
    for entry in [*january, february]:
        assert time_sheets.get_time_entry(db, world.clerk, entry.id).billed_invoice_id == invoice_id
    assert time_sheets.get_time_entry(db, world.clerk, pending.id).billed_invoice_id is None
    billed, _ = time_sheets.list_time_entries(db, world.clerk, billed=True)
    assert len(billed) == 3


def test_a_discarded_draft_releases_the_time_for_the_next_run(world: World) -> None:
    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "2")
    time_sheets.approve_time_entries(db, world.manager, [entry.id])
    time_sheets.bill_time(db, world.clerk, world.customer.id, through="2026-01-31")
    [draft] = billing.run_billing(db, world.clerk, after_now()).invoice_ids
    invoices.void_invoice(db, world.manager, draft, "redo")
    [again] = billing.run_billing(db, world.clerk, after_now()).invoice_ids
    invoices.issue_invoice(db, world.manager, again)
    assert time_sheets.get_time_entry(db, world.clerk, entry.id).billed_invoice_id == again


def test_time_without_a_price_needs_a_rate(world: World) -> None:
    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "3", contract_id=None, service_code="ON-CALL")
    time_sheets.approve_time_entries(db, world.manager, [entry.id])
    with pytest.raises(InvalidInput, match="give a rate") as error:
        time_sheets.bill_time(db, world.clerk, world.customer.id)
    assert error.value.field == "rate"
    [charge] = time_sheets.bill_time(db, world.clerk, world.customer.id, rate="120.00")
    assert (charge.quantity, charge.unit_price, charge.details["price_source"]) == (
        Decimal(3),
        Decimal("120.00"),
        "rate given when billing",
    )
    assert charge.description.startswith("Consulting: 3 h")


def test_service_reports_are_billed_at_the_catalog_price(world: World) -> None:
    db = world.db
    report = time_sheets.create_service_report(
        db,
        world.clerk,
        {
            "customer_id": world.customer.id,
            "product_id": world.repair.id,
            "service_date": "2026-01-09",
            "quantity": "2",
            "reference": "SR-1001",
            "performed_by": "Tech 4",
        },
    )
    with pytest.raises(Conflict):
        time_sheets.bill_service_reports(db, world.clerk, world.customer.id)
    time_sheets.approve_service_reports(db, world.manager, [report.id])
    [charge] = time_sheets.bill_service_reports(db, world.clerk, world.customer.id)
    assert (charge.quantity, charge.unit_price) == (Decimal(2), Decimal("180.00"))
    assert charge.details["reference"] == "SR-1001"
    [invoice_id] = billing.run_billing(db, world.clerk, after_now()).invoice_ids
    invoices.issue_invoice(db, world.manager, invoice_id)
    assert (
        time_sheets.get_service_report(db, world.clerk, report.id).billed_invoice_id == invoice_id
    )


TIME_CSV = b"""Worker,Date,Hours,Customer,Contract,Product,Service,Description,Reference,Approved
Jana Novak,2026-01-05,7.5,K-1,SOW-1,consulting,,Workshop prep,T-1,yes
Jana Novak,2026-01-06,6,K-1,SOW-1,consulting,,Workshop,T-2,no
Piotr Lis,2026-01-06,2.25,K-1,,,SUPPORT,Hotline,,
"""


def test_time_sheet_csv_import(world: World) -> None:
    db = world.db
    result = time_sheets.import_time_entries(db, world.manager, TIME_CSV, file_name="jan.csv")
    assert (result.format, len(result.created), result.approved) == ("csv", 3, 1)
    first, second, third = result.created
    assert (first.status, first.approved_by, first.source) == (
        "approved",
        world.manager.key_id,
        "csv",
    )
    assert (second.status, second.hours) == ("draft", Decimal(6))
    assert (third.contract_id, third.service_code, third.hours) == (
        None,
        "SUPPORT",
        Decimal("2.25"),
    )
    with pytest.raises(Conflict, match="imported before"):
        time_sheets.import_time_entries(db, world.manager, TIME_CSV, file_name="jan.csv")


def test_a_clerk_cannot_import_approved_time_and_bad_rows_import_nothing(world: World) -> None:
    db = world.db
    with pytest.raises(Forbidden, match="row 2, approved"):
        time_sheets.import_time_entries(db, world.clerk, TIME_CSV)
    cases = [
        (TIME_CSV.replace(b",7.5,", b",7,5,"), "row 2"),
        (TIME_CSV.replace(b"2026-01-06,6,", b"2026-01-06,26,"), "row 3, hours"),
        (TIME_CSV.replace(b"2.25,K-1", b"2.25,K-9"), "row 4, customer: no customer"),
        (
            TIME_CSV.replace(
                b"K-1,SOW-1,consulting,,Workshop,", b"K-1,SOW-9,consulting,,Workshop,"
            ),
            "row 3, contract: no contract 'SOW-9'",
        ),
        (TIME_CSV.replace(b"2026-01-05", b"05/01/2026"), "row 2, date"),
        (TIME_CSV.replace(b",yes\n", b",maybe\n"), "row 2, approved"),
        (TIME_CSV.replace(b"Hours", b"Hourz"), "row 1: unknown column 'Hourz'"),
        (b"", "empty"),
    ]
    for data, message in cases:
        with pytest.raises(InvalidInput) as error:
            time_sheets.import_time_entries(db, world.manager, data)
        assert message in error.value.detail, error.value.detail
    with db.reading() as session:
        count = session.scalar(
            select(func.count())
            .select_from(TimeEntry)
            .where(TimeEntry.organization_id == world.admin.organization_id)
        )
    assert count == 0


def test_service_reports_import_from_xlsx(world: World) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(
        ["Service date", "Qty", "Product", "Customer", "Reference", "Technician", "Status"]
    )
    sheet.append([date(2026, 1, 9), 2, "repair", "K-1", "SR-1", "Tech 4", "approved"])
    sheet.append([datetime(2026, 1, 10), 1.5, "repair", world.customer.id, "SR-2", None, "draft"])
    buffer = io.BytesIO()
    book.save(buffer)
    result = time_sheets.import_service_reports(
        world.db, world.manager, buffer.getvalue(), file_name="reports.xlsx"
    )
    assert (result.format, result.approved) == ("xlsx", 1)
    assert [(r.service_date, r.quantity, r.status) for r in result.created] == [
        (date(2026, 1, 9), Decimal(2), "approved"),
        (date(2026, 1, 10), Decimal("1.5"), "draft"),
    ]
    sheet.append([date(2026, 1, 11), 1 / 3, "repair", "K-1", "SR-3", None, "no"])
    buffer = io.BytesIO()
    book.save(buffer)
    with pytest.raises(InvalidInput, match="row 4: the number 0.3333333333333333 carries float"):
        time_sheets.import_service_reports(world.db, world.manager, buffer.getvalue())
    with world.db.reading() as session:
        count = session.scalar(
            select(func.count())
            .select_from(ServiceReport)
            .where(ServiceReport.organization_id == world.admin.organization_id)
        )
    assert count == 2


def test_another_organisation_sees_nothing(world: World) -> None:
    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "1")
    intruder = make_org(db)
    with pytest.raises(NotFound):
        time_sheets.get_time_entry(db, intruder, entry.id)
    with pytest.raises(NotFound):
        time_sheets.approve_time_entries(db, intruder, [entry.id])
    with pytest.raises(NotFound):
        time_sheets.bill_time(db, intruder, world.customer.id)
    with pytest.raises(NotFound):
        time_sheets.create_time_entry(
            db,
            intruder,
            {
                "customer_id": world.customer.id,
                "worker": "x",
                "work_date": "2026-01-01",
                "hours": 1,
            },
        )
    assert time_sheets.list_time_entries(db, intruder)[0] == []
    with db.reading() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Charge)
                .where(Charge.organization_id == intruder.organization_id)
            )
            == 0
        )


def test_voiding_an_issued_invoice_unbills_its_time(world: World) -> None:
    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "2")
    time_sheets.approve_time_entries(db, world.manager, [entry.id])
    time_sheets.bill_time(db, world.clerk, world.customer.id)
    [first] = billing.run_billing(db, world.clerk, after_now()).invoice_ids
    invoices.issue_invoice(db, world.manager, first)
    invoices.void_invoice(db, world.manager, first, "billed to the wrong entity")
    released = time_sheets.get_time_entry(db, world.clerk, entry.id)
    assert (released.billed_invoice_id, released.charge_id) == (None, None)
    [charge] = time_sheets.bill_time(db, world.clerk, world.customer.id)
    assert charge.quantity == Decimal(2)
    [second] = billing.run_billing(db, world.clerk, after_now()).invoice_ids
    invoices.issue_invoice(db, world.manager, second)
    assert time_sheets.get_time_entry(db, world.clerk, entry.id).billed_invoice_id == second


def test_every_change_is_audited_with_before_and_after(world: World) -> None:
    from tallybook.db.models import AuditEvent

    db = world.db
    entry = world.time(world.clerk, "2026-01-05", "2")
    time_sheets.approve_time_entries(db, world.manager, [entry.id], "fine")
    with db.reading() as session:
        events = {
            e.action: e
            for e in session.scalars(select(AuditEvent).where(AuditEvent.entity_id == entry.id))
        }
    assert events["time_entry.created"].data["after"]["hours"] == "2"
    approved = events["time_entry.approved"]
    assert approved.actor == world.manager.key_id
    assert approved.data["before"]["status"] == "draft"
    assert approved.data["after"]["status"] == "approved"
