"""Tests for receivables: aging at the bucket boundaries, DSO, customer statements."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.receivables import (
    AGING_BUCKETS,
    ReceivableItem,
    ReceivablesError,
    StatementEntry,
    age,
    aging_bucket,
    customer_statement,
    days_overdue,
    dso,
)

AS_OF = date(2024, 6, 30)


def item(
    doc: str,
    due_days_ago: int,
    open_minor: int = 10000,
    *,
    customer: str = "C1",
    name: str = "Acme GmbH",
    currency: str = "EUR",
    issued: date | None = None,
) -> ReceivableItem:
    due = AS_OF - timedelta(days=due_days_ago)
    return ReceivableItem(
        document_id=doc,
        number=f"INV-{doc}",
        customer_id=customer,
        customer_name=name,
        currency=currency,
        issue_date=issued or min(due, AS_OF) - timedelta(days=30),
        due_date=due,
        open_minor=open_minor,
    )


# --- aging ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_ago", "expected_days", "bucket"),
    [
        (-10, 0, "current"),  # due in ten days
        (0, 0, "current"),  # due today is not late
        (1, 1, "1-30"),
        (30, 30, "1-30"),
        (31, 31, "31-60"),
        (60, 60, "31-60"),
        (61, 61, "61-90"),
        (90, 90, "61-90"),
        (91, 91, "90+"),
        (400, 400, "90+"),
    ],
)
def test_aging_buckets_at_the_exact_boundaries(days_ago, expected_days, bucket):
    document = item("1", days_ago, 12345)
    assert days_overdue(document, AS_OF) == expected_days
    assert aging_bucket(expected_days) == bucket
    report = age([document], AS_OF)
    (row,) = report.rows
    assert row.amount(bucket) == 12345
    assert row.total_minor == 12345
    assert sum(row.buckets_minor) == 12345
    assert row.oldest_days_overdue == expected_days


def test_one_customer_spread_over_all_buckets():
    documents = [
        item("a", -5, 100),
        item("b", 0, 200),
        item("c", 15, 300),
        item("d", 45, 400),
        item("e", 75, 500),
        item("f", 120, 600),
        item("g", 91, 700),
    ]
    report = age(documents, AS_OF)
    (row,) = report.rows
    assert dict(zip(AGING_BUCKETS, row.buckets_minor, strict=True)) == {
        "current": 300,
        "1-30": 300,
        "31-60": 400,
        "61-90": 500,
        "90+": 1300,
    }
    assert row.total_minor == 2800
    assert row.oldest_days_overdue == 120
    assert row.document_count == 7
    (total,) = report.totals
    assert total.buckets_minor == row.buckets_minor
    assert total.total_minor == 2800


def test_currencies_are_never_added_together():
    documents = [
        item("1", 10, 5000, currency="EUR"),
        item("2", 10, 7000, currency="USD"),
        item("3", 40, 900, currency="JPY"),
        item("4", 40, 1100, customer="C2", name="Beta Ltd", currency="eur"),
    ]
    report = age(documents, AS_OF)
    assert [(r.currency, r.customer_id, r.total_minor) for r in report.rows] == [
        ("EUR", "C1", 5000),
        ("EUR", "C2", 1100),
        ("JPY", "C1", 900),
        ("USD", "C1", 7000),
    ]
    assert [(t.currency, t.total_minor, t.document_count) for t in report.totals] == [
        ("EUR", 6100, 2),
        ("JPY", 900, 1),
        ("USD", 7000, 1),
    ]
    eur = report.total_for("eur")
    assert eur is not None and eur.amount("1-30") == 5000 and eur.amount("31-60") == 1100
    assert report.total_for("GBP") is None


def test_rows_are_ordered_by_currency_then_customer_name():
    documents = [
        item("1", 5, customer="C9", name="zeta"),
        item("2", 5, customer="C1", name="Alpha"),
        item("3", 5, customer="C5", name="beta"),
    ]
    assert [r.customer_name for r in age(documents, AS_OF).rows] == ["Alpha", "beta", "zeta"]


def test_row_shows_the_name_on_the_newest_document():
    documents = [
        item("new", 5, name="Acme AG", issued=date(2024, 6, 1)),
        item("old", 50, name="Acme GmbH", issued=date(2024, 3, 1)),
    ]
    (row,) = age(documents, AS_OF).rows
    assert row.customer_name == "Acme AG"


def test_empty_report():
    report = age([], AS_OF)
    assert report.rows == () and report.totals == () and report.as_of == AS_OF


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: item("1", 5, 0), "open_minor: INV-1 is not open"),
        (lambda: item("1", 5, -100), "open_minor: INV-1 is not open"),
        (lambda: item("1", 5, currency="XXX"), "currency:"),
        (lambda: item("1", 5, currency="ZZZ"), "currency: unknown currency"),
    ],
)
def test_bad_items_are_refused(make, message):
    with pytest.raises(ReceivablesError, match=message):
        make()


def test_a_document_listed_twice_is_refused():
    with pytest.raises(ReceivablesError, match="document_id: 1 is listed twice"):
        age([item("1", 5), item("1", 5)], AS_OF)


def test_a_document_issued_after_the_report_date_is_refused():
    late = item("1", -40, issued=AS_OF + timedelta(days=1))
    with pytest.raises(ReceivablesError, match="issue_date: INV-1"):
        age([late], AS_OF)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["EUR", "USD", "JPY", "KWD"]),
            st.sampled_from(["C1", "C2", "C3"]),
            st.integers(-60, 400),
            st.integers(1, 10**12),
        ),
        max_size=40,
    )
)
def test_bucket_totals_equal_the_open_amounts_per_currency(specs):
    documents = [
        item(str(i), days, amount, customer=customer, currency=currency)
        for i, (currency, customer, days, amount) in enumerate(specs)
    ]
    report = age(documents, AS_OF)
    expected: dict[str, int] = {}
    for document in documents:
        expected[document.currency] = expected.get(document.currency, 0) + document.open_minor
    assert {t.currency: t.total_minor for t in report.totals} == expected
    for total in report.totals:
        assert sum(total.buckets_minor) == total.total_minor
        rows = [r for r in report.rows if r.currency == total.currency]
        for index in range(len(AGING_BUCKETS)):
            assert sum(r.buckets_minor[index] for r in rows) == total.buckets_minor[index]
        assert sum(r.document_count for r in rows) == total.document_count
    for row in report.rows:
        assert sum(row.buckets_minor) == row.total_minor


# --- DSO --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receivables", "sales", "days", "expected"),
    [
        (4_500_000, 10_000_000, 30, Decimal("13.5")),  # 45,000 / 100,000 x 30
        (10_000, 30_000, 90, Decimal("30.0")),
        (10_000, 30_000, 91, Decimal("30.3")),  # 30.333...
        (20_000, 30_000, 1, Decimal("0.7")),  # 0.666...
        (1, 20, 1, Decimal("0.1")),  # exactly 0.05: half up
        (1, 40, 1, Decimal("0.0")),  # 0.025
        (3, 40, 1, Decimal("0.1")),  # 0.075
        (0, 10_000, 30, Decimal("0.0")),
        (-1, 20, 1, Decimal("-0.1")),  # a net credit balance, half away from zero
        (250_000, 100_000, 365, Decimal("912.5")),  # receivables above a period's sales
    ],
)
def test_dso(receivables, sales, days, expected):
    result = dso(receivables, sales, days)
    assert result == expected
    assert str(result) == str(expected)


def test_dso_without_sales_is_none():
    assert dso(10_000, 0, 30) is None
    assert dso(0, 0, 30) is None
    assert dso(10_000, -500, 30) is None


def test_dso_needs_a_period():
    with pytest.raises(ReceivablesError, match="days:"):
        dso(100, 100, 0)


@given(st.integers(-(10**15), 10**15), st.integers(1, 10**15), st.integers(1, 3660))
def test_dso_matches_exact_decimal_half_up(receivables, sales, days):
    exact = Context(prec=100).divide(Decimal(receivables) * days, Decimal(sales))
    assert dso(receivables, sales, days) == exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


# --- customer statements ----------------------------------------------------------------------

START = date(2024, 5, 1)
END = date(2024, 5, 31)


def entry(day: date, kind: str, reference: str, debit: int = 0, credit: int = 0) -> StatementEntry:
    return StatementEntry(day, kind, reference, f"{kind} {reference}", debit, credit)


ENTRIES = [
    # Out of date order on purpose.
    entry(date(2024, 5, 20), "payment", "PAY-2", credit=50000),
    entry(date(2024, 3, 1), "invoice", "INV-1", debit=119000),
    entry(date(2024, 4, 2), "payment", "PAY-1", credit=100000),
    entry(date(2024, 5, 3), "invoice", "INV-2", debit=23805),
    entry(date(2024, 5, 3), "credit_note", "CN-1", credit=1190),
    entry(date(2024, 5, 3), "debit_note", "DN-1", debit=595),
    entry(date(2024, 5, 31), "refund", "RF-1", debit=1000),
    entry(date(2024, 5, 31), "write_off", "WO-1", credit=1),
    entry(date(2024, 6, 1), "invoice", "INV-3", debit=99999),  # after the period
]


def test_statement_balances_to_the_cent():
    statement = customer_statement("C1", "Acme GmbH", "eur", START, END, ENTRIES)
    assert statement.currency == "EUR"
    # 1,190.00 invoiced - 1,000.00 paid before May
    assert statement.opening_balance_minor == 19000
    assert [(line.reference, line.balance_minor) for line in statement.lines] == [
        ("INV-2", 42805),
        ("CN-1", 41615),  # same-day entries keep their input order
        ("DN-1", 42210),
        ("PAY-2", -7790),  # the customer is in credit
        ("RF-1", -6790),
        ("WO-1", -6791),
    ]
    assert statement.closing_balance_minor == -6791
    assert statement.debits_minor == 23805 + 595 + 1000
    assert statement.credits_minor == 1190 + 50000 + 1
    assert statement.invoiced_minor == 24400
    assert statement.paid_minor == 49000  # payment less the refund
    assert statement.credited_minor == 1190
    assert statement.written_off_minor == 1
    assert statement.other_minor == 0


def test_entries_before_the_period_only_make_the_opening_balance():
    statement = customer_statement(
        "C1", "Acme", "EUR", date(2024, 6, 1), date(2024, 6, 30), ENTRIES
    )
    assert statement.opening_balance_minor == -6791
    assert [line.reference for line in statement.lines] == ["INV-3"]
    assert statement.closing_balance_minor == -6791 + 99999


def test_period_bounds_are_inclusive():
    day = date(2024, 5, 10)
    entries = [entry(day, "invoice", "A", debit=100), entry(day, "payment", "B", credit=40)]
    statement = customer_statement("C1", "Acme", "EUR", day, day, entries)
    assert statement.opening_balance_minor == 0
    assert [line.balance_minor for line in statement.lines] == [100, 60]
    assert statement.closing_balance_minor == 60


def test_empty_period_carries_the_balance():
    statement = customer_statement(
        "C1", "Acme", "EUR", date(2024, 4, 10), date(2024, 4, 20), ENTRIES
    )
    assert statement.lines == ()
    assert statement.opening_balance_minor == statement.closing_balance_minor == 19000
    assert statement.invoiced_minor == statement.paid_minor == 0


def test_unknown_kinds_count_as_other():
    entries = [
        entry(START, "late_fee", "LF-1", debit=4000),
        entry(START, "adjustment", "ADJ-1", credit=500),
        entry(START, "payment_reversal", "PR-1", debit=2000),
        entry(START, "credit_applied", "CA-1", credit=300),
    ]
    statement = customer_statement("C1", "Acme", "EUR", START, END, entries)
    assert statement.other_minor == 3500
    assert statement.paid_minor == -2000
    assert statement.credited_minor == 300
    assert statement.closing_balance_minor == 4000 - 500 + 2000 - 300


@pytest.mark.parametrize(
    ("entries", "start", "end", "currency", "message"),
    [
        ([], END, START, "EUR", "period_end: 2024-05-01 is before"),
        ([], START, END, "ABC", "currency: unknown currency"),
        ([entry(START, "invoice", "X", debit=-1)], START, END, "EUR", r"entries\[0\].debit_minor"),
        ([entry(START, "payment", "Y", credit=True)], START, END, "EUR", "credit_minor"),
        ([entry(START, "", "Z", debit=1)], START, END, "EUR", r"entries\[0\].kind"),
    ],
)
def test_bad_statement_input_is_refused(entries, start, end, currency, message):
    with pytest.raises(ReceivablesError, match=message):
        customer_statement("C1", "Acme", currency, start, end, entries)


KINDS = [
    "invoice",
    "debit_note",
    "payment",
    "credit_note",
    "refund",
    "payment_reversal",
    "write_off",
    "credit_applied",
    "adjustment",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 120),
            st.sampled_from(KINDS),
            st.integers(0, 10**9),
            st.integers(0, 10**9),
        ),
        max_size=30,
    ),
    st.integers(0, 120),
    st.integers(0, 60),
)
def test_closing_is_opening_plus_debits_minus_credits(specs, start_offset, length):
    base = date(2024, 1, 1)
    entries = [
        entry(base + timedelta(days=day), kind, f"R{i}", debit, credit)
        for i, (day, kind, debit, credit) in enumerate(specs)
    ]
    start = base + timedelta(days=start_offset)
    end = start + timedelta(days=length)
    statement = customer_statement("C1", "Acme", "USD", start, end, entries)
    s = statement
    assert s.closing_balance_minor == s.opening_balance_minor + s.debits_minor - s.credits_minor
    assert s.closing_balance_minor == (
        s.opening_balance_minor
        + s.invoiced_minor
        - s.paid_minor
        - s.credited_minor
        - s.written_off_minor
        + s.other_minor
    )
    assert s.opening_balance_minor == sum(
        e.debit_minor - e.credit_minor for e in entries if e.date < start
    )
    if s.lines:
        assert s.lines[-1].balance_minor == s.closing_balance_minor
    assert [line.date for line in s.lines] == sorted(line.date for line in s.lines)
    assert all(start <= line.date <= end for line in s.lines)
    in_period = [e.reference for e in entries if start <= e.date <= end]
    assert sorted(line.reference for line in s.lines) == sorted(in_period)
