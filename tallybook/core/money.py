"""Money: currencies, exact amounts and the one place where rounding happens.

Amounts that have been rounded to a currency are integers of minor units (cents, fils, yen).
Unit prices, quantities and intermediate results are `Decimal`s and stay exact until they
pass through `round_to_minor`. No other module rounds money.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from functools import cache

import iso4217

__all__ = [
    "MoneyError",
    "RoundingMode",
    "allocate",
    "currency_exponent",
    "format_minor",
    "from_minor",
    "is_currency",
    "parse_decimal",
    "round_to_minor",
    "to_minor_exact",
]


class MoneyError(ValueError):
    """An amount, currency or rounding request that cannot be honoured exactly."""


class RoundingMode(StrEnum):
    """How a half minor unit rounds. Organisations choose; half-up is the commercial default."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"

    @property
    def decimal_mode(self) -> str:
        return ROUND_HALF_UP if self is RoundingMode.HALF_UP else ROUND_HALF_EVEN


@cache
def currency_exponent(code: str) -> int:
    """Minor units of an ISO 4217 currency (USD 2, JPY 0, KWD 3), from the pinned `iso4217` data."""
    try:
        currency = iso4217.Currency(code.upper())
    except (ValueError, KeyError, AttributeError):
        raise MoneyError(
            f"unknown currency {code!r}: expected an ISO 4217 code such as EUR"
        ) from None
    if currency.exponent is None:
        # Gold, SDRs and test codes have no minor unit: they are not billing currencies.
        raise MoneyError(f"currency {code!r} has no minor unit and cannot be billed")
    return int(currency.exponent)


def is_currency(code: str) -> bool:
    try:
        currency_exponent(code)
    except MoneyError:
        return False
    return True


def parse_decimal(value: object, field: str = "amount") -> Decimal:
    """Parse a user-supplied number exactly. Floats are refused: they are already inexact."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"{field}: give a decimal string or an integer, not a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise MoneyError(f"{field}: {value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"{field}: {value!r} is not a decimal number")
    if not result.is_finite():
        raise MoneyError(f"{field}: {value!r} is not a finite number")
    return result


def round_to_minor(
    amount: Decimal, currency: str, mode: RoundingMode = RoundingMode.HALF_UP
) -> int:
    """Round an exact amount in major units (e.g. 12.345 EUR) to integer minor units (1235)."""
    exponent = currency_exponent(currency)
    scaled = amount.scaleb(exponent)
    return int(scaled.quantize(Decimal(1), rounding=mode.decimal_mode))


def to_minor_exact(amount: Decimal, currency: str, field: str = "amount") -> int:
    """Convert an amount that must already be whole minor units; refuse to round silently."""
    exponent = currency_exponent(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{field}: {amount} has more than {exponent} decimal places for {currency.upper()}"
        )
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units back to an exact Decimal in major units, with the currency's places."""
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent)


def format_minor(minor: int, currency: str) -> str:
    """Plain, locale-free rendering for CLIs and logs: '1234.50 EUR'."""
    exponent = currency_exponent(currency)
    value = from_minor(minor, currency)
    return f"{value:.{exponent}f} {currency.upper()}"


def allocate(total_minor: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split `total_minor` in proportion to `weights` without creating or losing a minor unit.

    Largest-remainder method: each share is floored, then the units left over go to the shares
    with the largest remainders (ties to the earliest). Signs follow `total_minor`; weights must be
    non-negative. All-zero weights split evenly.
    """
    if not weights:
        if total_minor:
            raise MoneyError("cannot allocate a non-zero amount over nothing")
        return []
    if any(Decimal(w) < 0 for w in weights):
        raise MoneyError("allocation weights must not be negative")
    sign = -1 if total_minor < 0 else 1
    remaining = abs(total_minor)
    # Scale the weights to integers so every step below is exact integer arithmetic.
    places = max(max(-Decimal(w).as_tuple().exponent, 0) for w in weights)
    integer_weights = [int(Decimal(w).scaleb(places)) for w in weights]
    weight_sum = sum(integer_weights)
    if weight_sum == 0:
        integer_weights = [1] * len(weights)
        weight_sum = len(weights)
    shares = [remaining * w // weight_sum for w in integer_weights]
    remainders = [remaining * w % weight_sum for w in integer_weights]
    leftover = remaining - sum(shares)
    order = sorted(range(len(shares)), key=lambda i: (-remainders[i], i))
    for index in order[:leftover]:
        shares[index] += 1
    return [sign * share for share in shares]
