"""Tests for dunning: a whole schedule day by day, gaps, late fees and caps, the worklist."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.dunning import (
    DunningError,
    DunningInvoice,
    DunningPolicy,
    DunningStep,
    LateFee,
    late_fee_for,
    paused_reminders,
    reminders_due,
    step_dates,
    worklist,
)
from tallybook.core.money import RoundingMode

D = Decimal
DUE = date(2024, 3, 15)
STEPS = (
    DunningStep(-3, 1, "friendly reminder"),
    DunningStep(0, 1, "due today"),
    DunningStep(7, 2, "first reminder"),
    DunningStep(14, 2, "second reminder", late_fee=True),
    DunningStep(30, 3, "final notice", late_fee=True),
)
FIXED_FEE = LateFee("fixed", amount_minor={"EUR": 4000, "JPY": 5000})
POLICY = DunningPolicy(STEPS, FIXED_FEE)
ONE = timedelta(days=1)


def invoice(open_minor: int = 100000, **changes) -> DunningInvoice:
    base = DunningInvoice(
        invoice_id="inv_1",
        number="INV-2024-001",
        customer_id="C1",
        currency="EUR",
        due_date=DUE,
        open_minor=open_minor,
    )
    return replace(base, **changes)


def record(inv: DunningInvoice, action) -> DunningInvoice:
    """What the dunning job stores after sending `action`."""
    return replace(
        inv,
        steps_done=inv.steps_done | {action.step_index},
        late_fees_charged_minor=inv.late_fees_charged_minor + action.fee_minor,
    )


def run_daily(inv: DunningInvoice, policy: DunningPolicy, days: list[date]):
    sent = []
    for day in days:
        actions = reminders_due([inv], policy, day)
        assert len(actions) <= 1
        for action in actions:
            sent.append((day, action))
            inv = record(inv, action)
    return inv, sent


def every_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# --- the schedule -----------------------------------------------------------------------------


def test_step_dates():
    assert step_dates(POLICY, DUE) == (
        date(2024, 3, 12),
        date(2024, 3, 15),
        date(2024, 3, 22),
        date(2024, 3, 29),
        date(2024, 4, 14),
    )


def test_each_reminder_goes_out_on_its_day_and_only_then():
    days = every_day(DUE - timedelta(days=10), DUE + timedelta(days=60))
    final, sent = run_daily(invoice(), POLICY, days)
    assert [(day, a.step_index, a.level, a.step_name) for day, a in sent] == [
        (date(2024, 3, 12), 0, 1, "friendly reminder"),
        (date(2024, 3, 15), 1, 1, "due today"),
        (date(2024, 3, 22), 2, 2, "first reminder"),
        (date(2024, 3, 29), 3, 2, "second reminder"),
        (date(2024, 4, 14), 4, 3, "final notice"),
    ]
    assert all(a.skipped_steps == () for _, a in sent)
    assert all(a.step_date == day for day, a in sent)
    assert [a.days_overdue for _, a in sent] == [-3, 0, 7, 14, 30]
    assert [a.fee_minor for _, a in sent] == [0, 0, 0, 4000, 4000]
    assert final.steps_done == frozenset(range(5))
    assert final.late_fees_charged_minor == 8000


def test_a_reminder_is_never_repeated():
    inv = invoice()
    (action,) = reminders_due([inv], POLICY, DUE)
    # Pure: asking again without recording gives the same answer...
    assert reminders_due([inv], POLICY, DUE) == [action]
    inv = record(inv, action)
    # ...and once recorded, nothing more that day or until the next step.
    for day in every_day(DUE, DUE + timedelta(days=6)):
        assert reminders_due([inv], POLICY, day) == []


def test_after_a_gap_only_the_latest_step_goes_out_and_the_rest_are_skipped():
    inv = invoice(steps_done=frozenset({0}))
    (action,) = reminders_due([inv], POLICY, DUE + timedelta(days=20))
    assert action.step_index == 3
    assert action.skipped_steps == (1, 2)
    assert action.step_date == date(2024, 3, 29)
    assert action.fee_minor == 4000
    assert "skipped due today, first reminder" in action.summary
    assert "fell due on 2024-03-29" in action.summary
    inv = record(inv, action)
    # The skipped steps are never sent afterwards.
    for day in every_day(DUE + timedelta(days=20), DUE + timedelta(days=29)):
        assert reminders_due([inv], POLICY, day) == []
    (final,) = reminders_due([inv], POLICY, DUE + timedelta(days=30))
    assert (final.step_index, final.skipped_steps) == (4, ())


def test_a_job_that_never_ran_sends_only_the_final_notice():
    (action,) = reminders_due([invoice()], POLICY, DUE + timedelta(days=45))
    assert action.step_index == 4
    assert action.skipped_steps == (0, 1, 2, 3)
    # The skipped second reminder carried a fee; only the step sent charges one.
    assert action.fee_minor == 4000


def test_never_falls_back_to_a_milder_step_when_the_due_date_moves_out():
    inv = invoice(steps_done=frozenset({3}), due_date=DUE + timedelta(days=30))
    for day in every_day(DUE, DUE + timedelta(days=59)):
        assert reminders_due([inv], POLICY, day) == []
    (action,) = reminders_due([inv], POLICY, DUE + timedelta(days=60))
    assert action.step_index == 4


def test_nothing_before_the_first_step():
    assert reminders_due([invoice()], POLICY, DUE - timedelta(days=4)) == []
    assert reminders_due([invoice()], DunningPolicy(()), DUE + timedelta(days=100)) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "paid", "open_minor": 0},
        {"status": "paid"},
        {"status": "void"},
        {"status": "uncollectible"},
        {"status": "issued", "open_minor": 0},
        {"status": "partially_paid", "open_minor": 0},
        {"disputed": True},
    ],
)
def test_closed_and_disputed_invoices_get_nothing(changes):
    inv = invoice(**changes)
    for day in every_day(DUE - timedelta(days=5), DUE + timedelta(days=40)):
        assert reminders_due([inv], POLICY, day) == []


def test_partially_paid_invoices_are_chased():
    inv = invoice(500, status="partially_paid", steps_done=frozenset({0}))
    (action,) = reminders_due([inv], POLICY, DUE)
    assert action.step_index == 1
    assert action.summary == (
        "INV-2024-001: send due today (level 1, on the due date) for 5.00 EUR open."
    )


def test_disputed_invoices_are_reported_as_paused():
    disputed = invoice(disputed=True, steps_done=frozenset({0, 1}))
    others = [invoice(invoice_id="inv_2", number="INV-2"), invoice(status="void", disputed=True)]
    day = DUE + timedelta(days=8)
    (paused,) = paused_reminders([disputed, *others], POLICY, day)
    assert (paused.invoice_id, paused.step_index, paused.step_date) == ("inv_1", 2, DUE + 7 * ONE)
    assert paused.summary == "INV-2024-001: first reminder paused while the invoice is disputed."
    assert paused_reminders([disputed], POLICY, DUE + ONE) == []  # nothing would be due
    # Once the dispute is resolved the schedule picks up at the latest step.
    (action,) = reminders_due([replace(disputed, disputed=False)], POLICY, day)
    assert action.step_index == 2


def test_small_balances_are_not_chased():
    policy = DunningPolicy(STEPS, FIXED_FEE, min_overdue_minor=1000)
    assert reminders_due([invoice(999)], policy, DUE) == []
    assert len(reminders_due([invoice(1000)], policy, DUE)) == 1


def test_minimum_per_currency():
    policy = DunningPolicy(STEPS, None, min_overdue_minor={"EUR": 500, "jpy": 1000})
    assert policy.minimum_for("JPY") == 1000
    assert reminders_due([invoice(999, currency="JPY")], policy, DUE) == []
    assert len(reminders_due([invoice(1000, currency="JPY")], policy, DUE)) == 1
    assert len(reminders_due([invoice(500)], policy, DUE)) == 1
    assert len(reminders_due([invoice(1, currency="USD")], policy, DUE)) == 1  # no minimum set


def test_actions_keep_input_order_one_per_invoice():
    invoices = [
        invoice(invoice_id=f"inv_{n}", number=f"INV-{n}", due_date=DUE + timedelta(days=n))
        for n in (2, -20, 0, 5)
    ]
    actions = reminders_due(invoices, POLICY, DUE)
    assert [(a.invoice_id, a.step_index) for a in actions] == [
        ("inv_2", 0),  # due in two days: the friendly reminder, a day late
        ("inv_-20", 3),
        ("inv_0", 1),
    ]


# --- late fees --------------------------------------------------------------------------------


def test_fixed_fee_per_currency():
    assert late_fee_for(FIXED_FEE, "EUR", 100000) == 4000
    assert late_fee_for(FIXED_FEE, "jpy", 100000) == 5000
    assert late_fee_for(FIXED_FEE, "USD", 100000) == 0  # no amount for USD


def test_no_fee_configured_for_the_currency_says_so():
    usd = invoice(currency="USD", steps_done=frozenset({0, 1, 2}))
    (action,) = reminders_due([usd], POLICY, DUE + timedelta(days=14))
    assert action.fee_minor == 0
    assert "no late fee" in action.summary


@pytest.mark.parametrize(
    ("percent", "currency", "open_minor", "expected"),
    [
        (D("1.5"), "EUR", 123456, 1852),  # 1.5 % of 1,234.56 = 18.5184
        (D("1"), "EUR", 50, 1),  # 0.005 EUR: half a cent rounds up
        (D("1"), "EUR", 49, 0),  # 0.0049: zero fee
        (D("2"), "EUR", 0, 0),
        (D("1.5"), "JPY", 12345, 185),  # 185.175 yen
        (D("2.5"), "JPY", 1234, 31),  # 30.85 yen
        (D("0.5"), "JPY", 1300, 7),  # 6.5 yen: half up
        (D("0.5"), "JPY", 1299, 6),  # 6.495 yen
        (D("1"), "KWD", 12345, 123),  # 0.12345 KWD: three decimals
        (D("1"), "KWD", 12350, 124),  # 0.1235 KWD: half up
        (D("0"), "EUR", 100000, 0),
    ],
)
def test_percent_fee_rounds_half_up_in_minor_units(percent, currency, open_minor, expected):
    assert late_fee_for(LateFee("percent", percent=percent), currency, open_minor) == expected


def test_percent_fee_follows_the_chosen_rounding_mode():
    half_even = LateFee("percent", percent=D("0.5"), rounding=RoundingMode.HALF_EVEN)
    assert late_fee_for(half_even, "JPY", 1300) == 6
    assert late_fee_for(half_even, "JPY", 1500) == 8


def test_percent_fee_on_a_reminder():
    policy = DunningPolicy(STEPS, LateFee("percent", percent=D("1.5")))
    inv = invoice(123456, currency="JPY", steps_done=frozenset({0, 1, 2}))
    (action,) = reminders_due([inv], policy, DUE + timedelta(days=14))
    assert action.fee_minor == 1852  # 1.5 % of 123,456 yen = 1,851.84
    assert "charging a late fee of 1852 JPY" in action.summary


def test_cap_limits_each_fee():
    fee = LateFee("percent", percent=D("10"), cap_minor={"EUR": 5000})
    assert late_fee_for(fee, "EUR", 100000) == 5000  # 10 % would be 100.00
    assert late_fee_for(fee, "EUR", 40000) == 4000
    assert late_fee_for(fee, "USD", 100000) == 10000  # no cap for USD


def test_cap_limits_the_fees_of_one_invoice_together():
    fee = LateFee("fixed", amount_minor={"EUR": 4000}, cap_minor={"EUR": 5000})
    assert late_fee_for(fee, "EUR", 100000, charged_minor=0) == 4000
    assert late_fee_for(fee, "EUR", 100000, charged_minor=4000) == 1000
    assert late_fee_for(fee, "EUR", 100000, charged_minor=5000) == 0
    assert late_fee_for(fee, "EUR", 100000, charged_minor=7000) == 0  # already over: nothing

    policy = DunningPolicy(STEPS, fee)
    final, sent = run_daily(invoice(), policy, every_day(DUE, DUE + timedelta(days=40)))
    assert [a.fee_minor for _, a in sent] == [0, 0, 4000, 1000]
    assert final.late_fees_charged_minor == 5000
    # The final notice still goes out when the cap leaves no fee to charge.
    inv = invoice(steps_done=frozenset({0, 1, 2, 3}), late_fees_charged_minor=5000)
    (action,) = reminders_due([inv], policy, DUE + timedelta(days=30))
    assert action.fee_minor == 0
    assert "cap reached" in action.summary


def test_no_fee_without_a_fee_policy():
    policy = DunningPolicy(STEPS)
    _, sent = run_daily(invoice(), policy, every_day(DUE, DUE + timedelta(days=40)))
    assert [a.fee_minor for _, a in sent] == [0, 0, 0, 0]
    assert all("fee" not in a.summary for _, a in sent)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LateFee("flat"), "kind: must be one of fixed, percent"),
        (lambda: LateFee("percent", percent=1.5), "percent: give a Decimal"),
        (lambda: LateFee("percent", percent=D("-1")), "percent: must be zero or more"),
        (lambda: LateFee("percent", percent=D("NaN")), "percent: must be zero or more"),
        (lambda: LateFee("fixed", percent=D("1")), "percent: a fixed late fee"),
        (lambda: LateFee("percent", amount_minor={"EUR": 1}), "amount_minor: a percent"),
        (lambda: LateFee("fixed", amount_minor={"EUR": -1}), r"amount_minor\[EUR\]"),
        (lambda: LateFee("fixed", amount_minor={"EUR": 1.5}), r"amount_minor\[EUR\]"),
        (lambda: LateFee("fixed", amount_minor={"ZZZ": 1}), "amount_minor: unknown currency"),
        (lambda: LateFee("fixed", cap_minor={"EUR": -5}), r"cap_minor\[EUR\]"),
        (
            lambda: DunningPolicy((DunningStep(7, 1, "a"), DunningStep(7, 2, "b"))),
            r"steps\[1\].offset_days: 7 must come after",
        ),
        (
            lambda: DunningPolicy((DunningStep(7, 2, "a"), DunningStep(14, 1, "b"))),
            r"steps\[1\].level: escalation never goes down",
        ),
        (lambda: DunningPolicy((DunningStep(0, 0, "a"),)), r"steps\[0\].level"),
        (lambda: DunningPolicy((DunningStep(0, 1, ""),)), r"steps\[0\].name"),
        (lambda: DunningPolicy(STEPS, min_overdue_minor=-1), "min_overdue_minor"),
        (lambda: invoice(status="draft"), "status: INV-2024-001 has status 'draft'"),
        (lambda: invoice(-1), "open_minor"),
        (lambda: invoice(currency="ABC"), "currency: unknown currency"),
        (lambda: invoice(late_fees_charged_minor=-1), "late_fees_charged_minor"),
        (lambda: invoice(steps_done=frozenset({-1})), "steps_done"),
    ],
)
def test_bad_policies_and_invoices_are_refused(make, message):
    with pytest.raises(DunningError, match=message):
        make()


def test_a_step_the_policy_does_not_have_is_refused():
    with pytest.raises(DunningError, match="steps_done: INV-2024-001 lists step 7"):
        reminders_due([invoice(steps_done=frozenset({1, 7}))], POLICY, DUE)


def test_policies_are_hashable_values():
    same = DunningPolicy(STEPS, LateFee("fixed", amount_minor={"eur": 4000, "JPY": 5000}))
    assert same == POLICY
    assert hash(same) == hash(POLICY)
    assert FIXED_FEE.amount_minor["EUR"] == 4000
    with pytest.raises(TypeError):
        FIXED_FEE.amount_minor["EUR"] = 1  # type: ignore[index]


# --- worklist ---------------------------------------------------------------------------------

TODAY = date(2024, 6, 1)


def overdue(number: str, open_minor: int, days: int, currency: str = "EUR", **changes):
    return invoice(
        open_minor,
        invoice_id=f"id-{number}",
        number=number,
        currency=currency,
        due_date=TODAY - timedelta(days=days),
        **changes,
    )


def test_worklist_orders_by_risk_then_due_date_then_number():
    invoices = [
        overdue("A", 10000, 10),  # 100,000
        overdue("B", 1000, 200),  # 200,000
        overdue("C", 5000, 20),  # 100,000, older than A
        overdue("E", 2000, 50),  # 100,000, same due date as D
        overdue("D", 2000, 50),
        overdue("F", 99999, 0),  # due today: not overdue
        overdue("G", 99999, -5),  # not yet due
        overdue("H", 99999, 30, status="paid"),
        overdue("I", 0, 30, status="partially_paid"),
        overdue("J", 50, 1, disputed=True),
    ]
    rows = worklist(invoices, TODAY)
    assert [(r.number, r.risk_score, r.days_overdue) for r in rows] == [
        ("B", 200000, 200),
        ("D", 100000, 50),
        ("E", 100000, 50),
        ("C", 100000, 20),
        ("A", 100000, 10),
        ("J", 50, 1),
    ]
    assert [r.disputed for r in rows] == [False] * 5 + [True]
    assert all(r.reporting_risk is None for r in rows)


def test_worklist_without_rates_keeps_currencies_apart():
    invoices = [
        overdue("E1", 1000, 10, "EUR"),
        overdue("J1", 100000, 10, "JPY"),  # a bigger number, but yen
        overdue("E2", 5000, 10, "EUR"),
        overdue("U1", 10, 10, "USD"),
    ]
    rows = worklist(invoices, TODAY)
    assert [r.number for r in rows] == ["E2", "E1", "J1", "U1"]


def test_worklist_with_a_rate_table_sorts_across_currencies():
    invoices = [
        overdue("E1", 10000, 10, "EUR"),  # 100.00 EUR x 10 days = 1000 EUR-days
        overdue("J1", 100000, 10, "JPY"),  # 100,000 JPY ~ 600 EUR: 6000 EUR-days
        overdue("U1", 50000, 10, "USD"),  # 500.00 USD ~ 460 EUR: 4600 EUR-days
    ]
    rates = {"EUR": D(1), "JPY": D("0.006"), "USD": D("0.92")}
    rows = worklist(invoices, TODAY, to_reporting=rates)
    assert [(r.number, r.reporting_risk) for r in rows] == [
        ("J1", D("6000.000")),
        ("U1", D("4600.0000")),
        ("E1", D("1000.00")),
    ]
    assert [r.risk_score for r in rows] == [1000000, 500000, 100000]


def test_worklist_needs_a_rate_for_every_currency():
    with pytest.raises(DunningError, match="to_reporting: no rate for JPY"):
        worklist([overdue("J1", 100, 3, "JPY")], TODAY, to_reporting={"EUR": D(1)})


# --- properties -------------------------------------------------------------------------------


@st.composite
def policies(draw):
    offsets = sorted(draw(st.sets(st.integers(-10, 60), min_size=1, max_size=6)))
    levels = sorted(draw(st.lists(st.integers(1, 4), min_size=len(offsets), max_size=len(offsets))))
    steps = tuple(
        DunningStep(offset, level, f"step {i}", late_fee=draw(st.booleans()))
        for i, (offset, level) in enumerate(zip(offsets, levels, strict=True))
    )
    cap = draw(st.integers(0, 20000))
    if draw(st.booleans()):
        fee = LateFee(
            "fixed",
            amount_minor={"EUR": draw(st.integers(0, 20000)), "JPY": draw(st.integers(0, 20000))},
            cap_minor={"EUR": cap, "JPY": cap},
        )
    else:
        percent = draw(st.decimals(D(0), D(25), places=3))
        fee = LateFee("percent", percent=percent, cap_minor={"EUR": cap, "JPY": cap})
    return DunningPolicy(steps, fee), cap


@settings(max_examples=300, deadline=None)
@given(
    policies(),
    st.sampled_from(["EUR", "JPY"]),
    st.integers(1, 10**9),
    st.lists(st.integers(1, 15), min_size=1, max_size=30),
    st.integers(0, 5000),
    st.lists(st.integers(0, 10**8), max_size=30),
)
def test_late_fees_never_exceed_the_cap_over_any_sequence_of_days(
    policy_and_cap, currency, open_minor, gaps, already_charged, payments
):
    policy, cap = policy_and_cap
    charged = min(already_charged, cap)
    inv = invoice(open_minor, currency=currency, late_fees_charged_minor=charged)
    day = DUE - timedelta(days=15)
    sent_indexes = []
    for n, gap in enumerate(gaps):
        day += timedelta(days=gap)
        for action in reminders_due([inv], policy, day):
            assert 0 <= action.fee_minor <= cap
            assert action.step_index not in inv.steps_done
            assert action.step_date <= day
            sent_indexes.append(action.step_index)
            inv = record(inv, action)
            assert inv.late_fees_charged_minor <= cap
        if n < len(payments):  # partial payments shrink what the next percent fee is on
            inv = replace(inv, open_minor=max(inv.open_minor - payments[n], 0))
            if inv.open_minor == 0:
                inv = replace(inv, status="paid")
    assert sent_indexes == sorted(set(sent_indexes))  # never repeated, never backwards
    assert inv.late_fees_charged_minor <= cap


@settings(max_examples=200, deadline=None)
@given(policies(), st.sets(st.integers(-15, 80), max_size=40))
def test_any_run_days_send_steps_in_order_and_the_last_step_due_always(policy_and_cap, run_days):
    policy, _ = policy_and_cap
    days = sorted(DUE + timedelta(days=n) for n in run_days)
    final, sent = run_daily(invoice(), policy, days)
    indexes = [a.step_index for _, a in sent]
    assert indexes == sorted(set(indexes))
    dates = step_dates(policy, DUE)
    if days:
        due_by_last_run = [i for i, d in enumerate(dates) if d <= days[-1]]
        assert max(final.steps_done, default=-1) == max(due_by_last_run, default=-1)
    every_step = set(indexes)
    for _, action in sent:
        every_step |= set(action.skipped_steps)
    # Each step is sent or skipped exactly once, up to the last one sent.
    assert sorted(every_step) == list(range(max(indexes, default=-1) + 1))
