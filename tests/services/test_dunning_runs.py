"""Dunning on a real database with a fixed clock: policies, the run day by day, late fees as
debit notes with their journal entries, disputes, and the collections worklist."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from test_receivables_reports import issue, open_by_number, pay

from tallybook.db.models import (
    AuditEvent,
    DebitNote,
    DunningReminder,
    Invoice,
    JournalEntry,
    JournalLine,
    PaymentAttempt,
    new_id,
)
from tallybook.services import catalog, customers, dunning, invoices, receivables
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
    utcnow,
)

ISSUED = date(2026, 3, 1)
DUE = ISSUED + timedelta(days=30)  # 2026-03-31
STEPS = [
    {"offset_days": -3, "level": 1, "name": "friendly reminder"},
    {"offset_days": 0, "level": 1, "name": "due today"},
    {"offset_days": 7, "level": 2, "name": "first reminder"},
    {"offset_days": 14, "level": 2, "name": "second reminder", "late_fee": True},
    {"offset_days": 30, "level": 3, "name": "final notice", "late_fee": True},
]
PERCENT_FEE = {"kind": "percent", "percent": "1.5", "cap": {"EUR": "40.00"}}


def world(db: Database, fee: dict | None = PERCENT_FEE):
    actor = make_org(db)
    # The organisation charges German VAT; late fees must not carry it.
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    customer = customers.create_customer(
        db,
        actor,
        {"legal_name": "Kivi Oy", "country": "FI", "currency": "EUR", "payment_terms_days": 30},
    )
    policy = dunning.create_policy(db, actor, {"name": "standard", "steps": STEPS, "late_fee": fee})
    return actor, customer, policy


def reminders(db: Database, invoice_id: str) -> list[tuple[int, str, str, date, int]]:
    with db.reading() as session:
        return [
            (r.step, r.name, r.status, r.recorded_on, r.fee_minor)
            for r in session.scalars(
                select(DunningReminder)
                .where(DunningReminder.invoice_id == invoice_id)
                .order_by(DunningReminder.step)
            )
        ]


def test_the_right_reminder_on_the_right_day_and_nothing_twice(db: Database) -> None:
    actor, customer, policy = world(db)
    assert policy.is_default  # the first policy is the default
    invoice = issue(db, actor, customer, "10000.00", ISSUED)
    assert invoice.due_date == DUE and invoice.total_minor == 1_000_000
    sent: list[tuple[date, str, int]] = []
    for offset in range(-6, 41):
        day = DUE + timedelta(days=offset)
        run = dunning.run_dunning(db, actor, day)
        assert run.as_of == day and not run.dry_run
        sent += [(day, r.name, r.fee_minor) for r in run.reminders]
        again = dunning.run_dunning(db, actor, day)  # re-run the same day: nothing
        assert again.reminders == ()
    assert sent == [
        (date(2026, 3, 28), "friendly reminder", 0),
        (date(2026, 3, 31), "due today", 0),
        (date(2026, 4, 7), "first reminder", 0),
        # 1.5 % of 10,000.00 is 150.00, capped at 40.00
        (date(2026, 4, 14), "second reminder", 4000),
        # the cap is reached: the final notice charges nothing more
        (date(2026, 4, 30), "final notice", 0),
    ]
    assert [r[2] for r in reminders(db, invoice.id)] == ["recorded"] * 5
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert (after.debited_minor, after.amount_due_minor) == (4000, 1_004_000)

    with db.reading() as session:
        (note,) = session.scalars(select(DebitNote).where(DebitNote.invoice_id == invoice.id))
        assert (note.total_minor, note.tax_minor, note.issue_date) == (4000, 0, date(2026, 4, 14))
        entry = session.scalars(
            select(JournalEntry).where(
                JournalEntry.source_type == "debit_note", JournalEntry.source_id == note.id
            )
        ).one()
        lines = session.execute(
            select(JournalLine.account_code, JournalLine.debit_minor, JournalLine.credit_minor)
            .where(JournalLine.entry_id == entry.id)
            .order_by(JournalLine.position)
        ).all()
        (reminder,) = session.scalars(
            select(DunningReminder).where(DunningReminder.debit_note_id == note.id)
        )
    assert (entry.kind, entry.entry_date) == ("late_fee", date(2026, 4, 14))
    assert sorted(lines) == [("1100", 4000, 0), ("4800", 0, 4000)]  # Dr AR / Cr late fee income
    assert reminder.summary.startswith(f"{invoice.number}: send second reminder (level 2")
    assert "late fee of 40.00 EUR" in reminder.summary
    assert (reminder.currency, reminder.open_minor) == ("EUR", 1_000_000)

    # The late fee is its own document in the aging: paying the invoice leaves it open.
    pay(db, actor, customer, "10000.00", date(2026, 5, 2))
    aged = receivables.aging_report(db, actor, date(2026, 5, 2))
    assert open_by_number(aged) == {note.number: 4000}
    assert dunning.run_dunning(db, actor, date(2026, 6, 1)).reminders == ()


def test_after_days_without_a_run_only_the_latest_step_goes_out(db: Database) -> None:
    actor, customer, _ = world(db, {"kind": "fixed", "fixed": {"EUR": "25.00"}})
    invoice = issue(db, actor, customer, "300.00", ISSUED)
    run = dunning.run_dunning(db, actor, DUE + timedelta(days=20))
    (reminder,) = run.reminders
    assert (reminder.name, reminder.level, reminder.fee_minor) == ("second reminder", 2, 2500)
    assert reminder.skipped_steps == ("friendly reminder", "due today", "first reminder")
    assert reminder.debit_note_number.startswith("DN-")
    assert run.fees_minor == {"EUR": 2500}
    assert [(r[0], r[2]) for r in reminders(db, invoice.id)] == [
        (0, "skipped"),
        (1, "skipped"),
        (2, "skipped"),
        (3, "recorded"),
    ]
    # A later run sends the next step only when it falls due; the fixed fee is charged again
    # on the next fee step (no cap for EUR here), never twice for one step.
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=29)).reminders == ()
    (final,) = dunning.run_dunning(db, actor, DUE + timedelta(days=45)).reminders
    assert (final.name, final.fee_minor) == ("final notice", 2500)
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=45)).reminders == ()
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert after.debited_minor == 5000


def test_paid_disputed_and_void_invoices_get_no_reminder(db: Database) -> None:
    actor, customer, _ = world(db)
    paid = issue(db, actor, customer, "100.00", ISSUED)
    disputed = issue(db, actor, customer, "200.00", ISSUED)
    voided = issue(db, actor, customer, "300.00", ISSUED)
    pay(db, actor, customer, "100.00", ISSUED + timedelta(days=5), paid.id)
    invoices.void_invoice(db, actor, voided.id, "duplicate")
    dunning.dispute_invoice(db, actor, disputed.id, "goods never arrived")
    run = dunning.run_dunning(db, actor, DUE + timedelta(days=8))
    assert run.reminders == ()
    (held,) = run.paused
    assert (held.invoice_id, held.name, held.dispute_reason) == (
        disputed.id,
        "first reminder",
        "goods never arrived",
    )
    assert reminders(db, paid.id) == reminders(db, disputed.id) == []
    # Lifting the dispute resumes dunning with the step due now.
    dunning.resolve_dispute(db, actor, disputed.id, "proof of delivery sent")
    (resumed,) = dunning.run_dunning(db, actor, DUE + timedelta(days=8)).reminders
    assert (resumed.invoice_id, resumed.name) == (disputed.id, "first reminder")


def test_disputes_are_audited_and_refused_when_they_make_no_sense(db: Database) -> None:
    actor, customer, _ = world(db)
    invoice = issue(db, actor, customer, "100.00", ISSUED)
    clerk = Actor(actor.organization_id, actor.key_id, Role.BILLING_CLERK)
    with pytest.raises(InvalidInput) as no_reason:
        dunning.dispute_invoice(db, clerk, invoice.id, "  ")
    assert no_reason.value.field == "reason"
    marked = dunning.dispute_invoice(db, clerk, invoice.id, "wrong quantity")
    assert marked.disputed_at is not None and marked.dispute_reason == "wrong quantity"
    with pytest.raises(Conflict):
        dunning.dispute_invoice(db, clerk, invoice.id, "again")
    dunning.resolve_dispute(db, clerk, invoice.id)
    with pytest.raises(Conflict):
        dunning.resolve_dispute(db, clerk, invoice.id)
    draft = invoices.create_draft(db, actor, customer.id)
    with pytest.raises(Conflict):
        dunning.dispute_invoice(db, clerk, draft.id, "not issued yet")
    viewer = Actor(actor.organization_id, actor.key_id, Role.VIEWER)
    with pytest.raises(Forbidden):
        dunning.dispute_invoice(db, viewer, invoice.id, "x")
    with db.reading() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.entity_id == invoice.id, AuditEvent.action.like("invoice.%"))
                .order_by(AuditEvent.created_at)
            )
        )
    assert actions[-2:] == ["invoice.disputed", "invoice.dispute_resolved"]


def test_a_dry_run_answers_the_same_and_writes_nothing(db: Database) -> None:
    actor, customer, _ = world(db)
    invoice = issue(db, actor, customer, "10000.00", ISSUED)
    viewer = Actor(actor.organization_id, actor.key_id, Role.VIEWER)
    with pytest.raises(Forbidden):
        dunning.run_dunning(db, viewer, DUE + timedelta(days=15))
    dry = dunning.run_dunning(db, viewer, DUE + timedelta(days=15), dry_run=True)
    assert dry.dry_run and [(r.name, r.fee_minor) for r in dry.reminders] == [
        ("second reminder", 4000)
    ]
    assert reminders(db, invoice.id) == []
    with db.reading() as session:
        assert not session.scalar(
            select(func.count()).select_from(DebitNote).where(DebitNote.invoice_id == invoice.id)
        )
    real = dunning.run_dunning(db, actor, DUE + timedelta(days=15))
    assert [(r.name, r.fee_minor) for r in real.reminders] == [("second reminder", 4000)]


def test_customer_policies_and_no_policy_means_no_dunning(db: Database) -> None:
    actor = make_org(db)
    customer = customers.create_customer(
        db, actor, {"legal_name": "Sol SA", "country": "ES", "currency": "EUR"}
    )
    invoice = issue(db, actor, customer, "50.00", ISSUED)
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=60)).reminders == ()
    gentle = dunning.create_policy(
        db, actor, {"name": "gentle", "steps": [{"offset_days": 10, "name": "nudge"}]}
    )
    strict = dunning.create_policy(
        db,
        actor,
        {"name": "strict", "steps": [{"offset_days": 1, "name": "pay now"}], "is_default": True},
    )
    assert [p.is_default for p in dunning.list_policies(db, actor)] == [False, True]
    dunning.assign_policy(db, actor, customer.id, "gentle")
    (sent,) = dunning.run_dunning(db, actor, DUE + timedelta(days=12)).reminders
    assert (sent.policy_id, sent.name, sent.level) == (gentle.id, "nudge", 1)
    with pytest.raises(Conflict):
        dunning.delete_policy(db, actor, gentle.id)
    dunning.assign_policy(db, actor, customer.id, None)  # back to the default
    dunning.delete_policy(db, actor, "gentle")
    # The default's only step is at index 0, already reached: nothing more goes out.
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=13)).reminders == ()
    views = dunning.list_reminders(db, actor, invoice_id=invoice.id)
    assert [(v.reminder.name, v.invoice_number) for v in views] == [("nudge", invoice.number)]
    assert strict.is_default


def test_policy_input_is_checked(db: Database) -> None:
    actor, _, _ = world(db)

    def refused(values: dict) -> InvalidInput:
        with pytest.raises(InvalidInput) as error:
            dunning.create_policy(db, actor, {"name": "x", **values})
        return error.value

    assert refused({"steps": []}).field == "steps"
    backwards = refused(
        {"steps": [{"offset_days": 7, "name": "a"}, {"offset_days": 3, "name": "b"}]}
    )
    assert backwards.field == "steps" and "offset_days" in backwards.detail
    no_fee = refused({"steps": [{"offset_days": 1, "name": "a", "late_fee": True}]})
    assert "no late fee" in no_fee.detail
    float_fee = refused(
        {
            "steps": [{"offset_days": 1, "name": "a"}],
            "late_fee": {"kind": "percent", "percent": 1.5},
        }
    )
    assert float_fee.field == "late_fee" and "float" in float_fee.detail
    too_precise = refused(
        {
            "steps": [{"offset_days": 1, "name": "a"}],
            "late_fee": {"kind": "fixed", "fixed": {"EUR": "10.001"}},
        }
    )
    assert too_precise.field == "late_fee"
    with pytest.raises(Conflict):
        dunning.create_policy(
            db, actor, {"name": "standard", "steps": STEPS, "late_fee": PERCENT_FEE}
        )
    changed = dunning.update_policy(db, actor, "standard", {"late_fee": None, "steps": STEPS[:3]})
    assert changed.late_fee is None and len(changed.steps) == 3
    with pytest.raises(InvalidInput):
        dunning.update_policy(db, actor, "standard", {"steps": STEPS})  # fee steps, no fee
    clerk = Actor(actor.organization_id, actor.key_id, Role.BILLING_CLERK)
    with pytest.raises(Forbidden):
        dunning.create_policy(db, clerk, {"name": "y", "steps": STEPS[:1]})


def test_the_tenancy_wall(db: Database) -> None:
    actor, customer, policy = world(db)
    invoice = issue(db, actor, customer, "100.00", ISSUED)
    other = make_org(db)
    with pytest.raises(NotFound):
        dunning.dispute_invoice(db, other, invoice.id, "not mine")
    with pytest.raises(NotFound):
        dunning.resolve_dispute(db, other, invoice.id)
    with pytest.raises(NotFound):
        dunning.assign_policy(db, other, customer.id, None)
    with pytest.raises(NotFound):
        dunning.list_reminders(db, other, invoice_id=invoice.id)
    with pytest.raises(NotFound):
        dunning.list_reminders(db, other, customer_id=customer.id)
    with pytest.raises(NotFound):
        dunning.get_policy(db, other, policy.id)
    own = customers.create_customer(
        db, other, {"legal_name": "Other", "country": "FI", "currency": "EUR"}
    )
    with pytest.raises(NotFound):
        dunning.assign_policy(db, other, own.id, policy.id)  # another organisation's policy
    assert dunning.run_dunning(db, other, DUE + timedelta(days=8)).reminders == ()


def test_the_collections_worklist_puts_the_riskiest_customer_first(db: Database) -> None:
    actor, small, _ = world(db)
    big = customers.create_customer(
        db, actor, {"legal_name": "Suuri Oyj", "country": "FI", "currency": "EUR"}
    )
    early = issue(db, actor, small, "100.00", date(2026, 1, 1))  # due 01-31
    issue(db, actor, small, "50.00", date(2026, 3, 20))  # not yet due on 04-10
    large = issue(db, actor, big, "5000.00", date(2026, 2, 20))  # due 03-22
    dunning.dispute_invoice(db, actor, early.id, "price")
    dunning.run_dunning(db, actor, date(2026, 3, 30))  # large: first reminder (+7)
    with db.transaction() as session:
        for attempt, status in enumerate(("declined", "failed", "approved"), start=1):
            session.add(
                PaymentAttempt(
                    id=new_id("patt"),
                    organization_id=actor.organization_id,
                    invoice_id=large.id,
                    customer_id=big.id,
                    payment_method_id="pm_test",
                    attempt=attempt,
                    amount_minor=large.total_minor,
                    currency="EUR",
                    status=status,
                    attempted_on=date(2026, 3, 22) + timedelta(days=attempt),
                    created_at=utcnow(),
                )
            )
    rows = dunning.collections_worklist(db, actor, date(2026, 4, 10))
    assert [r.customer_name for r in rows] == ["Suuri Oyj", "Kivi Oy"]
    first, second = rows
    assert (first.overdue_minor, first.oldest_days_overdue, first.risk_score) == (
        500000,
        19,
        500000 * 19,
    )
    assert (first.last_reminder_level, first.last_reminder_on) == (2, date(2026, 3, 30))
    assert (first.failed_attempts, first.disputed) == (2, False)
    assert [i.number for i in first.invoices] == [large.number]
    assert (second.overdue_minor, second.oldest_days_overdue, second.disputed) == (
        10000,
        69,
        True,
    )
    assert second.last_reminder_level is None and second.failed_attempts == 0
    assert [i.invoice_id for i in second.invoices] == [early.id]  # the other is not yet due
    other = make_org(db)
    assert dunning.collections_worklist(db, other, date(2026, 4, 10)) == []


def test_two_runs_at_once_send_each_reminder_once(postgres_db: Database) -> None:
    db = postgres_db
    actor, customer, _ = world(db)
    ids = [issue(db, actor, customer, "1000.00", ISSUED).id for _ in range(8)]
    day = DUE + timedelta(days=15)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda _: _run_or_conflict(db, actor, day), range(2)))
    assert sum(outcomes) == 8
    with db.reading() as session:
        counts = session.execute(
            select(DunningReminder.invoice_id, func.count())
            .where(DunningReminder.invoice_id.in_(ids), DunningReminder.status == "recorded")
            .group_by(DunningReminder.invoice_id)
        ).all()
        notes = session.scalar(
            select(func.count()).select_from(DebitNote).where(DebitNote.invoice_id.in_(ids))
        )
        debited = session.scalars(select(Invoice.debited_minor).where(Invoice.id.in_(ids)))
        assert set(debited) == {1500}  # 1.5 % of 1,000.00 once each
    assert sorted(n for _, n in counts) == [1] * 8 and notes == 8


def _run_or_conflict(db: Database, actor: Actor, day: date) -> int:
    try:
        return len(dunning.run_dunning(db, actor, day).reminders)
    except Conflict:
        return 0


def test_a_shortened_schedule_carries_on_from_where_the_invoice_was(db: Database) -> None:
    actor, customer, _ = world(db)
    invoice = issue(db, actor, customer, "100.00", ISSUED)
    (sent,) = dunning.run_dunning(db, actor, DUE + timedelta(days=15)).reminders
    assert sent.step == 3
    dunning.update_policy(db, actor, "standard", {"steps": STEPS[:2], "late_fee": None})
    # Step 3 is beyond the new two-step schedule: the invoice went through all of it.
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=40)).reminders == ()
    # Steps are positions: the invoice reached the fourth, so a longer schedule sends its fifth.
    longer = [*STEPS[:4], {"offset_days": 45, "level": 3, "name": "handover to collections"}]
    dunning.update_policy(db, actor, "standard", {"steps": longer, "late_fee": PERCENT_FEE})
    assert dunning.run_dunning(db, actor, DUE + timedelta(days=44)).reminders == ()
    (last,) = dunning.run_dunning(db, actor, DUE + timedelta(days=45)).reminders
    assert (last.invoice_id, last.step, last.name, last.skipped_steps) == (
        invoice.id,
        4,
        "handover to collections",
        (),
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cents=st.integers(1_00, 50_000_00),
    percent=st.sampled_from(["0.5", "1.5", "8"]),
    cap=st.integers(1, 100_00),
    run_days=st.lists(st.integers(-10, 60), min_size=1, max_size=6),
)
def test_any_sequence_of_runs_sends_each_step_once_and_never_charges_past_the_cap(
    db: Database, cents: int, percent: str, cap: int, run_days: list[int]
) -> None:
    fee = {"kind": "percent", "percent": percent, "cap": {"EUR": str(Decimal(cap).scaleb(-2))}}
    actor, customer, policy = world(db, fee)
    amount = str(Decimal(cents).scaleb(-2))
    invoice = issue(db, actor, customer, amount, ISSUED)
    fees = 0
    for offset in run_days:  # in any order: a run for an earlier day after a later one
        for reminder in dunning.run_dunning(db, actor, DUE + timedelta(days=offset)).reminders:
            fees += reminder.fee_minor
    recorded = reminders(db, invoice.id)
    steps = [step for step, *_ in recorded]
    assert len(steps) == len(set(steps))  # the unique guard held without being needed
    sent = [r for r in recorded if r[2] == "recorded"]
    latest = max(run_days)
    due_steps = [i for i, s in enumerate(STEPS) if s["offset_days"] <= latest]
    assert (max(steps) if steps else None) == (due_steps[-1] if due_steps else None)
    # Steps go out in schedule order: a later step is never recorded before an earlier one.
    assert [r[3] for r in sent] == sorted(r[3] for r in sent)
    assert fees == sum(r[4] for r in recorded) <= cap
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert after.debited_minor == fees
    assert after.amount_due_minor == cents + fees
    with db.reading() as session:
        income = session.scalar(
            select(func.coalesce(func.sum(JournalLine.credit_minor - JournalLine.debit_minor), 0))
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(
                JournalEntry.organization_id == actor.organization_id,
                JournalLine.account_code == "4800",
            )
        )
    assert income == fees  # every late fee is in the books, on late fee income
    assert policy.is_default
