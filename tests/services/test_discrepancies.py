"""The discrepancy workflow through the services, on SQLite and PostgreSQL: disputes on an
invoice or a line pause dunning, resolving issues the credit or debit note (amounts to the cent)
and keeps the customer's message, waiving needs a reason, the tenancy wall holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_org
from sqlalchemy import select

from tallybook.db.models import CreditNote, DebitNote, Discrepancy, DiscrepancyComment
from tallybook.services import (
    approvals,
    billing_health,
    catalog,
    customers,
    discrepancies,
    dunning,
    invoices,
    organizations,
    verification,
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


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.admin = make_org(db)
        self.manager = self.key("lead", Role.BILLING_MANAGER)
        self.clerk = self.key("clerk", Role.BILLING_CLERK)
        self.audit = catalog.create_product(db, self.admin, {"code": "audit", "name": "Audit"})
        self.customer = customers.create_customer(
            db,
            self.admin,
            {"legal_name": "Kunde AG", "country": "US", "currency": "USD", "external_id": "K-1"},
        )

    def key(self, name: str, role: Role) -> Actor:
        key = organizations.create_api_key(self.db, self.admin, name, role.value)
        return Actor(self.admin.organization_id, key.id, role)

    def issued(self, *prices: str):  # type: ignore[no-untyped-def]
        draft = invoices.create_draft(self.db, self.clerk, self.customer.id)
        for index, price in enumerate(prices):
            invoices.add_line(
                self.db,
                self.clerk,
                draft.id,
                {
                    "description": f"Audit day {index + 1}",
                    "product_id": self.audit.id,
                    "quantity": "2",
                    "unit_price": price,
                },
            )
        return invoices.issue_invoice(self.db, self.clerk, draft.id)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def invoice_now(world: World, invoice_id: str):  # type: ignore[no-untyped-def]
    return invoices.get_invoice(world.db, world.admin, invoice_id)[0]


def test_a_dispute_on_a_line_is_worked_and_resolved_with_a_credit_note(world: World) -> None:
    db = world.db
    invoice = world.issued("400.00", "150.00")  # 800.00 + 300.00
    view = discrepancies.open_dispute(
        db, world.clerk, invoice.id, "we agreed one day only", line="2"
    )
    row = view.discrepancy
    assert (row.source, row.check, row.status) == ("dispute", "customer_dispute", "open")
    assert row.what == (
        f"Kunde AG disputes invoice {invoice.number} line 2 (Audit day 2): we agreed one day only"
    )
    assert row.location["line_position"] == 2 and row.invoice_line_id is not None
    disputed = invoice_now(world, invoice.id)
    assert disputed.disputed_at is not None

    discrepancies.assign(db, world.clerk, row.id, "lead")
    discrepancies.comment(db, world.clerk, row.id, "checked the time sheet: one day")
    working = discrepancies.investigate(db, world.manager, row.id)
    assert (working.discrepancy.status, working.discrepancy.assignee_key_id) == (
        "investigating",
        world.manager.key_id,
    )
    assert [c.body for c in working.comments] == ["checked the time sheet: one day"]
    with pytest.raises(Forbidden):
        discrepancies.resolve(
            db, world.clerk, row.id, {"resolution": "credit_note", "note": "one day too many"}
        )
    done = discrepancies.resolve(
        db,
        world.manager,
        row.id,
        {
            "resolution": "credit_note",
            "note": "one audit day was billed twice",
            "lines": [{"line_id": "2", "quantity": "1"}],
        },
    ).discrepancy
    assert (done.status, done.resolution) == ("resolved", "credit_note")
    with db.reading() as session:
        note = session.get(CreditNote, done.credit_note_id)
    assert note.total_minor == 15_000 and note.invoice_id == invoice.id
    after = invoice_now(world, invoice.id)
    assert (after.amount_due_minor, after.disputed_at) == (95_000, None)
    assert done.customer_message == (
        f"We reviewed your query about invoice {invoice.number} (line 2). One audit day was "
        f"billed twice. We have issued credit note {note.number} for 150.00 USD; the amount "
        "now due on the invoice is 950.00 USD."
    )
    with pytest.raises(Conflict, match="already resolved"):
        discrepancies.waive(db, world.manager, row.id, "again")


def test_resolving_with_a_debit_note(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    row = discrepancies.open_dispute(db, world.clerk, invoice.id, "travel missing").discrepancy
    done = discrepancies.resolve(
        db,
        world.manager,
        row.id,
        {
            "resolution": "debit_note",
            "note": "travel to the site was left off",
            "lines": [{"description": "Travel", "quantity": "1", "unit_price": "80.50"}],
        },
    ).discrepancy
    with db.reading() as session:
        note = session.get(DebitNote, done.debit_note_id)
    assert note.total_minor == 8_050
    assert invoice_now(world, invoice.id).amount_due_minor == 28_050
    assert f"We have issued debit note {note.number} for 80.50 USD" in done.customer_message


def test_waiving_a_dispute_tells_the_customer_nothing_changes(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    first = discrepancies.open_dispute(db, world.clerk, invoice.id, "price too high").discrepancy
    second = discrepancies.open_dispute(db, world.clerk, invoice.id, "late", line="1").discrepancy
    with pytest.raises(InvalidInput, match="reason"):
        discrepancies.waive(db, world.clerk, first.id, " ")
    waived = discrepancies.waive(db, world.clerk, first.id, "the price is the contracted one")
    assert waived.discrepancy.customer_message == (
        f"We reviewed your query about invoice {invoice.number} and found it correct: the price "
        "is the contracted one. Nothing changes."
    )
    # The second dispute is still open: dunning stays paused.
    assert invoice_now(world, invoice.id).disputed_at is not None
    discrepancies.waive(db, world.clerk, second.id, "delivered on time")
    assert invoice_now(world, invoice.id).disputed_at is None


def test_the_dunning_dispute_commands_work_the_discrepancy(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    dunning.dispute_invoice(db, world.clerk, invoice.id, "wrong quantity")
    rows, _ = discrepancies.list_discrepancies(db, world.clerk, source="dispute")
    assert [(r.invoice_id, r.status) for r in rows] == [(invoice.id, "open")]
    dunning.resolve_dispute(db, world.clerk, invoice.id, "explained on the phone")
    [row] = discrepancies.list_discrepancies(db, world.clerk, source="dispute")[0]
    assert (row.status, row.resolution_note) == ("waived", "explained on the phone")


def test_a_credit_note_needing_approval_is_held_and_linked_later(world: World) -> None:
    db = world.db
    with db.transaction() as session:
        from tallybook.db.models import Organization

        session.get(Organization, world.admin.organization_id).credit_note_approval_thresholds = {
            "USD": "50.00"
        }
    invoice = world.issued("100.00")
    row = discrepancies.open_dispute(db, world.clerk, invoice.id, "not ordered").discrepancy
    with pytest.raises(approvals.ApprovalRequired) as held:
        discrepancies.resolve(
            db, world.manager, row.id, {"resolution": "credit_note", "note": "not ordered"}
        )
    view = discrepancies.get_discrepancy(db, world.manager, row.id)
    assert view.discrepancy.status == "investigating"
    assert "credit note waiting for approval" in view.comments[-1].body
    approval = approvals.decide_approval(db, world.admin, held.value.approval_id, "approved", "ok")
    with db.reading() as session:
        note = session.scalars(select(CreditNote).where(CreditNote.invoice_id == invoice.id)).one()
    assert approval.result_id == note.id
    done = discrepancies.resolve(
        db,
        world.manager,
        row.id,
        {"resolution": "credit_note", "note": "not ordered", "credit_note_id": note.number},
    ).discrepancy
    assert (done.status, done.credit_note_id) == ("resolved", note.id)
    assert invoice_now(world, invoice.id).disputed_at is None


def test_bad_resolutions_are_refused_with_the_field(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    row = discrepancies.open_dispute(db, world.clerk, invoice.id, "x").discrepancy
    with pytest.raises(InvalidInput) as unknown:
        discrepancies.resolve(db, world.manager, row.id, {"resolution": "refund", "note": "x"})
    assert unknown.value.field == "resolution"
    with pytest.raises(InvalidInput) as silent:
        discrepancies.resolve(db, world.manager, row.id, {"resolution": "credit_note"})
    assert silent.value.field == "note"
    with pytest.raises(Conflict, match="adjust_draft is for a draft"):
        discrepancies.resolve(
            db, world.manager, row.id, {"resolution": "adjust_draft", "note": "x"}
        )
    with pytest.raises(InvalidInput) as lines:
        discrepancies.resolve(db, world.manager, row.id, {"resolution": "debit_note", "note": "x"})
    assert lines.value.field == "lines"
    with pytest.raises(InvalidInput, match="line: invoice .* has no line 5"):
        discrepancies.open_dispute(db, world.clerk, invoice.id, "x", line="5")
    with pytest.raises(InvalidInput, match="assignee"):
        discrepancies.assign(db, world.clerk, row.id, "nobody")
    draft = invoices.create_draft(db, world.clerk, world.customer.id)
    with pytest.raises(Conflict, match="only an issued invoice"):
        discrepancies.open_dispute(db, world.clerk, draft.id, "x")
    # Nothing was half-written: the dispute is still open, with no document.
    with db.reading() as session:
        stored = session.get(Discrepancy, row.id)
        assert (stored.status, stored.credit_note_id, stored.debit_note_id) == ("open", None, None)
        assert (
            session.scalars(select(DebitNote).where(DebitNote.invoice_id == invoice.id)).all() == []
        )


def test_adjusting_a_draft_needs_the_draft_corrected(world: World) -> None:
    db = world.db
    with db.transaction() as session:
        from tallybook.db.models import Organization

        session.get(Organization, world.admin.organization_id).near_duplicate_days = 7
    first = world.issued("100.00")
    draft = invoices.create_draft(db, world.clerk, world.customer.id)
    invoices.add_line(
        db, world.clerk, draft.id, {"description": "Audit", "quantity": "2", "unit_price": "100.00"}
    )
    [finding] = verification.verify_invoice(db, world.clerk, draft.id).findings
    assert finding.check == "near_duplicate" and finding.where.other_invoice_id == first.id
    [row] = discrepancies.list_discrepancies(db, world.clerk, invoice_id=draft.id)[0]
    with pytest.raises(Conflict, match="still shows this mistake"):
        discrepancies.resolve(db, world.clerk, row.id, {"resolution": "adjust_draft", "note": "x"})
    invoices.add_line(
        db, world.clerk, draft.id, {"description": "Report", "quantity": "1", "unit_price": "40"}
    )
    done = discrepancies.resolve(
        db, world.clerk, row.id, {"resolution": "adjust_draft", "note": "the report was missing"}
    ).discrepancy
    assert (done.status, done.customer_message) == (
        "resolved",
        "Before sending your invoice, we corrected it: the report was missing.",
    )


def test_listing_filters_and_the_tenancy_wall(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    a = discrepancies.open_dispute(db, world.clerk, invoice.id, "a").discrepancy
    b = discrepancies.open_dispute(db, world.clerk, invoice.id, "b").discrepancy
    discrepancies.assign(db, world.clerk, b.id, world.manager.key_id)
    discrepancies.investigate(db, world.manager, b.id)
    ids = lambda rows: [r.id for r in rows[0]]  # noqa: E731
    assert ids(discrepancies.list_discrepancies(db, world.clerk, status="open")) == [a.id]
    assert ids(discrepancies.list_discrepancies(db, world.clerk, status="investigating")) == [b.id]
    assert sorted(
        ids(discrepancies.list_discrepancies(db, world.clerk, status="active"))
    ) == sorted([a.id, b.id])
    assert ids(
        discrepancies.list_discrepancies(db, world.clerk, assignee=world.manager.key_id)
    ) == [b.id]
    assert ids(discrepancies.list_discrepancies(db, world.clerk, assignee="none")) == [a.id]
    later = datetime.now(UTC) + timedelta(days=10)
    assert (
        len(ids(discrepancies.list_discrepancies(db, world.clerk, older_than_days=9, as_of=later)))
        == 2
    )
    assert (
        ids(discrepancies.list_discrepancies(db, world.clerk, older_than_days=11, as_of=later))
        == []
    )
    with pytest.raises(InvalidInput, match="status"):
        discrepancies.list_discrepancies(db, world.clerk, status="closed")
    stranger = make_org(db)
    for call in (
        lambda: discrepancies.get_discrepancy(db, stranger, a.id),
        lambda: discrepancies.assign(db, stranger, a.id, None),
        lambda: discrepancies.comment(db, stranger, a.id, "x"),
        lambda: discrepancies.investigate(db, stranger, a.id),
        lambda: discrepancies.resolve(
            db, stranger, a.id, {"resolution": "credit_note", "note": "x"}
        ),
        lambda: discrepancies.waive(db, stranger, a.id, "x"),
        lambda: discrepancies.open_dispute(db, stranger, invoice.id, "x"),
    ):
        with pytest.raises(NotFound):
            call()
    assert discrepancies.list_discrepancies(db, stranger)[0] == []
    viewer = world.key("auditor", Role.VIEWER)
    with pytest.raises(Forbidden):
        discrepancies.comment(db, viewer, a.id, "x")
    with db.reading() as session:
        assert len(session.scalars(select(DiscrepancyComment)).all()) >= 0


def test_billing_health(world: World) -> None:
    db = world.db
    invoice = world.issued("100.00")
    discrepancies.open_dispute(db, world.clerk, invoice.id, "x")
    organizations.update_settings(db, world.admin, {"approval_thresholds": {"USD": "1000.00"}})
    big = invoices.create_draft(db, world.clerk, world.customer.id, {"po_number": None})
    invoices.add_line(
        db, world.clerk, big.id, {"description": "Audit", "quantity": "20", "unit_price": "100"}
    )
    strict = customers.create_customer(
        db,
        world.admin,
        {"legal_name": "Strict Inc", "country": "US", "currency": "USD", "po_required": True},
    )
    failing = invoices.create_draft(db, world.clerk, strict.id)
    invoices.add_line(
        db, world.clerk, failing.id, {"description": "Audit", "quantity": "1", "unit_price": "90"}
    )
    verification.verify_run(db, world.clerk)
    health = billing_health.billing_health(db, world.clerk)
    assert [(w.invoice_id, w.waiting_for) for w in health.waiting] == [
        (big.id, "approval over the threshold")
    ]
    assert [(f.invoice_id, f.checks) for f in health.failing] == [(failing.id, ("po_missing",))]
    assert health.discrepancies_by_age["0-7 days"]["blocking"] == 2
    later = billing_health.billing_health(
        db, world.clerk, now=datetime.now(UTC) + timedelta(days=40)
    )
    assert later.discrepancies_by_age["31-90 days"]["blocking"] == 2
    assert later.discrepancies_by_age["0-7 days"] == {"blocking": 0, "warning": 0}
    # An override waiting for approval shows as such.
    verification.request_override(db, world.clerk, failing.id, "PO number comes by mail")
    health = billing_health.billing_health(db, world.clerk)
    waiting = {w.invoice_id: w.waiting_for for w in health.waiting}
    assert waiting[failing.id] == "override of blocking findings"
