"""Pricing models: hand-computed amounts per model and currency, validation, and properties."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal as D

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tallybook.core.money import RoundingMode, round_to_minor
from tallybook.core.pricing import (
    PriceTerms,
    PricingError,
    PricingModel,
    Rating,
    Tier,
    TierCharge,
    commitment_true_up,
    rate,
)

M = PricingModel

# The ladder used throughout: 1-100 at 0.10, 101-200 at 0.08 + 5.00 flat, over 200 at 0.05.
LADDER = (
    Tier(D(100), D("0.10")),
    Tier(D(200), D("0.08"), D("5.00")),
    Tier(None, D("0.05")),
)
GRADUATED = PriceTerms(M.GRADUATED, tiers=LADDER)
VOLUME = PriceTerms(M.VOLUME, tiers=LADDER)
CARD_FEES = PriceTerms(M.PERCENTAGE, percent=D("2.9"), fixed_fee_per_transaction=D("0.30"))


def minor(terms: PriceTerms, quantity, currency: str, transactions=()) -> int:
    return round_to_minor(rate(terms, D(quantity), transactions).amount, currency)


def txs(*values: str) -> list[D]:
    return [D(value) for value in values]


# --- flat ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", ["0", "1", "1000.5"])
def test_flat_charges_the_amount_whatever_the_quantity(quantity):
    terms = PriceTerms(M.FLAT, amount=D("49.00"))
    rating = rate(terms, D(quantity))
    assert rating.amount == D("49.00")
    assert rating.quantity == D(quantity)
    assert round_to_minor(rating.amount, "USD") == 4900


def test_flat_in_jpy_and_kwd():
    assert minor(PriceTerms(M.FLAT, amount=D(4900)), 0, "JPY") == 4900
    assert minor(PriceTerms(M.FLAT, amount=D("12.345")), 0, "KWD") == 12345


# --- per unit -----------------------------------------------------------------------------


def test_per_unit_sub_cent_price_stays_exact_until_rounded():
    terms = PriceTerms(M.PER_UNIT, amount=D("0.0006"))
    rating = rate(terms, D(1234567))
    # 1,234,567 x 0.0006 = 740.7402, not rounded by rate()
    assert rating.amount == D("740.7402")
    assert str(rating.amount) == "740.7402"
    assert rating.unit_price == D("0.0006")
    assert round_to_minor(rating.amount, "USD") == 74074  # 74074.02 cents
    assert round_to_minor(rating.amount, "KWD") == 740740  # 740740.2 fils
    assert round_to_minor(rating.amount, "JPY") == 741  # 740.7402 yen


def test_per_unit_fractional_quantity_and_rounding_mode_is_the_callers():
    terms = PriceTerms(M.PER_UNIT, amount=D("0.10"))
    assert rate(terms, D("2.5")).amount == D("0.25")  # 2.5 x 0.10
    # 1 x 0.125 = 0.125 -> 12.5 cents: the caller's rounding mode decides
    amount = rate(PriceTerms(M.PER_UNIT, amount=D("0.125")), D(1)).amount
    assert amount == D("0.125")
    assert round_to_minor(amount, "USD", RoundingMode.HALF_UP) == 13
    assert round_to_minor(amount, "USD", RoundingMode.HALF_EVEN) == 12


def test_per_unit_zero_usage_and_int_quantity():
    terms = PriceTerms(M.PER_UNIT, amount=D("0.0006"))
    assert rate(terms, D(0)).amount == 0
    assert rate(terms, 10).amount == D("0.0060")  # 10 x 0.0006


def test_arithmetic_is_exact_beyond_the_default_28_digits():
    terms = PriceTerms(M.PER_UNIT, amount=D("0.0006"))
    # (10^30 + 1) x 0.0006 = 6 x 10^26 + 0.0006: 31 significant digits
    assert rate(terms, D(10**30 + 1)).amount == D("600000000000000000000000000.0006")


# --- package ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "packages", "amount"),
    [
        ("0", 0, "0"),  # no usage, no package
        ("0.0001", 1, "5.00"),  # any usage starts a package
        ("10", 1, "5.00"),  # exactly one full package
        ("10.2", 2, "10.00"),  # ceil(10.2 / 10) = 2
        ("30", 3, "15.00"),
    ],
)
def test_package_rounds_up_to_whole_packages(quantity, packages, amount):
    terms = PriceTerms(M.PACKAGE, amount=D("5.00"), package_size=D(10))
    rating = rate(terms, D(quantity))
    assert rating.packages == packages
    assert rating.amount == D(amount)


@pytest.mark.parametrize(
    ("quantity", "billable", "packages", "cents"),
    [
        ("10", "0", 0, 0),  # inside the free allowance
        ("25", "0", 0, 0),  # exactly the free allowance
        ("25.5", "0.5", 1, 500),  # 0.5 billable -> 1 package x 5.00
        ("35", "10", 1, 500),  # 10 billable -> 1 package
        ("36", "11", 2, 1000),  # 11 billable -> ceil(1.1) = 2 packages x 5.00
    ],
)
def test_package_with_free_units(quantity, billable, packages, cents):
    terms = PriceTerms(M.PACKAGE, amount=D("5.00"), package_size=D(10), free_units=D(25))
    rating = rate(terms, D(quantity))
    assert rating.billable_units == D(billable)
    assert rating.packages == packages
    assert round_to_minor(rating.amount, "USD") == cents


def test_package_in_jpy_and_kwd_and_fractional_package_size():
    # 500 JPY per 1,000 calls; 2,500 calls -> 3 packages -> 1,500 JPY
    assert minor(PriceTerms(M.PACKAGE, amount=D(500), package_size=D(1000)), 2500, "JPY") == 1500
    # 1.250 KWD per 100 SMS; 201 SMS -> 3 packages -> 3.750 KWD
    kwd = PriceTerms(M.PACKAGE, amount=D("1.250"), package_size=D(100))
    assert minor(kwd, 201, "KWD") == 3750
    # 0.40 per 0.5 GB; 1.2 GB -> ceil(2.4) = 3 packages -> 1.20
    gb = PriceTerms(M.PACKAGE, amount=D("0.40"), package_size=D("0.5"))
    assert rate(gb, D("1.2")).amount == D("1.20")


# --- graduated ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "amount", "cents", "tiers_charged"),
    [
        ("0", "0", 0, 0),
        ("1", "0.10", 10, 1),
        ("100", "10.00", 1000, 1),  # 100 x 0.10; unit 100 is still tier 1: no tier-2 fee
        # 100 x 0.10 + 0.0001 x 0.08 + 5.00 = 10.00 + 0.000008 + 5.00
        ("100.0001", "15.000008", 1500, 2),
        ("100.5", "15.04", 1504, 2),  # 10.00 + 0.5 x 0.08 + 5.00
        ("101", "15.08", 1508, 2),  # 10.00 + 0.08 + 5.00
        ("120", "16.60", 1660, 2),  # 10.00 + 20 x 0.08 + 5.00
        ("200", "23.00", 2300, 2),  # 10.00 + 100 x 0.08 + 5.00
        ("250", "25.50", 2550, 3),  # 10.00 + 8.00 + 5.00 + 50 x 0.05
    ],
)
def test_graduated_prices_each_unit_in_its_tier(quantity, amount, cents, tiers_charged):
    rating = rate(GRADUATED, D(quantity))
    assert rating.amount == D(amount)
    assert round_to_minor(rating.amount, "USD") == cents
    assert len(rating.tiers) == tiers_charged


def test_graduated_at_boundary_in_kwd_and_jpy():
    # 15.000008 KWD = 15000.008 fils -> 15000; 15.000008 JPY -> 15
    assert minor(GRADUATED, "100.0001", "KWD") == 15000
    assert minor(GRADUATED, "100.0001", "JPY") == 15
    # KWD: 1-10 at 0.125, over 10 at 0.1005; 12 -> 1.250 + 2 x 0.1005 = 1.4510
    kwd = PriceTerms(M.GRADUATED, tiers=(Tier(D(10), D("0.125")), Tier(None, D("0.1005"))))
    assert minor(kwd, 12, "KWD") == 1451
    # 10.5 -> 1.250 + 0.5 x 0.1005 = 1.30025 -> 1300.25 fils
    assert minor(kwd, "10.5", "KWD") == 1300
    # JPY: 1-1000 at 2, over at 1.5; 1003 -> 2000 + 3 x 1.5 = 2004.5
    jpy = PriceTerms(M.GRADUATED, tiers=(Tier(D(1000), D(2)), Tier(None, D("1.5"))))
    amount = rate(jpy, D(1003)).amount
    assert amount == D("2004.5")
    assert round_to_minor(amount, "JPY") == 2005
    assert round_to_minor(amount, "JPY", RoundingMode.HALF_EVEN) == 2004


def test_graduated_tier_charges_show_the_working():
    rating = rate(GRADUATED, D("100.5"))
    assert rating.tiers == (
        # 100 x 0.10 = 10.00
        TierCharge(1, D(0), D(100), D(100), D("0.10"), D(0), D("10.00")),
        # 0.5 x 0.08 + 5.00 = 5.04
        TierCharge(2, D(100), D(200), D("0.5"), D("0.08"), D("5.00"), D("5.04")),
    )


def test_graduated_open_last_tier_charge():
    rating = rate(GRADUATED, D(250))
    # 50 x 0.05 = 2.50
    assert rating.tiers[-1] == TierCharge(3, D(200), None, D(50), D("0.05"), D(0), D("2.50"))


def test_graduated_flat_fee_of_first_tier_needs_usage():
    terms = PriceTerms(M.GRADUATED, tiers=(Tier(None, D("0.01"), D("20.00")),))
    assert rate(terms, D(0)).amount == 0  # zero usage charges no tier fee
    assert rate(terms, D(1)).amount == D("20.01")  # 1 x 0.01 + 20.00


# --- volume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "amount", "cents", "tier"),
    [
        ("0", "0", 0, None),
        ("100", "10.00", 1000, 1),  # 100 x 0.10: 100 belongs to tier 1
        ("100.0001", "13.000008", 1300, 2),  # 100.0001 x 0.08 + 5.00 = 8.000008 + 5.00
        ("101", "13.08", 1308, 2),  # 101 x 0.08 + 5.00
        ("150.5", "17.04", 1704, 2),  # 150.5 x 0.08 + 5.00 = 12.04 + 5.00
        ("200", "21.00", 2100, 2),  # 200 x 0.08 + 5.00
        ("201", "10.05", 1005, 3),  # 201 x 0.05: the whole quantity moves tier
    ],
)
def test_volume_prices_the_whole_quantity_in_one_tier(quantity, amount, cents, tier):
    rating = rate(VOLUME, D(quantity))
    assert rating.amount == D(amount)
    assert round_to_minor(rating.amount, "USD") == cents
    assert [charge.tier for charge in rating.tiers] == ([] if tier is None else [tier])
    if tier is not None:
        assert rating.tiers[0].units == D(quantity)


def test_volume_in_jpy_and_kwd():
    jpy = PriceTerms(M.VOLUME, tiers=(Tier(D(1000), D(3)), Tier(None, D("2.5"))))
    assert minor(jpy, 1000, "JPY") == 3000  # 1000 x 3
    assert minor(jpy, 1001, "JPY") == 2503  # 1001 x 2.5 = 2502.5 -> half up
    # 100.0001 x 0.08 + 5.00 = 13.000008 KWD = 13000.008 fils
    assert minor(VOLUME, "100.0001", "KWD") == 13000


# --- percentage ---------------------------------------------------------------------------


def test_percentage_percent_plus_fixed_fee_per_transaction():
    # 100.00 x 2.9 % + 0.30 = 2.90 + 0.30 = 3.20
    assert minor(CARD_FEES, 0, "USD", txs("100.00")) == 320
    # 3.20 + (50.00 x 2.9 % + 0.30 = 1.45 + 0.30) = 4.95
    rating = rate(CARD_FEES, D(0), txs("100.00", "50.00"))
    assert rating.amount == D("4.95")
    assert rating.quantity == D("150.00")  # the sum of the transaction values
    assert rating.transactions == 2
    assert rating.fixed_fees == D("0.60")
    # 12.34 x 2.9 % + 0.30 = 0.35786 + 0.30 = 0.65786
    assert rate(CARD_FEES, D(0), txs("12.34")).amount == D("0.65786")
    assert minor(CARD_FEES, 0, "USD", txs("12.34")) == 66


def test_percentage_with_transactions_rates_their_values_not_the_quantity():
    # quantity 2 (a count of records, say) is not the value: 3.20 + 1.75 = 4.95 either way
    rating = rate(CARD_FEES, D(2), txs("100", "50"))
    assert rating.amount == D("4.95")
    assert rating.quantity == D(150)
    with pytest.raises(PricingError, match=r"^quantity: must not be negative"):
        rate(CARD_FEES, D(-1), txs("100"))


def test_percentage_free_transactions_are_entirely_free():
    terms = dataclasses.replace(CARD_FEES, free_transactions=2)
    rating = rate(terms, D(0), txs("100", "100", "100"))
    assert rating.amount == D("3.20")  # only the third: 2.90 + 0.30
    assert rating.transactions == 3
    assert rating.free_transactions_used == 2
    # more free transactions than transactions: nothing to pay
    everything_free = dataclasses.replace(CARD_FEES, free_transactions=5)
    rating = rate(everything_free, D(0), txs("100", "100", "100"))
    assert rating.amount == 0
    assert rating.free_transactions_used == 3


def test_percentage_free_amount_is_used_up_in_transaction_order():
    terms = PriceTerms(M.PERCENTAGE, percent=D("2.9"), free_amount=D(150))
    rating = rate(terms, D(0), txs("100", "100", "100"))
    # 1st: 100 of 150 free -> 0; 2nd: 50 free, 50 x 2.9 % = 1.45; 3rd: 100 x 2.9 % = 2.90
    assert rating.amount == D("4.35")
    assert rating.chargeable_value == D(150)


def test_percentage_free_transactions_do_not_use_the_free_amount():
    terms = dataclasses.replace(CARD_FEES, free_transactions=1, free_amount=D(50))
    # 1st free; 2nd: 80 - 50 free = 30 x 2.9 % + 0.30 = 1.17; 3rd: 2.90 + 0.30 = 3.20
    assert rate(terms, D(0), txs("100", "80", "100")).amount == D("4.37")


def test_percentage_fixed_fee_is_charged_even_when_the_free_amount_covers_the_value():
    terms = dataclasses.replace(CARD_FEES, free_amount=D(1000))
    assert rate(terms, D(0), txs("10")).amount == D("0.30")  # 0 x 2.9 % + 0.30


def test_percentage_min_and_max_clamp_each_transaction():
    terms = PriceTerms(
        M.PERCENTAGE,
        percent=D(1),
        min_per_transaction=D("0.50"),
        max_per_transaction=D("5.00"),
    )
    rating = rate(terms, D(0), txs("10", "100", "1000"))
    # 0.10 -> min 0.50; 1.00; 10.00 -> max 5.00
    assert rating.amount == D("6.50")
    assert rating.clamp_adjustment == D("-4.60")  # +0.40 - 5.00
    assert round_to_minor(rating.amount, "USD") == 650


def test_percentage_clamps_apply_after_the_fixed_fee():
    with_min = PriceTerms(
        M.PERCENTAGE,
        percent=D(1),
        fixed_fee_per_transaction=D("0.30"),
        min_per_transaction=D("0.50"),
    )
    assert rate(with_min, D(0), txs("10")).amount == D("0.50")  # 0.10 + 0.30 = 0.40 -> 0.50
    assert rate(with_min, D(0), txs("100")).amount == D("1.30")  # 1.00 + 0.30, above the min
    with_max = PriceTerms(
        M.PERCENTAGE,
        percent=D(1),
        fixed_fee_per_transaction=D("0.30"),
        max_per_transaction=D("0.25"),
    )
    assert rate(with_max, D(0), txs("0")).amount == D("0.25")  # 0 + 0.30 -> 0.25


def test_percentage_without_transactions_rates_an_aggregate_value():
    terms = dataclasses.replace(
        CARD_FEES,
        free_amount=D(100),
        free_transactions=1,
        min_per_transaction=D("1.00"),
        max_per_transaction=D("2.00"),
    )
    rating = rate(terms, D(1000))
    # (1000 - 100 free) x 2.9 % = 26.10: no fixed fee, no clamp, no free transaction
    assert rating.amount == D("26.10")
    assert rating.transactions == 0
    assert rating.quantity == D(1000)
    assert round_to_minor(rating.amount, "USD") == 2610
    assert rate(terms, D(0)).amount == 0


def test_percentage_in_kwd_and_jpy():
    kwd = PriceTerms(M.PERCENTAGE, percent=D("2.5"))
    # 12.345 x 2.5 % = 0.308625 KWD = 308.625 fils
    assert minor(kwd, 0, "KWD", txs("12.345")) == 309
    jpy = PriceTerms(M.PERCENTAGE, percent=D("3.6"), fixed_fee_per_transaction=D(40))
    # 1234 x 3.6 % + 40 = 44.424 + 40 = 84.424 JPY
    assert minor(jpy, 0, "JPY", txs("1234")) == 84


# --- minimum commitment ---------------------------------------------------------------------


def test_commitment_true_up_bills_the_shortfall():
    terms = PriceTerms(M.PER_UNIT, amount=D("0.10"), minimum_commitment=D("100.00"))
    usage = rate(terms, D(600)).amount  # 600 x 0.10 = 60.00
    assert commitment_true_up(terms, usage) == D("40.00")  # 100.00 - 60.00
    assert round_to_minor(commitment_true_up(terms, usage), "USD") == 4000
    assert commitment_true_up(terms, D("100.00")) == 0  # exactly met
    assert commitment_true_up(terms, D("150.00")) == 0  # exceeded
    assert commitment_true_up(terms, D("99.995")) == D("0.005")  # exact; caller rounds
    assert commitment_true_up(terms, 0) == D("100.00")


def test_commitment_true_up_on_graduated_and_without_commitment():
    terms = dataclasses.replace(GRADUATED, minimum_commitment=D(50))
    usage = rate(terms, D(120)).amount  # 16.60, as above
    assert commitment_true_up(terms, usage) == D("33.40")  # 50 - 16.60
    assert commitment_true_up(GRADUATED, D(0)) == 0


@pytest.mark.parametrize("period_amount", [0.5, D(-1), "abc"])
def test_commitment_true_up_refuses_bad_period_amounts(period_amount):
    terms = PriceTerms(M.FLAT, amount=D(10), minimum_commitment=D(20))
    with pytest.raises(PricingError, match=r"^period_amount: "):
        commitment_true_up(terms, period_amount)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (PriceTerms(M.FLAT, amount=D(-1)), "amount: must not be negative"),
        (PriceTerms(M.PER_UNIT, amount=0.1), "amount: "),
        (PriceTerms(M.PER_UNIT, amount=D("NaN")), "amount: "),
        (PriceTerms(M.PACKAGE, amount=D(5), package_size=D(0)), "package_size: "),
        (PriceTerms(M.PACKAGE, amount=D(5), package_size=D(-10)), "package_size: "),
        (PriceTerms(M.PACKAGE, amount=D(5), free_units=D(-1)), "free_units: "),
        (PriceTerms(M.GRADUATED), "tiers: "),
        (
            PriceTerms(M.GRADUATED, tiers=(Tier(D(100)), Tier(D(100)), Tier(None))),
            "tiers[1].up_to: must be greater than the previous tier's up_to",
        ),
        (PriceTerms(M.VOLUME, tiers=(Tier(D(100)), Tier(D(50)), Tier(None))), "tiers[1].up_to: "),
        (
            PriceTerms(M.GRADUATED, tiers=(Tier(D(100)), Tier(D(200)))),
            "tiers[1].up_to: the last tier must be open-ended",
        ),
        (
            PriceTerms(M.GRADUATED, tiers=(Tier(None), Tier(None))),
            "tiers[0].up_to: only the last tier may be open-ended",
        ),
        (PriceTerms(M.GRADUATED, tiers=(Tier(D(0)), Tier(None))), "tiers[0].up_to: "),
        (PriceTerms(M.GRADUATED, tiers=(Tier(D(-5)), Tier(None))), "tiers[0].up_to: "),
        (PriceTerms(M.GRADUATED, tiers=(Tier(D(9), D(-1)), Tier(None))), "tiers[0].unit_price: "),
        (PriceTerms(M.VOLUME, tiers=(Tier(None, flat_fee=D(-5)),)), "tiers[0].flat_fee: "),
        (PriceTerms(M.PERCENTAGE, percent=D(-1)), "percent: "),
        (PriceTerms(M.PERCENTAGE, percent=D("100.01")), "percent: "),
        (
            PriceTerms(M.PERCENTAGE, min_per_transaction=D(5), max_per_transaction=D(1)),
            "min_per_transaction: ",
        ),
        (PriceTerms(M.PERCENTAGE, max_per_transaction=D(-1)), "max_per_transaction: "),
        (
            PriceTerms(M.PERCENTAGE, fixed_fee_per_transaction=D("-0.30")),
            "fixed_fee_per_transaction: ",
        ),
        (PriceTerms(M.PERCENTAGE, free_amount=D(-1)), "free_amount: "),
        (PriceTerms(M.PERCENTAGE, free_transactions=-1), "free_transactions: "),
        (PriceTerms(M.PERCENTAGE, free_transactions=True), "free_transactions: "),
        (PriceTerms(M.FLAT, minimum_commitment=D(-1)), "minimum_commitment: "),
        (PriceTerms(M.FLAT, tiers=LADDER), "tiers: not used by flat pricing"),
        (PriceTerms(M.GRADUATED, amount=D(10), tiers=LADDER), "amount: not used by graduated"),
        (PriceTerms(M.PER_UNIT, percent=D(1)), "percent: not used by per_unit"),
        (PriceTerms("tiered"), "model: "),
    ],
)
def test_validation_errors_name_the_field(terms, message):
    with pytest.raises(PricingError) as error:
        terms.validate()
    assert str(error.value).startswith(message)
    with pytest.raises(PricingError):
        rate(terms, D(1))  # rating refuses invalid terms too


def test_valid_edge_terms_pass():
    PriceTerms(M.PERCENTAGE, percent=D(100)).validate()
    PriceTerms(M.PERCENTAGE, min_per_transaction=D(1), max_per_transaction=D(1)).validate()
    PriceTerms(M.GRADUATED, tiers=(Tier(None),)).validate()
    PriceTerms(M.FLAT).validate()
    assert PricingError.__mro__[1] is ValueError


@pytest.mark.parametrize(
    ("terms", "quantity", "transactions", "message"),
    [
        (GRADUATED, D(-1), (), "quantity: must not be negative"),
        (GRADUATED, 1.5, (), "quantity: "),
        (GRADUATED, "lots", (), "quantity: "),
        (GRADUATED, D(1), txs("1"), "transactions: "),
        (CARD_FEES, D(0), txs("1", "-1"), "transactions[1]: must not be negative"),
        (CARD_FEES, D(0), [0.5], "transactions[0]: "),
    ],
)
def test_rate_refuses_bad_inputs(terms, quantity, transactions, message):
    with pytest.raises(PricingError) as error:
        rate(terms, quantity, transactions)
    assert str(error.value).startswith(message)


def test_terms_and_ratings_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GRADUATED.model = M.FLAT  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rate(GRADUATED, D(1)).amount = D(0)  # type: ignore[misc]


# --- to_dict / from_dict ------------------------------------------------------------------


def test_to_dict_is_json_safe_strings():
    assert GRADUATED.to_dict() == {
        "model": "graduated",
        "tiers": [
            {"up_to": "100", "unit_price": "0.10"},
            {"up_to": "200", "unit_price": "0.08", "flat_fee": "5.00"},
            {"up_to": None, "unit_price": "0.05"},
        ],
    }
    terms = dataclasses.replace(CARD_FEES, max_per_transaction=D("1E+1"), free_transactions=3)
    assert terms.to_dict() == {
        "model": "percentage",
        "percent": "2.9",
        "fixed_fee_per_transaction": "0.30",
        "free_transactions": 3,
        "max_per_transaction": "10",
    }


def test_from_dict_accepts_strings_and_ints():
    terms = PriceTerms.from_dict(
        {"model": "package", "amount": "5.00", "package_size": 10, "free_units": "25"}
    )
    assert terms == PriceTerms(M.PACKAGE, amount=D("5.00"), package_size=D(10), free_units=D(25))
    assert terms.model is M.PACKAGE
    tiered = PriceTerms.from_dict(
        {"model": "volume", "tiers": [{"up_to": 100, "unit_price": "0.1"}, {"unit_price": 0}]}
    )
    assert tiered.tiers == (Tier(D(100), D("0.1")), Tier(None))
    assert (
        PriceTerms.from_dict({"model": "percentage", "free_transactions": "2"}).free_transactions
        == 2
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "per_unit", "amount": 0.1}, "amount: "),
        ({"model": "per_unit", "amount": "abc"}, "amount: "),
        ({"model": "per_unit", "amount": "Infinity"}, "amount: "),
        ({"model": "per_unit", "amout": "1"}, "amout: "),
        ({}, "model: "),
        ({"model": "tiered"}, "model: "),
        ({"model": "package", "amount": "5", "package_size": "0"}, "package_size: "),
        ({"model": "graduated", "tiers": "100:0.1"}, "tiers: "),
        (
            {"model": "graduated", "tiers": [{"up_to": 100, "unit_price": 0.1}]},
            "tiers[0].unit_price: ",
        ),
        ({"model": "graduated", "tiers": [{"up_to": None, "price": "1"}]}, "tiers[0].price: "),
        ({"model": "graduated", "tiers": [{"up_to": "100"}]}, "tiers[0].up_to: "),
        ({"model": "graduated", "tiers": ["1"]}, "tiers[0]: "),
        ({"model": "percentage", "free_transactions": "1.5"}, "free_transactions: "),
        ({"model": "percentage", "free_transactions": 2.0}, "free_transactions: "),
        ({"model": "percentage", "min_per_transaction": 0.5}, "min_per_transaction: "),
        (["model", "flat"], "terms: "),
    ],
)
def test_from_dict_errors_name_the_field(data, message):
    with pytest.raises(PricingError) as error:
        PriceTerms.from_dict(data)
    assert str(error.value).startswith(message)


# --- describe -----------------------------------------------------------------------------


def test_describe_graduated_example():
    assert rate(GRADUATED, D(120)).describe("usd") == (
        "graduated: 100 units at 0.10 (tier 1, 1-100) + 20 units at 0.08 (tier 2, 101-200)"
        " + flat 5.00 = 16.60 USD"
    )


@pytest.mark.parametrize(
    ("terms", "quantity", "transactions", "expected"),
    [
        (PriceTerms(M.FLAT, amount=D("49.00")), D(3), (), "flat: 49.00 USD per period"),
        (
            PriceTerms(M.PER_UNIT, amount=D("0.0006")),
            D(1234567),
            (),
            "per_unit: 1234567 units at 0.0006 = 740.7402 USD",
        ),
        (
            PriceTerms(M.PACKAGE, amount=D("5.00"), package_size=D(10), free_units=D(25)),
            D(36),
            (),
            "package: 2 packages of 10 units at 5.00 each (11 of 36 units billable) = 10.00 USD",
        ),
        (
            VOLUME,
            D("100.0001"),
            (),
            "volume: 100.0001 units at 0.08 (tier 2, 101-200) + flat 5.00 = 13.000008 USD",
        ),
        (VOLUME, D(201), (), "volume: 201 units at 0.05 (tier 3, over 200) = 10.05 USD"),
        (GRADUATED, D(0), (), "graduated: no usage = 0 USD"),
        (
            PriceTerms(M.GRADUATED, tiers=(Tier(D("0.5"), D(2)), Tier(None, D(1)))),
            D(1),
            (),
            "graduated: 0.5 units at 2 (tier 1, up to 0.5) + 0.5 units at 1 (tier 2, over 0.5)"
            " = 1.5 USD",
        ),
        (
            PriceTerms(
                M.PERCENTAGE,
                percent=D(1),
                free_transactions=1,
                min_per_transaction=D("0.50"),
                max_per_transaction=D("5.00"),
            ),
            D(0),
            txs("7", "10", "100", "1000"),
            "percentage: 1% of 1110 over 4 transactions (1 free)"
            " + min/max adjustment -4.60 = 6.50 USD",
        ),
        (
            CARD_FEES,
            D(0),
            txs("100.00"),
            # 100.00 x 2.9 = 290.000, / 100 = 2.90000, + 0.30 = 3.20000: exact, never trimmed
            "percentage: 2.9% of 100.00 over 1 transaction + fixed fees 0.30 = 3.20000 USD",
        ),
        (
            CARD_FEES,
            D(1000),
            (),
            "percentage: 2.9% of 1000 (aggregate value 1000) = 29.000 USD",
        ),
    ],
)
def test_describe_says_how_the_amount_was_reached(terms, quantity, transactions, expected):
    assert rate(terms, quantity, transactions).describe("USD") == expected


def test_describe_refuses_an_unknown_currency():
    with pytest.raises(ValueError, match="ZZZ"):
        rate(GRADUATED, D(1)).describe("ZZZ")


# --- properties ---------------------------------------------------------------------------

prices = st.decimals(min_value=0, max_value=1000, places=4)
quantities = st.decimals(min_value=0, max_value=10**6, places=4)


@st.composite
def tier_ladders(draw) -> tuple[Tier, ...]:
    up_tos = st.decimals(min_value="0.0001", max_value=10**5, places=4)
    bounds = sorted(draw(st.lists(up_tos, max_size=4, unique=True)))
    ups: list[D | None] = [*bounds, None]
    return tuple(Tier(up, draw(prices), draw(prices)) for up in ups)


@st.composite
def valid_terms(draw, models: tuple[PricingModel, ...] = tuple(M)) -> PriceTerms:
    model = draw(st.sampled_from(models))
    commitment = draw(st.none() | prices)
    if model in (M.FLAT, M.PER_UNIT):
        return PriceTerms(model, amount=draw(prices), minimum_commitment=commitment)
    if model is M.PACKAGE:
        return PriceTerms(
            model,
            amount=draw(prices),
            package_size=draw(st.decimals(min_value="0.0001", max_value=10**4, places=4)),
            free_units=draw(quantities),
            minimum_commitment=commitment,
        )
    if model in (M.GRADUATED, M.VOLUME):
        return PriceTerms(model, tiers=draw(tier_ladders()), minimum_commitment=commitment)
    low, high = sorted([draw(prices), draw(prices)])
    return PriceTerms(
        model,
        percent=draw(st.decimals(min_value=0, max_value=100, places=3)),
        fixed_fee_per_transaction=draw(prices),
        free_amount=draw(prices),
        free_transactions=draw(st.integers(0, 5)),
        min_per_transaction=draw(st.none() | st.just(low)),
        max_per_transaction=draw(st.none() | st.just(high)),
        minimum_commitment=commitment,
    )


@settings(deadline=None)
@given(valid_terms())
def test_to_dict_from_dict_round_trip(terms):
    data = terms.to_dict()
    restored = PriceTerms.from_dict(json.loads(json.dumps(data)))
    assert restored == terms
    assert restored.to_dict() == data


@settings(deadline=None)
@given(tier_ladders(), quantities, quantities)
def test_graduated_amount_never_falls_as_quantity_grows(tiers, a, b):
    terms = PriceTerms(M.GRADUATED, tiers=tiers)
    low, high = sorted([a, b])
    assert rate(terms, low).amount <= rate(terms, high).amount


@settings(deadline=None)
@given(prices, quantities)
def test_graduated_with_one_tier_equals_per_unit(price, quantity):
    graduated = PriceTerms(M.GRADUATED, tiers=(Tier(None, price),))
    per_unit = PriceTerms(M.PER_UNIT, amount=price)
    assert rate(graduated, quantity).amount == rate(per_unit, quantity).amount


@settings(deadline=None)
@given(tier_ladders(), quantities, st.sampled_from([M.GRADUATED, M.VOLUME]))
def test_tier_charges_add_up_to_the_amount(tiers, quantity, model):
    rating = rate(PriceTerms(model, tiers=tiers), quantity)
    assert sum((charge.amount for charge in rating.tiers), D(0)) == rating.amount
    for charge in rating.tiers:
        assert charge.amount == charge.units * charge.unit_price + charge.flat_fee


@settings(deadline=None)
@given(tier_ladders(), st.data())
def test_volume_prices_each_tier_range_at_that_tiers_price(tiers, data):
    index = data.draw(st.integers(0, len(tiers) - 1))
    first = D(0) if index == 0 else tiers[index - 1].up_to
    last = tiers[index].up_to if tiers[index].up_to is not None else first + 10**5
    quantity = data.draw(st.decimals(min_value=first, max_value=last, places=4))
    assume(quantity > first)  # the lower bound belongs to the tier below
    rating = rate(PriceTerms(M.VOLUME, tiers=tiers), quantity)
    tier = tiers[index]
    assert rating.amount == quantity * tier.unit_price + tier.flat_fee
    assert rating.tiers[0].tier == index + 1


@settings(deadline=None)
@given(valid_terms(), quantities, st.lists(prices, max_size=6))
def test_rate_never_returns_a_negative_amount(terms, quantity, values):
    transactions = values if terms.model is M.PERCENTAGE else []
    rating = rate(terms, D(0) if transactions else quantity, transactions)
    assert isinstance(rating, Rating)
    assert rating.amount >= 0
    assert commitment_true_up(terms, rating.amount) >= 0


@settings(deadline=None)
@given(valid_terms(models=(M.PERCENTAGE,)), st.lists(prices, max_size=6))
def test_percentage_parts_add_up_to_the_amount(terms, values):
    rating = rate(terms, D(0), values)
    # percent of the chargeable value + fixed fees + clamp adjustments = amount, exactly
    percent_part = rating.chargeable_value * terms.percent / 100
    assert percent_part + rating.fixed_fees + rating.clamp_adjustment == rating.amount
    assert rating.quantity == sum(values, D(0))
