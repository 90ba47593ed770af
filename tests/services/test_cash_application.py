"""Cash application through the service on both databases: a camt.053 statement is imported,
sure lines post as payments with their journal entries, the rest wait for a clerk."""

from __future__ import annotations

from datetime import date

import pytest
from conftest import make_org
from sqlalchemy import func, select

from tallybook.db.models import (
    AuditEvent,
    BankStatement,
    BankStatementLine,
    Invoice,
    JournalEntry,
    JournalLine,
    Payment,
)
from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053
from tallybook.services import cash_application as cash
from tallybook.services import catalog, customers, invoices, ledger, payments
from tallybook.services.base import Actor, Conflict, Database, InvalidInput, NotFound

BRANDT_IBAN = "DE44500105175407324931"
MULLER_IBAN = "DE89370400440532013000"
OUR_IBAN = "DE02120300000000202051"


def issue(db: Database, actor: Actor, customer_id: str, unit_price: str) -> Invoice:
    draft = invoices.create_draft(db, actor, customer_id)
    invoices.add_line(db, actor, draft.id, {"description": "Consulting", "unit_price": unit_price})
    return invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 2, 1))


@pytest.fixture
def world(db: Database) -> dict:
    actor = make_org(db)
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    brandt = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Brandt Logistik GmbH",
            "country": "DE",
            "currency": "EUR",
            "bank_accounts": [BRANDT_IBAN],
        },
    )
    muller = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Müller & Söhne KG",
            "country": "DE",
            "currency": "EUR",
            "bank_accounts": ["DE89 3704 0044 0532 0130 00"],
        },
    )
    chen = customers.create_customer(
        db, actor, {"legal_name": "Chen Analytics Ltd", "country": "DE", "currency": "EUR"}
    )
    return {
        "actor": actor,
        "brandt": brandt,
        "muller": muller,
        "chen": chen,
        "inv1": issue(db, actor, brandt.id, "100.00"),  # 119.00
        "inv2": issue(db, actor, brandt.id, "50.00"),  # 59.50
        "inv3": issue(db, actor, muller.id, "200.00"),  # 238.00
        "inv4": issue(db, actor, chen.id, "80.00"),  # 95.20
    }


def statement(world: dict, statement_id: str = "STMT-2026-03-04") -> bytes:
    inv1, inv2, inv4 = world["inv1"], world["inv2"], world["inv4"]
    return write_camt053(
        [
            # 1. the structured reference of INV 1, exact amount
            Movement(date(2026, 3, 2), 11900, "EUR", "Brandt Logistik", BRANDT_IBAN,
                     None, inv1.payment_reference),
            # 2. no reference, the exact amount from Müller's known account
            Movement(date(2026, 3, 2), 23800, "EUR", "MUELLER UND SOEHNE", MULLER_IBAN,
                     "Zahlung Februar"),
            # 3. an unknown payer without a reference
            Movement(date(2026, 3, 3), 7777, "EUR", "J. Doe", "DE75512108001245126199",
                     "thanks"),
            # 4. money out
            Movement(date(2026, 3, 3), -500, "EUR", "Office Supplies AG", None, "paper"),
            # 5. a partial payment of INV 2 by number, from Brandt's account
            Movement(date(2026, 3, 4), 3000, "EUR", "Brandt Logistik", BRANDT_IBAN,
                     f"Teilzahlung {inv2.number}"),
            # 6. someone pays INV 4 by number with an over-payment, from an unknown account
            Movement(date(2026, 3, 4), 10000, "EUR", "Treasury Services", None,
                     f"Invoice {inv4.number}"),
        ],
        account=OUR_IBAN,
        currency="EUR",
        statement_id=statement_id,
        created=date(2026, 3, 5),
    )


def lines_of(db: Database, statement_id: str) -> list[BankStatementLine]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(BankStatementLine)
                .where(BankStatementLine.statement_id == statement_id)
                .order_by(BankStatementLine.position)
            )
        )


def test_import_posts_sure_lines_and_queues_the_rest(db: Database, world: dict) -> None:
    actor = world["actor"]
    result = cash.import_statement(db, actor, statement(world), file_name="march.xml")
    assert not result.already_imported
    assert (result.lines_in_file, result.lines_new, result.lines_known) == (6, 6, 0)
    assert (result.applied, result.review, result.outgoing) == (3, 2, 1)
    assert result.applied_minor == {"EUR": 11900 + 23800 + 3000}
    lines = lines_of(db, result.statement.id)
    assert [line.status for line in lines] == [
        "applied",
        "applied",
        "review",
        "outgoing",
        "applied",
        "review",
    ]
    assert lines[0].method == "reference" and lines[0].customer_id == world["brandt"].id
    assert lines[1].method == "amount_and_payer" and lines[1].customer_id == world["muller"].id
    # The over-payment from an unknown account is a proposal, not a posting.
    assert lines[5].proposal["customer_id"] == world["chen"].id
    assert lines[5].proposal["allocations"] == [
        {"invoice_id": world["inv4"].id, "invoice_number": world["inv4"].number,
         "amount_minor": 9520}
    ]
    assert lines[5].proposal["unapplied_minor"] == 480
    assert lines[5].proposal["reasons"]
    assert lines[2].proposal["allocations"] == []

    inv1, _ = invoices.get_invoice(db, actor, world["inv1"].id)
    inv2, _ = invoices.get_invoice(db, actor, world["inv2"].id)
    inv3, _ = invoices.get_invoice(db, actor, world["inv3"].id)
    assert (inv1.status, inv1.amount_due_minor) == ("paid", 0)
    assert (inv2.status, inv2.amount_due_minor) == ("partially_paid", 2950)
    assert (inv3.status, inv3.amount_due_minor) == ("paid", 0)
    posted = payments.get_payment(db, actor, lines[0].payment_id)
    assert (posted.payment.source, posted.payment.method) == ("bank", "bank_transfer")
    assert posted.payment.received_on == date(2026, 3, 2)
    assert posted.payment.number.startswith("PAY-2026-")
    assert [(a.invoice_id, a.amount_minor) for a in posted.allocations] == [(inv1.id, 11900)]

    with db.reading() as session:
        payment_numbers = session.scalars(
            select(Payment.number)
            .where(Payment.organization_id == actor.organization_id)
            .order_by(Payment.number)
        ).all()
        assert payment_numbers == ["PAY-2026-000001", "PAY-2026-000002", "PAY-2026-000003"]
        entries = session.scalars(
            select(JournalEntry).where(
                JournalEntry.organization_id == actor.organization_id,
                JournalEntry.kind == "payment_received",
            )
        ).all()
        assert len(entries) == 3
        for entry in entries:
            debit, credit = session.execute(
                select(func.sum(JournalLine.debit_minor), func.sum(JournalLine.credit_minor))
                .where(JournalLine.entry_id == entry.id)
            ).one()
            assert debit == credit
        journal_numbers = session.scalars(
            select(JournalEntry.number).where(
                JournalEntry.organization_id == actor.organization_id
            )
        ).all()
        assert len(set(journal_numbers)) == len(journal_numbers)  # issues + payments, no reuse
        recorded = session.scalar(
            select(func.count()).where(
                AuditEvent.organization_id == actor.organization_id,
                AuditEvent.action == "payment.recorded",
            )
        )
        assert recorded == 3
    with db.transaction() as session:
        bank = ledger.account_balance(session, actor.organization_id, "bank")
        receivable = ledger.account_balance(session, actor.organization_id, "receivable")
    assert bank == {"EUR": 38700}
    # Open: INV 2 29.50 + INV 4 95.20
    assert receivable == {"EUR": 2950 + 9520}


def test_the_same_statement_again_creates_nothing(db: Database, world: dict) -> None:
    actor = world["actor"]
    data = statement(world)
    first = cash.import_statement(db, actor, data, file_name="march.xml")
    again = cash.import_statement(db, actor, data, file_name="march-copy.xml")
    assert again.already_imported and again.statement.id == first.statement.id
    assert (again.lines_new, again.applied, again.review) == (0, 3, 2)
    # The same statement re-exported (different bytes, same content) is recognised by its lines.
    reformatted = data.replace(b"<Ntry>", b"\n  <Ntry>")
    third = cash.import_statement(db, actor, reformatted, file_name="march-2.xml")
    assert not third.already_imported
    assert (third.lines_in_file, third.lines_new, third.lines_known) == (6, 0, 6)
    with db.reading() as session:
        assert session.scalar(
            select(func.count()).where(
                Payment.organization_id == actor.organization_id, Payment.source == "bank"
            )
        ) == 3
        assert session.scalar(
            select(func.count()).where(
                BankStatementLine.organization_id == actor.organization_id
            )
        ) == 6
        assert session.scalar(
            select(func.count()).where(BankStatement.organization_id == actor.organization_id)
        ) == 2


def test_clerk_confirms_assigns_splits_and_sets_aside(db: Database, world: dict) -> None:
    actor = world["actor"]
    result = cash.import_statement(db, actor, statement(world), file_name="march.xml")
    lines = lines_of(db, result.statement.id)
    review, _ = cash.list_lines(db, actor, status="review")
    assert {line.id for line in review} == {lines[2].id, lines[5].id}

    confirmed = cash.confirm_line(db, actor, lines[5].id)
    assert (confirmed.amount_minor, confirmed.unapplied_minor) == (10000, 480)
    assert customers.get_customer(db, actor, world["chen"].id).credit_balance_minor == 480
    with pytest.raises(Conflict):
        cash.confirm_line(db, actor, lines[5].id)

    # J. Doe turns out to pay for Brandt: split over INV 2's rest and credit.
    with pytest.raises(InvalidInput) as too_much:
        cash.apply_line(
            db, actor, lines[2].id, world["brandt"].id,
            [{"invoice_id": world["inv2"].id, "amount": "90.00"}],
        )
    assert too_much.value.field == "allocations"
    payment = cash.apply_line(
        db, actor, lines[2].id, world["brandt"].id,
        [{"invoice_id": world["inv2"].id, "amount": "29.50"}],
        note="Doe is Brandt's managing director",
    )
    assert (payment.amount_minor, payment.unapplied_minor) == (7777, 4827)
    inv2, _ = invoices.get_invoice(db, actor, world["inv2"].id)
    assert inv2.status == "paid"
    brandt = customers.get_customer(db, actor, world["brandt"].id)
    assert "DE75512108001245126199" in brandt.bank_accounts  # remembered for next time
    line = cash.get_line(db, actor, lines[2].id)
    assert (line.status, line.payment_id, line.resolution_note) == (
        "applied", payment.id, "Doe is Brandt's managing director"
    )

    with pytest.raises(Conflict):
        cash.ignore_line(db, actor, lines[3].id, "supplier payment")  # outgoing, not in review


def test_set_aside_reopen_and_rematch_after_an_invoice_is_issued(db: Database) -> None:
    actor = make_org(db)
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
    )
    late = customers.create_customer(
        db, actor,
        {"legal_name": "Late Issuer SE", "country": "DE", "currency": "EUR",
         "bank_accounts": [BRANDT_IBAN]},
    )
    data = write_camt053(
        [Movement(date(2026, 3, 2), 5950, "EUR", "Late Issuer", BRANDT_IBAN, "advance")],
        account=OUR_IBAN, currency="EUR", statement_id="S-early", created=date(2026, 3, 3),
    )
    result = cash.import_statement(db, actor, data, file_name="early.xml")
    assert (result.applied, result.review) == (0, 1)
    (line,) = lines_of(db, result.statement.id)
    cash.ignore_line(db, actor, line.id, "waiting for the invoice")
    with pytest.raises(InvalidInput):
        cash.ignore_line(db, actor, line.id, " ")
    assert cash.reopen_line(db, actor, line.id).status == "review"
    invoice = issue(db, actor, late.id, "50.00")  # 59.50: now the amount has an invoice
    run = cash.rematch(db, actor)
    assert (run.examined, run.applied, run.review) == (1, 1, 0)
    after, _ = invoices.get_invoice(db, actor, invoice.id)
    assert after.status == "paid"
    assert cash.get_line(db, actor, line.id).status == "applied"


def test_a_bad_file_imports_nothing(db: Database, world: dict) -> None:
    actor = world["actor"]
    data = statement(world).replace(b"<CdtDbtInd>CRDT</CdtDbtInd>", b"<CdtDbtInd>X</CdtDbtInd>", 1)
    with pytest.raises(InvalidInput) as bad:
        cash.import_statement(db, actor, data, file_name="broken.xml")
    assert bad.value.field == "file"
    with pytest.raises(InvalidInput) as empty:
        cash.import_statement(db, actor, b"   ", file_name="empty.xml")
    assert "empty" in empty.value.detail
    with db.reading() as session:
        assert session.scalar(
            select(func.count()).where(BankStatement.organization_id == actor.organization_id)
        ) == 0


def test_csv_statement_with_a_column_mapping(db: Database, world: dict) -> None:
    actor = world["actor"]
    csv = (
        "Buchungstag;Betrag;Auftraggeber;IBAN;Verwendungszweck\n"
        f"02.03.2026;119,00;Brandt Logistik;{BRANDT_IBAN};{world['inv1'].number}\n"
    ).encode()
    mapping = {
        "date": "Buchungstag", "amount": "Betrag", "payer": "Auftraggeber",
        "payer_account": "IBAN", "reference": ["Verwendungszweck"], "currency": "EUR",
        "date_format": "%d.%m.%Y", "decimal_separator": ",", "delimiter": ";",
    }
    result = cash.import_statement(db, actor, csv, file_name="export.csv", mapping=mapping)
    assert (result.applied, result.review) == (1, 0)
    with pytest.raises(InvalidInput) as unknown:
        cash.import_statement(db, actor, csv, file_name="x.csv", mapping={"colour": "red"})
    assert unknown.value.field == "mapping"


def test_other_organisations_lines_are_not_found(db: Database, world: dict) -> None:
    actor = world["actor"]
    result = cash.import_statement(db, actor, statement(world), file_name="march.xml")
    line = lines_of(db, result.statement.id)[2]
    stranger = make_org(db)
    with pytest.raises(NotFound):
        cash.get_line(db, stranger, line.id)
    with pytest.raises(NotFound):
        cash.get_statement(db, stranger, result.statement.id)
    with pytest.raises(NotFound):
        cash.ignore_line(db, stranger, line.id, "not ours")
    with pytest.raises(NotFound):
        cash.apply_line(db, stranger, line.id, world["brandt"].id)
    outsider = customers.create_customer(
        db, stranger, {"legal_name": "Outsider", "country": "DE", "currency": "EUR"}
    )
    with pytest.raises(NotFound):
        cash.apply_line(db, actor, line.id, outsider.id)
    assert cash.get_line(db, actor, line.id).status == "review"


def test_bank_accounts_are_checked(db: Database) -> None:
    actor = make_org(db)
    with pytest.raises(InvalidInput) as bad:
        customers.create_customer(
            db, actor,
            {"legal_name": "X", "country": "DE", "currency": "EUR",
             "bank_accounts": ["DE44500105175407324932"]},
        )
    assert bad.value.field == "bank_accounts" and "check digits" in bad.value.detail
    with pytest.raises(InvalidInput) as card:
        customers.create_customer(
            db, actor,
            {"legal_name": "X", "country": "DE", "currency": "EUR",
             "bank_accounts": ["4111111111111111"]},
        )
    assert "card" in card.value.detail
