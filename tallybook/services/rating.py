"""Shared by the billing run and draft editing: tax rates for a line, coupons, invoice totals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tallybook.core.money import RoundingMode
from tallybook.core.totals import (
    DiscountInput,
    DiscountKind,
    InvoiceTotals,
    LineInput,
    TaxRate,
    TaxRounding,
    TaxTreatment,
    compute_totals,
)
from tallybook.db.models import Customer, Organization
from tallybook.db.models import TaxRate as TaxRateRow
from tallybook.services.catalog import jurisdictions_of


@dataclass(frozen=True)
class TaxTable:
    """An organisation's active tax rates, indexed by (jurisdiction, tax category)."""

    rates: dict[tuple[str, str], tuple[TaxRate, ...]]
    # Answers of for_customer: a billing run asks the same few questions for every line.
    _answers: dict[tuple[str, str | None, str | None, str], tuple[TaxRate, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    @classmethod
    def build(cls, rows: Iterable[TaxRateRow]) -> TaxTable:
        grouped: dict[tuple[str, str], list[TaxRate]] = {}
        for row in rows:
            if row.active:
                grouped.setdefault((row.jurisdiction, row.tax_category), []).append(
                    TaxRate(row.code, row.name, row.jurisdiction, row.percent)
                )
        return cls({key: tuple(sorted(v, key=lambda r: r.code)) for key, v in grouped.items()})

    def for_customer(self, customer: Customer, tax_category: str) -> tuple[TaxRate, ...]:
        key = (customer.country, customer.region, customer.city, tax_category)
        answer = self._answers.get(key)
        if answer is None:
            result: list[TaxRate] = []
            for jurisdiction in jurisdictions_of(*key[:3]):
                result.extend(self.rates.get((jurisdiction, tax_category), ()))
            answer = tuple(result)
            if len(self._answers) < 10_000:  # bounded, however many addresses there are
                self._answers[key] = answer
        return answer


def treatment_of(customer: Customer | dict[str, Any]) -> TaxTreatment:
    exempt = customer["tax_exempt"] if isinstance(customer, dict) else customer.tax_exempt
    reverse = customer["reverse_charge"] if isinstance(customer, dict) else customer.reverse_charge
    if exempt:
        return TaxTreatment.EXEMPT
    if reverse:
        return TaxTreatment.REVERSE_CHARGE
    return TaxTreatment.STANDARD


def taxes_to_json(rates: Sequence[TaxRate]) -> list[dict[str, str]]:
    return [
        {"code": r.code, "name": r.name, "jurisdiction": r.jurisdiction, "percent": str(r.percent)}
        for r in rates
    ]


def taxes_from_json(data: Sequence[dict[str, Any]]) -> tuple[TaxRate, ...]:
    return tuple(
        TaxRate(d["code"], d["name"], d.get("jurisdiction", ""), Decimal(d["percent"]))
        for d in data
    )


def discount_inputs(discounts: Sequence[dict[str, Any]]) -> list[DiscountInput]:
    return [
        DiscountInput(
            key=d["key"],
            kind=DiscountKind(d["kind"]),
            value=Decimal(d["value"]),
            product_ids=None if d.get("product_ids") is None else tuple(d["product_ids"]),
        )
        for d in discounts
    ]


def rate_invoice(
    org: Organization,
    currency: str,
    treatment: TaxTreatment,
    lines: Sequence[tuple[str, Decimal, Sequence[TaxRate], str | None]],
    discounts: Sequence[dict[str, Any]],
) -> InvoiceTotals:
    """Totals for (key, exact amount, tax rates, product id) lines under the org's settings."""
    return compute_totals(
        [
            LineInput(key, amount, tuple(rates), product_id)
            for key, amount, rates, product_id in lines
        ],
        discount_inputs(discounts),
        currency,
        prices_include_tax=org.prices_include_tax,
        tax_rounding=TaxRounding(org.tax_rounding),
        rounding=RoundingMode(org.rounding_mode),
        treatment=treatment,
    )


def line_explanation_tail(
    org: Organization,
    line_totals: Any,
    exact: Decimal,
    discount_names: dict[str, str],
    legal_note: str | None,
) -> dict[str, Any]:
    """The rounding, discount and tax part of a line's explanation, known only after totals."""
    return {
        "rounding": {
            "mode": org.rounding_mode,
            "exact": str(exact),
            "subtotal_minor": line_totals.subtotal_minor,
            "prices_include_tax": org.prices_include_tax,
        },
        "discounts": [
            {"key": key, "name": discount_names.get(key, key), "amount_minor": amount}
            for key, amount in line_totals.discounts
            if amount
        ],
        "taxes": [
            {
                "code": t.code,
                "name": t.name,
                "percent": str(t.percent),
                "taxable_minor": t.taxable_minor,
                "amount_minor": t.amount_minor,
            }
            for t in line_totals.taxes
        ],
        "tax_rounding": org.tax_rounding,
        "tax_note": legal_note,
        "total_minor": line_totals.total_minor,
    }
