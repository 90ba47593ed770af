"""Tests for credit-note lines: hand-worked credits, then random credit sequences."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.credit import (
    CreditedSoFar,
    CreditError,
    CreditRequest,
    InvoicedLine,
    LineCredit,
    credit_line,
)
from tallybook.core.money import RoundingMode

D = Decimal
VAT = "DE-VAT-19"
# 3 units, 100.00 net, 19 % VAT = 19.00
LINE = InvoicedLine("L1", D(3), 10000, ((VAT, 1900),))


def add(so_far: CreditedSoFar, credit: LineCredit) -> CreditedSoFar:
    """What the caller stores after issuing `credit`."""
    taxes = dict(so_far.taxes)
    for code, amount in credit.taxes:
        taxes[code] = taxes.get(code, 0) + amount
    return CreditedSoFar(
        so_far.quantity + credit.quantity,
        so_far.taxable_minor + credit.taxable_minor,
        tuple(taxes.items()),
    )


def test_full_credit_in_one_go_equals_the_invoiced_line():
    expected = LineCredit("L1", D(3), 10000, ((VAT, 1900),), 1900, 11900)
    assert credit_line(LINE, CreditedSoFar(), CreditRequest("L1"), "EUR") == expected
    assert credit_line(LINE, CreditedSoFar(), CreditRequest("L1", quantity=D(3)), "EUR") == expected
    by_amount = credit_line(LINE, CreditedSoFar(), CreditRequest("L1", amount_minor=10000), "EUR")
    assert by_amount == expected


def test_three_thirds_add_up_to_the_invoiced_line():
    so_far = CreditedSoFar()
    credits = []
    for _ in range(3):
        credit = credit_line(LINE, so_far, CreditRequest("L1", quantity=D(1)), "EUR")
        credits.append((credit.taxable_minor, credit.taxes[0][1]))
        so_far = add(so_far, credit)
    # 1/3: net round(100.00 / 3 = 33.333) = 33.33, tax round(19.00 / 3 = 6.333) = 6.33
    # 2/3: net round(66.667) = 66.67 - 33.33 = 33.34, tax round(12.667) = 12.67 - 6.33 = 6.34
    # 3/3: the rest, 100.00 - 66.67 = 33.33 and 19.00 - 12.67 = 6.33
    assert credits == [(3333, 633), (3334, 634), (3333, 633)]
    assert so_far == CreditedSoFar(D(3), 10000, ((VAT, 1900),))


def test_amount_credit_takes_its_share_of_each_tax_cumulatively():
    first = credit_line(LINE, CreditedSoFar(), CreditRequest("L1", amount_minor=2500), "EUR")
    # 19.00 * 25.00 / 100.00 = 4.75; a price reduction returns no units
    assert first == LineCredit("L1", D(0), 2500, ((VAT, 475),), 475, 2975)
    second = credit_line(
        LINE, add(CreditedSoFar(), first), CreditRequest("L1", amount_minor=1), "EUR"
    )
    # cumulative 25.01: 19.00 * 0.2501 = 4.7519 -> 4.75, minus the 4.75 already credited
    assert second.taxes == ((VAT, 0),)
    assert second.total_minor == 1


def test_amount_credit_of_the_whole_remainder_finishes_the_line():
    so_far = add(
        CreditedSoFar(), credit_line(LINE, CreditedSoFar(), CreditRequest("L1", D(1)), "EUR")
    )
    credit = credit_line(LINE, so_far, CreditRequest("L1", amount_minor=6667), "EUR")
    # 100.00 - 33.33 and 19.00 - 6.33, with the two units not yet credited
    assert credit == LineCredit("L1", D(2), 6667, ((VAT, 1267),), 1267, 7934)


def test_quantity_then_amount_then_remainder():
    so_far = CreditedSoFar()
    first = credit_line(LINE, so_far, CreditRequest("L1", quantity=D(1)), "EUR")
    so_far = add(so_far, first)
    second = credit_line(LINE, so_far, CreditRequest("L1", amount_minor=5000), "EUR")
    # cumulative net 33.33 + 50.00 = 83.33: tax round(19.00 * 0.8333 = 15.8327) = 15.83,
    # minus 6.33 already credited = 9.50
    assert (second.quantity, second.taxable_minor, second.taxes) == (D(0), 5000, ((VAT, 950),))
    so_far = add(so_far, second)
    last = credit_line(LINE, so_far, CreditRequest("L1"), "EUR")
    # 100.00 - 83.33 = 16.67 and 19.00 - 15.83 = 3.17, with the 2 units left
    assert last == LineCredit("L1", D(2), 1667, ((VAT, 317),), 317, 1984)


def test_amount_credits_first_keep_later_quantity_credits_within_the_rest():
    so_far = add(
        CreditedSoFar(),
        credit_line(LINE, CreditedSoFar(), CreditRequest("L1", amount_minor=5000), "EUR"),
    )
    credit = credit_line(LINE, so_far, CreditRequest("L1", quantity=D(1)), "EUR")
    # 1 of 3 units is worth round(33.333) = 33.33, less than the 50.00 already credited:
    # nothing more is due until the line is finished, never a negative credit
    assert (credit.taxable_minor, credit.taxes, credit.quantity) == (0, ((VAT, 0),), D(1))
    so_far = add(so_far, credit)
    last = credit_line(LINE, so_far, CreditRequest("L1", quantity=D(2)), "EUR")
    assert (last.taxable_minor, last.taxes) == (5000, ((VAT, 950),))


def test_rounding_mode_applies_to_the_cumulative_target():
    line = InvoicedLine("L", D(2), 1001, ())
    request = CreditRequest("L", quantity=D(1))
    # 10.01 / 2 = 5.005
    assert credit_line(line, CreditedSoFar(), request, "EUR").taxable_minor == 501
    half_even = credit_line(line, CreditedSoFar(), request, "EUR", RoundingMode.HALF_EVEN)
    assert half_even.taxable_minor == 500


def test_fractional_quantities():
    line = InvoicedLine("hours", D("2.5"), 25000, ((VAT, 4750),))
    credit = credit_line(line, CreditedSoFar(), CreditRequest("hours", quantity=D("0.5")), "EUR")
    # 0.5 / 2.5 = 1/5: 250.00 / 5 = 50.00 and 47.50 / 5 = 9.50
    assert credit == LineCredit("hours", D("0.5"), 5000, ((VAT, 950),), 950, 5950)


def test_zero_quantity_line_only_accepts_amount_credits():
    fee = InvoicedLine("fee", D(0), 500, ((VAT, 95),))
    with pytest.raises(CreditError, match=r"^quantity: line fee has no quantity"):
        credit_line(fee, CreditedSoFar(), CreditRequest("fee", quantity=D(1)), "EUR")
    credit = credit_line(fee, CreditedSoFar(), CreditRequest("fee", amount_minor=200), "EUR")
    # 0.95 * 2.00 / 5.00 = 0.38
    assert credit == LineCredit("fee", D(0), 200, ((VAT, 38),), 38, 238)
    rest = credit_line(fee, add(CreditedSoFar(), credit), CreditRequest("fee"), "EUR")
    assert rest == LineCredit("fee", D(0), 300, ((VAT, 57),), 57, 357)


def test_amount_over_the_remaining_names_the_field():
    so_far = CreditedSoFar(D(0), 9000, ((VAT, 1710),))
    message = "lines[0].amount_minor: 1001 exceeds the 1000 not yet credited on line L1"
    with pytest.raises(CreditError, match=f"^{re.escape(message)}$"):
        credit_line(
            LINE, so_far, CreditRequest("L1", amount_minor=1001), "EUR", field_prefix="lines[0]."
        )


def test_quantity_over_the_remaining_names_the_field():
    message = "lines[0].quantity: 5 exceeds the 3 not yet credited on line L1"
    with pytest.raises(CreditError, match=f"^{re.escape(message)}$"):
        credit_line(
            LINE,
            CreditedSoFar(),
            CreditRequest("L1", quantity=D(5)),
            "EUR",
            field_prefix="lines[0].",
        )
    so_far = CreditedSoFar(D("2.00"), 6667, ((VAT, 1267),))
    with pytest.raises(CreditError, match=r"^quantity: 1\.5 exceeds the 1 not yet credited"):
        credit_line(LINE, so_far, CreditRequest("L1", quantity=D("1.5")), "EUR")


@pytest.mark.parametrize(
    ("so_far", "request_", "message"),
    [
        (CreditedSoFar(), CreditRequest("L1", D(1), 100), r"^amount_minor: give either"),
        (CreditedSoFar(), CreditRequest("L1", quantity=D(0)), r"^quantity: 0 must be more"),
        (CreditedSoFar(), CreditRequest("L1", quantity=D(-1)), r"^quantity: -1 must not be"),
        (CreditedSoFar(), CreditRequest("L1", quantity=1.0), r"^quantity: .*float"),
        (CreditedSoFar(), CreditRequest("L1", amount_minor=0), r"^amount_minor: 0 must be more"),
        (CreditedSoFar(), CreditRequest("L1", amount_minor=D(5)), r"^amount_minor: .*integer"),
        (CreditedSoFar(), CreditRequest("L2"), r"^key: 'L2' does not match"),
        (CreditedSoFar(D(3), 10000, ((VAT, 1900),)), CreditRequest("L1"), r"^key: .*fully"),
        (CreditedSoFar(D(4), 0, ()), CreditRequest("L1"), r"^so_far: more than"),
        (CreditedSoFar(D(0), 0, ((VAT, 1901),)), CreditRequest("L1"), r"^so_far: more than"),
        (CreditedSoFar(D(0), 0, (("XX", 1),)), CreditRequest("L1"), r"^so_far\.taxes: XX"),
    ],
)
def test_invalid_requests_name_the_field(so_far, request_, message):
    with pytest.raises(CreditError, match=message):
        credit_line(LINE, so_far, request_, "EUR")


def test_credit_error_is_a_value_error():
    assert issubclass(CreditError, ValueError)


# --- properties ----------------------------------------------------------------------------------

invoiced_lines = st.builds(
    lambda qty, net, tax_share: InvoicedLine(
        "L",
        qty,
        net,
        tuple((f"T{i}", net * share // 100) for i, share in enumerate(tax_share)),
    ),
    qty=st.one_of(
        st.integers(min_value=0, max_value=12).map(D),
        st.decimals(min_value=0, max_value=10, places=2),
    ),
    net=st.integers(min_value=0, max_value=10_000_000),
    tax_share=st.lists(st.integers(min_value=0, max_value=30), max_size=3),
)
steps = st.lists(
    st.tuples(
        st.sampled_from(["quantity", "amount", "over_quantity", "over_amount"]),
        st.integers(min_value=1, max_value=100),
    ),
    max_size=8,
)


def half_up(value: Decimal) -> int:
    return int(value.quantize(D(1), rounding=ROUND_HALF_UP))


def assert_within_invoiced(line: InvoicedLine, so_far: CreditedSoFar) -> None:
    assert 0 <= so_far.quantity <= line.quantity
    assert 0 <= so_far.taxable_minor <= line.taxable_minor
    credited = dict(so_far.taxes)
    for code, amount in line.taxes:
        assert 0 <= credited.get(code, 0) <= amount


@settings(max_examples=200, deadline=None)
@given(line=invoiced_lines, plan=steps)
def test_random_credit_sequences_never_overcredit_and_finish_exactly(line, plan):
    so_far = CreditedSoFar()
    for kind, percent in plan:
        left_qty = line.quantity - so_far.quantity
        left_net = line.taxable_minor - so_far.taxable_minor
        if kind == "quantity":
            request = CreditRequest("L", quantity=left_qty * percent / 100)
            valid = line.quantity > 0 and left_qty > 0
        elif kind == "amount":
            request = CreditRequest("L", amount_minor=max(1, left_net * percent // 100))
            valid = left_net > 0
        elif kind == "over_quantity":
            request = CreditRequest("L", quantity=left_qty + D(percent) / 100)
            valid = False
        else:
            request = CreditRequest("L", amount_minor=left_net + percent)
            valid = False
        if not valid:
            with pytest.raises(CreditError):
                credit_line(line, so_far, request, "EUR")
            continue
        credit = credit_line(line, so_far, request, "EUR")
        assert credit.taxable_minor >= 0
        assert all(amount >= 0 for _, amount in credit.taxes)
        assert credit.total_minor == credit.taxable_minor + credit.tax_minor
        so_far = add(so_far, credit)
        assert_within_invoiced(line, so_far)

    credited_taxes = dict(so_far.taxes)
    finished = (
        so_far.quantity == line.quantity
        and so_far.taxable_minor == line.taxable_minor
        and all(credited_taxes.get(code, 0) == amount for code, amount in line.taxes)
    )
    if finished:
        with pytest.raises(CreditError, match="fully credited"):
            credit_line(line, so_far, CreditRequest("L"), "EUR")
    else:
        so_far = add(so_far, credit_line(line, so_far, CreditRequest("L"), "EUR"))
    # every credit of the line together is exactly the invoiced line
    assert so_far.quantity == line.quantity
    assert so_far.taxable_minor == line.taxable_minor
    credited_taxes = dict(so_far.taxes)
    assert all(credited_taxes.get(code, 0) == amount for code, amount in line.taxes)


@settings(max_examples=150, deadline=None)
@given(
    net=st.integers(min_value=0, max_value=10_000_000),
    tax=st.integers(min_value=0, max_value=3_000_000),
    units=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6),
)
def test_quantity_credits_round_the_running_total(net, tax, units):
    invoiced_qty = D(sum(units))
    line = InvoicedLine("L", invoiced_qty, net, ((VAT, tax),))
    so_far = CreditedSoFar()
    for unit in units:
        so_far = add(so_far, credit_line(line, so_far, CreditRequest("L", D(unit)), "EUR"))
        # after each credit the running total is the rounded share of the whole line,
        # so no credit is ever off by more than one cent from its exact share
        # (multiply before dividing: 217 * 5 / 14 is exactly 77.5, 217 * (5 / 14) is not)
        done = so_far.quantity
        assert so_far.taxable_minor == half_up(D(net) * done / invoiced_qty)
        assert dict(so_far.taxes)[VAT] == half_up(D(tax) * done / invoiced_qty)
