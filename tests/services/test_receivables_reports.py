"""Aging as of any date, DSO and customer statements, rebuilt from dated documents and payments
on a real database."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from tallybook.core.receivables import AGING_BUCKETS
from tallybook.db.models import Customer, Invoice
from tallybook.formats import receivables_reports as reports
from tallybook.services import (
    catalog,
    credit_notes,
    customers,
    invoices,
    ledger,
    payments,
    receivables,
)
from tallybook.services.base import Actor, Database, InvalidInput, NotFound

JAN = date(2026, 1, 1)


def world(db: Database, name: str = "Brandt Logistik GmbH", *, vat: bool = False):
    actor = make_org(db)
    if vat:
        catalog.create_tax_rate(
            db, actor, {"code": "DE19", "name": "VAT 19%", "jurisdiction": "DE", "percent": "19"}
        )
    customer = customers.create_customer(
        db, actor, {"legal_name": name, "country": "DE", "currency": "EUR"}
    )
    return actor, customer


def issue(
    db: Database, actor: Actor, customer: Customer, amount: str, on: date, terms: int = 30
) -> Invoice:
    """An invoice for `amount` issued on `on`, due `terms` days later."""
    customers.update_customer(db, actor, customer.id, {"payment_terms_days": terms})
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Freight", "unit_price": amount})
    return invoices.issue_invoice(db, actor, draft.id, issue_date=on)


def pay(
    db: Database, actor: Actor, customer: Customer, amount: str, on: date, *invoice_ids: str
) -> payments.PaymentView:
    values = {
        "customer_id": customer.id,
        "amount": amount,
        "currency": "EUR",
        "received_on": on.isoformat(),
    }
    if invoice_ids:
        values["invoice_ids"] = list(invoice_ids)
    return payments.record_payment(db, actor, values)


def open_by_number(view: receivables.AgingView) -> dict[str, int]:
    return {d.number: d.open_minor for d in view.documents}


def test_aging_as_of_a_past_date_sees_what_was_open_then(db: Database) -> None:
    actor, customer = world(db)
    first = issue(db, actor, customer, "1000.00", date(2026, 1, 5))  # due 2026-02-04
    second = issue(db, actor, customer, "500.00", date(2026, 2, 10))  # due 2026-03-12
    pay(db, actor, customer, "1000.00", date(2026, 3, 20), first.id)

    before = receivables.aging_report(db, actor, date(2026, 3, 15))
    (row,) = before.report.rows
    assert row.amount("31-60") == 100000  # 39 days past due
    assert row.amount("1-30") == 50000  # 3 days past due
    assert (row.total_minor, row.oldest_days_overdue, row.document_count) == (150000, 39, 2)
    assert before.report.total_for("EUR").total_minor == 150000

    after = receivables.aging_report(db, actor, date(2026, 3, 25))
    (row,) = after.report.rows
    assert row.buckets_minor == (0, 50000, 0, 0, 0)
    assert open_by_number(after) == {second.number: 50000}

    # Before the second invoice was issued; before anything was.
    assert open_by_number(receivables.aging_report(db, actor, date(2026, 1, 31))) == {
        first.number: 100000
    }
    assert receivables.aging_report(db, actor, date(2026, 1, 4)).report.rows == ()
    # Far ahead: what the invoices say today.
    later = receivables.aging_report(db, actor, date(2030, 1, 1))
    assert open_by_number(later) == {second.number: 50000}
    assert later.report.rows[0].amount("90+") == 50000


def test_refunds_reversals_credit_notes_and_write_offs_count_from_their_dates(
    db: Database,
) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer, "200.00", date(2026, 1, 1))
    view = pay(db, actor, customer, "150.00", date(2026, 1, 10), invoice.id)
    payments.refund_payment(
        db,
        actor,
        view.payment.id,
        {"reason": "paid twice", "amount": "50.00", "refunded_on": "2026-01-20"},
    )
    credit_notes.create_credit_note(
        db,
        actor,
        invoice.id,
        {
            "reason": "damaged pallet",
            "issue_date": "2026-02-01",
            "lines": [{"line_id": "1", "amount": "30.00"}],
        },
    )

    def open_on(day: date) -> int:
        return open_by_number(receivables.aging_report(db, actor, day)).get(invoice.number, 0)

    assert open_on(date(2026, 1, 9)) == 20000
    assert open_on(date(2026, 1, 10)) == 5000
    assert open_on(date(2026, 1, 19)) == 5000
    assert open_on(date(2026, 1, 20)) == 10000  # the refund reopened 50.00
    assert open_on(date(2026, 2, 1)) == 7000  # the credit note took 30.00 off
    today = invoices.get_invoice(db, actor, invoice.id)[0]
    assert open_on(date(2100, 1, 1)) == today.amount_due_minor == 7000

    payments.reverse_payment(db, actor, view.payment.id, "bounced")
    assert open_on(date(2100, 1, 1)) == 17000  # 200 - 30 credited; the payment never was
    assert open_on(date(2026, 1, 25)) == 10000  # reversed today, not in January
    invoices.mark_uncollectible(db, actor, invoice.id, "insolvent")
    assert open_on(date(2100, 1, 1)) == 0
    assert open_on(date(2026, 2, 1)) == 7000


def test_a_voided_invoice_was_open_until_it_was_voided(db: Database) -> None:
    actor, customer = world(db)
    invoice = issue(db, actor, customer, "80.00", date(2026, 1, 1))
    invoices.void_invoice(db, actor, invoice.id, "wrong customer")
    assert receivables.aging_report(db, actor, date(2100, 1, 1)).documents == ()
    assert open_by_number(receivables.aging_report(db, actor, date(2026, 1, 2))) == {
        invoice.number: 8000
    }


def test_statement_opening_lines_and_closing_add_up(db: Database) -> None:
    actor, customer = world(db, vat=True)
    first = issue(db, actor, customer, "100.00", date(2026, 1, 5))  # 119.00
    second = issue(db, actor, customer, "50.00", date(2026, 1, 20))  # 59.50
    pay(db, actor, customer, "119.00", date(2026, 1, 25), first.id)
    credit_notes.create_credit_note(
        db,
        actor,
        second.id,
        {
            "reason": "discount agreed",
            "issue_date": "2026-02-03",
            "lines": [{"line_id": "1", "amount": "10.00"}],
        },
    )  # 11.90 with VAT
    pay(db, actor, customer, "60.00", date(2026, 2, 10))  # 47.60 due: 12.40 become credit

    january = receivables.customer_statement(
        db, actor, customer.id, date(2026, 1, 1), date(2026, 1, 31)
    )
    s = january.statement
    assert s.opening_balance_minor == 0
    assert [
        (x.kind, x.reference, x.debit_minor, x.credit_minor, x.balance_minor) for x in s.lines
    ] == [
        ("invoice", first.number, 11900, 0, 11900),
        ("invoice", second.number, 5950, 0, 17850),
        ("payment", s.lines[2].reference, 0, 11900, 5950),
    ]
    assert s.lines[2].reference.startswith("PAY-")
    assert s.closing_balance_minor == 5950
    assert (s.invoiced_minor, s.paid_minor) == (17850, 11900)
    assert january.open_receivables_minor == 5950 and january.unapplied_credit_minor == 0

    february = receivables.customer_statement(
        db, actor, customer.id, date(2026, 2, 1), date(2026, 2, 28)
    )
    s = february.statement
    assert s.opening_balance_minor == 5950
    assert [(x.kind, x.debit_minor - x.credit_minor) for x in s.lines] == [
        ("credit_note", -1190),
        ("payment", -6000),
    ]
    assert s.closing_balance_minor == 5950 - 1190 - 6000 == -1240
    assert s.closing_balance_minor == s.opening_balance_minor + sum(
        x.debit_minor - x.credit_minor for x in s.lines
    )
    assert (february.open_receivables_minor, february.unapplied_credit_minor) == (0, 1240)
    assert (
        february.open_receivables_minor - february.unapplied_credit_minor == s.closing_balance_minor
    )
    assert s.credited_minor == 1190 and s.paid_minor == 6000


def test_statement_refuses_a_backwards_period_and_another_organisations_customer(
    db: Database,
) -> None:
    actor, customer = world(db)
    with pytest.raises(InvalidInput) as backwards:
        receivables.customer_statement(db, actor, customer.id, date(2026, 2, 1), JAN)
    assert backwards.value.field == "from"
    other = make_org(db)
    with pytest.raises(NotFound):
        receivables.customer_statement(db, other, customer.id, JAN, date(2026, 1, 31))
    with pytest.raises(NotFound):
        receivables.aging_report(db, other, JAN, customer_id=customer.id)
    with pytest.raises(InvalidInput) as currency:
        receivables.aging_report(db, actor, JAN, currency="EURO")
    assert currency.value.field == "currency"


def test_dso_over_a_period(db: Database) -> None:
    actor, customer = world(db)
    issue(db, actor, customer, "600.00", date(2026, 1, 2))
    second = issue(db, actor, customer, "400.00", date(2026, 1, 15))
    pay(db, actor, customer, "550.00", date(2026, 1, 20))  # oldest first: 550 on the first
    # 450.00 open after 31 days of 1,000.00 sales: 0.45 x 31 = 13.95 -> 14.0 (half up)
    (figure,) = receivables.dso(db, actor, JAN, date(2026, 1, 31))
    assert (figure.currency, figure.receivables_minor, figure.credit_sales_minor) == (
        "EUR",
        45000,
        100000,
    )
    assert (figure.days, figure.dso) == (31, Decimal("14.0"))
    credit_notes.create_credit_note(
        db, actor, second.id, {"reason": "returned", "issue_date": "2026-02-05"}
    )
    (february,) = receivables.dso(db, actor, date(2026, 2, 1), date(2026, 2, 28))
    # Sales net of the credit note are negative: no DSO.
    assert (february.receivables_minor, february.credit_sales_minor, february.dso) == (
        5000,
        -40000,
        None,
    )


def test_report_files_read_back_equal_the_json_figures(db: Database) -> None:
    actor, customer = world(db, "=HYPERLINK(evil) GmbH")
    other = customers.create_customer(
        db, actor, {"legal_name": "Aalto Oy", "country": "FI", "currency": "EUR"}
    )
    issue(db, actor, customer, "1234.56", date(2026, 1, 1))
    issue(db, actor, other, "99.99", date(2026, 3, 1))
    issue(db, actor, other, "10.01", date(2025, 11, 1))
    view = receivables.aging_report(db, actor, date(2026, 3, 10))
    doc = reports.aging_document(view.report, view.documents)
    assert [r["customer_name"] for r in doc["rows"]] == ["=HYPERLINK(evil) GmbH", "Aalto Oy"]
    assert doc["totals"][0]["total"] == "1344.56"

    rows = list(csv.DictReader(io.StringIO(reports.aging_csv(view.report))))
    for json_row, csv_row in zip(doc["rows"], rows[:-1], strict=True):
        assert csv_row["customer_id"] == json_row["customer_id"]
        for key, bucket in zip(reports.BUCKET_KEYS, AGING_BUCKETS, strict=True):
            assert csv_row[bucket] == json_row[key]
        assert csv_row["total"] == json_row["total"]
    assert rows[0]["customer"] == "'=HYPERLINK(evil) GmbH"  # never run as a formula
    assert (rows[-1]["row_type"], rows[-1]["total"]) == ("total", "1344.56")

    data = reports.aging_xlsx(view.report, view.documents)
    assert data == reports.aging_xlsx(view.report, view.documents)  # deterministic
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Aging EUR", "Documents EUR"]
    sheet = book["Aging EUR"]
    header = [c.value for c in sheet[1]]
    values = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    for json_row, xlsx_row in zip(doc["rows"], values, strict=False):
        cells = dict(zip(header, xlsx_row, strict=True))
        assert cells["Customer"] == json_row["customer_name"]
        for key, bucket in zip(reports.BUCKET_KEYS, AGING_BUCKETS, strict=True):
            assert Decimal(str(cells[bucket])) == Decimal(json_row[key])
    totals = dict(zip(header, values[-1], strict=True))
    assert totals["Customer"] == "Total" and Decimal(str(totals["Total"])) == Decimal("1344.56")
    documents = [[c.value for c in r] for r in book["Documents EUR"].iter_rows(min_row=2)]
    assert len(documents) == 4  # three documents and the totals row

    statement = receivables.customer_statement(
        db, actor, other.id, date(2026, 1, 1), date(2026, 3, 31)
    ).statement
    sdoc = reports.statement_document(statement)
    lines = list(csv.DictReader(io.StringIO(reports.statement_csv(statement))))
    assert lines[0]["balance"] == sdoc["opening_balance"] == "10.01"
    assert [x["balance"] for x in lines[1:-1]] == [x["balance"] for x in sdoc["lines"]]
    assert lines[-1]["balance"] == sdoc["closing_balance"] == "110.00"
    book = load_workbook(io.BytesIO(reports.statement_xlsx(statement)))
    cells = [[c.value for c in r] for r in book["Statement"].iter_rows(min_row=2)]
    assert Decimal(str(cells[0][6])) == Decimal(sdoc["opening_balance"])
    assert Decimal(str(cells[-1][6])) == Decimal(sdoc["closing_balance"])
    summary = {r[0].value: r[2].value for r in book["Summary"].iter_rows(min_row=2)}
    assert Decimal(str(summary["Invoiced"])) == Decimal(sdoc["invoiced"]) == Decimal("99.99")


# -- properties ----------------------------------------------------------------------------------

invoice_plans = st.lists(
    st.tuples(st.integers(1, 500_00), st.integers(0, 90), st.integers(0, 45)),
    min_size=1,
    max_size=4,
)  # (amount in cents, issue day, payment terms)
payment_plans = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 120), st.integers(1, 100)),
    max_size=4,
)  # (which invoice, days after its issue, percent of what is still owed)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    invoice_plans=invoice_plans,
    payment_plans=payment_plans,
    as_of_days=st.lists(st.integers(0, 240), min_size=1, max_size=3),
)
def test_aging_and_statements_agree_with_the_documents_on_any_date(
    db: Database, invoice_plans, payment_plans, as_of_days
) -> None:
    actor, customer = world(db)
    issued = []
    for cents, day, terms in invoice_plans:
        amount = format(Decimal(cents).scaleb(-2), "f")
        issued.append((issue(db, actor, customer, amount, JAN + timedelta(days=day), terms), cents))
    owed = {inv.id: cents for inv, cents in issued}
    paid: list[tuple[str, date, int]] = []
    for which, after, percent in payment_plans:
        invoice, _ = issued[which % len(issued)]
        amount = owed[invoice.id] * percent // 100
        if amount <= 0:
            continue
        on = invoice.issue_date + timedelta(days=after)
        payments.record_payment(
            db,
            actor,
            {
                "amount": format(Decimal(amount).scaleb(-2), "f"),
                "currency": "EUR",
                "received_on": on.isoformat(),
                "allocations": [
                    {"invoice_id": invoice.id, "amount": format(Decimal(amount).scaleb(-2), "f")}
                ],
            },
        )
        owed[invoice.id] -= amount
        paid.append((invoice.id, on, amount))

    for offset in as_of_days:
        day = JAN + timedelta(days=offset)
        expected = {
            inv.number: cents - sum(a for i, on, a in paid if i == inv.id and on <= day)
            for inv, cents in issued
            if inv.issue_date <= day
        }
        expected = {number: amount for number, amount in expected.items() if amount > 0}
        view = receivables.aging_report(db, actor, day)
        assert open_by_number(view) == expected
        total = view.report.total_for("EUR")
        assert (total.total_minor if total else 0) == sum(expected.values())
        assert sum(total.buckets_minor if total else ()) == sum(expected.values())
        for row in view.report.rows:
            assert sum(row.buckets_minor) == row.total_minor

        start = JAN + timedelta(days=offset // 2)
        statement = receivables.customer_statement(db, actor, customer.id, start, day)
        s = statement.statement
        assert s.closing_balance_minor == s.opening_balance_minor + sum(
            x.debit_minor - x.credit_minor for x in s.lines
        )
        assert s.closing_balance_minor == sum(expected.values())
        assert statement.open_receivables_minor == sum(expected.values())
    # The books agree with the documents as they stand today.
    with db.transaction() as session:
        books = ledger.account_balance(session, actor.organization_id, "receivable")
    assert books.get("EUR", 0) == sum(owed.values())
