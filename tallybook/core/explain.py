"""Turn a line's stored explanation into the sentence a customer or auditor reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tallybook.core.money import format_minor


def _plain(value: str | None) -> str:
    if value is None:
        return ""
    number = Decimal(value)
    return format(number.normalize(), "f") if number == number.to_integral() else value


def explain_line(explanation: dict[str, Any], currency: str) -> str:
    """One paragraph: price and version, quantity and source, tiers, proration, discount, tax."""
    parts: list[str] = []
    source = explanation.get("source", "manual")
    price = explanation.get("price")
    quantity = explanation.get("quantity") or {}
    if price:
        parts.append(
            f"Price {price['code']} version {price['version']} ({price['model']}"
            f", billed {price['timing'].replace('_', ' ')}) for {price['product']}."
        )
    if quantity:
        parts.append(f"Quantity {_plain(quantity.get('value'))} from {quantity.get('source')}.")
    rating = explanation.get("rating")
    if rating:
        parts.append(f"Rated: {rating['summary']}.")
    period = explanation.get("period")
    if period:
        parts.append(f"Billing period {period['label']} ({period.get('interval', '')}).")
    proration = explanation.get("proration")
    if proration:
        parts.append(f"Prorated {proration['description']}.")
    if source == "adjustment":
        weight = explanation.get("weight", 0)
        parts.append(
            "Adjustment after a change to the subscription: "
            + ("credit for time no longer used." if weight < 0 else "charge for the new terms.")
        )
    commitment = explanation.get("commitment")
    if commitment:
        parts.append(
            f"Minimum commitment {commitment['minimum']} per period; usage came to "
            f"{commitment['usage_amount']}, so the shortfall {commitment['shortfall']} is billed."
        )
    charge = explanation.get("charge")
    if charge:
        parts.append(
            f"{charge['kind'].replace('_', ' ').capitalize()}: {_plain(charge['quantity'])} x "
            f"{charge['unit_price']}"
            + (f" ({charge['reference']})" if charge.get("reference") else "")
            + "."
        )
    rounding = explanation.get("rounding")
    if rounding:
        parts.append(
            f"Exact amount {rounding['exact']} rounded {rounding['mode'].replace('_', '-')} to "
            f"{format_minor(rounding['subtotal_minor'], currency)}."
        )
    for discount in explanation.get("discounts", []):
        parts.append(
            f"Discount {discount['name']}: -{format_minor(discount['amount_minor'], currency)}."
        )
    taxes = explanation.get("taxes", [])
    for tax in taxes:
        parts.append(
            f"{tax['name']} {_plain(tax['percent'])}% on "
            f"{format_minor(tax['taxable_minor'], currency)} = "
            f"{format_minor(tax['amount_minor'], currency)}"
            f" (rounded {explanation.get('tax_rounding', 'per line').replace('_', ' ')})."
        )
    if explanation.get("tax_note"):
        parts.append(explanation["tax_note"])
    if "total_minor" in explanation:
        parts.append(f"Line total {format_minor(explanation['total_minor'], currency)}.")
    return " ".join(parts)
