"""ISO 11649 structured creditor references ("RF" references) for invoices.

The customer's bank carries the reference through to the statement unchanged, so cash
application can find the invoice by it; its two check digits catch mistyped references.
"""

from __future__ import annotations

from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

MAX_BODY = 21  # RF + 2 check digits + up to 21 letters and digits: 25 characters


def creditor_reference(document_number: str) -> str:
    """The RF reference of a document number: its letters and digits, check digits in front.

    Numbers longer than 21 letters and digits keep their last 21 (the sequence part, which
    is what makes them unique within a series)."""
    body = "".join(c for c in document_number.upper() if c.isascii() and c.isalnum())
    if not body:
        raise ValueError(f"document number {document_number!r} has no letters or digits")
    body = body[-MAX_BODY:]
    # ISO 11649: the check digits make body + "RF" + digits a multiple of 97 plus one.
    check = mod_97_10.calc_check_digits(body + "RF")
    return f"RF{check}{body}"


def is_creditor_reference(value: str) -> bool:
    return iso11649.is_valid(value)


def compact(value: str) -> str:
    """Without spaces, upper case: how references are compared."""
    return iso11649.compact(value)


def display(value: str) -> str:
    """In groups of four, as printed on an invoice: 'RF18 INV2 0260 0012 3'."""
    return iso11649.format(value)
