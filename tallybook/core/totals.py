"""Invoice totals: discounts before tax, tax per line or per invoice, exclusive or inclusive prices.

Every amount here is integer minor units; all rounding goes through `money.round_to_minor` and every
split through `money.allocate`, so line values always add up exactly to the invoice values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tallybook.core.money import (
    RoundingMode,
    allocate,
    currency_exponent,
    from_minor,
    parse_decimal,
    round_to_minor,
)

__all__ = [
    "EXEMPT_NOTE",
    "REVERSE_CHARGE_NOTE",
    "DiscountInput",
    "DiscountKind",
    "InvoiceTotals",
    "LineInput",
    "LineTax",
    "LineTotals",
    "TaxRate",
    "TaxRounding",
    "TaxSummary",
    "TaxTreatment",
    "compute_totals",
]

EXEMPT_NOTE = "Exempt from tax."
REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)."
)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TaxRate:
    """One tax that may apply to a line, e.g. DE-VAT-19 or US-NY-NYC."""

    code: str
    name: str
    jurisdiction: str
    percent: Decimal


class TaxTreatment(StrEnum):
    STANDARD = "standard"
    EXEMPT = "exempt"
    REVERSE_CHARGE = "reverse_charge"


class TaxRounding(StrEnum):
    PER_LINE = "per_line"
    PER_INVOICE = "per_invoice"


class DiscountKind(StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"


@dataclass(frozen=True)
class LineInput:
    """An invoice line before discount and tax. Several taxes are not compounded."""

    key: str
    amount: Decimal
    taxes: tuple[TaxRate, ...] = ()
    product_id: str | None = None


@dataclass(frozen=True)
class DiscountInput:
    """A percent (10 = 10 %) or fixed (major units) discount on the invoice or on some products."""

    key: str
    kind: DiscountKind
    value: Decimal
    product_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LineTax:
    code: str
    name: str
    percent: Decimal
    taxable_minor: int
    amount_minor: int


@dataclass(frozen=True)
class LineTotals:
    """A line's result; total == subtotal - discount + tax.

    With tax-inclusive prices, subtotal, discount and the discount shares are the net parts.
    """

    key: str
    subtotal_minor: int
    discount_minor: int
    discounts: tuple[tuple[str, int], ...]
    taxable_minor: int
    taxes: tuple[LineTax, ...]
    tax_minor: int
    total_minor: int


@dataclass(frozen=True)
class TaxSummary:
    code: str
    name: str
    percent: Decimal
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True)
class InvoiceTotals:
    currency: str
    lines: tuple[LineTotals, ...]
    subtotal_minor: int
    discount_minor: int
    tax_summary: tuple[TaxSummary, ...]
    tax_minor: int
    total_minor: int
    treatment: TaxTreatment
    legal_note: str | None


@dataclass(frozen=True)
class _Line:
    """A validated line: amount rounded once, rates with the treatment applied."""

    key: str
    amount_minor: int
    rates: tuple[TaxRate, ...]
    product_id: str | None

    @property
    def percent_sum(self) -> Decimal:
        return sum((rate.percent for rate in self.rates), Decimal(0))


def compute_totals(
    lines: Sequence[LineInput],
    discounts: Sequence[DiscountInput],
    currency: str,
    *,
    prices_include_tax: bool = False,
    tax_rounding: TaxRounding = TaxRounding.PER_LINE,
    rounding: RoundingMode = RoundingMode.HALF_UP,
    treatment: TaxTreatment = TaxTreatment.STANDARD,
) -> InvoiceTotals:
    """Discount, tax and total an invoice. Raises ValueError naming the offending field."""
    currency_exponent(currency)  # refuse an unknown currency before doing anything
    treatment = TaxTreatment(treatment)
    tax_rounding = TaxRounding(tax_rounding)
    rounding = RoundingMode(rounding)
    prepared = _prepare_lines(lines, currency, rounding, treatment)
    shares = _apply_discounts(prepared, discounts, currency, rounding)
    discounted = [sum(amount for _, amount in line_shares) for line_shares in shares]

    if prices_include_tax:
        results = _inclusive(prepared, shares, discounted, currency, rounding, tax_rounding)
    else:
        results = _exclusive(prepared, shares, discounted, currency, rounding, tax_rounding)

    return InvoiceTotals(
        currency=currency.upper(),
        lines=tuple(results),
        subtotal_minor=sum(line.subtotal_minor for line in results),
        discount_minor=sum(line.discount_minor for line in results),
        tax_summary=_summarise(results),
        tax_minor=sum(line.tax_minor for line in results),
        total_minor=sum(line.total_minor for line in results),
        treatment=treatment,
        legal_note=_legal_note(treatment),
    )


def _legal_note(treatment: TaxTreatment) -> str | None:
    if treatment is TaxTreatment.EXEMPT:
        return EXEMPT_NOTE
    if treatment is TaxTreatment.REVERSE_CHARGE:
        return REVERSE_CHARGE_NOTE
    return None


def _prepare_lines(
    lines: Sequence[LineInput], currency: str, rounding: RoundingMode, treatment: TaxTreatment
) -> list[_Line]:
    known: dict[str, TaxRate] = {}
    keys: set[str] = set()
    prepared = []
    for i, line in enumerate(lines):
        if line.key in keys:
            raise ValueError(f"lines[{i}].key: {line.key!r} is used by an earlier line")
        keys.add(line.key)
        amount = parse_decimal(line.amount, f"lines[{i}].amount")
        rates = []
        seen: set[str] = set()
        for j, rate in enumerate(line.taxes):
            field = f"lines[{i}].taxes[{j}]"
            percent = parse_decimal(rate.percent, f"{field}.percent")
            if percent < 0:
                raise ValueError(f"{field}.percent: {percent} must not be negative")
            if rate.code in seen:
                raise ValueError(f"{field}.code: {rate.code} appears twice on line {line.key}")
            seen.add(rate.code)
            earlier = known.setdefault(rate.code, rate)
            if parse_decimal(earlier.percent, field) != percent or earlier.name != rate.name:
                # The summary has one row per code, so a code must mean one rate.
                raise ValueError(
                    f"{field}.code: {rate.code} is {rate.name} {percent} % here "
                    f"but {earlier.name} {earlier.percent} % on an earlier line"
                )
            if treatment is not TaxTreatment.STANDARD:
                percent = Decimal(0)  # keep the code so the summary shows a zero row for it
            rates.append(TaxRate(rate.code, rate.name, rate.jurisdiction, percent))
        prepared.append(
            _Line(
                line.key, round_to_minor(amount, currency, rounding), tuple(rates), line.product_id
            )
        )
    return prepared


def _apply_discounts(
    lines: Sequence[_Line],
    discounts: Sequence[DiscountInput],
    currency: str,
    rounding: RoundingMode,
) -> list[list[tuple[str, int]]]:
    """Each line's non-zero (discount key, share) pairs, discounts applied in the given order."""
    remaining = [max(line.amount_minor, 0) for line in lines]  # negative lines get no discount
    shares: list[list[tuple[str, int]]] = [[] for _ in lines]
    keys: set[str] = set()
    for d, discount in enumerate(discounts):
        field = f"discounts[{d}]"
        if discount.key in keys:
            raise ValueError(f"{field}.key: {discount.key!r} is used by an earlier discount")
        keys.add(discount.key)
        try:
            kind = DiscountKind(discount.kind)
        except ValueError:
            raise ValueError(f"{field}.kind: {discount.kind!r} is not percent or fixed") from None
        value = parse_decimal(discount.value, f"{field}.value")
        if value < 0:
            raise ValueError(f"{field}.value: {value} must not be negative")
        if kind is DiscountKind.PERCENT and value > _HUNDRED:
            raise ValueError(f"{field}.value: {value} % is more than 100 %")
        if isinstance(discount.product_ids, str):
            raise ValueError(f"{field}.product_ids: give a tuple of product ids, not a string")
        eligible = [
            i
            for i, line in enumerate(lines)
            if remaining[i] > 0
            and (discount.product_ids is None or line.product_id in discount.product_ids)
        ]
        base = sum(remaining[i] for i in eligible)
        if kind is DiscountKind.PERCENT:
            amount = round_to_minor(
                from_minor(base, currency) * value / _HUNDRED, currency, rounding
            )
        else:
            amount = round_to_minor(value, currency, rounding)
        amount = min(amount, base)
        if amount == 0:
            continue
        # Shares proportional to what is left never exceed it, so no line goes below zero.
        for i, share in zip(
            eligible, allocate(amount, [remaining[i] for i in eligible]), strict=True
        ):
            if share:
                remaining[i] -= share
                shares[i].append((discount.key, share))
    return shares


def _exclusive(
    lines: Sequence[_Line],
    shares: Sequence[Sequence[tuple[str, int]]],
    discounted: Sequence[int],
    currency: str,
    rounding: RoundingMode,
    tax_rounding: TaxRounding,
) -> list[LineTotals]:
    taxable = [
        line.amount_minor - discount for line, discount in zip(lines, discounted, strict=True)
    ]
    if tax_rounding is TaxRounding.PER_LINE:
        amounts = [
            [_tax_of(taxable[i], rate.percent, _HUNDRED, currency, rounding) for rate in line.rates]
            for i, line in enumerate(lines)
        ]
    else:
        amounts = [[0] * len(line.rates) for line in lines]
        for code in sorted({rate.code for line in lines for rate in line.rates}):
            members = [
                (i, j)
                for i, line in enumerate(lines)
                for j, rate in enumerate(line.rates)
                if rate.code == code
            ]
            i0, j0 = members[0]
            percent = lines[i0].rates[j0].percent
            weights = [taxable[i] for i, _ in members]
            split = _split_group_tax(weights, percent, _HUNDRED, currency, rounding)
            for (i, j), amount in zip(members, split, strict=True):
                amounts[i][j] = amount

    results = []
    for i, line in enumerate(lines):
        line_taxes = tuple(
            LineTax(rate.code, rate.name, rate.percent, taxable[i], amount)
            for rate, amount in zip(line.rates, amounts[i], strict=True)
        )
        tax = sum(amounts[i])
        results.append(
            LineTotals(
                key=line.key,
                subtotal_minor=line.amount_minor,
                discount_minor=discounted[i],
                discounts=tuple(shares[i]),
                taxable_minor=taxable[i],
                taxes=line_taxes,
                tax_minor=tax,
                total_minor=taxable[i] + tax,
            )
        )
    return results


def _inclusive(
    lines: Sequence[_Line],
    shares: Sequence[Sequence[tuple[str, int]]],
    discounted: Sequence[int],
    currency: str,
    rounding: RoundingMode,
    tax_rounding: TaxRounding,
) -> list[LineTotals]:
    """Gross prices: discounts come off the gross, then the tax inside each gross is taken out."""
    gross = [line.amount_minor - discount for line, discount in zip(lines, discounted, strict=True)]
    tax_of_line = [0] * len(lines)
    if tax_rounding is TaxRounding.PER_LINE:
        for i, line in enumerate(lines):
            net = _net_of(gross[i], line.percent_sum, currency, rounding)
            tax_of_line[i] = gross[i] - net
    else:
        # Lines with the same set of taxes share one combined rate, rounded once per group.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, line in enumerate(lines):
            groups.setdefault(tuple(sorted(rate.code for rate in line.rates)), []).append(i)
        for members in groups.values():
            percent = lines[members[0]].percent_sum
            split = _split_group_tax(
                [gross[i] for i in members], percent, _HUNDRED + percent, currency, rounding
            )
            for i, amount in zip(members, split, strict=True):
                tax_of_line[i] = amount

    results = []
    for i, line in enumerate(lines):
        net = gross[i] - tax_of_line[i]
        discount = 0
        if discounted[i]:
            # The net part of the discount: what the discount took off the net price.
            before = _net_of(line.amount_minor, line.percent_sum, currency, rounding)
            discount = before - _net_of(gross[i], line.percent_sum, currency, rounding)
        # Report each discount's net part, so the shares add up to the net discount.
        net_shares = allocate(discount, [share for _, share in shares[i]])
        line_shares = tuple(
            (key, share) for (key, _), share in zip(shares[i], net_shares, strict=True) if share
        )
        if line.rates:
            split = allocate(tax_of_line[i], [rate.percent for rate in line.rates])
        else:
            split = []
        line_taxes = tuple(
            LineTax(rate.code, rate.name, rate.percent, net, amount)
            for rate, amount in zip(line.rates, split, strict=True)
        )
        results.append(
            LineTotals(
                key=line.key,
                subtotal_minor=net + discount,
                discount_minor=discount,
                discounts=line_shares,
                taxable_minor=net,
                taxes=line_taxes,
                tax_minor=tax_of_line[i],
                total_minor=gross[i],
            )
        )
    return results


def _tax_of(
    base_minor: int, percent: Decimal, divisor: Decimal, currency: str, rounding: RoundingMode
) -> int:
    """round(base * percent / divisor): divisor 100 on net amounts, 100 + percent on gross ones."""
    return round_to_minor(from_minor(base_minor, currency) * percent / divisor, currency, rounding)


def _net_of(gross_minor: int, percent: Decimal, currency: str, rounding: RoundingMode) -> int:
    return round_to_minor(
        from_minor(gross_minor, currency) * _HUNDRED / (_HUNDRED + percent), currency, rounding
    )


def _split_group_tax(
    weights: Sequence[int],
    percent: Decimal,
    divisor: Decimal,
    currency: str,
    rounding: RoundingMode,
) -> list[int]:
    """Round a group's tax once on its total base, then share it out over the signed line bases.

    `allocate` needs non-negative weights, so the positive lines share the rounded tax of their
    own base and the negative lines share the rest; the two parts add up to the group's tax.
    """
    total = _tax_of(sum(weights), percent, divisor, currency, rounding)
    positive = _tax_of(sum(w for w in weights if w > 0), percent, divisor, currency, rounding)
    result = [0] * len(weights)
    up = [i for i, w in enumerate(weights) if w >= 0]
    down = [i for i, w in enumerate(weights) if w < 0]
    for i, share in zip(up, allocate(positive, [weights[i] for i in up]), strict=True):
        result[i] = share
    for i, share in zip(down, allocate(total - positive, [-weights[i] for i in down]), strict=True):
        result[i] = share
    return result


def _summarise(results: Sequence[LineTotals]) -> tuple[TaxSummary, ...]:
    """One row per tax code, sorted by code; sums of the line values, so nothing is lost."""
    rows: dict[str, TaxSummary] = {}
    for line in results:
        for tax in line.taxes:
            row = rows.get(tax.code)
            if row is None:
                rows[tax.code] = TaxSummary(
                    tax.code, tax.name, tax.percent, tax.taxable_minor, tax.amount_minor
                )
            else:
                rows[tax.code] = TaxSummary(
                    row.code,
                    row.name,
                    row.percent,
                    row.taxable_minor + tax.taxable_minor,
                    row.tax_minor + tax.amount_minor,
                )
    return tuple(rows[code] for code in sorted(rows))
