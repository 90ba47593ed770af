"""Approvals and segregation of duties through the services, on SQLite and PostgreSQL: nobody
approves what they created or asked for, held credit notes and write-offs are carried out on
approval (amounts to the cent), and an override of a blocking finding needs a manager's yes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tallybook.db.models import ApprovalRequest, AuditEvent, CreditNote, Invoice
from tallybook.services import approvals, audit_trail, credit_notes, customers, invoices
from tallybook.services.approvals import ApprovalRequired
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
)
from tallybook.services.organizations import create_api_key, create_organization


@dataclass
class Team:
    admin: Actor
    manager: Actor
    second_manager: Actor
    clerk: Actor
    viewer: Actor
    customer_id: str


def team(db: Database, **settings: object) -> Team:
    org, key = create_organization(
        db,
        "Kanzlei Roth",
        "EUR",
        settings={"approval_thresholds": {"EUR": "1000.00"}, **settings},
    )
    admin = Actor(org.id, key.id, Role.ADMIN)

    def member(role: str, name: str) -> Actor:
        return Actor(org.id, create_api_key(db, admin, name, role).id, Role(role))

    customer = customers.create_customer(
        db, admin, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    return Team(
        admin,
        member("billing_manager", "Maria (manager)"),
        member("billing_manager", "Jonas (manager)"),
        member("billing_clerk", "Lea (clerk)"),
        member("viewer", "Auditor"),
        customer.id,
    )


def draft(db: Database, actor: Actor, customer_id: str, price: str) -> Invoice:
    row = invoices.create_draft(db, actor, customer_id)
    invoices.add_line(db, actor, row.id, {"description": "Advisory", "unit_price": price})
    return invoices.get_invoice(db, actor, row.id)[0]


def pending(db: Database, actor: Actor) -> list[ApprovalRequest]:
    return approvals.list_approvals(db, actor, status="pending")[0]


def test_a_creator_cannot_approve_or_issue_their_own_draft_above_the_threshold(
    db: Database,
) -> None:
    t = team(db)
    invoice = draft(db, t.manager, t.customer_id, "2500.00")
    assert invoice.approval_status == "pending"
    with pytest.raises(Forbidden, match="you created invoice"):
        invoices.approve_invoice(db, t.manager, invoice.id, "looks fine")
    with pytest.raises(ApprovalRequired, match="approval threshold") as held:
        invoices.issue_invoice(db, t.manager, invoice.id)
    assert held.value.status == 403
    [request] = pending(db, t.manager)
    assert held.value.approval_id == request.id and request.id in held.value.detail
    assert (request.subject_type, request.subject_id) == ("invoice", invoice.id)
    assert (request.amount_minor, request.currency) == (250000, "EUR")
    with pytest.raises(Forbidden, match="you asked"):
        approvals.decide_approval(db, t.manager, request.id, "approved", "mine")
    decided = approvals.decide_approval(
        db, t.second_manager, request.id, "approved", "scope agreed in the engagement letter"
    )
    assert (decided.status, decided.decided_by) == ("approved", t.second_manager.key_id)
    assert decided.decision_reason == "scope agreed in the engagement letter"
    issued = invoices.issue_invoice(db, t.manager, invoice.id)
    assert (issued.status, issued.approved_by) == ("issued", t.second_manager.key_id)
    assert issued.total_minor == 250000


def test_a_clerks_draft_waits_for_a_manager_with_a_reason(db: Database) -> None:
    t = team(db)
    invoice = draft(db, t.clerk, t.customer_id, "1000.01")
    with pytest.raises(ApprovalRequired):
        invoices.issue_invoice(db, t.clerk, invoice.id)
    # Asking again changes nothing: the same request still waits.
    with pytest.raises(ApprovalRequired):
        invoices.issue_invoice(db, t.clerk, invoice.id)
    [request] = pending(db, t.clerk)
    with pytest.raises(Forbidden, match="billing_clerk"):
        approvals.decide_approval(db, t.clerk, request.id, "approved", "ok")
    with pytest.raises(InvalidInput, match="reason"):
        approvals.decide_approval(db, t.manager, request.id, "approved", "  ")
    approvals.decide_approval(db, t.manager, request.id, "approved", "matches the PO")
    with pytest.raises(Conflict, match="already approved"):
        approvals.decide_approval(db, t.second_manager, request.id, "rejected", "too late")
    assert invoices.issue_invoice(db, t.clerk, invoice.id).status == "issued"
    # At or below the threshold nobody needs to approve.
    small = draft(db, t.clerk, t.customer_id, "1000.00")
    assert small.approval_status == "not_required"
    assert invoices.issue_invoice(db, t.clerk, small.id).status == "issued"


def test_a_rejected_draft_is_not_issued_until_changed(db: Database) -> None:
    t = team(db)
    invoice = draft(db, t.clerk, t.customer_id, "4000.00")
    request = approvals.ask_for_approval(db, t.clerk, "invoice", invoice.id, "please check")
    approvals.decide_approval(db, t.manager, request.id, "rejected", "hours not agreed")
    with pytest.raises(Conflict, match="hours not agreed"):
        invoices.issue_invoice(db, t.clerk, invoice.id)
    invoices.add_line(db, t.clerk, invoice.id, {"description": "Fix", "unit_price": "-100.00"})
    changed = invoices.get_invoice(db, t.clerk, invoice.id)[0]
    assert changed.approval_status == "pending" and changed.total_minor == 390000
    with pytest.raises(ApprovalRequired):
        invoices.issue_invoice(db, t.clerk, invoice.id)


def test_a_draft_changed_after_asking_must_be_asked_again(db: Database) -> None:
    t = team(db)
    invoice = draft(db, t.clerk, t.customer_id, "3000.00")
    request = approvals.ask_for_approval(db, t.clerk, "invoice", invoice.id, "month end")
    invoices.add_line(db, t.clerk, invoice.id, {"description": "More", "unit_price": "500.00"})
    with pytest.raises(Conflict, match="changed since approval was asked"):
        approvals.decide_approval(db, t.manager, request.id, "approved", "fine")
    again = approvals.ask_for_approval(db, t.clerk, "invoice", invoice.id, "month end, v2")
    assert again.id != request.id and again.amount_minor == 350000
    assert approvals.get_approval(db, t.clerk, request.id).status == "withdrawn"


def test_approving_in_one_step_records_the_request(db: Database) -> None:
    t = team(db)
    invoice = draft(db, t.clerk, t.customer_id, "1500.00")
    approved = invoices.approve_invoice(db, t.manager, invoice.id, "checked against the SOW")
    assert (approved.approval_status, approved.approved_by) == ("approved", t.manager.key_id)
    [request] = approvals.list_approvals(db, t.manager, subject_id=invoice.id)[0]
    assert (request.status, request.requested_by, request.decided_by) == (
        "approved",
        t.clerk.key_id,
        t.manager.key_id,
    )
    with db.reading() as session:
        assert approvals.is_approved(session, t.manager, "invoice", invoice.id)


def test_credit_notes_above_the_limit_are_held_and_carried_out_on_approval(db: Database) -> None:
    t = team(db)
    approvals.set_approval_rules(db, t.admin, {"credit_note": {"EUR": "100.00"}})
    invoice = draft(db, t.clerk, t.customer_id, "800.00")
    invoice = invoices.issue_invoice(db, t.clerk, invoice.id)
    values = {"reason": "two days not worked", "lines": [{"line_id": "1", "amount": "250.00"}]}
    with pytest.raises(ApprovalRequired, match="credit-note approval limit") as held:
        credit_notes.create_credit_note(db, t.manager, invoice.id, values)
    with pytest.raises(ApprovalRequired) as again:
        credit_notes.create_credit_note(db, t.manager, invoice.id, values)
    assert again.value.approval_id == held.value.approval_id
    with db.reading() as session:
        assert session.scalar(select(func.count()).where(CreditNote.invoice_id == invoice.id)) == 0
    request = approvals.get_approval(db, t.manager, held.value.approval_id or "")
    assert (request.subject_type, request.amount_minor) == ("credit_note", 25000)
    with pytest.raises(Forbidden, match="you asked"):
        approvals.decide_approval(db, t.manager, request.id, "approved", "mine")
    done = approvals.decide_approval(db, t.admin, request.id, "approved", "confirmed by phone")
    assert (done.status, done.result_type) == ("approved", "credit_note")
    with db.reading() as session:
        note = session.get(CreditNote, done.result_id)
        credited = session.get(Invoice, invoice.id)
    assert note is not None and note.total_minor == 25000 and note.created_by == t.admin.key_id
    assert (credited.credited_minor, credited.amount_due_minor) == (25000, 55000)
    # Below the limit a credit note is issued at once.
    small = credit_notes.create_credit_note(
        db,
        t.manager,
        invoice.id,
        {"reason": "rounding", "lines": [{"line_id": "1", "amount": "100.00"}]},
    )
    assert small.total_minor == 10000


def test_write_offs_wait_for_a_second_manager(db: Database) -> None:
    t = team(db)
    approvals.set_approval_rules(db, t.admin, {"write_off": {"EUR": "0"}})
    invoice = invoices.issue_invoice(db, t.clerk, draft(db, t.clerk, t.customer_id, "420.50").id)
    with pytest.raises(ApprovalRequired, match="420.50"):
        invoices.mark_uncollectible(db, t.manager, invoice.id, "customer insolvent")
    assert invoices.get_invoice(db, t.manager, invoice.id)[0].status == "issued"
    [request] = pending(db, t.manager)
    approvals.decide_approval(db, t.second_manager, request.id, "approved", "insolvency filed")
    written = invoices.get_invoice(db, t.manager, invoice.id)[0]
    assert (written.status, written.written_off_minor, written.amount_due_minor) == (
        "uncollectible",
        42050,
        0,
    )
    assert approvals.get_approval(db, t.manager, request.id).result_id == invoice.id


def _override_blocking_finding(db: Database, actor: Actor, finding_id: str) -> str:
    """A stand-in for the verification engine: issuing past a blocking finding is refused
    unless overriding it was approved (services.approvals.is_approved)."""
    with db.transaction() as session:
        if not approvals.is_approved(session, actor, "finding_override", finding_id):
            raise Forbidden(f"finding {finding_id} is blocking; overriding it needs approval")
    return "overridden"


def test_overriding_a_blocking_finding_needs_a_managers_approval(db: Database) -> None:
    t = team(db)
    finding = "dsc_standin_po_expired"
    with db.transaction() as session:
        request = approvals.request_approval(
            session,
            t.clerk,
            subject_type="finding_override",
            subject_id=finding,
            reason="the customer extended the PO by e-mail",
        )
    with pytest.raises(Forbidden, match="needs approval"):
        _override_blocking_finding(db, t.clerk, finding)
    with pytest.raises(Forbidden, match="billing_clerk"):
        approvals.decide_approval(db, t.clerk, request.id, "approved", "self-service")
    approvals.decide_approval(db, t.manager, request.id, "rejected", "send the PO first")
    with pytest.raises(Forbidden):
        _override_blocking_finding(db, t.clerk, finding)
    with db.transaction() as session:
        again = approvals.request_approval(
            session,
            t.clerk,
            subject_type="finding_override",
            subject_id=finding,
            reason="PO extension attached",
        )
    approvals.decide_approval(db, t.second_manager, again.id, "approved", "extension seen")
    assert _override_blocking_finding(db, t.clerk, finding) == "overridden"
    with db.reading() as session:
        approval = approvals.approval_of(session, t.clerk, "finding_override", finding)
    assert approval is not None and approval.decided_by == t.second_manager.key_id


def test_another_organisation_sees_nothing(db: Database) -> None:
    t, other = team(db), team(db)
    invoice = draft(db, t.clerk, t.customer_id, "2000.00")
    request = approvals.ask_for_approval(db, t.clerk, "invoice", invoice.id, "please")
    with pytest.raises(NotFound):
        approvals.decide_approval(db, other.manager, request.id, "approved", "sneaky")
    with pytest.raises(NotFound):
        approvals.get_approval(db, other.manager, request.id)
    with pytest.raises(NotFound):
        approvals.ask_for_approval(db, other.clerk, "invoice", invoice.id, "x")
    assert pending(db, other.manager) == []


def test_approval_rules_are_validated_and_admin_only(db: Database) -> None:
    t = team(db)
    rules = approvals.set_approval_rules(
        db, t.admin, {"credit_note": {"eur": "250.5"}, "write_off": {"USD": "0"}}
    )
    assert rules == {
        "invoice": {"EUR": "1000.00"},
        "credit_note": {"EUR": "250.5"},
        "write_off": {"USD": "0"},
        "finding_override": "always",
    }
    assert approvals.approval_rules(db, t.viewer) == rules
    with pytest.raises(Forbidden):
        approvals.set_approval_rules(db, t.manager, {"invoice": {}})
    for bad, field in (
        ({"credit_note": {"EUR": "-1"}}, "credit_note"),
        ({"credit_note": {"XXX": "1"}}, "credit_note.XXX"),
        ({"credit_note": {"EUR": 1.5}}, "credit_note"),
        ({"finding_override": {}}, "finding_override"),
        ({"invoice": "5000"}, "invoice"),
    ):
        with pytest.raises(InvalidInput) as error:
            approvals.set_approval_rules(db, t.admin, bad)
        assert error.value.field == field
    assert approvals.set_approval_rules(db, t.admin, {"invoice": {}})["invoice"] == {}


def test_decisions_are_in_the_audit_trail(db: Database) -> None:
    t = team(db)
    invoice = draft(db, t.clerk, t.customer_id, "1200.00")
    request = approvals.ask_for_approval(db, t.clerk, "invoice", invoice.id, "please")
    approvals.decide_approval(db, t.manager, request.id, "approved", "fine")
    with db.reading() as session:
        events = {
            e.action: e
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.organization_id == t.admin.organization_id)
            )
        }
    assert events["approval.requested"].actor == t.clerk.key_id
    decided = events["approval.approved"]
    assert decided.actor == t.manager.key_id
    assert decided.data["before"]["status"] == "pending"
    assert decided.data["after"] == {
        "status": "approved",
        "decided_by": t.manager.key_id,
        "decision_reason": "fine",
    }
    assert events["invoice.approved"].data["before"] == {
        "approval_status": "pending",
        "approved_by": None,
    }
    assert audit_trail.verify_audit_chain(db, t.admin).report.ok


ROLES = st.sampled_from(["creator", "manager", "second_manager", "clerk", "admin"])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    asker=st.sampled_from(["creator", "clerk"]), deciders=st.lists(ROLES, min_size=1, max_size=4)
)
def test_whoever_tries_nobody_approves_their_own_work(
    db: Database, asker: str, deciders: list[str]
) -> None:
    t = team(db)
    people = {
        "creator": t.manager,
        "manager": t.manager,
        "second_manager": t.second_manager,
        "clerk": t.clerk,
        "admin": t.admin,
    }
    invoice = draft(db, t.manager, t.customer_id, "5000.00")
    request = approvals.ask_for_approval(db, people[asker], "invoice", invoice.id, "please")
    for who in deciders:
        try:
            approvals.decide_approval(db, people[who], request.id, "approved", "ok")
        except (Forbidden, Conflict):
            pass
    decided = approvals.get_approval(db, t.admin, request.id)
    if decided.status == "approved":
        assert decided.decided_by not in (decided.requested_by, invoice.created_by)
        assert decided.decided_by in (t.second_manager.key_id, t.admin.key_id)
    else:
        assert decided.status == "pending"
        assert not {"second_manager", "admin"} & set(deciders)
    state = invoices.get_invoice(db, t.admin, invoice.id)[0]
    assert (state.approval_status == "approved") == (decided.status == "approved")
