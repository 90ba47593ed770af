"""Payments, refunds, reversals and write-offs against the general ledger.

The stateful test drives random sequences of issue, pay, over-pay, credit, refund, reverse
and write-off through the services on a real database and checks the books after every step.
"""

from __future__ import annotations

from datetime import date

import pytest
from conftest import make_org
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from tallybook.db.models import (
    Customer,
    Invoice,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentAllocation,
)
from tallybook.services import catalog, credit_notes, customers, invoices, ledger, payments
from tallybook.services.base import Actor, Conflict, Database, InvalidInput


def world(db: Database, currency: str = "EUR") -> tuple[Actor, Customer]:
    actor = make_org(db)
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    customer = customers.create_customer(
        db, actor, {"legal_name": "Brandt Logistik GmbH", "country": "DE", "currency": currency}
    )
    return actor, customer


def issue(db: Database, actor: Actor, customer: Customer, unit_price: str) -> Invoice:
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Consulting", "unit_price": unit_price})
    return invoices.issue_invoice(db, actor, draft.id)


def books(db: Database, actor: Actor) -> dict[str, int]:
    """Receivable, customer credit and bank balances (debit positive) in EUR."""
    with db.transaction() as session:
        return {
            role: ledger.account_balance(session, actor.organization_id, role).get("EUR", 0)
            for role in ("receivable", "customer_credit", "bank", "revenue", "tax_payable")
        }


def test_a_payment_settles_the_oldest_invoice_first_and_the_rest_becomes_credit(
    db: Database,
) -> None:
    actor, customer = world(db)
    first = issue(db, actor, customer, "100.00")  # 119.00 with VAT
    second = issue(db, actor, customer, "50.00")  # 59.50
    view = payments.record_payment(
        db,
        actor,
        {"customer_id": customer.id, "amount": "200.00", "currency": "EUR", "method": "check"},
    )
    assert [(a.invoice_id, a.amount_minor) for a in view.allocations] == [
        (first.id, 11900),
        (second.id, 5950),
    ]
    assert view.payment.unapplied_minor == 2150
    assert view.payment.number.startswith("PAY-")
    after_first, _ = invoices.get_invoice(db, actor, first.id)
    assert (after_first.status, after_first.amount_due_minor) == ("paid", 0)
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 2150
    assert books(db, actor) == {
        "receivable": 0,
        "customer_credit": -2150,
        "bank": 20000,
        "revenue": -15000,
        "tax_payable": -2850,
    }


def test_partial_payment_explicit_allocation_and_currency_check(db: Database) -> None:
    actor, customer = world(db)
    first = issue(db, actor, customer, "100.00")
    second = issue(db, actor, customer, "50.00")
    view = payments.record_payment(
        db,
        actor,
        {
            "amount": "30.00",
            "currency": "EUR",
            "allocations": [{"invoice_id": second.id, "amount": "30.00"}],
        },
    )
    assert view.payment.customer_id == customer.id
    after, _ = invoices.get_invoice(db, actor, second.id)
    assert (after.status, after.paid_minor, after.amount_due_minor) == (
        "partially_paid",
        3000,
        2950,
    )
    untouched, _ = invoices.get_invoice(db, actor, first.id)
    assert untouched.amount_due_minor == 11900
    with pytest.raises(InvalidInput) as wrong_currency:
        payments.record_payment(
            db, actor, {"customer_id": customer.id, "amount": "10.00", "currency": "USD"}
        )
    assert wrong_currency.value.field == "currency"
    assert "invoice's currency" in wrong_currency.value.detail
    with pytest.raises(InvalidInput) as too_much:
        payments.record_payment(
            db,
            actor,
            {
                "amount": "100.00",
                "currency": "EUR",
                "allocations": [{"invoice_id": second.id, "amount": "30.00"}],
                "invoice_ids": None,
            }
            | {"allocations": [{"invoice_id": second.id, "amount": "29.51"}]},
        )
    assert "owes 2950" in too_much.value.detail
    with pytest.raises(InvalidInput) as card:
        payments.record_payment(
            db,
            actor,
            {
                "customer_id": customer.id,
                "amount": "1.00",
                "currency": "EUR",
                "method": "card",
                "reference": "4242 4242 4242 4242",
            },
        )
    assert card.value.field == "reference"
    with db.reading() as session:
        stored = session.scalar(
            select(func.count()).where(Payment.organization_id == actor.organization_id)
        )
    assert stored == 1  # the refused payments left nothing behind


def test_reversal_reopens_invoices_and_takes_back_the_credit(db: Database) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer, "100.00")
    view = payments.record_payment(
        db, actor, {"customer_id": customer.id, "amount": "150.00", "currency": "EUR"}
    )
    reversed_view = payments.reverse_payment(db, actor, view.payment.id, "check bounced")
    assert reversed_view.payment.status == "reversed"
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert (after.status, after.amount_due_minor) == ("issued", 11900)
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 0
    assert books(db, actor)["receivable"] == 11900
    assert books(db, actor)["bank"] == 0
    with pytest.raises(Conflict):
        payments.reverse_payment(db, actor, view.payment.id, "again")


def test_refunds_take_the_credit_first_then_reopen_invoices(db: Database) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer, "100.00")
    view = payments.record_payment(
        db, actor, {"customer_id": customer.id, "amount": "129.00", "currency": "EUR"}
    )
    refund = payments.refund_payment(
        db, actor, view.payment.id, {"amount": "15.00", "reason": "paid twice"}
    )
    assert (refund.from_credit_minor, refund.from_invoices_minor) == (1000, 500)
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert (after.status, after.amount_due_minor) == ("partially_paid", 500)
    with pytest.raises(InvalidInput) as too_much:
        payments.refund_payment(db, actor, view.payment.id, {"amount": "114.01", "reason": "x"})
    assert "11400 minor units left" in too_much.value.detail
    assert books(db, actor) == {
        "receivable": 500,
        "customer_credit": 0,
        "bank": 11400,
        "revenue": -10000,
        "tax_payable": -1900,
    }


def test_credit_balance_refund_and_write_off_post_balanced_entries(db: Database) -> None:
    actor, customer = world(db)
    paid = issue(db, actor, customer, "100.00")
    payments.record_payment(
        db, actor, {"customer_id": customer.id, "amount": "119.00", "currency": "EUR"}
    )
    credit_notes.create_credit_note(
        db, actor, paid.id, {"reason": "service outage", "settlement": "customer_credit"}
    )
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 11900
    payments.refund_credit(db, actor, customer.id, {"amount": "19.00", "reason": "requested"})
    assert customers.get_customer(db, actor, customer.id).credit_balance_minor == 10000
    unpaid = issue(db, actor, customer, "200.00")  # 238.00, 100.00 of it paid by credit
    written = invoices.mark_uncollectible(db, actor, unpaid.id, "customer insolvent")
    assert (written.status, written.written_off_minor, written.amount_due_minor) == (
        "uncollectible",
        13800,
        0,
    )
    balances = books(db, actor)
    assert balances["receivable"] == 0
    assert balances["customer_credit"] == 0
    assert balances["bank"] == 11900 - 1900
    rows = ledger.trial_balance(db, actor, date(2100, 1, 1))
    by_code = {r.code: r.balance_minor for r in rows}
    assert by_code["6100"] == 13800
    assert sum(r.debit_minor for r in rows) == sum(r.credit_minor for r in rows)


def test_another_organisation_cannot_touch_a_payment(db: Database) -> None:
    actor, customer = world(db)
    issue(db, actor, customer, "10.00")
    view = payments.record_payment(
        db, actor, {"customer_id": customer.id, "amount": "11.90", "currency": "EUR"}
    )
    intruder = make_org(db)
    for attempt in (
        lambda: payments.get_payment(db, intruder, view.payment.id),
        lambda: payments.reverse_payment(db, intruder, view.payment.id, "mine"),
        lambda: payments.refund_payment(db, intruder, view.payment.id, {"reason": "mine"}),
        lambda: payments.refund_credit(db, intruder, customer.id, {"reason": "mine"}),
        lambda: payments.record_payment(
            db, intruder, {"customer_id": customer.id, "amount": "1.00", "currency": "EUR"}
        ),
    ):
        with pytest.raises(Exception) as refused:
            attempt()
        assert type(refused.value).__name__ == "NotFound"


# -- the stateful test --------------------------------------------------------------------------

AMOUNTS = st.integers(min_value=1, max_value=50_000)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Books(RuleBasedStateMachine):
    """Random cash events; after each: entries balance, receivable == open balances, nothing
    negative, no payment applied twice, customer credit == its liability account."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    @initialize()
    def organisation(self) -> None:
        self.actor, self.customer = world(self.db)
        self.invoices: list[str] = []
        self.payments: list[str] = []

    @rule(cents=AMOUNTS)
    def issue(self, cents: int) -> None:
        invoice = issue(self.db, self.actor, self.customer, money(cents))
        self.invoices.append(invoice.id)

    @rule(cents=AMOUNTS)
    def pay(self, cents: int) -> None:
        view = payments.record_payment(
            self.db,
            self.actor,
            {"customer_id": self.customer.id, "amount": money(cents), "currency": "EUR"},
        )
        self.payments.append(view.payment.id)

    @rule(data=st.data())
    def pay_one_invoice_exactly(self, data: st.DataObject) -> None:
        if not self.invoices:
            return
        invoice_id = data.draw(st.sampled_from(self.invoices))
        invoice, _ = invoices.get_invoice(self.db, self.actor, invoice_id)
        if invoice.amount_due_minor <= 0 or invoice.status not in ("issued", "partially_paid"):
            return
        part = data.draw(st.integers(1, invoice.amount_due_minor))
        extra = data.draw(st.integers(0, 5_000))  # over-pay: the rest becomes credit
        view = payments.record_payment(
            self.db,
            self.actor,
            {
                "amount": money(part + extra),
                "currency": "EUR",
                "allocations": [{"invoice_id": invoice_id, "amount": money(part)}],
                "customer_id": self.customer.id,
            },
        )
        self.payments.append(view.payment.id)

    @rule(data=st.data(), settlement=st.sampled_from(["reduce_amount_due", "customer_credit"]))
    def credit(self, data: st.DataObject, settlement: str) -> None:
        if not self.invoices:
            return
        invoice_id = data.draw(st.sampled_from(self.invoices))
        try:
            credit_notes.create_credit_note(
                self.db, self.actor, invoice_id, {"reason": "goodwill", "settlement": settlement}
            )
        except (Conflict, InvalidInput):
            pass  # fully credited or void already: refused, nothing written

    @rule(data=st.data(), share=st.integers(1, 100))
    def refund(self, data: st.DataObject, share: int) -> None:
        if not self.payments:
            return
        payment_id = data.draw(st.sampled_from(self.payments))
        view = payments.get_payment(self.db, self.actor, payment_id)
        left = view.payment.amount_minor - view.payment.refunded_minor
        amount = max(left * share // 100, 1)
        try:
            payments.refund_payment(
                self.db,
                self.actor,
                payment_id,
                {"amount": money(amount), "reason": "asked for it"},
            )
        except (Conflict, InvalidInput):
            pass  # reversed, nothing left, or its credit spent: refused

    @rule(share=st.integers(1, 100))
    def refund_credit(self, share: int) -> None:
        balance = customers.get_customer(self.db, self.actor, self.customer.id)
        if balance.credit_balance_minor <= 0:
            return
        amount = max(balance.credit_balance_minor * share // 100, 1)
        payments.refund_credit(
            self.db,
            self.actor,
            self.customer.id,
            {"amount": money(amount), "reason": "closing account"},
        )

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        if not self.payments:
            return
        try:
            payments.reverse_payment(
                self.db, self.actor, data.draw(st.sampled_from(self.payments)), "bounced"
            )
        except Conflict:
            pass

    @rule(data=st.data())
    def write_off(self, data: st.DataObject) -> None:
        if not self.invoices:
            return
        try:
            invoices.mark_uncollectible(
                self.db, self.actor, data.draw(st.sampled_from(self.invoices)), "insolvent"
            )
        except Conflict:
            pass

    @invariant()
    def the_books_hold(self) -> None:
        if not hasattr(self, "actor"):
            return
        org = self.actor.organization_id
        with self.db.transaction() as session:
            unbalanced = session.execute(
                select(JournalLine.entry_id)
                .where(JournalLine.organization_id == org)
                .group_by(JournalLine.entry_id)
                .having(func.sum(JournalLine.debit_minor) != func.sum(JournalLine.credit_minor))
            ).all()
            assert unbalanced == []
            invoices_now = list(
                session.scalars(select(Invoice).where(Invoice.organization_id == org))
            )
            open_total = sum(
                i.amount_due_minor for i in invoices_now if i.status not in ("draft", "void")
            )
            receivable = ledger.account_balance(session, org, "receivable").get("EUR", 0)
            assert receivable == open_total
            for i in invoices_now:
                owed = (
                    i.total_minor
                    + i.debited_minor
                    - i.credit_applied_minor
                    - i.credited_minor
                    - i.paid_minor
                    - i.written_off_minor
                )
                assert owed >= 0, f"{i.number} owes {owed}"
                assert i.paid_minor >= 0
                applied = session.scalar(
                    select(
                        func.coalesce(
                            func.sum(
                                PaymentAllocation.amount_minor - PaymentAllocation.undone_minor
                            ),
                            0,
                        )
                    ).where(PaymentAllocation.invoice_id == i.id)
                )
                assert applied == i.paid_minor, f"{i.number}: allocations {applied} vs paid"
            for p in session.scalars(select(Payment).where(Payment.organization_id == org)):
                applied = session.scalar(
                    select(
                        func.coalesce(
                            func.sum(
                                PaymentAllocation.amount_minor - PaymentAllocation.undone_minor
                            ),
                            0,
                        )
                    ).where(PaymentAllocation.payment_id == p.id)
                )
                if p.status == "reversed":
                    assert (applied, p.unapplied_minor) == (0, 0)
                else:
                    # Every unit of a payment is applied, still credit, or refunded: once.
                    assert applied + p.unapplied_minor + p.refunded_minor == p.amount_minor
                    assert min(applied, p.unapplied_minor, p.refunded_minor) >= 0
            credit = session.get(Customer, self.customer.id).credit_balance_minor
            assert credit >= 0
            liability = ledger.account_balance(session, org, "customer_credit").get("EUR", 0)
            assert -liability == credit
            entries = session.scalar(
                select(func.count()).where(JournalEntry.organization_id == org)
            )
            assert entries >= len(self.invoices)


def test_random_cash_sequences_keep_the_books(db: Database) -> None:
    run_state_machine_as_test(
        lambda: Books(db),
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
