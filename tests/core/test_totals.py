"""Tests for invoice totals: hand-worked examples, then properties that hold for any invoice."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.money import RoundingMode
from tallybook.core.totals import (
    DiscountInput,
    DiscountKind,
    InvoiceTotals,
    LineInput,
    LineTax,
    TaxRate,
    TaxRounding,
    TaxSummary,
    TaxTreatment,
    compute_totals,
)

D = Decimal
VAT19 = TaxRate("DE-VAT-19", "VAT 19%", "DE", D(19))
VAT7 = TaxRate("DE-VAT-7", "VAT 7%", "DE", D(7))
NY_STATE = TaxRate("US-NY-STATE", "New York State sales tax", "US-NY", D(4))
NY_CITY = TaxRate("US-NY-NYC", "New York City sales tax", "US-NY-NYC", D("4.5"))
GST15 = TaxRate("NZ-GST-15", "GST 15%", "NZ", D(15))
VAT10 = TaxRate("JP-CT-10", "Consumption tax 10%", "JP", D(10))
VAT5 = TaxRate("KW-VAT-5", "VAT 5%", "KW", D(5))


def line(key, amount, *taxes, product_id=None):
    return LineInput(key, D(amount), tuple(taxes), product_id)


def assert_consistent(totals: InvoiceTotals) -> None:
    """The invariants every result must satisfy, whatever the inputs."""
    for lt in totals.lines:
        assert lt.total_minor == lt.subtotal_minor - lt.discount_minor + lt.tax_minor
        assert lt.taxable_minor == lt.subtotal_minor - lt.discount_minor
        assert lt.tax_minor == sum(t.amount_minor for t in lt.taxes)
        assert lt.discount_minor == sum(share for _, share in lt.discounts)
    assert totals.subtotal_minor == sum(lt.subtotal_minor for lt in totals.lines)
    assert totals.discount_minor == sum(lt.discount_minor for lt in totals.lines)
    assert totals.tax_minor == sum(lt.tax_minor for lt in totals.lines)
    assert totals.total_minor == sum(lt.total_minor for lt in totals.lines)
    assert totals.total_minor == totals.subtotal_minor - totals.discount_minor + totals.tax_minor
    assert totals.tax_minor == sum(s.tax_minor for s in totals.tax_summary)
    codes = [s.code for s in totals.tax_summary]
    assert codes == sorted(set(codes))
    for summary in totals.tax_summary:
        line_taxes = [t for lt in totals.lines for t in lt.taxes if t.code == summary.code]
        assert summary.tax_minor == sum(t.amount_minor for t in line_taxes)
        assert summary.taxable_minor == sum(t.taxable_minor for t in line_taxes)


# --- tax rates -----------------------------------------------------------------------------------


def test_two_rates_on_one_invoice():
    totals = compute_totals([line("a", "100.00", VAT19), line("b", "50.00", VAT7)], [], "EUR")
    assert_consistent(totals)
    # a: 100.00 * 19 % = 19.00; b: 50.00 * 7 % = 3.50
    assert [lt.tax_minor for lt in totals.lines] == [1900, 350]
    assert totals.lines[1].taxes == (LineTax("DE-VAT-7", "VAT 7%", D(7), 5000, 350),)
    # "DE-VAT-19" sorts before "DE-VAT-7" ('1' < '7')
    assert totals.tax_summary == (
        TaxSummary("DE-VAT-19", "VAT 19%", D(19), 10000, 1900),
        TaxSummary("DE-VAT-7", "VAT 7%", D(7), 5000, 350),
    )
    # 150.00 + 19.00 + 3.50 = 172.50
    assert (totals.subtotal_minor, totals.tax_minor, totals.total_minor) == (15000, 2250, 17250)
    assert totals.currency == "EUR"
    assert totals.treatment is TaxTreatment.STANDARD
    assert totals.legal_note is None


def test_state_and_city_tax_on_one_line_are_not_compounded():
    totals = compute_totals([line("x", "19.99", NY_STATE, NY_CITY)], [], "USD")
    assert_consistent(totals)
    (lt,) = totals.lines
    # state: 19.99 * 4 % = 0.7996 -> 0.80; city: 19.99 * 4.5 % = 0.89955 -> 0.90
    # (compounded, the city tax would be 4.5 % of 20.79 = 0.93555 -> 0.94)
    assert [(t.code, t.taxable_minor, t.amount_minor) for t in lt.taxes] == [
        ("US-NY-STATE", 1999, 80),
        ("US-NY-NYC", 1999, 90),
    ]
    # 19.99 + 0.80 + 0.90 = 21.69
    assert (lt.tax_minor, lt.total_minor) == (170, 2169)
    assert [s.code for s in totals.tax_summary] == ["US-NY-NYC", "US-NY-STATE"]


def test_per_line_and_per_invoice_rounding_differ():
    lines = [line(k, "0.10", GST15) for k in "abc"]
    per_line = compute_totals(lines, [], "NZD")
    per_invoice = compute_totals(lines, [], "NZD", tax_rounding=TaxRounding.PER_INVOICE)
    assert_consistent(per_line)
    assert_consistent(per_invoice)
    # per line: 0.10 * 15 % = 0.015 -> 0.02 (half up), three times = 0.06
    assert [lt.tax_minor for lt in per_line.lines] == [2, 2, 2]
    assert per_line.tax_minor == 6
    # per invoice: 0.30 * 15 % = 0.045 -> 0.05, split 5 over equal weights: 1 each, the two
    # leftover cents to the earliest lines
    assert per_invoice.tax_minor == 5
    assert [lt.tax_minor for lt in per_invoice.lines] == [2, 2, 1]
    assert per_invoice.tax_summary == (TaxSummary("NZ-GST-15", "GST 15%", D(15), 30, 5),)
    # 0.30 + 0.05
    assert per_invoice.total_minor == 35


def test_per_invoice_rounding_with_a_negative_line():
    lines = [line("a", "0.10", GST15), line("b", "-0.05", GST15)]
    totals = compute_totals(lines, [], "NZD", tax_rounding=TaxRounding.PER_INVOICE)
    assert_consistent(totals)
    # invoice: 0.05 * 15 % = 0.0075 -> 0.01; positive part 0.10 * 15 % = 0.015 -> 0.02,
    # so the negative line carries 0.01 - 0.02 = -0.01
    assert [lt.tax_minor for lt in totals.lines] == [2, -1]
    assert totals.tax_minor == 1


def test_per_invoice_rounding_with_several_rates():
    lines = [
        line("a", "0.33", VAT19),
        line("b", "0.33", VAT19, VAT7),
        line("c", "0.33", VAT7),
    ]
    totals = compute_totals(lines, [], "EUR", tax_rounding=TaxRounding.PER_INVOICE)
    assert_consistent(totals)
    # 19 %: 0.66 * 0.19 = 0.1254 -> 0.13, split 13 over (33, 33): 6 each + 1 to the first
    # 7 %: 0.66 * 0.07 = 0.0462 -> 0.05, split 5 over (33, 33): 2 each + 1 to the first
    assert [[t.amount_minor for t in lt.taxes] for lt in totals.lines] == [[7], [6, 3], [2]]
    assert [(s.code, s.taxable_minor, s.tax_minor) for s in totals.tax_summary] == [
        ("DE-VAT-19", 66, 13),
        ("DE-VAT-7", 66, 5),
    ]


# --- tax-inclusive prices ------------------------------------------------------------------------


def test_inclusive_price_is_split_into_net_and_tax():
    totals = compute_totals([line("a", "119.00", VAT19)], [], "EUR", prices_include_tax=True)
    assert_consistent(totals)
    (lt,) = totals.lines
    # 119.00 / 1.19 = 100.00 net, 19.00 tax
    assert (lt.subtotal_minor, lt.discount_minor, lt.taxable_minor) == (10000, 0, 10000)
    assert (lt.tax_minor, lt.total_minor) == (1900, 11900)
    assert lt.taxes == (LineTax("DE-VAT-19", "VAT 19%", D(19), 10000, 1900),)


def test_inclusive_price_with_a_percent_discount():
    discount = DiscountInput("promo", DiscountKind.PERCENT, D(10))
    totals = compute_totals(
        [line("a", "119.00", VAT19)], [discount], "EUR", prices_include_tax=True
    )
    assert_consistent(totals)
    (lt,) = totals.lines
    # gross discount 119.00 * 10 % = 11.90 -> gross 107.10; net 107.10 / 1.19 = 90.00,
    # tax 17.10; net before discount 100.00, so the net discount is 10.00
    assert lt.discounts == (("promo", 1000),)
    assert (lt.subtotal_minor, lt.discount_minor, lt.taxable_minor) == (10000, 1000, 9000)
    assert (lt.tax_minor, lt.total_minor) == (1710, 10710)


def test_inclusive_price_with_two_discounts_reports_their_net_parts():
    discounts = [
        DiscountInput("a", DiscountKind.FIXED, D("11.90")),
        DiscountInput("b", DiscountKind.PERCENT, D(10)),
    ]
    totals = compute_totals([line("x", "119.00", VAT19)], discounts, "EUR", prices_include_tax=True)
    assert_consistent(totals)
    (lt,) = totals.lines
    # gross: 119.00 - 11.90 = 107.10, then 10 % of it = 10.71 -> 96.39 gross;
    # net 96.39 / 1.19 = 81.00, tax 15.39; net discount 100.00 - 81.00 = 19.00,
    # shared by the gross shares (1190, 1071): 1900 * 1190 / 2261 = 1000 exactly, and 900
    assert lt.discounts == (("a", 1000), ("b", 900))
    assert (lt.subtotal_minor, lt.discount_minor, lt.tax_minor, lt.total_minor) == (
        10000,
        1900,
        1539,
        9639,
    )


def test_inclusive_price_with_two_rates_splits_the_tax_by_percent():
    totals = compute_totals(
        [line("x", "10.00", NY_STATE, NY_CITY)], [], "USD", prices_include_tax=True
    )
    assert_consistent(totals)
    (lt,) = totals.lines
    # net 10.00 / 1.085 = 9.2165... -> 9.22, tax 10.00 - 9.22 = 0.78,
    # split 78 by 4 : 4.5 -> 78*4/8.5 = 36.7 -> 36, 78*4.5/8.5 = 41.29 -> 41, leftover 1 to the
    # larger remainder (0.71 vs 0.29): state 37, city 41
    assert (lt.taxable_minor, lt.tax_minor, lt.total_minor) == (922, 78, 1000)
    assert [t.amount_minor for t in lt.taxes] == [37, 41]


def test_inclusive_prices_per_invoice_rounding():
    lines = [line(k, "0.10", VAT19) for k in "abc"]
    totals = compute_totals(
        lines, [], "EUR", prices_include_tax=True, tax_rounding=TaxRounding.PER_INVOICE
    )
    assert_consistent(totals)
    # per line it would be 0.10 / 1.19 = 0.084 -> 0.08 net, 0.02 tax, x3 = 0.06 tax;
    # per invoice: 0.30 * 19/119 = 0.0479 -> 0.05 tax, split 2, 2, 1
    assert [lt.tax_minor for lt in totals.lines] == [2, 2, 1]
    assert [lt.taxable_minor for lt in totals.lines] == [8, 8, 9]
    assert totals.tax_minor == 5
    assert totals.total_minor == 30
    assert all(lt.discount_minor == 0 for lt in totals.lines)


# --- discounts -----------------------------------------------------------------------------------


def test_percent_discount_on_one_product_only():
    lines = [
        line("a", "100.00", VAT19, product_id="P1"),
        line("b", "10.01", VAT19, product_id="P2"),
        line("c", "20.00", VAT19, product_id="P2"),
    ]
    discount = DiscountInput("p2-10", DiscountKind.PERCENT, D(10), product_ids=("P2",))
    totals = compute_totals(lines, [discount], "EUR")
    assert_consistent(totals)
    # eligible 30.01 * 10 % = 3.001 -> 3.00; split 300 by (1001, 2000): 100.06 -> 100,
    # 199.93 -> 199, leftover 1 to the larger remainder (the second): 100 and 200
    assert [lt.discount_minor for lt in totals.lines] == [0, 100, 200]
    assert totals.lines[1].discounts == (("p2-10", 100),)
    assert totals.lines[0].discounts == ()
    # taxable 100.00, 9.01, 18.00; tax 19.00, 1.7119 -> 1.71, 3.42
    assert [lt.tax_minor for lt in totals.lines] == [1900, 171, 342]
    assert (totals.subtotal_minor, totals.discount_minor) == (13001, 300)
    # 127.01 + 24.13
    assert (totals.tax_minor, totals.total_minor) == (2413, 15114)


def test_fixed_discount_larger_than_the_eligible_lines_is_capped():
    lines = [
        line("a", "30.00", VAT19, product_id="P1"),
        line("b", "20.00", VAT19, product_id="P2"),
    ]
    discount = DiscountInput("big", DiscountKind.FIXED, D("50.00"), product_ids=("P2",))
    totals = compute_totals(lines, [discount], "EUR")
    assert_consistent(totals)
    a, b = totals.lines
    # only 20.00 of P2 to take: the line goes to zero, not below
    assert (b.subtotal_minor, b.discount_minor, b.taxable_minor, b.tax_minor) == (2000, 2000, 0, 0)
    assert (a.discount_minor, a.tax_minor) == (0, 570)  # 30.00 * 19 % = 5.70
    assert totals.total_minor == 3570


def test_fixed_discount_over_the_whole_invoice_is_capped_at_the_invoice():
    lines = [line("a", "30.00", VAT19), line("b", "20.00")]
    totals = compute_totals(lines, [DiscountInput("all", DiscountKind.FIXED, D(80))], "EUR")
    assert_consistent(totals)
    assert [lt.discount_minor for lt in totals.lines] == [3000, 2000]
    assert (totals.discount_minor, totals.total_minor) == (5000, 0)


def test_discounts_apply_in_order_to_what_remains():
    lines = [line("a", "60.00"), line("b", "40.00")]
    discounts = [
        DiscountInput("first", DiscountKind.FIXED, D(10)),
        DiscountInput("second", DiscountKind.PERCENT, D(50)),
    ]
    totals = compute_totals(lines, discounts, "EUR")
    assert_consistent(totals)
    # first: 10.00 by (60, 40) -> 6.00 and 4.00, leaving 54.00 and 36.00
    # second: 50 % of 90.00 = 45.00 by (54, 36) -> 27.00 and 18.00
    assert totals.lines[0].discounts == (("first", 600), ("second", 2700))
    assert totals.lines[1].discounts == (("first", 400), ("second", 1800))
    assert totals.discount_minor == 5500


def test_discount_on_an_invoice_with_a_negative_adjustment_line():
    lines = [line("a", "100.00", VAT19), line("adj", "-20.00", VAT19)]
    totals = compute_totals(lines, [DiscountInput("d", DiscountKind.PERCENT, D(10))], "EUR")
    assert_consistent(totals)
    a, adj = totals.lines
    # 10 % of the positive lines only: 100.00 -> 10.00; the adjustment gets no discount
    assert (a.discount_minor, a.taxable_minor, a.tax_minor) == (1000, 9000, 1710)
    # the negative line is taxed like any other: -20.00 * 19 % = -3.80
    assert (adj.discount_minor, adj.taxable_minor, adj.tax_minor) == (0, -2000, -380)
    # 100.00 - 20.00 - 10.00 = 70.00; tax 17.10 - 3.80 = 13.30
    assert (totals.subtotal_minor, totals.discount_minor) == (8000, 1000)
    assert (totals.tax_minor, totals.total_minor) == (1330, 8330)


# --- currencies, rounding modes, treatments ------------------------------------------------------


def test_jpy_has_no_minor_unit():
    totals = compute_totals([line("a", "333", VAT10), line("b", "99.5")], [], "JPY")
    assert_consistent(totals)
    # 333 * 10 % = 33.3 -> 33 yen; 99.5 -> 100 yen
    assert [lt.subtotal_minor for lt in totals.lines] == [333, 100]
    assert (totals.tax_minor, totals.total_minor) == (33, 466)


def test_kwd_has_three_decimals():
    totals = compute_totals([line("a", "1.2345", VAT5)], [], "KWD")
    assert_consistent(totals)
    (lt,) = totals.lines
    # 1.2345 -> 1.235 (1235 fils); 1.235 * 5 % = 0.06175 -> 0.062
    assert (lt.subtotal_minor, lt.tax_minor, lt.total_minor) == (1235, 62, 1297)


@pytest.mark.parametrize(
    ("treatment", "note"),
    [
        (TaxTreatment.EXEMPT, "Exempt from tax."),
        (
            TaxTreatment.REVERSE_CHARGE,
            "Reverse charge: VAT to be accounted for by the recipient "
            "(Article 196, Council Directive 2006/112/EC).",
        ),
    ],
)
@pytest.mark.parametrize("inclusive", [False, True])
def test_exempt_and_reverse_charge_charge_no_tax(treatment, note, inclusive):
    lines = [line("a", "100.00", VAT19), line("b", "50.00", VAT7)]
    totals = compute_totals(lines, [], "EUR", treatment=treatment, prices_include_tax=inclusive)
    assert_consistent(totals)
    assert totals.legal_note == note
    assert totals.treatment is treatment
    assert totals.lines[0].taxes == (LineTax("DE-VAT-19", "VAT 19%", D(0), 10000, 0),)
    # a zero row per code, so the invoice can show which taxes did not apply
    assert totals.tax_summary == (
        TaxSummary("DE-VAT-19", "VAT 19%", D(0), 10000, 0),
        TaxSummary("DE-VAT-7", "VAT 7%", D(0), 5000, 0),
    )
    assert (totals.tax_minor, totals.total_minor) == (0, 15000)


def test_half_even_and_half_up_differ_on_an_exact_half():
    lines = [line("a", "0.50", VAT5), line("b", "1.005")]
    up = compute_totals(lines, [], "EUR", rounding=RoundingMode.HALF_UP)
    even = compute_totals(lines, [], "EUR", rounding=RoundingMode.HALF_EVEN)
    # 0.50 * 5 % = 0.025: half up 0.03, half even 0.02
    assert up.lines[0].tax_minor == 3
    assert even.lines[0].tax_minor == 2
    # 1.005: half up 1.01, half even 1.00
    assert up.lines[1].subtotal_minor == 101
    assert even.lines[1].subtotal_minor == 100


def test_empty_invoice():
    totals = compute_totals([], [DiscountInput("d", DiscountKind.FIXED, D(5))], "EUR")
    assert (totals.lines, totals.total_minor, totals.tax_summary) == ((), 0, ())


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "discounts", "message"),
    [
        ([line("a", "1"), line("a", "2")], [], r"lines\[1\]\.key"),
        ([LineInput("a", 1.5)], [], r"lines\[0\]\.amount.*float"),
        (
            [line("a", "1", TaxRate("X", "X", "X", D(-1)))],
            [],
            r"lines\[0\]\.taxes\[0\]\.percent",
        ),
        ([line("a", "1", VAT19, VAT19)], [], r"lines\[0\]\.taxes\[1\]\.code"),
        (
            [line("a", "1", VAT19), line("b", "1", TaxRate("DE-VAT-19", "VAT", "DE", D(16)))],
            [],
            r"lines\[1\]\.taxes\[0\]\.code",
        ),
        ([line("a", "1")], [DiscountInput("d", DiscountKind.PERCENT, D(101))], r"discounts\[0\]"),
        ([line("a", "1")], [DiscountInput("d", DiscountKind.FIXED, D(-1))], r"discounts\[0\]"),
        ([line("a", "1")], [DiscountInput("d", "bogus", D(1))], r"discounts\[0\]\.kind"),
    ],
)
def test_invalid_input_names_the_field(lines, discounts, message):
    with pytest.raises(ValueError, match=message):
        compute_totals(lines, discounts, "EUR")


def test_unknown_currency_is_refused():
    with pytest.raises(ValueError, match="XYZ"):
        compute_totals([line("a", "1")], [], "XYZ")


# --- properties ----------------------------------------------------------------------------------

RATES = [VAT19, VAT7, NY_STATE, NY_CITY, TaxRate("ZERO", "Zero rate", "XX", D(0))]

amounts = st.decimals(min_value=-1000, max_value=10000, places=3, allow_nan=False)
line_inputs = st.builds(
    LineInput,
    key=st.just(""),
    amount=amounts,
    taxes=st.lists(st.sampled_from(RATES), max_size=2, unique_by=lambda r: r.code).map(tuple),
    product_id=st.sampled_from([None, "P1", "P2"]),
)
discount_inputs = st.one_of(
    st.builds(
        DiscountInput,
        key=st.just(""),
        kind=st.just(DiscountKind.PERCENT),
        value=st.decimals(min_value=0, max_value=100, places=2),
        product_ids=st.sampled_from([None, ("P1",), ("P1", "P2")]),
    ),
    st.builds(
        DiscountInput,
        key=st.just(""),
        kind=st.just(DiscountKind.FIXED),
        value=st.decimals(min_value=0, max_value=20000, places=2),
        product_ids=st.sampled_from([None, ("P2",)]),
    ),
)
options = st.fixed_dictionaries(
    {
        "currency": st.sampled_from(["EUR", "JPY", "KWD"]),
        "prices_include_tax": st.booleans(),
        "tax_rounding": st.sampled_from(list(TaxRounding)),
        "rounding": st.sampled_from(list(RoundingMode)),
        "treatment": st.sampled_from(list(TaxTreatment)),
    }
)


def _rekey(item, key):
    """A copy of a generated line or discount with a unique key."""
    fields = dict(vars(item))
    fields["key"] = key
    return type(item)(**fields)


def minor(amount: Decimal, places: int) -> int:
    """Independent oracle for the rounding of a line amount (half up)."""
    return int(amount.scaleb(places).quantize(D(1), rounding=ROUND_HALF_UP))


PLACES = {"EUR": 2, "JPY": 0, "KWD": 3}


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(line_inputs, max_size=6),
    discounts=st.lists(discount_inputs, max_size=3),
    opts=options,
)
def test_totals_are_always_consistent(lines, discounts, opts):
    lines = [_rekey(item, f"l{i}") for i, item in enumerate(lines)]
    discounts = [_rekey(item, f"d{i}") for i, item in enumerate(discounts)]
    totals = compute_totals(lines, discounts, **opts)
    assert_consistent(totals)
    for given_line, lt in zip(lines, totals.lines, strict=True):
        assert lt.key == given_line.key
        assert 0 <= lt.discount_minor <= max(lt.subtotal_minor, 0)
        if given_line.amount >= 0:
            assert lt.taxable_minor >= 0
            assert lt.total_minor >= 0
        else:
            assert lt.discount_minor == 0
        if opts["treatment"] is not TaxTreatment.STANDARD:
            assert lt.tax_minor == 0
        if not opts["prices_include_tax"] and opts["rounding"] is RoundingMode.HALF_UP:
            assert lt.subtotal_minor == minor(given_line.amount, PLACES[opts["currency"]])


@settings(max_examples=150, deadline=None)
@given(
    cents=st.lists(st.integers(min_value=-5000, max_value=100000), min_size=1, max_size=8),
    rate=st.sampled_from(RATES),
)
def test_per_invoice_tax_allocation_loses_no_cent(cents, rate):
    lines = [LineInput(f"l{i}", D(c).scaleb(-2), (rate,)) for i, c in enumerate(cents)]
    totals = compute_totals(lines, [], "EUR", tax_rounding=TaxRounding.PER_INVOICE)
    assert_consistent(totals)
    # the invoice tax is the rounded tax of the summed base, and the lines share exactly that
    exact = D(sum(cents)).scaleb(-2) * rate.percent / 100
    assert totals.tax_minor == minor(exact, 2)
    assert sum(lt.tax_minor for lt in totals.lines) == totals.tax_minor
    for c, lt in zip(cents, totals.lines, strict=True):
        # each line is within one cent of its exact share
        assert abs(D(lt.tax_minor) - D(c) * rate.percent / 100) < 2
