"""PDF documents: invoices, credit notes and debit notes, customer statements and dunning
letters, set by WeasyPrint from the HTML templates in tallybook/templates/documents; and
Factur-X / ZUGFeRD invoices (PDF/A-3 with the CII XML embedded as factur-x.xml).

A format adapter: it takes the e-invoice model (so a PDF and its XML always show the same
amounts), statement and reminder views and the organisation's branding, never the database.
Rendering is deterministic: the PDF's dates are the document's own date, its identifier is
derived from the document, and nothing reads the clock or draws a random number, so the same
document gives the same bytes every time.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import logging
import os
import posixpath
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from tallybook.core.einvoice import (
    CommercialDocument,
    DocumentKind,
    Party,
    PaymentAccount,
    VatCategory,
)
from tallybook.core.money import from_minor
from tallybook.core.receivables import CustomerStatement
from tallybook.core.references import display as reference_display
from tallybook.formats.epc_qr import CreditTransfer, EpcError, epc_payload, epc_qr_png
from tallybook.formats.pdf_labels import LABELS, LANGUAGES

__all__ = [
    "DEFAULT_COLOR",
    "LANGUAGES",
    "Branding",
    "CommercialSheet",
    "DunningLetterSheet",
    "OverdueDocument",
    "Sheet",
    "StatementSheet",
    "document_html",
    "payment_qr_payload",
    "render",
    "render_facturx",
    "render_many",
]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "documents"
DEFAULT_COLOR = "#1f4e79"
FACTURX_FILE_NAME = "factur-x.xml"
FACTURX_NAMESPACE = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
FACTURX_LEVEL = "EN 16931"
PRODUCER = "Tallybook"
UNIT_NAMES = {"HUR": "h", "DAY": "d", "MON": "mo", "MIN": "min"}

# fontTools stamps each font subset with the time it was made unless SOURCE_DATE_EPOCH says
# otherwise (the reproducible-builds convention); without it the same invoice would give
# different bytes from one second to the next.
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")


class _HarfBuzzSubsetMissing(logging.Filter):
    """WeasyPrint warns on every document that it subsets fonts with fontTools when Debian's
    libharfbuzz-subset is not installed. That is how it is meant to work here: the bundled
    fonts are small, so say it once, not a thousand times."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "HarfBuzz-Subset" not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


logging.getLogger("weasyprint").addFilter(_HarfBuzzSubsetMissing())


# -- what is printed -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Branding:
    """The organisation's look: its primary colour (#rrggbb) and its logo (PNG, JPEG, SVG)."""

    color: str = DEFAULT_COLOR
    logo: bytes | None = None
    logo_media_type: str | None = None

    def logo_uri(self) -> str | None:
        if not self.logo or not self.logo_media_type:
            return None
        return f"data:{self.logo_media_type};base64,{base64.b64encode(self.logo).decode()}"


@dataclass(frozen=True)
class CommercialSheet:
    """An invoice, credit note or debit note as its PDF shows it: the e-invoice model plus what
    only the paper has (drafts, line explanations, how a credit note is settled)."""

    document: CommercialDocument
    language: str = "en"
    branding: Branding = field(default_factory=Branding)
    draft: bool = False
    void: bool = False
    explanations: tuple[str | None, ...] = ()
    settlement: str | None = None  # credit notes: customer_credit | reduce_amount_due


@dataclass(frozen=True)
class StatementSheet:
    seller: Party
    customer: Party
    statement: CustomerStatement
    open_receivables_minor: int
    unapplied_credit_minor: int
    language: str = "en"
    branding: Branding = field(default_factory=Branding)
    payment_account: PaymentAccount | None = None
    customer_number: str | None = None


@dataclass(frozen=True)
class OverdueDocument:
    number: str
    issue_date: date
    due_date: date
    open_minor: int
    days_overdue: int


@dataclass(frozen=True)
class DunningLetterSheet:
    """A dunning reminder as a letter: its level, the customer's overdue invoices on the day it
    went out, the late fee it charged and what the customer should do."""

    seller: Party
    customer: Party
    currency: str
    letter_date: date
    level: int
    step_name: str
    reference_number: str  # the invoice the reminder is for
    documents: tuple[OverdueDocument, ...]
    pay_by: date
    fee_minor: int = 0
    fee_document: str | None = None
    payment_reference: str | None = None
    payment_account: PaymentAccount | None = None
    language: str = "en"
    branding: Branding = field(default_factory=Branding)
    customer_number: str | None = None

    @property
    def total_minor(self) -> int:
        return sum(d.open_minor for d in self.documents) + self.fee_minor


Sheet = CommercialSheet | StatementSheet | DunningLetterSheet


# -- words and numbers ---------------------------------------------------------------------------


class _Words:
    """Labels of one language, and numbers, amounts and dates the way its readers write them."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LABELS else "en"
        self.locale = _locale(self.language)
        self.labels = LABELS[self.language]

    def __call__(self, key: str, **values: str) -> str:
        text = self.labels[key]
        return text.format(**values) if values else text

    def money(self, minor: int, currency: str) -> str:
        return format_currency(from_minor(minor, currency), currency, locale=self.locale)

    def price(self, value: Decimal, currency: str) -> str:
        # Unit prices may have more decimals than the currency (0.0006 per call): all shown.
        return format_currency(value, currency, locale=self.locale, decimal_quantization=False)

    def number(self, value: Decimal) -> str:
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal) -> str:
        return format_percent(value / 100, locale=self.locale, decimal_quantization=False)

    def day(self, value: date) -> str:
        return format_date(value, "medium", locale=self.locale)

    def country(self, code: str | None) -> str | None:
        if not code:
            return None
        return self.locale.territories.get(code.upper(), code.upper())


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def _css_string(text: str) -> str:
    """Text as the inside of a CSS string in a <style> block (quotes, backslashes, markup)."""
    return re.sub(r'["\\<>\n]', lambda m: f"\\{ord(m.group(0)):x} ", text)


def _address(party: Party, w: _Words) -> list[str]:
    a = party.address
    city = " ".join(part for part in (a.postal_code, a.city) if part)
    lines = [a.line1, a.line2, city, a.region, w.country(a.country)]
    return [line for line in lines if line]


def _party(party: Party, w: _Words) -> dict[str, Any]:
    return {
        "name": party.name,
        "address": _address(party, w),
        "vat_id": f"{w('vat_id')} {party.vat_id}" if party.vat_id else None,
    }


def _footer(seller: Party, account: PaymentAccount | None, w: _Words) -> list[str]:
    items = [seller.name, ", ".join(_address(seller, w))]
    if seller.vat_id:
        items.append(f"{w('vat_id')} {seller.vat_id}")
    if seller.legal_registration_id:
        items.append(f"{w('registration')} {seller.legal_registration_id}")
    if account is not None:
        bank = f" · BIC {account.bic}" if account.bic else ""
        items.append(f"IBAN {_iban(account.iban)}{bank}")
    if seller.contact_email:
        items.append(seller.contact_email)
    return [item for item in items if item]


def _iban(value: str) -> str:
    compact = "".join(value.split())
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _page(
    *,
    w: _Words,
    title: str,
    heading: str,
    seller: Party,
    recipient: Party,
    facts: list[tuple[str, str]],
    branding: Branding,
    account: PaymentAccount | None,
    watermark: str | None = None,
) -> dict[str, Any]:
    return {
        "language": w.language,
        "title": title,
        "heading": heading,
        "seller": _party(seller, w),
        "recipient": _party(recipient, w),
        "sender_line": " · ".join([seller.name, *_address(seller, w)[:3]]),
        "facts": facts,
        "footer": _footer(seller, account, w),
        "logo": branding.logo_uri(),
        "watermark": watermark,
    }


# -- invoices, credit notes and debit notes ------------------------------------------------------


def payment_qr_payload(document: CommercialDocument) -> str | None:
    """The EPC QR payload of a document the customer pays by transfer: euros, an IBAN and
    something left to pay. None where it does not apply."""
    account = document.payment_account
    if (
        document.kind is DocumentKind.CREDIT_NOTE
        or account is None
        or document.currency != "EUR"
        or document.payable_minor <= 0
    ):
        return None
    try:
        return epc_payload(
            CreditTransfer(
                name=account.account_name or document.seller.name,
                iban=account.iban,
                bic=account.bic,
                amount=from_minor(document.payable_minor, "EUR"),
                reference=document.payment_reference,
                text=None if document.payment_reference else document.number,
            )
        )
    except EpcError:
        return None  # an account the QR code cannot carry: the printed details still can


def _qr_uri(payload: str) -> str:
    return "data:image/png;base64," + base64.b64encode(epc_qr_png(payload)).decode()


def _line_rows(sheet: CommercialSheet, w: _Words) -> list[dict[str, Any]]:
    document = sheet.document
    rows = []
    for index, line in enumerate(document.lines):
        details = []
        if line.description:
            details.append(line.description)
        if line.period is not None:
            details.append(w("period", start=w.day(line.period[0]), end=w.day(line.period[1])))
        unit = UNIT_NAMES.get(line.unit_code)
        quantity = w.number(line.quantity) + (f" {unit}" if unit else "")
        price = w.price(line.price, document.currency)
        if line.base_quantity != 1:
            price += " " + w("per_quantity", quantity=w.number(line.base_quantity))
        category = line.category
        vat = w.percent(category.percent) if category.percent is not None else "–"
        why = sheet.explanations[index] if index < len(sheet.explanations) else None
        rows.append(
            {
                "position": line.line_id,
                "name": line.name,
                "details": details,
                "quantity": quantity,
                "price": price,
                "vat": vat,
                "amount": w.money(line.net_minor, document.currency),
                "why": why or None,
            }
        )
    return rows


_MENTIONS = {
    VatCategory.REVERSE_CHARGE: "reverse_charge",
    VatCategory.INTRA_COMMUNITY: "intra_community",
    VatCategory.EXPORT: "export",
    VatCategory.OUTSIDE_SCOPE: "outside_scope",
}
_DEFAULT_REASONS = {
    "Exempt from VAT",
    "Reverse charge",
    "Intra-Community supply",
    "Export outside the EU",
    "Not subject to VAT",
}


def _legal_mentions(document: CommercialDocument, w: _Words) -> list[str]:
    mentions: list[str] = []
    for row in document.vat_breakdown:
        category = row.category
        if category.code is VatCategory.EXEMPT:
            reason = category.exemption_reason
            text = w("exempt")
            if reason and reason not in _DEFAULT_REASONS:
                text += f": {reason}"
            mentions.append(text + ("" if text.endswith(".") else "."))
        elif category.code in _MENTIONS:
            mentions.append(w(_MENTIONS[category.code]))
    return list(dict.fromkeys(mentions))


def _tax_rows(document: CommercialDocument, w: _Words) -> list[dict[str, Any]]:
    rows = []
    for row in document.vat_breakdown:
        category = row.category
        if category.percent is None:
            rate = w("no_rate")
        else:
            rate = w.percent(category.percent)
            if category.code is not VatCategory.STANDARD:
                rate += f" ({category.code.value})"
        rows.append(
            {
                "rate": rate,
                "reason": None,
                "taxable": w.money(row.taxable_minor, document.currency),
                "tax": w.money(row.tax_minor, document.currency),
            }
        )
    return rows


def _totals(sheet: CommercialSheet, w: _Words) -> list[dict[str, str]]:
    document = sheet.document
    money = document.currency

    def row(label: str, minor: int, style: str = "") -> dict[str, str]:
        return {"label": label, "amount": w.money(minor, money), "style": style}

    rows = [row(w("line_total"), document.line_total_minor)]
    for allowance in document.allowances:
        label = w("discount") + (f" ({allowance.reason})" if allowance.reason else "")
        if len(document.allowances) > 1 and allowance.category.percent is not None:
            label += f", {w('vat')} {w.percent(allowance.category.percent)}"
        rows.append(row(label, -allowance.amount_minor))
    rows.append(row(w("total_net"), document.tax_exclusive_minor))
    rows.append(row(w("total_tax"), document.tax_minor))
    if document.kind is DocumentKind.CREDIT_NOTE:
        rows.append(row(w("credit_total"), document.tax_inclusive_minor, "grand"))
        return rows
    rows.append(row(w("total"), document.tax_inclusive_minor, "grand"))
    if document.prepaid_minor and not sheet.draft:
        rows.append(row(w("prepaid"), -document.prepaid_minor))
        rows.append(row(w("amount_due"), document.payable_minor, "due"))
    return rows


def _payment(sheet: CommercialSheet, w: _Words) -> dict[str, Any] | None:
    document = sheet.document
    if document.kind is DocumentKind.CREDIT_NOTE:
        preceding = document.preceding_invoice
        if sheet.settlement == "customer_credit":
            text = w("settled_credit")
        elif preceding is not None:
            text = w("settled_invoice", number=preceding.number)
        else:
            return None
        return {"title": w("payment"), "text": text, "account": [], "qr": None}
    if sheet.draft:
        return None
    amount = w.money(document.payable_minor, document.currency)
    if document.payable_minor <= 0:
        text = w("nothing_due")
    elif document.due_date is not None:
        text = w("pay_by", amount=amount, date=w.day(document.due_date))
    else:
        text = w("pay_now", amount=amount)
    account_rows: list[tuple[str, str]] = []
    account = document.payment_account
    if account is not None and document.payable_minor > 0:
        account_rows.append((w("account_holder"), account.account_name or document.seller.name))
        account_rows.append((w("iban"), _iban(account.iban)))
        if account.bic:
            account_rows.append((w("bic"), account.bic))
    if document.payable_minor > 0:
        reference = (
            reference_display(document.payment_reference)
            if document.payment_reference
            else document.number
        )
        account_rows.append((w("reference"), reference))
    payload = payment_qr_payload(document)
    return {
        "title": w("payment"),
        "text": text,
        "account": account_rows,
        "qr": _qr_uri(payload) if payload else None,
        "qr_label": w("scan_to_pay"),
    }


def _commercial_context(sheet: CommercialSheet) -> dict[str, Any]:
    document = sheet.document
    w = _Words(sheet.language)
    kind = document.kind
    if sheet.draft and kind is DocumentKind.INVOICE:
        heading = w("proforma")
    else:
        heading = f"{w(kind.value)} {document.number}"
    facts: list[tuple[str, str]] = []
    if sheet.draft:
        facts.append((w("billing_date"), w.day(document.issue_date)))
    else:
        facts.append((w("number"), document.number))
        date_label = "issue_date" if kind is DocumentKind.INVOICE else "document_date"
        facts.append((w(date_label), w.day(document.issue_date)))
    if document.due_date is not None and kind is not DocumentKind.CREDIT_NOTE:
        facts.append((w("due_date"), w.day(document.due_date)))
    if document.buyer.identifier:
        facts.append((w("customer_number"), document.buyer.identifier))
    if document.order_reference:
        facts.append((w("order_reference"), document.order_reference))
    elif document.buyer_reference and document.buyer_reference != document.buyer.identifier:
        facts.append((w("buyer_reference"), document.buyer_reference))
    preceding = document.preceding_invoice
    if preceding is not None:
        value = preceding.number
        if preceding.issue_date is not None:
            value += " " + w("of_date", date=w.day(preceding.issue_date))
        facts.append((w("corrects"), value))
    title = heading if not sheet.draft else f"{heading} ({w('draft')})"
    notes = [part for part in (document.note or "").split("\n") if part.strip()]
    return {
        "page": _page(
            w=w,
            title=title,
            heading=heading,
            seller=document.seller,
            recipient=document.buyer,
            facts=facts,
            branding=sheet.branding,
            account=document.payment_account,
            watermark=w("draft") if sheet.draft else (w("void") if sheet.void else None),
        ),
        "doc": {
            "draft_note": w("draft_note") if sheet.draft else None,
            "head": {
                key: w(key)
                for key in ("position", "description", "quantity", "unit_price", "vat", "amount")
            },
            "lines": _line_rows(sheet, w),
            "why_label": w("explanation"),
            "tax_title": w("tax_summary"),
            "tax_head": {"rate": w("vat_rate"), "taxable": w("taxable"), "tax": w("tax")},
            "taxes": _tax_rows(document, w),
            "totals": _totals(sheet, w),
            "payment": _payment(sheet, w),
            "notes_title": w("notes"),
            "notes": notes,
            "legal": _legal_mentions(document, w),
        },
    }


# -- statements ----------------------------------------------------------------------------------


def _statement_context(sheet: StatementSheet) -> dict[str, Any]:
    w = _Words(sheet.language)
    s = sheet.statement
    cur = s.currency

    def amount(minor: int) -> str:
        return w.money(minor, cur) if minor else ""

    facts = [
        (w("period_label"), f"{w.day(s.period_start)} – {w.day(s.period_end)}"),
        (w("statement_date"), w.day(s.period_end)),
    ]
    if sheet.customer_number:
        facts.append((w("customer_number"), sheet.customer_number))
    lines = [
        {
            "date": w.day(line.date),
            "kind": w.labels.get(f"kind_{line.kind}", line.kind.replace("_", " ")),
            "reference": line.reference,
            "description": line.description,
            "debit": amount(line.debit_minor),
            "credit": amount(line.credit_minor),
            "balance": w.money(line.balance_minor, cur),
        }
        for line in s.lines
    ]
    summary = [
        (w("opening_balance"), w.money(s.opening_balance_minor, cur)),
        (w("invoiced"), w.money(s.invoiced_minor, cur)),
        (w("paid"), w.money(-s.paid_minor, cur)),
        (w("credited"), w.money(-s.credited_minor, cur)),
    ]
    if s.written_off_minor:
        summary.append((w("written_off"), w.money(-s.written_off_minor, cur)))
    if s.other_minor:
        summary.append((w("other"), w.money(s.other_minor, cur)))
    summary.append((w("closing_balance"), w.money(s.closing_balance_minor, cur)))
    if sheet.unapplied_credit_minor:
        summary.append((w("open_documents"), w.money(sheet.open_receivables_minor, cur)))
        summary.append((w("unapplied_credit"), w.money(-sheet.unapplied_credit_minor, cur)))
    closing = s.closing_balance_minor
    if closing >= 0:
        outcome = w("balance_due", date=w.day(s.period_end), amount=w.money(closing, cur))
    else:
        outcome = w("balance_credit", date=w.day(s.period_end), amount=w.money(-closing, cur))
    payment = None
    account = sheet.payment_account
    if closing > 0 and account is not None:
        rows = [(w("account_holder"), account.account_name or sheet.seller.name)]
        rows.append((w("iban"), _iban(account.iban)))
        if account.bic:
            rows.append((w("bic"), account.bic))
        payment = {"title": w("payment"), "account": rows}
    heading = w("statement")
    return {
        "page": _page(
            w=w,
            title=f"{heading} {s.customer_name} {s.period_start.isoformat()} – "
            f"{s.period_end.isoformat()}",
            heading=heading,
            seller=sheet.seller,
            recipient=sheet.customer,
            facts=facts,
            branding=sheet.branding,
            account=account,
        ),
        "doc": {
            "head": {k: w(k) for k in ("date", "document", "description", "debit", "credit")}
            | {"balance": w("balance")},
            "opening": {
                "date": w.day(s.period_start),
                "label": w("opening_balance"),
                "balance": w.money(s.opening_balance_minor, cur),
            },
            "lines": lines,
            "empty": w("no_movements"),
            "closing": {
                "date": w.day(s.period_end),
                "label": w("closing_balance"),
                "debits": w.money(s.debits_minor, cur),
                "credits": w.money(s.credits_minor, cur),
                "balance": w.money(closing, cur),
            },
            "summary_title": w("summary"),
            "summary": summary,
            "outcome": outcome,
            "payment": payment,
        },
    }


# -- dunning letters -----------------------------------------------------------------------------


def _dunning_context(sheet: DunningLetterSheet) -> dict[str, Any]:
    w = _Words(sheet.language)
    cur = sheet.currency
    level = max(1, min(sheet.level, 3))
    heading = w(f"reminder_{level}")
    facts = [
        (w("letter_date"), w.day(sheet.letter_date)),
        (w("reminder_level"), str(sheet.level)),
    ]
    if sheet.customer_number:
        facts.append((w("customer_number"), sheet.customer_number))
    total = w.money(sheet.total_minor, cur)
    payment = None
    account = sheet.payment_account
    if account is not None and sheet.total_minor > 0:
        rows = [(w("account_holder"), account.account_name or sheet.seller.name)]
        rows.append((w("iban"), _iban(account.iban)))
        if account.bic:
            rows.append((w("bic"), account.bic))
        reference = sheet.payment_reference
        rows.append(
            (w("reference"), reference_display(reference) if reference else sheet.reference_number)
        )
        qr = None
        if cur == "EUR":
            try:
                payload = epc_payload(
                    CreditTransfer(
                        name=account.account_name or sheet.seller.name,
                        iban=account.iban,
                        bic=account.bic,
                        amount=from_minor(sheet.total_minor, "EUR"),
                        reference=reference,
                        text=None if reference else sheet.reference_number,
                    )
                )
                qr = _qr_uri(payload)
            except EpcError:
                qr = None
        payment = {"account": rows, "qr": qr, "qr_label": w("scan_to_pay")}
    contact = sheet.seller.contact_email
    return {
        "page": _page(
            w=w,
            title=f"{heading} {sheet.reference_number}",
            heading=heading,
            seller=sheet.seller,
            recipient=sheet.customer,
            facts=facts,
            branding=sheet.branding,
            account=account,
        ),
        "doc": {
            "dear": w("dear"),
            "intro": w(f"intro_{level}"),
            "head": {
                "invoice": w("overdue_invoice"),
                "issue_date": w("issue_date"),
                "due_date": w("due_date"),
                "days": w("days_overdue"),
                "open": w("open_amount"),
            },
            "rows": [
                {
                    "number": d.number,
                    "issue_date": w.day(d.issue_date),
                    "due_date": w.day(d.due_date),
                    "days": w.number(Decimal(d.days_overdue)),
                    "open": w.money(d.open_minor, cur),
                }
                for d in sheet.documents
            ],
            "fee": (
                {
                    "label": w("late_fee", document=sheet.fee_document or ""),
                    "amount": w.money(sheet.fee_minor, cur),
                }
                if sheet.fee_minor
                else None
            ),
            "total": {"label": w("total_to_pay"), "amount": total},
            "todo": w(f"todo_{level}", amount=total, date=w.day(sheet.pay_by)),
            "payment": payment,
            "dispute": w(
                "dispute",
                contact=w("dispute_contact", email=contact) if contact else "",
            ),
            "regards": w("regards"),
        },
    }


# -- rendering -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfMetadata:
    """What a PDF says about itself. `day` is the document's date: no clock is read."""

    title: str
    author: str
    subject: str
    language: str
    day: date
    identifier: str  # stable: the same document always has the same PDF /ID

    @property
    def w3c_date(self) -> str:
        return f"{self.day.isoformat()}T00:00:00Z"


def _metadata(sheet: Sheet) -> PdfMetadata:
    if isinstance(sheet, CommercialSheet):
        document = sheet.document
        kind = "draft" if sheet.draft else document.kind.value
        return PdfMetadata(
            title=f"{LABELS[_language(sheet)][document.kind.value]} {document.number}",
            author=document.seller.name,
            subject=document.buyer.name,
            language=_language(sheet),
            day=document.issue_date,
            identifier=_identifier(
                kind, document.seller.name, document.number, document.issue_date
            ),
        )
    if isinstance(sheet, StatementSheet):
        s = sheet.statement
        return PdfMetadata(
            title=f"{LABELS[_language(sheet)]['statement']} {s.customer_name}",
            author=sheet.seller.name,
            subject=f"{s.period_start.isoformat()} – {s.period_end.isoformat()}",
            language=_language(sheet),
            day=s.period_end,
            identifier=_identifier(
                "statement", s.customer_id, s.currency, s.period_start, s.period_end
            ),
        )
    return PdfMetadata(
        title=f"{LABELS[_language(sheet)][f'reminder_{max(1, min(sheet.level, 3))}']} "
        f"{sheet.reference_number}",
        author=sheet.seller.name,
        subject=sheet.customer.name,
        language=_language(sheet),
        day=sheet.letter_date,
        identifier=_identifier("dunning", sheet.reference_number, sheet.level, sheet.letter_date),
    )


def _identifier(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _language(sheet: Sheet) -> str:
    return sheet.language if sheet.language in LABELS else "en"


_TEMPLATE_OF = {
    CommercialSheet: ("commercial.html", _commercial_context),
    StatementSheet: ("statement.html", _statement_context),
    DunningLetterSheet: ("dunning_letter.html", _dunning_context),
}


def _page_style(color: str, language: str) -> str:
    """The stylesheet of one colour and language: brand colour, "Page 1 of 2" in words."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        color = DEFAULT_COLOR
    before, _, rest = LABELS[language]["page"].partition("{page}")
    between, _, after = rest.partition("{pages}")
    return (
        f'@page {{ @bottom-right {{ content: "{_css_string(before)}" counter(page) '
        f'"{_css_string(between)}" counter(pages) "{_css_string(after)}"; }} }}\n'
        f"h1, .brand {{ color: {color}; }}\n"
        f".lines thead th, .statement th, .overdue th {{ border-bottom-color: {color}; }}\n"
        f".totals tr.grand td, .overdue tr.sum td {{ border-top-color: {color}; }}\n"
    )


def _one_line(text: Any) -> str:
    """Text as one line: its line breaks and runs of spaces as one space (as HTML shows text
    outside a `multiline` element)."""
    return " ".join(str(text).split())


def _lines(items: Iterable[Any]) -> str:
    """Lines for a `multiline` element (white-space: pre-line), one a line: line breaks as
    newline characters rather than <br> elements, each of which WeasyPrint styles and lays
    out as an element and a pseudo-element."""
    return "\n".join(_one_line(item) for item in items)


class _LocalOnly:
    """Lets documents load data: URIs and the bundled fonts only. A logo's SVG can name any
    URL; nothing is fetched from the network or from elsewhere on the disk."""

    def __init__(self) -> None:
        from weasyprint.urls import URLFetcher

        self._fetcher = URLFetcher(allowed_protocols={"data", "file"})
        self._root_path = str(TEMPLATES) + "/"

    def fetch(self, url: str, headers: Any = None) -> Any:
        if not url.startswith("data:"):
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(url)
            path = posixpath.normpath(unquote(parts.path))
            if parts.scheme != "file" or not (path + "/").startswith(self._root_path):
                raise ValueError(f"not loaded in a PDF document: {url[:80]}")
        return self._fetcher.fetch(url, headers)

    __call__ = fetch


# The browser defaults our templates need, in place of WeasyPrint's full HTML5 user agent
# stylesheet: matching hundreds of rules no template uses was a sixth of the time a document
# took. Only the elements the templates use.
_TEMPLATE_DEFAULTS = """
head, title, meta, style, script { display: none; }
html, body, div, p, h1, h2 { display: block; }
table { display: table; box-sizing: border-box; }
thead { display: table-header-group; }
tbody { display: table-row-group; }
tr { display: table-row; }
td, th { display: table-cell; }
th, b { font-weight: bold; }
img { display: inline-block; }
br::before { content: "\\A"; white-space: pre-line; }
"""


BUNDLED_FONTS = ("TallybookSans.ttf", "TallybookSans-Bold.ttf")


def _embed_whole(bundled: frozenset[bytes]) -> None:
    """Have WeasyPrint embed the bundled fonts whole, and subset only other fonts.

    The bundled fonts are small: embedding them whole is faster than subsetting them for
    every document (fontTools takes tens of milliseconds a font). Text they do not cover is
    set in a system font, which is still subset (whole, it would add megabytes). WeasyPrint's
    own `full_fonts` option is all or nothing, and it writes the widths and the Unicode map of
    every glyph of a whole font, read with fontTools, for every document; kept whole this
    way, a font's widths and map list only the glyphs the document uses, as for a subset."""
    from weasyprint.pdf.fonts import Font

    subset = Font.subset
    if getattr(subset, "keeps_whole", None) is not None:
        subset = subset.original

    def keep_bundled_whole(font: Any, to_unicode: Any, hinting: Any) -> None:
        if font.file_content in bundled:
            return
        subset(font, to_unicode, hinting)

    keep_bundled_whole.keeps_whole = bundled  # type: ignore[attr-defined]
    keep_bundled_whole.original = subset  # type: ignore[attr-defined]
    Font.subset = keep_bundled_whole


class _RememberingZlib:
    """zlib for pydyf, which writes WeasyPrint's PDFs, that compresses the same bytes once.

    pydyf compresses every stream of a PDF twice when the PDF has an /ID (it serialises all
    objects again to hash them), and the bundled fonts are the same bytes in every document:
    compressing was a fifteenth of the work of a document. The output is byte for byte
    what zlib gives; the most recently compressed streams are remembered, a few dozen of at
    most 64 KB (a page's text, a font; not a large image)."""

    KEEP = 64
    LARGEST = 64 * 1024

    def __init__(self) -> None:
        import zlib

        self._zlib = zlib
        self._done: dict[tuple[int, bytes], bytes] = {}

    def _compressed(self, data: bytes, level: int) -> bytes:
        if len(data) > self.LARGEST:
            return self._zlib.compress(data, level)
        key = (level, bytes(data))
        done = self._done.pop(key, None)
        if done is None:
            done = self._zlib.compress(data, level)
            if len(self._done) >= self.KEEP:
                del self._done[next(iter(self._done))]
        self._done[key] = done  # most recently used last
        return done

    def compress(self, data: bytes, /, level: int = -1) -> bytes:
        return self._compressed(data, level)

    def compressobj(self, level: int = -1) -> Any:
        return _WholeCompressor(self, level)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zlib, name)


class _WholeCompressor:
    """A compressor that compresses (or recalls) all its data at once, when flushed."""

    def __init__(self, zlib: _RememberingZlib, level: int) -> None:
        self._zlib, self._level, self._parts = zlib, level, list[bytes]()

    def compress(self, data: bytes) -> bytes:
        self._parts.append(bytes(data))
        return b""

    def flush(self, mode: int = -1) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return self._zlib._compressed(data, self._level)


def _remember_compression() -> None:
    import pydyf

    if not isinstance(pydyf.zlib, _RememberingZlib):
        pydyf.zlib = _RememberingZlib()  # type: ignore[attr-defined]


class _Engine:
    """One per process: the templates, the compiled stylesheet and the fonts, loaded once and
    shared by every document."""

    def __init__(self) -> None:
        import jinja2
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration

        self.fetcher = _LocalOnly()
        self.fonts = FontConfiguration()
        self.css = CSS(
            filename=str(TEMPLATES / "documents.css"),
            font_config=self.fonts,
            url_fetcher=self.fetcher,
        )
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["one_line"] = _one_line
        self.templates.filters["lines"] = _lines
        self.base_url = TEMPLATES.as_uri() + "/"
        defaults = CSS(string=_TEMPLATE_DEFAULTS)

        class TemplateHTML(HTML):
            def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
                return [defaults]

        class TemplateTree(TemplateHTML):
            """A document already parsed (see _Engine.parse): HTML.__init__ would parse it
            again with the HTML5 parser."""

            def __init__(self, root: Any, base_url: str, url_fetcher: Any) -> None:
                import cssselect2

                self.base_url = base_url
                self.url_fetcher = url_fetcher
                self.media_type = "print"
                self.wrapper_element = cssselect2.ElementWrapper.from_html_root(
                    root, content_language=None
                )
                self.etree_element = self.wrapper_element.etree_element

        self.document_class = TemplateHTML
        self.tree_class = TemplateTree
        self.styles: dict[tuple[str, str], Any] = {}
        _embed_whole(frozenset((TEMPLATES / "fonts" / face).read_bytes() for face in BUNDLED_FONTS))
        _remember_compression()

    def style(self, color: str, language: str) -> Any:
        from weasyprint import CSS

        key = (color, language)
        if key not in self.styles:
            if len(self.styles) > 256:  # a few colours and three languages in practice
                self.styles.clear()
            self.styles[key] = CSS(string=_page_style(color, language))
        return self.styles[key]

    def html(self, sheet: Sheet) -> str:
        template, context = _TEMPLATE_OF[type(sheet)]
        return self.templates.get_template(template).render(**context(sheet))  # type: ignore[operator]

    def parse(self, html: str) -> Any:
        """The document WeasyPrint sets from the HTML. The templates write XHTML that an HTML
        parser reads as the same tree (tests/formats/test_pdf_documents.py checks it), so the
        C XML parser reads it, ten times faster than WeasyPrint's pure-Python HTML5 parser;
        that one only reads what XML cannot carry (control characters in a name, say)."""
        from xml.etree import ElementTree

        try:
            root = ElementTree.fromstring(html)
        except ElementTree.ParseError:
            return self.document_class(
                string=html, base_url=self.base_url, url_fetcher=self.fetcher
            )
        return self.tree_class(root, self.base_url, self.fetcher)

    def pdf(self, sheet: Sheet, facturx_xml: bytes | None = None) -> bytes:
        from weasyprint import Attachment

        meta = _metadata(sheet)
        document = self.parse(self.html(sheet)).render(
            stylesheets=[self.css, self.style(sheet.branding.color, meta.language)],
            font_config=self.fonts,
        )
        info = document.metadata
        info.title = meta.title
        info.authors = [meta.author]
        info.description = meta.subject
        info.generator = PRODUCER
        info.created = info.modified = meta.w3c_date
        info.lang = meta.language
        info.keywords = []
        options: dict[str, Any] = {"pdf_identifier": meta.identifier.encode()}
        if facturx_xml is None:
            return document.write_pdf(**options)
        moment = datetime(meta.day.year, meta.day.month, meta.day.day, tzinfo=UTC)
        options["pdf_variant"] = "pdf/a-3b"
        options["attachments"] = [
            Attachment(
                string=facturx_xml,
                name=FACTURX_FILE_NAME,
                description="Factur-X invoice (EN 16931)",
                created=moment,
                modified=moment,
                relationship="Alternative",
            )
        ]
        return document.write_pdf(finisher=_add_facturx_xmp, **options)


_engine: _Engine | None = None
_engine_lock = threading.Lock()


@atexit.register
def _drop_engine() -> None:
    # Before the interpreter tears down cffi: WeasyPrint's font configuration cleans up its
    # fontconfig objects when it is collected.
    global _engine
    _engine = None


def _the_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def document_html(sheet: Sheet) -> str:
    """The HTML a document is set from (what the tests and a browser preview can read)."""
    with _engine_lock:
        return _the_engine().html(sheet)


def render(sheet: Sheet) -> bytes:
    """The PDF of an invoice, credit note, debit note, statement or dunning letter."""
    # WeasyPrint's font configuration is not meant to be shared by threads at once; the work
    # holds the GIL anyway, so threads gain nothing by overlapping. Processes do: render_many.
    with _engine_lock:
        return _the_engine().pdf(sheet)


def render_facturx(sheet: CommercialSheet, cii_xml: bytes) -> bytes:
    """A Factur-X / ZUGFeRD invoice: the PDF of an issued invoice as PDF/A-3b with its CII XML
    embedded as factur-x.xml (relationship Alternative) and the Factur-X XMP metadata of the
    EN 16931 profile."""
    if sheet.draft:
        raise ValueError("a draft is never a Factur-X invoice")
    with _engine_lock:
        return _the_engine().pdf(sheet, facturx_xml=cii_xml)


_FACTURX_XMP = f"""<rdf:Description rdf:about=""
 xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/"
 xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#"
 xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">
<pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType="Resource">
<pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>
<pdfaSchema:namespaceURI>{FACTURX_NAMESPACE}</pdfaSchema:namespaceURI>
<pdfaSchema:prefix>fx</pdfaSchema:prefix>
<pdfaSchema:property><rdf:Seq>
{{properties}}
</rdf:Seq></pdfaSchema:property>
</rdf:li></rdf:Bag></pdfaExtension:schemas>
</rdf:Description>
<rdf:Description rdf:about="" xmlns:fx="{FACTURX_NAMESPACE}">
<fx:DocumentType>INVOICE</fx:DocumentType>
<fx:DocumentFileName>{FACTURX_FILE_NAME}</fx:DocumentFileName>
<fx:Version>1.0</fx:Version>
<fx:ConformanceLevel>{FACTURX_LEVEL}</fx:ConformanceLevel>
</rdf:Description>
"""
_FACTURX_PROPERTIES = (
    ("DocumentFileName", "The name of the embedded XML document"),
    ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE"),
    ("Version", "The version of the standard the embedded XML document follows"),
    ("ConformanceLevel", "The conformance level (profile) of the embedded XML document"),
)


def _facturx_xmp() -> bytes:
    properties = "\n".join(
        '<rdf:li rdf:parseType="Resource">'
        f"<pdfaProperty:name>{name}</pdfaProperty:name>"
        "<pdfaProperty:valueType>Text</pdfaProperty:valueType>"
        "<pdfaProperty:category>external</pdfaProperty:category>"
        f"<pdfaProperty:description>{text}</pdfaProperty:description></rdf:li>"
        for name, text in _FACTURX_PROPERTIES
    )
    return _FACTURX_XMP.replace("{properties}", properties).encode()


def _add_facturx_xmp(document: Any, pdf: Any) -> None:
    """Put the Factur-X properties into the XMP packet WeasyPrint wrote for PDF/A-3, inside
    its one rdf:RDF element (XMP allows only one)."""
    pointer = pdf.catalog["Metadata"]
    if isinstance(pointer, bytes):
        pointer = pointer.decode()
    reference = int(str(pointer).split()[0])
    stream = pdf.objects[reference]
    packet = b"".join(
        part if isinstance(part, bytes) else str(part).encode() for part in stream.stream
    )
    closing = b"</rdf:RDF>"
    at = packet.rfind(closing)
    if at < 0:  # pragma: no cover - WeasyPrint always writes one
        raise RuntimeError("the PDF/A metadata has no rdf:RDF element")
    stream.stream = [packet[:at] + _facturx_xmp() + packet[at:]]
    # WeasyPrint lists the attachment in /AF once from the name tree and once as a file
    # specification; it is one associated file.
    if "AF" in pdf.catalog:
        unique = list(dict.fromkeys(pdf.catalog["AF"]))
        pdf.catalog["AF"].clear()
        pdf.catalog["AF"].extend(unique)


# -- many at once --------------------------------------------------------------------------------


def _render_job(job: tuple[Sheet, bytes | None]) -> bytes:
    sheet, xml = job
    if xml is None:
        return render(sheet)
    assert isinstance(sheet, CommercialSheet)
    return render_facturx(sheet, xml)


def _render_batch(jobs: list[tuple[Sheet, bytes | None]]) -> tuple[list[bytes], float]:
    """The documents of one chunk, and the CPU seconds the worker spent on them."""
    started = time.process_time()
    contents = [_render_job(job) for job in jobs]
    return contents, time.process_time() - started


FORK_SERVER_MAIN = "TALLYBOOK_FORK_SERVER_MAIN"


def _name_main_for_fork_server() -> None:
    """Tell the fork server (in the environment it inherits) the caller's main module, a
    script or a command, with the arguments and import path a worker imports it with: every
    worker imports it before its first job unless the server has (a command's imports take
    a second). CPython 3.11 means to do this for a preloaded "__main__" but never passes the
    server the path."""
    import json
    from multiprocessing import spawn

    data = spawn.get_preparation_data("renderer")
    if "init_main_from_path" not in data:
        os.environ.pop(FORK_SERVER_MAIN, None)
        return
    os.environ[FORK_SERVER_MAIN] = json.dumps(
        {key: data[key] for key in ("init_main_from_path", "sys_argv", "sys_path")}
    )


def warm_up() -> None:
    """Set up this process's renderer and set one small invoice and its Factur-X, so that
    the fonts, templates and code paths the first real document needs are loaded."""
    from tallybook.core.einvoice import LineFacts, PostalAddress, build_document

    seller = Party(
        "Tallybook", PostalAddress("Street 1", None, "Berlin", "10117", None, "DE"), "DE1"
    )
    document = build_document(
        kind=DocumentKind.INVOICE,
        number="WARM-UP-1",
        issue_date=date(2026, 1, 1),
        currency="EUR",
        seller=seller,
        buyer=seller,
        lines=[LineFacts("Warm-up", Decimal(1), 100, tax_minor=19, tax_percent=Decimal(19))],
        expected_total_minor=119,
        due_date=date(2026, 1, 31),
        payment_account=PaymentAccount("DE44500105175407324931", None, "Tallybook"),
    )
    render(CommercialSheet(document))
    render_facturx(CommercialSheet(document, "de"), b"<warm-up/>")


def render_many(
    jobs: Iterable[Sheet | tuple[CommercialSheet, bytes]],
    *,
    workers: int | None = None,
    chunk: int = 8,
    usage: dict[str, float] | None = None,
) -> list[bytes]:
    """Render many documents across processes (one WeasyPrint per core), in order.

    A job is a sheet (its PDF) or (sheet, CII XML) for a Factur-X invoice. Jobs are handed
    out in chunks as they come, so a generator that loads them from the database keeps
    loading while the first chunks render. One worker renders in this process. `usage`, if
    given, receives the CPU seconds the workers spent rendering ("render_cpu_seconds").
    """
    count = workers if workers is not None else (os.cpu_count() or 1)
    prepared = (job if isinstance(job, tuple) else (job, None) for job in jobs)
    if count <= 1:
        contents, seconds = _render_batch(list(prepared))
        if usage is not None:
            usage["render_cpu_seconds"] = seconds
        return contents
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Not forked from the caller, which may hold database connections and threads: from a
    # fork server that has set up and warmed the renderer once (tallybook.formats.
    # pdf_forkserver), so each worker starts ready to render.
    _name_main_for_fork_server()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["weasyprint", "jinja2", "tallybook.formats.pdf_forkserver"])
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = []
        batch: list[tuple[Sheet, bytes | None]] = []
        for job in prepared:
            batch.append(job)
            if len(batch) == chunk:
                futures.append(pool.submit(_render_batch, batch))
                batch = []
        if batch:
            futures.append(pool.submit(_render_batch, batch))
        results = [future.result() for future in futures]
    if usage is not None:
        usage["render_cpu_seconds"] = sum(seconds for _, seconds in results)
    return [content for contents, _ in results for content in contents]


def pay_by(letter_date: date, days: int = 7) -> date:
    """The day a dunning letter asks to be paid by."""
    return letter_date + timedelta(days=days)


def file_name(*parts: str, suffix: str = ".pdf") -> str:
    """A safe file name for a document: letters, digits, dots, dashes and underscores."""
    stem = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("_") for part in parts if part)
    return (stem or "document") + suffix
