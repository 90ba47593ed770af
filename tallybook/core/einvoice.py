"""E-invoices: an issued invoice, credit note or debit note as EN 16931 sees it.

Seller, buyer, lines with their VAT category, document-level allowances (our invoice
discounts), the VAT breakdown per category and rate, and the totals, all in exact minor units.
`build_document` turns what an issued document says in our terms into this model and checks
that it adds up to the document's own total; formats/ubl.py and formats/cii.py write it out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum

from stdnum import ean
from stdnum.exceptions import ValidationError

from tallybook.core.money import currency_exponent, from_minor
from tallybook.core.tax_ids import TaxIdError, validate_tax_id

__all__ = [
    "CommercialDocument",
    "DocumentAllowance",
    "DocumentKind",
    "DocumentLine",
    "EInvoiceError",
    "ElectronicAddress",
    "LineFacts",
    "Party",
    "PaymentAccount",
    "PostalAddress",
    "PrecedingInvoice",
    "TaxCategory",
    "VatBreakdown",
    "VatCategory",
    "amount_text",
    "build_document",
    "check_electronic_address",
    "decimal_text",
    "unit_code_for",
    "vat_identifier",
]


class EInvoiceError(ValueError):
    """A document that cannot be written as an EN 16931 e-invoice, and why."""


class DocumentKind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    DEBIT_NOTE = "debit_note"

    @property
    def type_code(self) -> str:
        """UNCL 1001: commercial invoice, credit note, debit note (an invoice in UBL terms)."""
        return {"invoice": "380", "credit_note": "381", "debit_note": "383"}[self.value]


class VatCategory(StrEnum):
    """UNCL 5305 VAT category codes used by EN 16931."""

    STANDARD = "S"
    ZERO_RATED = "Z"
    EXEMPT = "E"
    REVERSE_CHARGE = "AE"
    INTRA_COMMUNITY = "K"
    EXPORT = "G"
    OUTSIDE_SCOPE = "O"


# The order the VAT breakdown lists categories in; the breakdown must be deterministic.
_CATEGORY_ORDER = {category: index for index, category in enumerate(VatCategory)}

# Categories that say why no VAT is charged carry a reason (code from the VATEX list, text).
DEFAULT_EXEMPTION = {
    VatCategory.EXEMPT: (None, "Exempt from VAT"),
    VatCategory.REVERSE_CHARGE: ("VATEX-EU-AE", "Reverse charge"),
    VatCategory.INTRA_COMMUNITY: ("VATEX-EU-IC", "Intra-Community supply"),
    VatCategory.EXPORT: ("VATEX-EU-G", "Export outside the EU"),
    VatCategory.OUTSIDE_SCOPE: ("VATEX-EU-O", "Not subject to VAT"),
}

# Electronic address schemes (CEF EAS code list, as EN 16931 rule BR-CL-25 accepts them).
EAS_CODES = frozenset(
    (
        "0002 0007 0009 0037 0060 0088 0096 0097 0106 0130 0135 0142 0147 0151 0154 0158 "
        "0170 0177 0183 0184 0188 0190 0191 0192 0193 0194 0195 0196 0198 0199 0200 0201 0202 "
        "0203 0204 0205 0208 0209 0210 0211 0212 0213 0215 0216 0217 0218 0219 0220 0221 0225 "
        "0230 0235 0240 0242 0244 0245 0246 0248 9910 9913 9914 9915 9918 9919 9920 9922 9923 "
        "9924 9925 9926 9927 9928 9929 9930 9931 9932 9933 9934 9935 9936 9937 9938 9939 9940 "
        "9941 9942 9943 9944 9945 9946 9947 9948 9949 9950 9951 9952 9953 9957 9959 EM"
    ).split()
)
# Schemes whose identifier is a VAT number of one country: checked as that country's VAT id.
VAT_SCHEMES = {
    "9914": "AT",
    "9925": "BE",
    "9930": "DE",
    "9920": "ES",
    "9957": "FR",
    "9932": "GB",
    "0211": "IT",
    "9944": "NL",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TOLERANCE = Decimal("0.01")


@dataclass(frozen=True)
class PostalAddress:
    line1: str | None
    line2: str | None
    city: str | None
    postal_code: str | None
    region: str | None
    country: str


@dataclass(frozen=True)
class ElectronicAddress:
    """Where e-invoices are delivered: scheme (EAS code such as 0088 or 9930) and identifier."""

    scheme: str
    value: str


@dataclass(frozen=True)
class Party:
    name: str
    address: PostalAddress
    vat_id: str | None = None
    legal_registration_id: str | None = None
    electronic_address: ElectronicAddress | None = None
    contact_email: str | None = None
    # Our own reference for the party (the customer's external id): BT-46.
    identifier: str | None = None


@dataclass(frozen=True)
class PaymentAccount:
    iban: str
    bic: str | None = None
    account_name: str | None = None


@dataclass(frozen=True)
class PrecedingInvoice:
    """BT-25/BT-26: the invoice a credit or debit note corrects."""

    number: str
    issue_date: date | None


@dataclass(frozen=True)
class TaxCategory:
    code: VatCategory
    percent: Decimal | None  # None: outside the scope of VAT, no rate at all
    exemption_reason_code: str | None = None
    exemption_reason: str | None = None

    @property
    def key(self) -> tuple[VatCategory, Decimal | None]:
        return (self.code, self.percent)


@dataclass(frozen=True)
class LineFacts:
    """An issued line in our terms: amounts in minor units, its taxes as one combined rate."""

    name: str
    quantity: Decimal
    net_minor: int  # before document discounts
    discount_minor: int = 0  # the line's share of the document's discounts
    tax_minor: int = 0
    # Combined percent of the taxes applied to the line; None when no tax applies to it.
    tax_percent: Decimal | None = None
    unit_price: Decimal | None = None
    unit_code: str = "C62"
    description: str | None = None
    item_id: str | None = None
    period: tuple[date, date] | None = None


@dataclass(frozen=True)
class DocumentLine:
    line_id: str
    name: str
    quantity: Decimal  # negative for a line that takes an amount off
    unit_code: str
    net_minor: int
    price: Decimal  # item net price, never negative
    base_quantity: Decimal
    category: TaxCategory
    tax_minor: int  # what was charged on the line; the breakdown sums it per category
    description: str | None = None
    item_id: str | None = None
    period: tuple[date, date] | None = None


@dataclass(frozen=True)
class DocumentAllowance:
    amount_minor: int
    category: TaxCategory
    reason: str
    reason_code: str = "95"  # UNCL 5189: discount


@dataclass(frozen=True)
class VatBreakdown:
    category: TaxCategory
    taxable_minor: int
    tax_minor: int


@dataclass(frozen=True)
class CommercialDocument:
    kind: DocumentKind
    number: str
    issue_date: date
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    allowances: tuple[DocumentAllowance, ...]
    vat_breakdown: tuple[VatBreakdown, ...]
    line_total_minor: int
    allowance_total_minor: int
    tax_exclusive_minor: int
    tax_minor: int
    tax_inclusive_minor: int
    prepaid_minor: int
    payable_minor: int
    due_date: date | None = None
    payment_terms: str | None = None
    payment_reference: str | None = None
    payment_account: PaymentAccount | None = None
    buyer_reference: str | None = None
    order_reference: str | None = None
    preceding_invoice: PrecedingInvoice | None = None
    note: str | None = None

    @property
    def type_code(self) -> str:
        return self.kind.type_code

    def amount(self, minor: int) -> str:
        return amount_text(minor, self.currency)


# -- text ----------------------------------------------------------------------------------------


def amount_text(minor: int, currency: str) -> str:
    """Minor units as the document writes them: the currency's decimals (JPY none, EUR two)."""
    exponent = currency_exponent(currency)
    if exponent > 2:
        raise EInvoiceError(
            f"currency: EN 16931 amounts have at most 2 decimals; {currency} has {exponent}"
        )
    return format(from_minor(minor, currency), "f")


def decimal_text(value: Decimal) -> str:
    """A quantity, price or rate without exponent or trailing zeros: 8.5, 20, 0.00125."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def vat_identifier(country: str, value: str) -> str:
    """A VAT number with its country prefix (BR-CO-09): '980780684' in GB is GB980780684."""
    compact = "".join(value.split()).upper()
    if compact[:2].isalpha():
        return compact
    prefix = "EL" if country.upper() == "GR" else country.upper()
    return prefix + compact


def unit_code_for(label: str | None) -> str:
    """UN/ECE recommendation 20 unit of a product's unit label: hours bill as HUR, days as
    DAY, months as MON; seats, calls and everything else count pieces (C62, "one")."""
    text = (label or "").strip().lower()
    for suffix, code in (("hour", "HUR"), ("day", "DAY"), ("month", "MON"), ("minute", "MIN")):
        if text.endswith(suffix) or text.endswith(suffix + "s"):
            return code
    return "C62"


def check_electronic_address(scheme: str, value: str) -> ElectronicAddress:
    """A valid electronic address, normalised, or EInvoiceError naming what is wrong."""
    code = (scheme or "").strip().upper()
    text = (value or "").strip()
    if code not in EAS_CODES:
        raise EInvoiceError(
            f"electronic_address_scheme: {scheme!r} is not an EAS code (e.g. 0088 GLN, "
            "9930 German VAT number, EM e-mail)"
        )
    if not text or any(ch.isspace() for ch in text) or len(text) > 200:
        raise EInvoiceError(f"electronic_address: {value!r} is not an identifier")
    if code == "0088":
        if not (text.isdigit() and len(text) == 13 and ean.is_valid(text)):
            raise EInvoiceError(
                f"electronic_address: {value!r} is not a GLN (13 digits, valid check digit)"
            )
    elif code in VAT_SCHEMES:
        country = VAT_SCHEMES[code]
        try:
            text = vat_identifier(country, validate_tax_id(country, text, "electronic_address"))
        except TaxIdError as error:
            raise EInvoiceError(str(error)) from None
    elif code == "0060":
        if not (text.isdigit() and len(text) == 9):
            raise EInvoiceError(f"electronic_address: {value!r} is not a DUNS number (9 digits)")
    elif code == "EM":
        if not _EMAIL.match(text):
            raise EInvoiceError(f"electronic_address: {value!r} is not an e-mail address")
    else:
        checks = {"0192": "stdnum.no.orgnr", "0007": "stdnum.se.orgnr", "0151": "stdnum.au.abn"}
        if code in checks:
            import importlib

            module = importlib.import_module(checks[code])
            try:
                text = module.compact(module.validate(text))
            except ValidationError:
                raise EInvoiceError(
                    f"electronic_address: {value!r} is not valid for scheme {code}"
                ) from None
    return ElectronicAddress(code, text)


# -- building ------------------------------------------------------------------------------------


def _category(
    line: LineFacts, treatment: str, document_taxed: bool, exemption_note: str | None
) -> TaxCategory:
    if treatment == "reverse_charge":
        code, text = DEFAULT_EXEMPTION[VatCategory.REVERSE_CHARGE]
        return TaxCategory(VatCategory.REVERSE_CHARGE, Decimal(0), code, text)
    if treatment == "exempt":
        code, text = DEFAULT_EXEMPTION[VatCategory.EXEMPT]
        return TaxCategory(VatCategory.EXEMPT, Decimal(0), code, exemption_note or text)
    if line.tax_percent is None and not document_taxed:
        # Nothing on the document is taxed: the supply is outside the scope of VAT here.
        code, text = DEFAULT_EXEMPTION[VatCategory.OUTSIDE_SCOPE]
        return TaxCategory(VatCategory.OUTSIDE_SCOPE, None, code, text)
    if line.tax_percent is None or line.tax_percent == 0:
        # Category O may not be mixed with others: an untaxed line next to taxed ones is zero
        # rated.
        return TaxCategory(VatCategory.ZERO_RATED, Decimal(0))
    return TaxCategory(VatCategory.STANDARD, line.tax_percent)


def line_price(
    quantity: Decimal, net_minor: int, unit_price: Decimal | None, currency: str
) -> tuple[Decimal, Decimal, Decimal]:
    """(invoiced quantity, item net price, price base quantity) for a line's net amount.

    The price is never negative (BR-27), so a line that takes an amount off has a negative
    quantity. The stored unit price is used when quantity x price gives the net amount to the
    cent; otherwise the price is derived from the net amount (to 8 decimals at most), and where
    even that is not close enough the price is stated for the whole quantity (base quantity).
    """
    net = from_minor(net_minor, currency)
    if quantity == 0:
        if net == 0:
            return Decimal(0), Decimal(0), Decimal(1)
        quantity = Decimal(1)  # a charge without a quantity: one unit
    size = abs(quantity)
    signed = -size if net < 0 else size
    magnitude = abs(net)
    candidates: list[Decimal] = []
    if unit_price is not None and unit_price >= 0:
        candidates.append(unit_price)
    exact = magnitude / size
    if exact.normalize().as_tuple().exponent >= -8:  # type: ignore[operator]
        candidates.append(exact)
    candidates += [exact.quantize(Decimal(1).scaleb(-places)) for places in (2, 4, 6, 8)]
    for price in candidates:
        if abs(size * price - magnitude) <= _TOLERANCE:
            return signed, price, Decimal(1)
    return signed, magnitude, size


def build_document(
    *,
    kind: DocumentKind,
    number: str,
    issue_date: date,
    currency: str,
    seller: Party,
    buyer: Party,
    lines: Sequence[LineFacts],
    treatment: str = "standard",
    exemption_note: str | None = None,
    discount_reason: str = "Discount",
    prepaid_minor: int = 0,
    expected_total_minor: int | None = None,
    due_date: date | None = None,
    payment_terms: str | None = None,
    payment_reference: str | None = None,
    payment_account: PaymentAccount | None = None,
    buyer_reference: str | None = None,
    order_reference: str | None = None,
    preceding_invoice: PrecedingInvoice | None = None,
    note: str | None = None,
) -> CommercialDocument:
    """The EN 16931 view of an issued document.

    Line discounts become one document-level allowance per VAT category and rate; the VAT
    breakdown sums, per category and rate, the line net amounts less those allowances and the
    tax actually charged on the lines. Raises EInvoiceError when the lines do not add up to
    `expected_total_minor` (the document's own total) or cannot be expressed.
    """
    currency = currency.upper()
    amount_text(0, currency)  # refuse a currency with more than two decimals up front
    if not lines:
        raise EInvoiceError("lines: an e-invoice has at least one line")
    if treatment not in ("standard", "exempt", "reverse_charge"):
        raise EInvoiceError(f"treatment: {treatment!r} is not standard, exempt or reverse_charge")
    document_taxed = any(line.tax_percent is not None for line in lines)
    built: list[DocumentLine] = []
    allowances: dict[tuple[VatCategory, Decimal | None], int] = {}
    categories: dict[tuple[VatCategory, Decimal | None], TaxCategory] = {}
    taxable: dict[tuple[VatCategory, Decimal | None], int] = {}
    taxes: dict[tuple[VatCategory, Decimal | None], int] = {}
    for position, line in enumerate(lines, start=1):
        if line.discount_minor < 0:
            raise EInvoiceError(f"lines[{position}].discount: must not be negative")
        category = _category(line, treatment, document_taxed, exemption_note)
        if category.percent is not None and category.percent == 0 and line.tax_minor:
            raise EInvoiceError(
                f"lines[{position}]: tax {line.tax_minor} charged in zero-rate category "
                f"{category.code}"
            )
        quantity, price, base = line_price(line.quantity, line.net_minor, line.unit_price, currency)
        built.append(
            DocumentLine(
                line_id=str(position),
                name=line.name.strip() or "Item",
                quantity=quantity,
                unit_code=line.unit_code,
                net_minor=line.net_minor,
                price=price,
                base_quantity=base,
                category=category,
                tax_minor=line.tax_minor,
                description=line.description,
                item_id=line.item_id,
                period=line.period,
            )
        )
        key = category.key
        categories.setdefault(key, category)
        taxable[key] = taxable.get(key, 0) + line.net_minor - line.discount_minor
        taxes[key] = taxes.get(key, 0) + line.tax_minor
        if line.discount_minor:
            allowances[key] = allowances.get(key, 0) + line.discount_minor

    order = sorted(categories, key=lambda k: (_CATEGORY_ORDER[k[0]], -(k[1] or Decimal(0))))
    breakdown = tuple(VatBreakdown(categories[k], taxable[k], taxes[k]) for k in order)
    document_allowances = tuple(
        DocumentAllowance(allowances[k], categories[k], discount_reason)
        for k in order
        if k in allowances
    )
    line_total = sum(line.net_minor for line in built)
    allowance_total = sum(a.amount_minor for a in document_allowances)
    tax_exclusive = line_total - allowance_total
    tax = sum(row.tax_minor for row in breakdown)
    tax_inclusive = tax_exclusive + tax
    if expected_total_minor is not None and tax_inclusive != expected_total_minor:
        raise EInvoiceError(
            f"lines add up to {amount_text(tax_inclusive, currency)} {currency} but the "
            f"document's total is {amount_text(expected_total_minor, currency)} {currency}"
        )
    if any(row.category.code is VatCategory.OUTSIDE_SCOPE for row in breakdown):
        # BR-O-02: a document outside the scope of VAT names no VAT identifiers.
        seller = replace(seller, vat_id=None)
        buyer = replace(buyer, vat_id=None)
    return CommercialDocument(
        kind=kind,
        number=number,
        issue_date=issue_date,
        currency=currency,
        seller=seller,
        buyer=buyer,
        lines=tuple(built),
        allowances=document_allowances,
        vat_breakdown=breakdown,
        line_total_minor=line_total,
        allowance_total_minor=allowance_total,
        tax_exclusive_minor=tax_exclusive,
        tax_minor=tax,
        tax_inclusive_minor=tax_inclusive,
        prepaid_minor=prepaid_minor,
        payable_minor=tax_inclusive - prepaid_minor,
        due_date=due_date,
        payment_terms=payment_terms,
        payment_reference=payment_reference,
        payment_account=payment_account,
        buyer_reference=buyer_reference,
        order_reference=order_reference,
        preceding_invoice=preceding_invoice,
        note=note,
    )
