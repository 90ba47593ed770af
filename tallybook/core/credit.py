"""Credit-note lines: never credit more than was invoiced, net or per tax code.

Rounding is cumulative (each credit is the rounded running total minus what was already credited),
so the credits of a line add up to the invoiced line exactly, to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tallybook.core.money import (
    MoneyError,
    RoundingMode,
    currency_exponent,
    from_minor,
    parse_decimal,
    round_to_minor,
)

__all__ = [
    "CreditError",
    "CreditRequest",
    "CreditedSoFar",
    "InvoicedLine",
    "LineCredit",
    "credit_line",
]


class CreditError(ValueError):
    """A credit that cannot be issued; the message starts with the offending field."""


@dataclass(frozen=True)
class InvoicedLine:
    """What an issued invoice line charged: net after discount and tax per code."""

    key: str
    quantity: Decimal
    taxable_minor: int
    taxes: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class CreditedSoFar:
    """The sum of the credits already issued against a line."""

    quantity: Decimal = Decimal(0)
    taxable_minor: int = 0
    taxes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class CreditRequest:
    """Credit `quantity` units, or `amount_minor` of net, or (neither) whatever remains."""

    key: str
    quantity: Decimal | None = None
    amount_minor: int | None = None


@dataclass(frozen=True)
class LineCredit:
    """One credit-note line. Amount credits carry quantity 0 unless they finish the line."""

    key: str
    quantity: Decimal
    taxable_minor: int
    taxes: tuple[tuple[str, int], ...]
    tax_minor: int
    total_minor: int


def credit_line(
    invoiced: InvoicedLine,
    so_far: CreditedSoFar,
    request: CreditRequest,
    currency: str,
    rounding: RoundingMode = RoundingMode.HALF_UP,
    *,
    field_prefix: str = "",
) -> LineCredit:
    """Compute one credit against `invoiced`, given what earlier credits took.

    `field_prefix` (e.g. "lines[0].") is put in front of field names in error messages.
    """
    currency_exponent(currency)  # refuse an unknown currency up front
    rounding = RoundingMode(rounding)
    p = field_prefix
    if request.key != invoiced.key:
        raise CreditError(f"{p}key: {request.key!r} does not match invoiced line {invoiced.key!r}")
    invoiced_qty = _quantity(invoiced.quantity, f"{p}invoiced.quantity")
    invoiced_taxes = _tax_map(invoiced.taxes, f"{p}invoiced.taxes")
    if invoiced.taxable_minor < 0 or any(v < 0 for v in invoiced_taxes.values()):
        raise CreditError(f"{p}key: line {invoiced.key} is negative and cannot be credited")
    done_qty = _quantity(so_far.quantity, f"{p}so_far.quantity")
    done_taxes = _tax_map(so_far.taxes, f"{p}so_far.taxes")
    for code in done_taxes:
        if code not in invoiced_taxes:
            raise CreditError(f"{p}so_far.taxes: {code} was not charged on line {invoiced.key}")
    if (
        done_qty > invoiced_qty
        or not 0 <= so_far.taxable_minor <= invoiced.taxable_minor
        or any(not 0 <= done_taxes.get(c, 0) <= v for c, v in invoiced_taxes.items())
    ):
        raise CreditError(f"{p}so_far: more than line {invoiced.key} charged is already credited")

    left_qty = invoiced_qty - done_qty
    left_net = invoiced.taxable_minor - so_far.taxable_minor
    left_taxes = {c: v - done_taxes.get(c, 0) for c, v in invoiced_taxes.items()}

    if request.quantity is not None and request.amount_minor is not None:
        raise CreditError(f"{p}amount_minor: give either quantity or amount_minor, not both")

    if request.quantity is not None:
        qty = _quantity(request.quantity, f"{p}quantity")
        if invoiced_qty == 0:
            raise CreditError(
                f"{p}quantity: line {invoiced.key} has no quantity; credit an amount instead"
            )
        if qty <= 0:
            raise CreditError(f"{p}quantity: {_plain(qty)} must be more than 0")
        if qty > left_qty:
            raise CreditError(
                f"{p}quantity: {_plain(qty)} exceeds the {_plain(left_qty)} "
                f"not yet credited on line {invoiced.key}"
            )
        if qty == left_qty:
            return _remainder(invoiced.key, qty, left_net, left_taxes)
        # Cumulative: round the credited share of the whole line, then subtract earlier credits.
        fraction = _Fraction(done_qty + qty, invoiced_qty, currency, rounding)
        net = fraction.step(invoiced.taxable_minor, so_far.taxable_minor, left_net)
    elif request.amount_minor is not None:
        amount = request.amount_minor
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise CreditError(f"{p}amount_minor: {amount!r} must be an integer of minor units")
        if amount <= 0:
            raise CreditError(f"{p}amount_minor: {amount} must be more than 0")
        if amount > left_net:
            raise CreditError(
                f"{p}amount_minor: {amount} exceeds the {left_net} not yet credited "
                f"on line {invoiced.key}"
            )
        if amount == left_net:
            return _remainder(invoiced.key, left_qty, left_net, left_taxes)
        # An amount credit is a price reduction: it returns no units.
        qty, net = Decimal(0), amount
        fraction = _Fraction(
            Decimal(so_far.taxable_minor + amount),
            Decimal(invoiced.taxable_minor),
            currency,
            rounding,
        )
    else:
        if left_qty == 0 and left_net == 0 and not any(left_taxes.values()):
            raise CreditError(f"{p}key: line {invoiced.key} is already fully credited")
        return _remainder(invoiced.key, left_qty, left_net, left_taxes)

    taxes = tuple(
        (code, fraction.step(total, done_taxes.get(code, 0), left_taxes[code]))
        for code, total in invoiced_taxes.items()
    )
    return _credit(invoiced.key, qty, net, taxes)


@dataclass(frozen=True)
class _Fraction:
    """The share of the line credited once this credit is issued: numerator / denominator."""

    numerator: Decimal
    denominator: Decimal
    currency: str
    rounding: RoundingMode

    def step(self, total_minor: int, done_minor: int, left_minor: int) -> int:
        """round(total * share) - done, kept within [0, what is left].

        The clamp matters only when quantity and amount credits are mixed on one line: their
        running shares are measured differently and may disagree by more than rounding.
        """
        exact = from_minor(total_minor, self.currency) * self.numerator / self.denominator
        target = round_to_minor(exact, self.currency, self.rounding)
        return min(max(target - done_minor, 0), left_minor)


def _remainder(key: str, qty: Decimal, net: int, taxes: dict[str, int]) -> LineCredit:
    return _credit(key, qty, net, tuple(taxes.items()))


def _credit(key: str, qty: Decimal, net: int, taxes: tuple[tuple[str, int], ...]) -> LineCredit:
    tax = sum(amount for _, amount in taxes)
    return LineCredit(key, qty, net, taxes, tax, net + tax)


def _quantity(value: object, field: str) -> Decimal:
    try:
        qty = parse_decimal(value, field)
    except MoneyError as exc:
        raise CreditError(str(exc)) from None
    if qty < 0:
        raise CreditError(f"{field}: {_plain(qty)} must not be negative")
    return qty


def _tax_map(taxes: tuple[tuple[str, int], ...], field: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for code, amount in taxes:
        if code in result:
            raise CreditError(f"{field}: tax code {code} appears twice")
        result[code] = amount
    return result


def _plain(value: Decimal) -> str:
    """3 rather than 3.00 or 3E+0 in messages."""
    return format(value.normalize(), "f")
