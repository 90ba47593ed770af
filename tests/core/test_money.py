"""Money: currency minor units, the one rounding function, allocation that loses no cent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.core.money import (
    MoneyError,
    RoundingMode,
    allocate,
    currency_exponent,
    format_minor,
    from_minor,
    parse_decimal,
    round_to_minor,
    to_minor_exact,
)


@pytest.mark.parametrize(
    ("code", "places"),
    [("EUR", 2), ("usd", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3), ("CLP", 0), ("CHF", 2)],
)
def test_minor_units_come_from_iso_4217(code: str, places: int) -> None:
    assert currency_exponent(code) == places


@pytest.mark.parametrize("code", ["XAU", "ABC", "", "EURO"])
def test_unknown_or_non_billing_currencies_are_refused(code: str) -> None:
    with pytest.raises(MoneyError, match="currency"):
        currency_exponent(code)


def test_rounding_modes_on_an_exact_half() -> None:
    assert round_to_minor(Decimal("0.125"), "EUR", RoundingMode.HALF_UP) == 13
    assert round_to_minor(Decimal("0.125"), "EUR", RoundingMode.HALF_EVEN) == 12
    assert round_to_minor(Decimal("-0.125"), "EUR", RoundingMode.HALF_UP) == -13
    assert round_to_minor(Decimal("1234.5"), "JPY") == 1235
    assert round_to_minor(Decimal("1.2345"), "KWD") == 1235  # 1.235 KWD
    # sub-cent unit price: 0.0006 x 1,234,567 = 740.7402 -> 740.74
    assert round_to_minor(Decimal("0.0006") * 1234567, "USD") == 74074


def test_exact_conversion_refuses_to_round_silently() -> None:
    assert to_minor_exact(Decimal("12.30"), "EUR") == 1230
    with pytest.raises(MoneyError, match="amount: 12.345 has more than 2 decimal places"):
        to_minor_exact(Decimal("12.345"), "EUR")
    assert from_minor(1235, "KWD") == Decimal("1.235")
    assert format_minor(-500, "JPY") == "-500 JPY"


def test_floats_are_refused() -> None:
    with pytest.raises(MoneyError, match="unit_price: give a decimal string"):
        parse_decimal(0.1, "unit_price")
    assert parse_decimal("0.1") + parse_decimal("0.2") == Decimal("0.3")


@given(
    total=st.integers(min_value=-(10**12), max_value=10**12),
    weights=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False),
        min_size=1,
        max_size=12,
    ),
)
def test_allocation_never_creates_or_loses_a_minor_unit(total: int, weights: list[Decimal]) -> None:
    shares = allocate(total, weights)
    assert sum(shares) == total
    assert len(shares) == len(weights)
    weight_sum = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        # Each share is within one minor unit of its exact proportional value.
        exact = Decimal(total) * (weight / weight_sum if weight_sum else Decimal(1) / len(weights))
        assert abs(Decimal(share) - exact) < 1
        assert share == 0 or (share > 0) == (total > 0)


@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False),
    st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_rounding_is_within_half_a_minor_unit(amount: Decimal, currency: str) -> None:
    minor = round_to_minor(amount, currency)
    assert (
        abs(from_minor(minor, currency) - amount)
        <= Decimal(1).scaleb(-currency_exponent(currency)) / 2
    )
