"""Applying a payment to open invoices, and keeping card numbers out of the books.

Pure: the service hands in the customer's open invoices (oldest first) and gets back what each
receives; what is left over becomes customer credit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date


class PaymentError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class OpenItem:
    invoice_id: str
    number: str
    currency: str
    due_date: date | None
    issue_date: date | None
    open_minor: int


def oldest_first(items: Sequence[OpenItem]) -> list[OpenItem]:
    """The order a payment settles invoices by default: earliest due, then issued, then number."""
    return sorted(
        items,
        key=lambda i: (i.due_date or date.max, i.issue_date or date.max, i.number, i.invoice_id),
    )


def apply_payment(
    amount_minor: int,
    currency: str,
    items: Sequence[OpenItem],
    explicit: Mapping[str, int] | None = None,
) -> tuple[list[tuple[str, int]], int]:
    """(invoice id, amount) applied and the unapplied rest.

    Without `explicit`, the payment settles `items` in the order given until it runs out.
    With it, each named invoice gets exactly its amount: never more than it still owes, and
    never more in total than the payment.
    """
    if amount_minor <= 0:
        raise PaymentError("amount: a payment must be more than zero", "amount")
    by_id = {i.invoice_id: i for i in items}
    for item in items:
        if item.currency != currency:
            raise PaymentError(
                f"currency: invoice {item.number} is in {item.currency}, the payment in "
                f"{currency}; record the payment in the invoice's currency",
                "currency",
            )
    applied: list[tuple[str, int]] = []
    if explicit is not None:
        for invoice_id, amount in explicit.items():
            item = by_id.get(invoice_id)
            if item is None:
                raise PaymentError(
                    f"allocations: {invoice_id} is not an open invoice", "allocations"
                )
            if amount <= 0:
                raise PaymentError(
                    f"allocations: the amount for {item.number} must be more than zero",
                    "allocations",
                )
            if amount > item.open_minor:
                raise PaymentError(
                    f"allocations: {item.number} owes {item.open_minor} minor units; "
                    f"{amount} is more than that",
                    "allocations",
                )
            applied.append((invoice_id, amount))
        total = sum(a for _, a in applied)
        if total > amount_minor:
            raise PaymentError(
                f"allocations: they add up to {total} minor units, more than the payment "
                f"({amount_minor})",
                "allocations",
            )
        return applied, amount_minor - total
    left = amount_minor
    for item in items:
        if left == 0:
            break
        take = min(left, item.open_minor)
        if take > 0:
            applied.append((item.invoice_id, take))
            left -= take
    return applied, left


_DIGIT_RUN = re.compile(r"(?:\d[ -]?){12,18}\d")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str | None) -> bool:
    """True when the text holds 13 to 19 digits (spaces or dashes allowed) that pass the Luhn
    check: a primary account number, which must never be stored."""
    if not text:
        return False
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return True
    return False
