"""Pricing models: what a quantity of usage (or a period of service) costs under a price's terms.

Amounts come back exact and unrounded, in major units; the caller rounds once per invoice line
with `money.round_to_minor`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from typing import Any

from tallybook.core.money import MoneyError, currency_exponent, parse_decimal

__all__ = [
    "PriceTerms",
    "PricingError",
    "PricingModel",
    "Rating",
    "Tier",
    "TierCharge",
    "commitment_true_up",
    "rate",
]

ZERO = Decimal(0)

# Rating only adds and multiplies (division is integer-only or by 100 via scaleb), so a context
# this wide never rounds; Inexact is trapped anyway so a silent rounding can never slip in.
_EXACT = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)


class PricingError(ValueError):
    """Terms or inputs that cannot be priced. The message starts with the offending field."""


class PricingModel(StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    PACKAGE = "package"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PERCENTAGE = "percentage"


def _normalise(value: Any) -> Any:
    """Ints become Decimals and -0 becomes 0; anything else is left for `validate` to judge."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_zero() and value.is_signed():
        return value.copy_abs()
    return value


@dataclass(frozen=True)
class Tier:
    """One band of a graduated or volume price. `up_to` is inclusive; None means no upper limit."""

    up_to: Decimal | None
    unit_price: Decimal = ZERO
    flat_fee: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("up_to", "unit_price", "flat_fee"):
            object.__setattr__(self, name, _normalise(getattr(self, name)))


# Which optional fields each model reads; setting any other field is a configuration mistake.
_MODEL_FIELDS: dict[PricingModel, frozenset[str]] = {
    PricingModel.FLAT: frozenset({"amount"}),
    PricingModel.PER_UNIT: frozenset({"amount"}),
    PricingModel.PACKAGE: frozenset({"amount", "package_size", "free_units"}),
    PricingModel.GRADUATED: frozenset({"tiers"}),
    PricingModel.VOLUME: frozenset({"tiers"}),
    PricingModel.PERCENTAGE: frozenset(
        {
            "percent",
            "fixed_fee_per_transaction",
            "free_amount",
            "free_transactions",
            "min_per_transaction",
            "max_per_transaction",
        }
    ),
}
_ANY_MODEL_FIELDS = frozenset({"model", "minimum_commitment"})
_DECIMAL_FIELDS = (
    "amount",
    "package_size",
    "free_units",
    "percent",
    "fixed_fee_per_transaction",
    "free_amount",
)
_OPTIONAL_DECIMAL_FIELDS = ("min_per_transaction", "max_per_transaction", "minimum_commitment")
_TIER_FIELDS = ("up_to", "unit_price", "flat_fee")


@dataclass(frozen=True)
class PriceTerms:
    """The commercial terms of one price: the model and the numbers it needs.

    - flat: `amount` per billing period, whatever the quantity.
    - per_unit: quantity x `amount`; fractional quantities and sub-cent unit prices stay exact.
    - package: ceil(max(quantity - `free_units`, 0) / `package_size`) packages x `amount`.
    - graduated: each unit is priced in the tier it falls in, plus the flat fee of every tier
      that some units reach.
    - volume: the whole quantity at the unit price of the tier the total falls in, plus that
      tier's flat fee.
    - percentage: `percent` of each transaction's value plus a fixed fee, clamped per
      transaction (see `rate`).
    - `minimum_commitment` (any model): the least a period may cost; see `commitment_true_up`.
    """

    model: PricingModel
    amount: Decimal = ZERO
    package_size: Decimal = Decimal(1)
    free_units: Decimal = ZERO
    tiers: tuple[Tier, ...] = ()
    percent: Decimal = ZERO
    fixed_fee_per_transaction: Decimal = ZERO
    free_amount: Decimal = ZERO
    free_transactions: int = 0
    min_per_transaction: Decimal | None = None
    max_per_transaction: Decimal | None = None
    minimum_commitment: Decimal | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str) and self.model in PricingModel._value2member_map_:
            object.__setattr__(self, "model", PricingModel(self.model))
        for name in _DECIMAL_FIELDS + _OPTIONAL_DECIMAL_FIELDS:
            object.__setattr__(self, name, _normalise(getattr(self, name)))
        if isinstance(self.tiers, list):
            object.__setattr__(self, "tiers", tuple(self.tiers))

    def validate(self) -> None:
        """Raise PricingError, naming the field, if these terms cannot price anything sensibly."""
        if self.__dict__.get("_valid"):
            return  # frozen terms that passed once always pass: `rate` need not check again
        if not isinstance(self.model, PricingModel):
            choices = ", ".join(model.value for model in PricingModel)
            raise PricingError(f"model: {self.model!r} is not one of {choices}")
        for name in _DECIMAL_FIELDS:
            _check_non_negative(getattr(self, name), name)
        for name in _OPTIONAL_DECIMAL_FIELDS:
            if getattr(self, name) is not None:
                _check_non_negative(getattr(self, name), name)
        if not isinstance(self.free_transactions, int) or isinstance(self.free_transactions, bool):
            raise PricingError("free_transactions: must be a whole number")
        if self.free_transactions < 0:
            raise PricingError("free_transactions: must not be negative")
        if not isinstance(self.tiers, tuple):
            raise PricingError("tiers: must be a tuple of Tier")

        used = _MODEL_FIELDS[self.model] | _ANY_MODEL_FIELDS
        for spec in fields(self):
            if spec.name not in used and getattr(self, spec.name) != spec.default:
                raise PricingError(f"{spec.name}: not used by {self.model.value} pricing")

        if self.model is PricingModel.PACKAGE and self.package_size <= 0:
            raise PricingError("package_size: must be greater than 0")
        if self.model in (PricingModel.GRADUATED, PricingModel.VOLUME):
            _validate_tiers(self.tiers, self.model)
        if self.percent > 100:
            raise PricingError("percent: must be between 0 and 100")
        if (
            self.min_per_transaction is not None
            and self.max_per_transaction is not None
            and self.min_per_transaction > self.max_per_transaction
        ):
            raise PricingError("min_per_transaction: must not exceed max_per_transaction")
        object.__setattr__(self, "_valid", True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for storage: Decimals as plain strings, defaults left out."""
        data: dict[str, Any] = {"model": PricingModel(self.model).value}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "model" or value == spec.default:
                continue
            if spec.name == "tiers":
                data["tiers"] = [_tier_to_dict(tier) for tier in value]
            elif isinstance(value, Decimal):
                data[spec.name] = _text(value)
            else:
                data[spec.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTerms:
        """Parse stored or user-supplied terms exactly (floats refused) and validate them."""
        if not isinstance(data, Mapping):
            raise PricingError("terms: expected a mapping of pricing fields")
        known = {spec.name for spec in fields(cls)}
        for key in data:
            if key not in known:
                raise PricingError(f"{key}: not a pricing field")
        if "model" not in data:
            raise PricingError("model: required")
        try:
            model = PricingModel(data["model"])
        except (ValueError, TypeError):
            choices = ", ".join(model.value for model in PricingModel)
            raise PricingError(f"model: {data['model']!r} is not one of {choices}") from None

        values: dict[str, Any] = {"model": model}
        for name in _DECIMAL_FIELDS:
            if name in data:
                values[name] = _parse(data[name], name)
        for name in _OPTIONAL_DECIMAL_FIELDS:
            if data.get(name) is not None:
                values[name] = _parse(data[name], name)
        if "free_transactions" in data:
            count = _parse(data["free_transactions"], "free_transactions")
            if count != count.to_integral_value():
                raise PricingError("free_transactions: must be a whole number")
            values["free_transactions"] = int(count)
        if "tiers" in data:
            values["tiers"] = _tiers_from_data(data["tiers"])
        terms = cls(**values)
        terms.validate()
        return terms


@dataclass(frozen=True)
class TierCharge:
    """What one tier contributed to a graduated or volume rating."""

    tier: int  # 1-based, as a billing specialist counts tiers
    first_unit: Decimal  # exclusive lower bound: the previous tier's up_to, 0 for the first
    last_unit: Decimal | None  # the tier's up_to; None for the open-ended last tier
    units: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal  # units x unit_price + flat_fee, exact


@dataclass(frozen=True)
class Rating:
    """The exact, unrounded result of pricing a quantity, with enough detail to explain it."""

    model: PricingModel
    quantity: Decimal
    amount: Decimal
    tiers: tuple[TierCharge, ...] = ()
    packages: Decimal | None = None  # package: packages billed
    billable_units: Decimal | None = None  # package: units left after free units
    transactions: int = 0  # percentage: transactions rated (0 when rated as an aggregate)
    free_transactions_used: int = 0
    # Detail for explaining the amount (invoice line explanations, `describe`).
    unit_price: Decimal | None = None  # per_unit: price per unit; package: price per package
    package_size: Decimal | None = None
    percent: Decimal | None = None
    chargeable_value: Decimal | None = None  # percentage: value the percent applied to
    fixed_fees: Decimal = ZERO  # percentage: fixed per-transaction fees charged
    clamp_adjustment: Decimal = ZERO  # percentage: net change made by min/max per transaction

    def describe(self, currency: str) -> str:
        """One plain sentence saying how the amount was reached. Amounts are shown unrounded."""
        code = currency.upper()
        currency_exponent(code)  # refuse a mistyped currency rather than print it
        total = f"= {_text(self.amount)} {code}"
        model = PricingModel(self.model)
        if model is PricingModel.FLAT:
            return f"flat: {_text(self.amount)} {code} per period"
        if model is PricingModel.PER_UNIT:
            return f"per_unit: {_units(self.quantity)} at {_text(self.unit_price)} {total}"
        if model is PricingModel.PACKAGE:
            return (
                f"package: {_count(self.packages, 'package')} of {_units(self.package_size)}"
                f" at {_text(self.unit_price)} each ({_text(self.billable_units)} of"
                f" {_units(self.quantity)} billable) {total}"
            )
        if model in (PricingModel.GRADUATED, PricingModel.VOLUME):
            if not self.tiers:
                return f"{model.value}: no usage {total}"
            parts = []
            for charge in self.tiers:
                part = (
                    f"{_units(charge.units)} at {_text(charge.unit_price)}"
                    f" (tier {charge.tier}, {_tier_range(charge.first_unit, charge.last_unit)})"
                )
                if charge.flat_fee:
                    part += f" + flat {_text(charge.flat_fee)}"
                parts.append(part)
            return f"{model.value}: {' + '.join(parts)} {total}"
        # percentage
        if self.transactions == 0:
            basis = f"(aggregate value {_text(self.quantity)})"
        else:
            basis = f"over {_count(self.transactions, 'transaction')}"
            if self.free_transactions_used:
                basis += f" ({self.free_transactions_used} free)"
        text = f"percentage: {_text(self.percent)}% of {_text(self.chargeable_value)} {basis}"
        if self.fixed_fees:
            text += f" + fixed fees {_text(self.fixed_fees)}"
        if self.clamp_adjustment:
            text += f" + min/max adjustment {_text(self.clamp_adjustment)}"
        return f"{text} {total}"


def rate(terms: PriceTerms, quantity: Decimal, transactions: Sequence[Decimal] = ()) -> Rating:
    """Price `quantity` (and, for percentage pricing, `transactions`) under `terms`, exactly.

    Percentage pricing: `transactions` are the period's transaction values in order. The first
    `free_transactions` cost nothing and use none of the free amount; later transactions use up
    `free_amount` in order, and the percent applies to what is left of each value. Every
    transaction after the free ones pays percent + fixed fee, clamped to [min, max] where set
    (a value wholly covered by the free amount still pays the fixed fee and the minimum).
    The transactions then decide everything: `quantity` is not used and the rating's quantity
    is their total value. With no transactions, `quantity` is one aggregate value: only the
    percent and the free amount apply, because the fixed fee, min/max and free transactions
    are per transaction and the count is unknown.
    """
    terms.validate()
    qty = _parse(quantity, "quantity")
    if qty < 0:
        raise PricingError("quantity: must not be negative")
    qty = qty.copy_abs()  # -0 reads as 0
    if isinstance(transactions, str | bytes):
        raise PricingError("transactions: expected a sequence of transaction values")
    values = []
    for index, value in enumerate(transactions):
        parsed = _parse(value, f"transactions[{index}]")
        if parsed < 0:
            raise PricingError(f"transactions[{index}]: must not be negative")
        values.append(parsed.copy_abs())
    if values and terms.model is not PricingModel.PERCENTAGE:
        raise PricingError("transactions: only percentage pricing rates individual transactions")

    with localcontext(_EXACT):
        if terms.model is PricingModel.FLAT:
            return Rating(PricingModel.FLAT, qty, terms.amount)
        if terms.model is PricingModel.PER_UNIT:
            return Rating(PricingModel.PER_UNIT, qty, qty * terms.amount, unit_price=terms.amount)
        if terms.model is PricingModel.PACKAGE:
            return _rate_package(terms, qty)
        if terms.model is PricingModel.GRADUATED:
            return _rate_graduated(terms, qty)
        if terms.model is PricingModel.VOLUME:
            return _rate_volume(terms, qty)
        return _rate_percentage(terms, qty, values)


def commitment_true_up(terms: PriceTerms, period_amount: Decimal) -> Decimal:
    """The shortfall to bill as a true-up line: max(minimum_commitment - period_amount, 0).

    `period_amount` is what the period already costs under these terms; with no commitment the
    true-up is 0. The result is exact; the caller rounds it as its own line.
    """
    terms.validate()
    charged = _parse(period_amount, "period_amount")
    if charged < 0:
        raise PricingError("period_amount: must not be negative")
    if terms.minimum_commitment is None:
        return ZERO
    with localcontext(_EXACT):
        return max(terms.minimum_commitment - charged, ZERO)


def _rate_package(terms: PriceTerms, qty: Decimal) -> Rating:
    billable = max(qty - terms.free_units, ZERO)
    # Integer division is exact; any remainder starts one more (partly used) package.
    whole, remainder = divmod(billable, terms.package_size)
    packages = whole + 1 if remainder else whole
    return Rating(
        PricingModel.PACKAGE,
        qty,
        packages * terms.amount,
        packages=packages,
        billable_units=billable,
        unit_price=terms.amount,
        package_size=terms.package_size,
    )


def _rate_graduated(terms: PriceTerms, qty: Decimal) -> Rating:
    charges = []
    first_unit = ZERO
    for number, tier in enumerate(terms.tiers, start=1):
        if qty <= first_unit:
            break  # no units reach this tier, so neither does its flat fee
        top = qty if tier.up_to is None else min(qty, tier.up_to)
        units = top - first_unit
        charges.append(
            TierCharge(
                tier=number,
                first_unit=first_unit,
                last_unit=tier.up_to,
                units=units,
                unit_price=tier.unit_price,
                flat_fee=tier.flat_fee,
                amount=units * tier.unit_price + tier.flat_fee,
            )
        )
        if tier.up_to is None:
            break
        first_unit = tier.up_to
    amount = sum((charge.amount for charge in charges), ZERO)
    return Rating(PricingModel.GRADUATED, qty, amount, tiers=tuple(charges))


def _rate_volume(terms: PriceTerms, qty: Decimal) -> Rating:
    if qty == 0:
        return Rating(PricingModel.VOLUME, qty, ZERO)
    first_unit = ZERO
    for number, tier in enumerate(terms.tiers, start=1):
        if tier.up_to is None or qty <= tier.up_to:
            charge = TierCharge(
                tier=number,
                first_unit=first_unit,
                last_unit=tier.up_to,
                units=qty,
                unit_price=tier.unit_price,
                flat_fee=tier.flat_fee,
                amount=qty * tier.unit_price + tier.flat_fee,
            )
            return Rating(PricingModel.VOLUME, qty, charge.amount, tiers=(charge,))
        first_unit = tier.up_to
    raise AssertionError("validated tiers always end open-ended")  # pragma: no cover


def _rate_percentage(terms: PriceTerms, qty: Decimal, values: list[Decimal]) -> Rating:
    # Usage records may carry a count or anything else as quantity; the values are what's priced.
    if not values:
        chargeable = max(qty - terms.free_amount, ZERO)
        return Rating(
            PricingModel.PERCENTAGE,
            qty,
            _percent_of(chargeable, terms.percent),
            percent=terms.percent,
            chargeable_value=chargeable,
        )
    total_value = sum(values, ZERO)
    free_left = terms.free_amount
    amount = chargeable_total = fixed_fees = adjustment = ZERO
    for value in values[terms.free_transactions :]:
        covered = min(value, free_left)
        free_left -= covered
        chargeable = value - covered
        fee = _percent_of(chargeable, terms.percent) + terms.fixed_fee_per_transaction
        clamped = fee
        if terms.min_per_transaction is not None:
            clamped = max(clamped, terms.min_per_transaction)
        if terms.max_per_transaction is not None:
            clamped = min(clamped, terms.max_per_transaction)
        amount += clamped
        chargeable_total += chargeable
        fixed_fees += terms.fixed_fee_per_transaction
        adjustment += clamped - fee
    return Rating(
        PricingModel.PERCENTAGE,
        total_value,
        amount,
        transactions=len(values),
        free_transactions_used=min(terms.free_transactions, len(values)),
        percent=terms.percent,
        chargeable_value=chargeable_total,
        fixed_fees=fixed_fees,
        clamp_adjustment=adjustment,
    )


def _percent_of(value: Decimal, percent: Decimal) -> Decimal:
    # scaleb shifts the exponent: dividing by 100 without a division that could round.
    return (value * percent).scaleb(-2)


def _validate_tiers(tiers: tuple[Tier, ...], model: PricingModel) -> None:
    if not tiers:
        raise PricingError(f"tiers: {model.value} pricing needs at least one tier")
    previous = ZERO
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        name = f"tiers[{index}]"
        if not isinstance(tier, Tier):
            raise PricingError(f"{name}: must be a Tier")
        _check_non_negative(tier.unit_price, f"{name}.unit_price")
        _check_non_negative(tier.flat_fee, f"{name}.flat_fee")
        if tier.up_to is None:
            if index != last:
                raise PricingError(f"{name}.up_to: only the last tier may be open-ended")
            continue
        _check_decimal(tier.up_to, f"{name}.up_to")
        if index == last:
            raise PricingError(
                f"{name}.up_to: the last tier must be open-ended (no up_to)"
                " so every quantity has a price"
            )
        if tier.up_to <= previous:
            if index == 0:
                raise PricingError(f"{name}.up_to: must be greater than 0")
            raise PricingError(f"{name}.up_to: must be greater than the previous tier's up_to")
        previous = tier.up_to


def _tiers_from_data(data: Any) -> tuple[Tier, ...]:
    if not isinstance(data, list | tuple):
        raise PricingError("tiers: expected a list of tiers")
    tiers = []
    for index, item in enumerate(data):
        name = f"tiers[{index}]"
        if not isinstance(item, Mapping):
            raise PricingError(f"{name}: expected a mapping with up_to, unit_price, flat_fee")
        for key in item:
            if key not in _TIER_FIELDS:
                raise PricingError(f"{name}.{key}: not a tier field")
        up_to = item.get("up_to")
        tiers.append(
            Tier(
                up_to=None if up_to is None else _parse(up_to, f"{name}.up_to"),
                unit_price=_parse(item.get("unit_price", 0), f"{name}.unit_price"),
                flat_fee=_parse(item.get("flat_fee", 0), f"{name}.flat_fee"),
            )
        )
    return tuple(tiers)


def _tier_to_dict(tier: Tier) -> dict[str, Any]:
    # up_to is always written: null is how the open-ended last tier is spelled.
    data: dict[str, Any] = {"up_to": None if tier.up_to is None else _text(tier.up_to)}
    if tier.unit_price != 0:
        data["unit_price"] = _text(tier.unit_price)
    if tier.flat_fee != 0:
        data["flat_fee"] = _text(tier.flat_fee)
    return data


def _parse(value: Any, field: str) -> Decimal:
    try:
        return parse_decimal(value, field)
    except MoneyError as error:
        raise PricingError(str(error)) from None


def _check_decimal(value: Any, field: str) -> None:
    if isinstance(value, float):
        raise PricingError(f"{field}: give a Decimal or an integer, not a float")
    if not isinstance(value, Decimal) or not value.is_finite():
        raise PricingError(f"{field}: must be a finite Decimal, got {value!r}")


def _check_non_negative(value: Any, field: str) -> None:
    _check_decimal(value, field)
    if value < 0:
        raise PricingError(f"{field}: must not be negative")


def _text(value: Decimal | None) -> str:
    """Exact, never in scientific notation: Decimal('1E+2') reads as '100'."""
    return "?" if value is None else format(value, "f")


def _units(value: Decimal | None) -> str:
    return _count(value, "unit")


def _count(value: Decimal | int | None, noun: str) -> str:
    shown = "?" if value is None else _text(Decimal(value))
    return f"{shown} {noun}{'' if value == 1 else 's'}"


def _tier_range(first_unit: Decimal, last_unit: Decimal | None) -> str:
    """'1-100', '101-200', 'over 200' for whole-unit tiers; 'over 0.5 up to 2.5' otherwise."""
    if first_unit == 0 and last_unit is None:
        return "all units"
    whole = first_unit == first_unit.to_integral_value() and (
        last_unit is None or last_unit == last_unit.to_integral_value()
    )
    if last_unit is None:
        return f"over {int(first_unit) if whole else _text(first_unit)}"
    if whole:
        return f"{int(first_unit) + 1}-{int(last_unit)}"
    if first_unit == 0:
        return f"up to {_text(last_unit)}"
    return f"over {_text(first_unit)} up to {_text(last_unit)}"
