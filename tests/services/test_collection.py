"""Automatic collection on fixed dates: charges, retries on the schedule, crashes, disputes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tallybook.core.collection import MAX_RETRIES
from tallybook.db.models import (
    AuditEvent,
    Customer,
    Invoice,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentAttempt,
)
from tallybook.providers.payments import ProviderRegistry, SimulatedProvider
from tallybook.services import (
    collection,
    customers,
    dunning,
    invoices,
    ledger,
    organizations,
    payment_methods,
    payments,
)
from tallybook.services.base import Actor, Database, Forbidden, InvalidInput, NotFound, Role

DAY0 = date(2026, 3, 2)


def on(days: int) -> date:
    return DAY0 + timedelta(days=days)


def world(
    db: Database, token: str = "sim_card_ok", *, kind: str = "card", terms: int = 0, **org: object
) -> tuple[Actor, Customer]:
    actor = make_org(db, **org)
    customer = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Brandt Logistik GmbH",
            "country": "DE",
            "currency": "EUR",
            "payment_terms_days": terms,
        },
    )
    payment_methods.attach_payment_method(
        db,
        actor,
        customer.id,
        {"provider": "simulated", "token": token, "kind": kind, "label": "Visa ending 4242"},
    )
    return actor, customer


def issue(
    db: Database, actor: Actor, customer: Customer, price: str = "119.00", day: date = DAY0
) -> Invoice:
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Subscription", "unit_price": price})
    return invoices.issue_invoice(db, actor, draft.id, issue_date=day)


def simulated() -> tuple[ProviderRegistry, SimulatedProvider]:
    provider = SimulatedProvider(keep_journal=True)
    return ProviderRegistry({"simulated": provider}), provider


def attempts_of(db: Database, invoice_id: str) -> list[PaymentAttempt]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(PaymentAttempt)
                .where(PaymentAttempt.invoice_id == invoice_id)
                .order_by(PaymentAttempt.attempt)
            )
        )


def collection_payments(db: Database, actor: Actor) -> list[Payment]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(Payment).where(
                    Payment.organization_id == actor.organization_id,
                    Payment.source == "collection",
                )
            )
        )


def invoice_now(db: Database, actor: Actor, invoice_id: str) -> Invoice:
    return invoices.get_invoice(db, actor, invoice_id)[0]


def test_an_approved_charge_pays_the_invoice_with_a_balanced_entry(db: Database) -> None:
    actor, customer = world(db, terms=14)
    invoice = issue(db, actor, customer)
    registry, provider = simulated()
    # Payment terms hold: nothing is charged before the due date.
    early = collection.collect_due_invoices(db, actor, on(13), providers=registry)
    assert early.attempted == 0 and provider.sent_keys == []

    run = collection.collect_due_invoices(db, actor, on(14), providers=registry)

    assert (run.attempted, run.count("approved")) == (1, 1)
    assert run.amounts() == {
        "EUR": {
            "attempted_minor": 11900,
            "approved_minor": 11900,
            "declined_minor": 0,
            "failed_minor": 0,
            "pending_minor": 0,
        }
    }
    [outcome] = run.outcomes
    assert outcome.payment_number and outcome.payment_number.startswith("PAY-")
    paid = invoice_now(db, actor, invoice.id)
    assert (paid.status, paid.paid_minor, paid.amount_due_minor) == ("paid", 11900, 0)
    [payment] = collection_payments(db, actor)
    [attempt] = attempts_of(db, invoice.id)
    assert (payment.amount_minor, payment.method, payment.received_on) == (11900, "card", on(14))
    assert payment.payment_method_id == attempt.payment_method_id
    assert payment.provider_reference == attempt.provider_reference
    assert payment.provider_reference and payment.provider_reference.startswith("sim_ch_")
    assert (attempt.status, attempt.attempt, attempt.payment_id) == ("approved", 1, payment.id)
    assert attempt.next_attempt_on is None and attempt.completed_at is not None
    assert provider.sent_keys == [f"{invoice.id}:1"]
    with db.reading() as session:
        entry = session.scalars(
            select(JournalEntry).where(
                JournalEntry.source_type == "payment", JournalEntry.source_id == payment.id
            )
        ).one()
        lines = {
            (x.account_code, x.debit_minor, x.credit_minor)
            for x in session.scalars(select(JournalLine).where(JournalLine.entry_id == entry.id))
        }
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.entity_id == attempt.id)
                .order_by(AuditEvent.created_at)
            )
        )
    assert lines == {("1000", 11900, 0), ("1100", 0, 11900)}  # Dr bank / Cr receivable
    assert actions == ["payment_attempt.claimed", "payment_attempt.approved"]
    with db.transaction() as session:
        assert ledger.account_balance(session, actor.organization_id, "receivable")["EUR"] == 0


def test_a_declining_card_is_retried_on_day_1_3_and_7_then_never_again(db: Database) -> None:
    actor, customer = world(db, "sim_card_declined")
    invoice = issue(db, actor, customer)
    registry, provider = simulated()
    charged_on = []
    for day in range(0, 31):
        run = collection.collect_due_invoices(db, actor, on(day), providers=registry)
        if run.attempted:
            charged_on.append(day)
    assert charged_on == [0, 1, 3, 7]
    attempts = attempts_of(db, invoice.id)
    assert [(a.attempt, a.status, a.failure_code) for a in attempts] == [
        (n, "declined", "card_declined") for n in (1, 2, 3, 4)
    ]
    assert [a.attempted_on for a in attempts] == [on(0), on(1), on(3), on(7)]
    assert [a.next_attempt_on for a in attempts] == [on(1), on(3), on(7), None]
    assert provider.sent_keys == [f"{invoice.id}:{n}" for n in (1, 2, 3, 4)]
    still = invoice_now(db, actor, invoice.id)
    assert (still.status, still.amount_due_minor) == ("issued", 11900)
    assert collection_payments(db, actor) == []


def test_a_card_that_fails_twice_is_paid_on_the_third_attempt(db: Database) -> None:
    actor, customer = world(db, "sim_card_fail_then_ok_2")
    invoice = issue(db, actor, customer, "50.00")
    registry, _ = simulated()
    for day in range(0, 10):
        collection.collect_due_invoices(db, actor, on(day), providers=registry)
    attempts = attempts_of(db, invoice.id)
    assert [(a.status, a.failure_code, a.attempted_on) for a in attempts] == [
        ("failed", "processing_error", on(0)),
        ("failed", "processing_error", on(1)),
        ("approved", None, on(3)),
    ]
    paid = invoice_now(db, actor, invoice.id)
    assert (paid.status, paid.paid_minor) == ("paid", 5000)
    [payment] = collection_payments(db, actor)
    assert (payment.amount_minor, payment.received_on) == (5000, on(3))


def test_a_disputed_invoice_is_not_charged(db: Database) -> None:
    actor, customer = world(db)
    disputed = issue(db, actor, customer, "80.00")
    undisputed = issue(db, actor, customer, "20.00")
    dunning.dispute_invoice(db, actor, disputed.id, "wrong number of seats")
    registry, provider = simulated()
    run = collection.collect_due_invoices(db, actor, on(5), providers=registry)
    assert [o.invoice_id for o in run.outcomes] == [undisputed.id]
    assert attempts_of(db, disputed.id) == []
    assert invoice_now(db, actor, disputed.id).amount_due_minor == 8000
    assert provider.sent_keys == [f"{undisputed.id}:1"]
    # Once the dispute is resolved, the next run charges it.
    dunning.resolve_dispute(db, actor, disputed.id, "seats confirmed")
    later = collection.collect_due_invoices(db, actor, on(6), providers=registry)
    assert [(o.invoice_id, o.status) for o in later.outcomes] == [(disputed.id, "approved")]


def test_a_rerun_on_the_same_day_charges_nothing(db: Database) -> None:
    actor, customer = world(db, "sim_card_insufficient_funds")
    declined = issue(db, actor, customer, "30.00")
    other, _ = world(db, "sim_card_ok")
    other_customer = customers.list_customers(db, other)[0][0]
    paid = issue(db, other, other_customer, "40.00")
    registry, provider = simulated()
    first = collection.collect_due_invoices(db, actor, on(0), providers=registry)
    first_other = collection.collect_due_invoices(db, other, on(0), providers=registry)
    assert (first.count("declined"), first_other.count("approved")) == (1, 1)
    again = collection.collect_due_invoices(db, actor, on(0), providers=registry)
    again_other = collection.collect_due_invoices(db, other, on(0), providers=registry)
    assert (again.attempted, again_other.attempted) == (0, 0)
    assert provider.sent_keys == [f"{declined.id}:1", f"{paid.id}:1"]


def test_a_run_that_stopped_after_the_claim_is_completed_without_a_second_charge(
    db: Database,
) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer)
    registry, provider = simulated()
    # The run claims the attempt and dies before it reaches the provider.
    claims, _, _ = collection.claim_due_invoices(db, actor, on(0), providers=registry)
    assert [c.idempotency_key for c in claims] == [f"{invoice.id}:1"]
    [pending] = attempts_of(db, invoice.id)
    assert pending.status == "pending"
    # The next run (next day) sends the same key and records the answer.
    run = collection.collect_due_invoices(db, actor, on(1), providers=registry)
    [outcome] = run.outcomes
    assert (outcome.status, outcome.resent, outcome.attempt) == ("approved", True, 1)
    assert provider.sent_keys == [f"{invoice.id}:1"]
    [attempt] = attempts_of(db, invoice.id)
    assert attempt.status == "approved"
    [payment] = collection_payments(db, actor)
    assert (payment.amount_minor, payment.received_on) == (11900, on(0))
    assert invoice_now(db, actor, invoice.id).status == "paid"


def test_a_run_that_stopped_after_charging_never_charges_twice(db: Database) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer)
    registry, provider = simulated()
    # Claimed and charged, but the run died before it recorded the answer.
    [claim], _, _ = collection.claim_due_invoices(db, actor, on(0), providers=registry)
    assert collection.send_charge(registry, claim).status == "approved"
    run = collection.collect_due_invoices(db, actor, on(0), providers=registry)
    assert [(o.status, o.resent) for o in run.outcomes] == [("approved", True)]
    # The provider saw the one key twice and moved money once; one payment, one attempt.
    assert provider.sent_keys == [claim.idempotency_key] * 2
    assert provider.charged_keys == [claim.idempotency_key]
    assert len(collection_payments(db, actor)) == 1 and len(attempts_of(db, invoice.id)) == 1
    # Recording the same answer again changes nothing.
    again = collection.record_outcome(
        db,
        actor,
        claim,
        collection.send_charge(registry, claim),  # type: ignore[arg-type]
    )
    assert again.status == "approved" and len(collection_payments(db, actor)) == 1


def test_no_answer_leaves_the_attempt_pending_and_the_same_key_is_sent_again(
    db: Database,
) -> None:
    actor, customer = world(db, "sim_card_timeout")
    invoice = issue(db, actor, customer)
    registry, provider = simulated()
    first = collection.collect_due_invoices(db, actor, on(0), providers=registry)
    second = collection.collect_due_invoices(db, actor, on(1), providers=registry)
    assert [(o.status, o.failure_code) for o in first.outcomes + second.outcomes] == [
        ("pending", "no_answer"),
        ("pending", "no_answer"),
    ]
    assert [a.status for a in attempts_of(db, invoice.id)] == ["pending"]
    assert second.outcomes[0].resent and first.amounts()["EUR"]["pending_minor"] == 11900


def test_what_is_not_charged(db: Database) -> None:
    actor, customer = world(db)
    registry, provider = simulated()
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Draft", "unit_price": "5.00"})
    # Without a payment method, and after the default one is removed: nothing to charge.
    bare = customers.create_customer(
        db, actor, {"legal_name": "Bare", "country": "DE", "currency": "EUR"}
    )
    issue(db, actor, bare, "7.00")
    removed = customers.create_customer(
        db, actor, {"legal_name": "Removed", "country": "DE", "currency": "EUR"}
    )
    method = payment_methods.attach_payment_method(
        db, actor, removed.id, {"provider": "simulated", "token": "sim_card_ok"}
    )
    payment_methods.detach_payment_method(db, actor, method.id)
    issue(db, actor, removed, "9.00")
    # Fully paid by hand before the run.
    settled = issue(db, actor, customer, "10.00")
    payments.record_payment(
        db,
        actor,
        {"customer_id": customer.id, "amount": "10.00", "currency": "EUR", "method": "check"},
    )
    assert invoice_now(db, actor, settled.id).status == "paid"
    run = collection.collect_due_invoices(db, actor, on(60), providers=registry)
    assert run.attempted == 0 and provider.sent_keys == []


def test_a_partly_paid_invoice_is_charged_what_is_still_due(db: Database) -> None:
    actor, customer = world(db, kind="sepa_debit", token="sim_sepa_ok")
    invoice = issue(db, actor, customer, "100.00")
    payments.record_payment(
        db,
        actor,
        {"customer_id": customer.id, "amount": "30.25", "currency": "EUR", "method": "check"},
    )
    registry, _ = simulated()
    run = collection.collect_due_invoices(db, actor, on(0), providers=registry)
    assert [(o.status, o.amount_minor) for o in run.outcomes] == [("approved", 6975)]
    [payment] = collection_payments(db, actor)
    assert (payment.method, payment.amount_minor) == ("direct_debit", 6975)
    paid = invoice_now(db, actor, invoice.id)
    assert (paid.status, paid.paid_minor) == ("paid", 10000)


def test_an_invoice_paid_between_claim_and_answer_turns_the_charge_into_credit(
    db: Database,
) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer, "20.00")
    registry, _ = simulated()
    [claim], _, _ = collection.claim_due_invoices(db, actor, on(0), providers=registry)
    payments.record_payment(
        db,
        actor,
        {"customer_id": customer.id, "amount": "20.00", "currency": "EUR", "method": "check"},
    )
    result = collection.send_charge(registry, claim)
    assert result is not None
    outcome = collection.record_outcome(db, actor, claim, result)
    assert outcome.status == "approved"
    assert invoice_now(db, actor, invoice.id).paid_minor == 2000
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 2000


def test_the_organisation_schedule_decides_the_retries(db: Database) -> None:
    actor, customer = world(db, "sim_card_declined", collection_retry_days=[2])
    issue(db, actor, customer)
    registry, _ = simulated()
    days = [
        d
        for d in range(0, 15)
        if collection.collect_due_invoices(db, actor, on(d), providers=registry).attempted
    ]
    assert days == [0, 2]
    organizations.update_settings(db, actor, {"collection_retry_days": [1, 5, 9]})
    assert organizations.get_organization(db, actor).collection_retry_days == [1, 5, 9]
    for bad in ([5, 3], [0], list(range(1, 13)), "1,3"):
        with pytest.raises(InvalidInput) as error:
            organizations.update_settings(db, actor, {"collection_retry_days": bad})
        assert error.value.field == "collection_retry_days"
    assert organizations.get_organization(db, actor).collection_retry_days == [1, 5, 9]


def test_a_provider_that_is_not_configured_is_skipped_and_said(db: Database) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer)
    run = collection.collect_due_invoices(db, actor, on(0), providers=ProviderRegistry())
    assert run.attempted == 0
    assert run.skipped == [
        {
            "invoice_id": invoice.id,
            "invoice_number": invoice.number,
            "reason": "payment provider 'simulated' is not configured",
        }
    ]
    assert attempts_of(db, invoice.id) == []


def test_roles_and_the_tenancy_wall(db: Database) -> None:
    actor, customer = world(db, "sim_card_declined")
    invoice = issue(db, actor, customer)
    registry, _ = simulated()
    collection.collect_due_invoices(db, actor, on(0), providers=registry)
    viewer = Actor(actor.organization_id, None, Role.VIEWER)
    with pytest.raises(Forbidden):
        collection.collect_due_invoices(db, viewer, on(1), providers=registry)
    rows, _ = collection.list_attempts(db, viewer, status="declined,failed")
    assert [v.attempt.invoice_id for v in rows] == [invoice.id]
    assert rows[0].invoice_number == invoice.number
    stranger = make_org(db)
    for kwargs in ({"invoice_id": invoice.id}, {"customer_id": customer.id}):
        with pytest.raises(NotFound):
            collection.list_attempts(db, stranger, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        collection.get_attempt(db, stranger, rows[0].attempt.id)
    with pytest.raises(NotFound):
        collection.customer_collection(db, stranger, customer.id)
    assert collection.list_attempts(db, stranger)[0] == []
    # Another organisation's run never touches this organisation's invoices.
    assert collection.collect_due_invoices(db, stranger, on(1), providers=registry).attempted == 0
    with pytest.raises(InvalidInput) as wrong:
        collection.list_attempts(db, actor, status="bounced")
    assert wrong.value.field == "status"


def test_the_customer_view_shows_failures_and_the_next_retry(db: Database) -> None:
    actor, customer = world(db, "sim_card_expired")
    invoice = issue(db, actor, customer)
    registry, _ = simulated()
    collection.collect_due_invoices(db, actor, on(0), providers=registry)
    collection.collect_due_invoices(db, actor, on(1), providers=registry)
    view = collection.customer_collection(db, actor, customer.id)
    assert view.default_method is not None and view.default_method.label == "Visa ending 4242"
    assert [(v.attempt.attempt, v.attempt.failure_code) for v in view.failing] == [
        (2, "expired_card")
    ]
    assert view.failing[0].invoice_number == invoice.number
    assert view.next_retry_on == on(3)
    assert [v.attempt.attempt for v in view.recent] == [2, 1]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    schedule=st.lists(st.integers(1, 12), max_size=4, unique=True).map(sorted),
    failures=st.integers(0, 5),
    run_days=st.sets(st.integers(0, 20), min_size=1, max_size=12),
)
def test_collection_never_charges_twice_and_keeps_the_books(
    db: Database, schedule: list[int], failures: int, run_days: set[int]
) -> None:
    """Whatever the schedule, the card and the days runs happen on: at most one approved charge
    per invoice, at most len(schedule) + 1 attempts on increasing days, and the bank account
    holds exactly what collection approved."""
    assert len(schedule) <= MAX_RETRIES
    actor, customer = world(db, f"sim_card_fail_then_ok_{failures}", collection_retry_days=schedule)
    invoice = issue(db, actor, customer, "12.34")
    registry, provider = simulated()
    for day in sorted(run_days):
        collection.collect_due_invoices(db, actor, on(day), providers=registry)
    attempts = attempts_of(db, invoice.id)
    assert len(attempts) <= len(schedule) + 1
    days = [a.attempted_on for a in attempts]
    assert days == sorted(set(days))
    assert [a.status for a in attempts].count("approved") <= 1
    assert len(provider.sent_keys) == len(set(provider.sent_keys)) == len(attempts)
    approved = sum(a.amount_minor for a in attempts if a.status == "approved")
    with db.transaction() as session:
        bank = ledger.account_balance(session, actor.organization_id, "bank").get("EUR", 0)
    assert bank == approved
    paid = invoice_now(db, actor, invoice.id)
    assert (paid.status == "paid") == (approved == 1234)
    if attempts and attempts[-1].status != "approved":
        assert attempts[-1].status == "failed" and attempts[-1].attempt <= failures
