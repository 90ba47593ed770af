"""Pre-flight verification: catch a draft invoice's mistakes before the customer does.

A draft is checked against the customer's purchase order, contracts, approved time sheets and
service reports, the customer's other invoices, and what is due but not billed. Each mistake is
a `Finding` that says what is wrong, where (invoice, line, PO, time entries...), why it matters,
and what was expected against what the draft has, in words a billing specialist can act on.

Pure: frozen values in, findings out; no I/O, and the clock is the `as_of` parameter.

Severities. *Blocking*: the invoice as it stands would be wrong or rejected by the customer's
accounts payable (over-billing, billing what was not ordered or agreed); issuing it needs the
mistake fixed or a manager's approved override. *Warning*: worth a look but may be right
(under-billing, revenue left unbilled, an unusual total): it never stops an invoice.

    check               family      severity  the mistake
    po_missing          po          blocking  customer requires a PO, the draft quotes none
                                    warning   an open PO covers the draft but is not quoted
    po_unknown          po          warning   the quoted PO number is not on file
    po_closed           po          blocking  the PO is closed or cancelled
    po_expired          po          blocking  a billed day is outside the PO's validity
    po_currency         po          blocking  PO and invoice currencies differ
    po_price            po          blocking  a line's unit price differs from its PO line
    po_unlisted_line    po          warning   a line matches no line of the PO
    po_quantity         po          blocking  billed quantity above the PO line's remainder
    po_ceiling          po          blocking  net amount above what is left of the ceiling
    contract_price      contract    blocking  unit price differs from the contracted version
    contract_dates      contract    blocking  billed outside the contract's dates
    contract_discount   contract    blocking  a discount the contract does not allow
    time_hours          time        blocking  billed hours above approved hours (or time
                                              not approved); warning when below
    service_report      time        blocking  a service billed without (enough) reports
    duplicate_charge    duplicate   blocking  same customer, product, period billed twice
    duplicate_po_line   duplicate   blocking  a PO line billed twice for the same period
    near_duplicate      duplicate   warning   same customer and total within N days
    unbilled_subscription leakage   warning   a subscription period due and not invoiced
    unbilled_charge     leakage     warning   a due contract or one-off charge not invoiced
    unbilled_milestone  leakage     warning   a completed milestone not invoiced
    unbilled_usage      leakage     warning   usage events not billed (late or quarantined)
    unbilled_time       leakage     warning   approved time entries not billed
    anomaly             anomaly     warning   total far from the customer's trailing average
                                              (median of the last 6 issued invoices)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from tallybook.core.money import currency_exponent, format_minor

__all__ = [
    "CHECKS",
    "Check",
    "ContractPrice",
    "ContractTerms",
    "Discount",
    "DraftInvoice",
    "DraftLine",
    "DueItem",
    "Finding",
    "InvoiceContext",
    "OtherInvoice",
    "OtherLine",
    "Period",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "ServiceReport",
    "Severity",
    "TimeEntry",
    "VerificationSettings",
    "ordered",
    "Where",
    "unbilled_findings",
    "verify_invoice",
]


class Severity(StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


@dataclass(frozen=True)
class Check:
    code: str
    family: str
    title: str


CHECKS: dict[str, Check] = {
    c.code: c
    for c in (
        Check("po_missing", "po", "PO required but missing"),
        Check("po_unknown", "po", "PO number not on file"),
        Check("po_closed", "po", "PO closed or cancelled"),
        Check("po_expired", "po", "PO expired"),
        Check("po_currency", "po", "currency differs from the PO"),
        Check("po_price", "po", "price differs from the PO"),
        Check("po_unlisted_line", "po", "line not on the PO"),
        Check("po_quantity", "po", "quantity above the PO's remaining quantity"),
        Check("po_ceiling", "po", "total above the PO ceiling"),
        Check("contract_price", "contract", "price differs from the contracted price"),
        Check("contract_dates", "contract", "billed outside the contract's dates"),
        Check("contract_discount", "contract", "discount not in the contract"),
        Check("time_hours", "time", "billed hours differ from approved time"),
        Check("service_report", "time", "service billed without a service report"),
        Check("duplicate_charge", "duplicate", "same product and period billed twice"),
        Check("duplicate_po_line", "duplicate", "PO line billed twice"),
        Check("near_duplicate", "duplicate", "near-duplicate invoice"),
        Check("unbilled_subscription", "leakage", "subscription period not invoiced"),
        Check("unbilled_charge", "leakage", "due charge not invoiced"),
        Check("unbilled_milestone", "leakage", "completed milestone not invoiced"),
        Check("unbilled_usage", "leakage", "usage events not billed"),
        Check("unbilled_time", "leakage", "approved time not billed"),
        Check("anomaly", "anomaly", "total unlike the customer's usual"),
    )
}

# Line kinds that correct an earlier invoice rather than bill something anew: a credit for unused
# time and the re-charge on new terms legitimately share a product and a period.
CORRECTION_KINDS = frozenset({"adjustment", "usage_adjustment"})
RECURRING_KINDS = frozenset({"subscription", "usage", "commitment_true_up"})


# -- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Days [start, end): `end` is the first day after the period."""

    start: date
    end: date

    @classmethod
    def day(cls, on: date) -> Period:
        return cls(on, on + timedelta(days=1))

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1) if self.end > self.start else self.start

    def overlaps(self, other: Period) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, on: date) -> bool:
        return self.start <= on < self.end

    def text(self) -> str:
        if self.last_day == self.start:
            return self.start.isoformat()
        return f"{self.start.isoformat()} to {self.last_day.isoformat()}"


@dataclass(frozen=True)
class DraftLine:
    """One invoice line as verification sees it. `period` is the service period in the
    customer's days; `time_entry_ids` / `service_report_ids` name what the line says it bills;
    `bills_time` marks a line whose quantity is hours worked."""

    id: str
    position: int
    description: str
    quantity: Decimal
    amount: Decimal
    unit_price: Decimal | None = None
    kind: str = "manual"
    product_id: str | None = None
    product_code: str | None = None
    period: Period | None = None
    subscription_id: str | None = None
    charge_id: str | None = None
    contract_id: str | None = None
    usage_key: str | None = None
    bills_time: bool = False
    time_entry_ids: tuple[str, ...] = ()
    service_report_ids: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"line {self.position} ({self.description})"


@dataclass(frozen=True)
class Discount:
    key: str
    name: str
    kind: str  # percent | fixed
    value: Decimal
    coupon_code: str | None = None


@dataclass(frozen=True)
class DraftInvoice:
    """The invoice under verification (a draft, or an issued invoice checked again)."""

    id: str
    customer_id: str
    customer_name: str
    currency: str
    billing_date: date
    subtotal_minor: int
    total_minor: int
    lines: tuple[DraftLine, ...]
    discount_minor: int = 0
    number: str | None = None
    status: str = "draft"
    po_number: str | None = None
    po_required: bool = False
    discounts: tuple[Discount, ...] = ()

    @property
    def net_minor(self) -> int:
        """Before tax, after discounts: what a PO's amounts are stated in."""
        return self.subtotal_minor - self.discount_minor

    @property
    def label(self) -> str:
        return f"invoice {self.number}" if self.number else f"draft {self.id}"


@dataclass(frozen=True)
class PurchaseOrderLine:
    id: str
    position: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    consumed_quantity: Decimal = Decimal(0)
    product_id: str | None = None

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.consumed_quantity


@dataclass(frozen=True)
class PurchaseOrder:
    id: str
    number: str
    currency: str
    valid_from: date
    lines: tuple[PurchaseOrderLine, ...] = ()
    valid_to: date | None = None  # last valid day; None: open-ended
    ceiling_minor: int | None = None
    consumed_minor: int = 0
    status: str = "open"

    def valid_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


@dataclass(frozen=True)
class ContractPrice:
    """A contracted price version: valid_from .. valid_to (inclusive; None: open-ended)."""

    product_id: str
    unit_price: Decimal
    valid_from: date
    valid_to: date | None = None

    def valid_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


@dataclass(frozen=True)
class ContractTerms:
    """A contract's dates (end inclusive), price versions and the discounts it allows: up to
    `discount_percent_max` percent, or the coupon codes listed. Neither: no discount allowed."""

    id: str
    reference: str
    start_date: date
    end_date: date | None = None
    prices: tuple[ContractPrice, ...] = ()
    discount_percent_max: Decimal | None = None
    allowed_coupon_codes: tuple[str, ...] = ()

    def covers(self, on: date) -> bool:
        return self.start_date <= on and (self.end_date is None or on <= self.end_date)

    def prices_product(self, product_id: str) -> bool:
        return any(p.product_id == product_id for p in self.prices)

    def price_on(self, product_id: str, on: date) -> ContractPrice | None:
        versions = [p for p in self.prices if p.product_id == product_id and p.valid_on(on)]
        return max(versions, key=lambda p: p.valid_from) if versions else None

    @property
    def dates_text(self) -> str:
        end = self.end_date.isoformat() if self.end_date else "open-ended"
        return f"{self.start_date.isoformat()} to {end}"


@dataclass(frozen=True)
class TimeEntry:
    id: str
    work_date: date
    hours: Decimal
    status: str  # draft | approved | rejected
    product_id: str | None = None
    worker: str = ""
    reference: str | None = None
    billed_invoice_id: str | None = None


@dataclass(frozen=True)
class ServiceReport:
    id: str
    product_id: str
    service_date: date
    quantity: Decimal
    status: str  # draft | approved
    reference: str | None = None
    billed_invoice_id: str | None = None


@dataclass(frozen=True)
class OtherLine:
    """A line of another invoice of the customer, for the duplicate checks."""

    id: str
    position: int
    amount: Decimal
    kind: str = "manual"
    product_id: str | None = None
    period: Period | None = None
    subscription_id: str | None = None
    usage_key: str | None = None
    time_entry_ids: tuple[str, ...] = ()
    purchase_order_line_id: str | None = None  # what it consumed (issued) or would match
    quantity: Decimal | None = None


@dataclass(frozen=True)
class OtherInvoice:
    """Another invoice of the same customer: issued (not void, not fully credited) or draft."""

    id: str
    status: str
    currency: str
    total_minor: int
    day: date  # issue date, or billing date of a draft
    number: str | None = None
    po_number: str | None = None
    lines: tuple[OtherLine, ...] = ()

    @property
    def label(self) -> str:
        return f"invoice {self.number}" if self.number else f"draft {self.id}"


@dataclass(frozen=True)
class InvoiceContext:
    """Everything a draft is checked against, for its customer."""

    purchase_orders: tuple[PurchaseOrder, ...] = ()
    contracts: tuple[ContractTerms, ...] = ()
    time_entries: tuple[TimeEntry, ...] = ()
    service_reports: tuple[ServiceReport, ...] = ()
    # Products the organisation keeps service reports for: billing one needs a report.
    report_products: frozenset[str] = frozenset()
    other_invoices: tuple[OtherInvoice, ...] = ()


@dataclass(frozen=True)
class VerificationSettings:
    """Organisation settings: `anomaly_percent` None turns the anomaly check off."""

    anomaly_percent: Decimal | None = Decimal(50)
    near_duplicate_days: int = 7
    anomaly_history: int = 6  # trailing issued invoices whose median is the usual total
    anomaly_min_history: int = 3  # fewer than this: no average worth comparing with


@dataclass(frozen=True)
class DueItem:
    """Something billable that is due and on no invoice (the service finds them)."""

    kind: str  # subscription | charge | milestone | usage | time
    id: str
    customer_id: str | None  # None: usage events of a customer not created yet
    customer_name: str
    description: str
    due_on: date
    currency: str | None = None
    amount: Decimal | None = None
    contract_id: str | None = None
    contract_reference: str | None = None
    time_entry_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Where:
    """Where a finding points: any of these may be set."""

    customer_id: str | None = None
    invoice_id: str | None = None
    invoice_number: str | None = None
    line_id: str | None = None
    line_position: int | None = None
    purchase_order_id: str | None = None
    purchase_order_number: str | None = None
    purchase_order_line_id: str | None = None
    purchase_order_line_position: int | None = None
    contract_id: str | None = None
    contract_reference: str | None = None
    time_entry_ids: tuple[str, ...] = ()
    service_report_ids: tuple[str, ...] = ()
    other_invoice_id: str | None = None
    other_invoice_number: str | None = None
    other_line_id: str | None = None
    subject_kind: str | None = None  # subscription | charge | milestone | usage | time
    subject_id: str | None = None

    # Numbers and positions are for people; ids say which thing it is.
    _IDENTITY = (
        "customer_id",
        "invoice_id",
        "line_id",
        "purchase_order_id",
        "purchase_order_line_id",
        "contract_id",
        "time_entry_ids",
        "service_report_ids",
        "other_invoice_id",
        "other_line_id",
        "subject_kind",
        "subject_id",
    )

    def as_dict(self) -> dict[str, object]:
        result: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, ()):
                continue
            result[f.name] = list(value) if isinstance(value, tuple) else value
        return result

    def identity(self) -> str:
        parts = []
        for name in self._IDENTITY:
            value = getattr(self, name)
            if value in (None, ()):
                continue
            text = ",".join(sorted(value)) if isinstance(value, tuple) else str(value)
            parts.append(f"{name}={text}")
        return ";".join(parts)

    def text(self) -> str:
        parts = []
        if self.invoice_id:
            parts.append(
                f"invoice {self.invoice_number}"
                if self.invoice_number
                else f"draft {self.invoice_id}"
            )
        if self.line_position is not None:
            parts.append(f"line {self.line_position}")
        if self.purchase_order_number:
            po = f"PO {self.purchase_order_number}"
            if self.purchase_order_line_position is not None:
                po += f" line {self.purchase_order_line_position}"
            parts.append(po)
        if self.contract_reference:
            parts.append(f"contract {self.contract_reference}")
        if self.time_entry_ids:
            parts.append(f"{len(self.time_entry_ids)} time entries")
        if self.service_report_ids:
            parts.append(f"{len(self.service_report_ids)} service reports")
        if self.other_invoice_id:
            parts.append(
                "also on "
                + (
                    f"invoice {self.other_invoice_number}"
                    if self.other_invoice_number
                    else f"draft {self.other_invoice_id}"
                )
            )
        if self.subject_kind and self.subject_id:
            parts.append(f"{self.subject_kind} {self.subject_id}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    what: str
    where: Where
    why: str
    expected: str | None = None
    actual: str | None = None

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.BLOCKING

    @property
    def key(self) -> str:
        """The same mistake found again has the same key: one discrepancy, not a new one."""
        text = f"{self.check}|{self.where.identity()}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    @property
    def title(self) -> str:
        return CHECKS[self.check].title

    @property
    def family(self) -> str:
        return CHECKS[self.check].family


# -- helpers ---------------------------------------------------------------------------------------


def _price(value: Decimal, currency: str) -> str:
    """A unit price as people write it: at least the currency's places, never rounded."""
    places = currency_exponent(currency)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        return format(value.normalize(), "f")
    return f"{value:.{places}f}"


def _qty(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _same(a: Decimal, b: Decimal) -> bool:
    return a.compare(b) == 0


def _service_days(invoice: DraftInvoice, line: DraftLine) -> Period:
    return line.period or Period.day(invoice.billing_date)


def _where(invoice: DraftInvoice, line: DraftLine | None = None, **extra: object) -> Where:
    return Where(
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        invoice_number=invoice.number,
        line_id=line.id if line else None,
        line_position=line.position if line else None,
        **extra,  # type: ignore[arg-type]
    )


def _po_where(
    invoice: DraftInvoice,
    po: PurchaseOrder,
    line: DraftLine | None = None,
    po_line: PurchaseOrderLine | None = None,
) -> Where:
    return _where(
        invoice,
        line,
        purchase_order_id=po.id,
        purchase_order_number=po.number,
        purchase_order_line_id=po_line.id if po_line else None,
        purchase_order_line_position=po_line.position if po_line else None,
    )


def ordered(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Blocking first, then by check and place; one finding per key."""
    unique: dict[str, Finding] = {}
    for finding in findings:
        unique.setdefault(finding.key, finding)
    return tuple(
        sorted(
            unique.values(),
            key=lambda f: (
                f.severity is not Severity.BLOCKING,
                f.check,
                f.where.line_position if f.where.line_position is not None else -1,
                f.where.identity(),
            ),
        )
    )


# -- purchase orders -------------------------------------------------------------------------------


def match_po_line(line: DraftLine, po: PurchaseOrder) -> PurchaseOrderLine | None:
    """The PO line an invoice line bills: same product, else same description; among several,
    the one at the same unit price, then one with something left, then the first."""
    if line.product_id:
        candidates = [p for p in po.lines if p.product_id == line.product_id]
    else:
        candidates = []
    if not candidates:
        wanted = line.description.strip().casefold()
        candidates = [p for p in po.lines if p.description.strip().casefold() == wanted]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda p: (
            not (line.unit_price is not None and _same(p.unit_price, line.unit_price)),
            p.remaining_quantity <= 0,
            p.position,
            p.id,
        ),
    )


def _billable(line: DraftLine) -> bool:
    return line.kind not in CORRECTION_KINDS and line.amount > 0


def _check_purchase_order(
    invoice: DraftInvoice, context: InvoiceContext
) -> tuple[list[Finding], PurchaseOrder | None, dict[str, PurchaseOrderLine]]:
    """The PO checks, the PO the draft quotes and the PO line each draft line bills."""
    findings: list[Finding] = []
    lines = [line for line in invoice.lines if _billable(line)]
    if not invoice.po_number:
        if invoice.po_required:
            findings.append(
                Finding(
                    "po_missing",
                    Severity.BLOCKING,
                    f"{invoice.label} has no purchase order number",
                    _where(invoice),
                    f"{invoice.customer_name} requires a purchase order number on every "
                    "invoice; their accounts payable rejects invoices without one",
                    expected="a purchase order number",
                    actual="none",
                )
            )
            return findings, None, {}
        covering = [
            po
            for po in context.purchase_orders
            if po.status == "open"
            and po.currency == invoice.currency
            and po.valid_on(invoice.billing_date)
            and lines
            and all(match_po_line(line, po) is not None for line in lines)
        ]
        if covering:
            po = min(covering, key=lambda p: (p.valid_from, p.number))
            findings.append(
                Finding(
                    "po_missing",
                    Severity.WARNING,
                    f"{invoice.label} quotes no purchase order, but open PO {po.number} "
                    "covers everything it bills",
                    _po_where(invoice, po),
                    "the customer ordered these under that PO and will look for its number",
                    expected=po.number,
                    actual="none",
                )
            )
        return findings, None, {}
    wanted = invoice.po_number.strip().casefold()
    po = next((p for p in context.purchase_orders if p.number.strip().casefold() == wanted), None)
    if po is None:
        findings.append(
            Finding(
                "po_unknown",
                Severity.WARNING,
                f"purchase order {invoice.po_number} is not on file for {invoice.customer_name}",
                _where(invoice),
                "without the PO on file its prices, quantities and ceiling cannot be checked; "
                "check the number with the customer or record the PO",
                expected="a purchase order on file",
                actual=invoice.po_number,
            )
        )
        return findings, None, {}
    if po.status != "open":
        findings.append(
            Finding(
                "po_closed",
                Severity.BLOCKING,
                f"purchase order {po.number} is {po.status}",
                _po_where(invoice, po),
                f"the customer no longer accepts invoices against a {po.status} PO; ask them "
                "for a new one",
                expected="open",
                actual=po.status,
            )
        )
    if po.currency != invoice.currency:
        findings.append(
            Finding(
                "po_currency",
                Severity.BLOCKING,
                f"{invoice.label} is in {invoice.currency} but PO {po.number} is in {po.currency}",
                _po_where(invoice, po),
                "the customer pays against the PO in its currency; the amounts cannot be matched",
                expected=po.currency,
                actual=invoice.currency,
            )
        )
    outside: list[tuple[DraftLine | None, date]] = [
        (line, day)
        for line in lines
        for day in (_service_days(invoice, line).start, _service_days(invoice, line).last_day)
        if not po.valid_on(day)
    ]
    if not lines and not po.valid_on(invoice.billing_date):
        outside.append((None, invoice.billing_date))
    if outside:
        line, day = min(outside, key=lambda item: (item[1], item[0].position if item[0] else 0))
        until = po.valid_to.isoformat() if po.valid_to else "open-ended"
        early = day < po.valid_from
        findings.append(
            Finding(
                "po_expired",
                Severity.BLOCKING,
                (
                    f"{line.label if line else invoice.label} bills {day.isoformat()}, "
                    + (
                        f"before PO {po.number} starts ({po.valid_from.isoformat()})"
                        if early
                        else f"after PO {po.number} expired ({until})"
                    )
                ),
                _po_where(invoice, po, line),
                "the PO only covers work in its validity; the customer rejects the rest. Ask "
                "for an extension or a new PO",
                expected=f"{po.valid_from.isoformat()} to {until}",
                actual=day.isoformat(),
            )
        )
    matched: dict[str, PurchaseOrderLine] = {}
    billed: dict[str, Decimal] = defaultdict(Decimal)
    billed_lines: dict[str, list[DraftLine]] = defaultdict(list)
    for line in lines:
        po_line = match_po_line(line, po)
        if po_line is None:
            findings.append(
                Finding(
                    "po_unlisted_line",
                    Severity.WARNING,
                    f"{line.label} matches no line of PO {po.number}",
                    _po_where(invoice, po, line),
                    "the customer's accounts payable matches each invoice line to a PO line; "
                    "an unmatched line is queried or rejected",
                    expected="a PO line for this product",
                    actual=line.product_code or line.description,
                )
            )
            continue
        matched[line.id] = po_line
        billed[po_line.id] += line.quantity
        billed_lines[po_line.id].append(line)
        if line.unit_price is not None and not _same(line.unit_price, po_line.unit_price):
            findings.append(
                Finding(
                    "po_price",
                    Severity.BLOCKING,
                    f"{line.label} is priced {_price(line.unit_price, invoice.currency)} but "
                    f"PO {po.number} line {po_line.position} says "
                    f"{_price(po_line.unit_price, po.currency)}",
                    _po_where(invoice, po, line, po_line),
                    "the PO fixes the unit price; a different price fails the customer's "
                    "invoice matching",
                    expected=_price(po_line.unit_price, po.currency),
                    actual=_price(line.unit_price, invoice.currency),
                )
            )
    for po_line in po.lines:
        if po_line.id not in billed:
            continue
        quantity = billed[po_line.id]
        if quantity > po_line.remaining_quantity:
            first = billed_lines[po_line.id][0]
            findings.append(
                Finding(
                    "po_quantity",
                    Severity.BLOCKING,
                    f"{invoice.label} bills {_qty(quantity)} of PO {po.number} line "
                    f"{po_line.position} ({po_line.description}) but only "
                    f"{_qty(po_line.remaining_quantity)} of {_qty(po_line.quantity)} remain",
                    _po_where(invoice, po, first, po_line),
                    "billing more than was ordered is over-billing; the customer pays at most "
                    "the PO quantity",
                    expected=f"at most {_qty(po_line.remaining_quantity)}",
                    actual=_qty(quantity),
                )
            )
    if po.ceiling_minor is not None:
        left = po.ceiling_minor - po.consumed_minor
        if invoice.net_minor > left:
            findings.append(
                Finding(
                    "po_ceiling",
                    Severity.BLOCKING,
                    f"{invoice.label} comes to {format_minor(invoice.net_minor, invoice.currency)}"
                    f" before tax but only {format_minor(left, po.currency)} of PO {po.number}'s "
                    f"{format_minor(po.ceiling_minor, po.currency)} ceiling is left",
                    _po_where(invoice, po),
                    "the customer will not pay above the PO ceiling; ask for a PO increase or "
                    "bill the rest later",
                    expected=f"at most {format_minor(left, po.currency)}",
                    actual=format_minor(invoice.net_minor, invoice.currency),
                )
            )
    return findings, po, matched


# -- contracts -------------------------------------------------------------------------------------


def _check_contracts(invoice: DraftInvoice, context: InvoiceContext) -> list[Finding]:
    findings: list[Finding] = []
    contracts = {c.id: c for c in context.contracts}
    for line in invoice.lines:
        if not _billable(line):
            continue
        days = _service_days(invoice, line)
        explicit = contracts.get(line.contract_id) if line.contract_id else None
        if explicit is not None:
            candidates = [explicit]
        elif line.product_id:
            candidates = [c for c in context.contracts if c.prices_product(line.product_id)]
        else:
            candidates = []
        if not candidates:
            continue
        covering = [c for c in candidates if c.covers(days.start) and c.covers(days.last_day)]
        if not covering:
            contract = min(
                candidates, key=lambda c: (abs((c.start_date - days.start).days), c.reference)
            )
            findings.append(
                Finding(
                    "contract_dates",
                    Severity.BLOCKING,
                    f"{line.label} bills {days.text()}, outside contract {contract.reference} "
                    f"({contract.dates_text})",
                    _where(
                        invoice,
                        line,
                        contract_id=contract.id,
                        contract_reference=contract.reference,
                    ),
                    "work outside the contract's term has no agreed basis; renew the contract "
                    "or bill it on other terms the customer accepted",
                    expected=contract.dates_text,
                    actual=days.text(),
                )
            )
            continue
        if line.product_id is None or line.unit_price is None:
            continue
        priced = [c for c in covering if c.prices_product(line.product_id)]
        if not priced:
            continue
        contract = min(priced, key=lambda c: (c.start_date, c.reference))
        version = contract.price_on(line.product_id, days.start)
        where = _where(
            invoice, line, contract_id=contract.id, contract_reference=contract.reference
        )
        if version is None:
            findings.append(
                Finding(
                    "contract_price",
                    Severity.BLOCKING,
                    f"{line.label}: contract {contract.reference} has no price for "
                    f"{line.product_code or line.description} in force on "
                    f"{days.start.isoformat()}",
                    where,
                    "the contract prices this product, but not for this date; check which "
                    "price version applies",
                    expected="a contracted price version in force",
                    actual=_price(line.unit_price, invoice.currency),
                )
            )
        elif not _same(version.unit_price, line.unit_price):
            findings.append(
                Finding(
                    "contract_price",
                    Severity.BLOCKING,
                    f"{line.label} is priced {_price(line.unit_price, invoice.currency)} but "
                    f"contract {contract.reference} says "
                    f"{_price(version.unit_price, invoice.currency)} from "
                    f"{version.valid_from.isoformat()}",
                    where,
                    "the customer agreed to the contracted price; any other price is over- or "
                    "under-billing",
                    expected=_price(version.unit_price, invoice.currency),
                    actual=_price(line.unit_price, invoice.currency),
                )
            )
    findings += _check_discounts(invoice, context)
    return findings


def _check_discounts(invoice: DraftInvoice, context: InvoiceContext) -> list[Finding]:
    if not invoice.discounts:
        return []
    active = [c for c in context.contracts if c.covers(invoice.billing_date)]
    if not active:
        return []
    findings = []
    for discount in invoice.discounts:
        if discount.kind == "percent":
            percent = discount.value
        elif invoice.subtotal_minor > 0:
            percent = (
                discount.value.scaleb(currency_exponent(invoice.currency))
                / Decimal(invoice.subtotal_minor)
                * 100
            )
        else:
            continue
        code = (discount.coupon_code or discount.key or "").casefold()

        def allows(contract: ContractTerms, percent: Decimal = percent, code: str = code) -> bool:
            if code and code in {c.casefold() for c in contract.allowed_coupon_codes}:
                return True
            return contract.discount_percent_max is not None and percent <= (
                contract.discount_percent_max
            )

        if any(allows(c) for c in active):
            continue
        contract = min(active, key=lambda c: (c.start_date, c.reference))
        if contract.discount_percent_max is not None:
            allowed = f"at most {_qty(contract.discount_percent_max)}%"
        else:
            allowed = "no discount"
        if contract.allowed_coupon_codes:
            allowed += " or coupons " + ", ".join(contract.allowed_coupon_codes)
        shown = (
            f"{_qty(discount.value)}%"
            if discount.kind == "percent"
            else f"{_price(discount.value, invoice.currency)} {invoice.currency} "
            f"({percent.quantize(Decimal('0.01'))}%)"
        )
        findings.append(
            Finding(
                "contract_discount",
                Severity.BLOCKING,
                f"discount {discount.name} ({shown}) is not in contract {contract.reference}",
                _where(invoice, contract_id=contract.id, contract_reference=contract.reference),
                "the contract sets the discounts the customer gets; an extra discount gives "
                "away revenue nobody agreed to",
                expected=allowed,
                actual=shown,
            )
        )
    return findings


# -- time sheets and service reports ---------------------------------------------------------------


def _check_time(invoice: DraftInvoice, context: InvoiceContext) -> list[Finding]:
    findings: list[Finding] = []
    entries = {e.id: e for e in context.time_entries}
    time_lines = [line for line in invoice.lines if _billable(line) and line.bills_time]
    grouped: dict[tuple[str | None, Period | None], list[DraftLine]] = defaultdict(list)
    for line in time_lines:
        if line.time_entry_ids:
            named = [entries[i] for i in line.time_entry_ids if i in entries]
            missing = [i for i in line.time_entry_ids if i not in entries]
            unapproved = [e for e in named if e.status != "approved"]
            approved_hours = sum((e.hours for e in named if e.status == "approved"), Decimal(0))
            findings += _hours_finding(
                invoice,
                line,
                line.quantity,
                approved_hours,
                tuple(sorted(line.time_entry_ids)),
                unapproved=[e.id for e in unapproved] + missing,
            )
        else:
            grouped[(line.product_id, line.period or Period.day(invoice.billing_date))].append(line)
    named_here = {i for line in time_lines for i in line.time_entry_ids}
    for (product_id, period), lines in sorted(
        grouped.items(), key=lambda item: min(line.position for line in item[1])
    ):
        assert period is not None
        eligible = [
            e
            for e in context.time_entries
            if e.status == "approved"
            and e.id not in named_here
            and e.product_id == product_id
            and period.contains(e.work_date)
            and e.billed_invoice_id in (None, invoice.id)
        ]
        billed = sum((line.quantity for line in lines), Decimal(0))
        approved = sum((e.hours for e in eligible), Decimal(0))
        first = min(lines, key=lambda line: line.position)
        findings += _hours_finding(
            invoice, first, billed, approved, tuple(sorted(e.id for e in eligible)), period=period
        )
    return findings


def _hours_finding(
    invoice: DraftInvoice,
    line: DraftLine,
    billed: Decimal,
    approved: Decimal,
    entry_ids: tuple[str, ...],
    *,
    unapproved: Sequence[str] = (),
    period: Period | None = None,
) -> list[Finding]:
    where = _where(invoice, line, time_entry_ids=entry_ids)
    span = f" for {period.text()}" if period else ""
    if unapproved:
        return [
            Finding(
                "time_hours",
                Severity.BLOCKING,
                f"{line.label} bills {len(unapproved)} time entries that are not approved",
                _where(invoice, line, time_entry_ids=tuple(sorted(unapproved))),
                "only approved time may be billed: have the time sheet approved or take the "
                "entries off the line",
                expected=f"{_qty(approved)} approved hours",
                actual=f"{_qty(billed)} hours billed",
            )
        ]
    if billed > approved:
        return [
            Finding(
                "time_hours",
                Severity.BLOCKING,
                f"{line.label} bills {_qty(billed)} hours but the approved time sheets show "
                f"{_qty(approved)}{span}",
                where,
                "three-way match: billed hours must equal approved time-sheet hours; billing "
                "more is over-billing",
                expected=f"{_qty(approved)} hours",
                actual=f"{_qty(billed)} hours",
            )
        ]
    if billed < approved:
        return [
            Finding(
                "time_hours",
                Severity.WARNING,
                f"{line.label} bills {_qty(billed)} hours but the approved time sheets show "
                f"{_qty(approved)}{span}",
                where,
                "three-way match: approved hours left off the invoice are revenue not billed",
                expected=f"{_qty(approved)} hours",
                actual=f"{_qty(billed)} hours",
            )
        ]
    return []


def _check_service_reports(invoice: DraftInvoice, context: InvoiceContext) -> list[Finding]:
    findings = []
    reports = {r.id: r for r in context.service_reports}
    for line in invoice.lines:
        if not _billable(line) or line.kind in RECURRING_KINDS or line.bills_time:
            continue
        if not line.service_report_ids and line.product_id not in context.report_products:
            continue
        if line.service_report_ids:
            backing = [reports[i] for i in line.service_report_ids if i in reports]
            backing = [r for r in backing if r.status == "approved"]
        else:
            days = line.period or Period(date.min, invoice.billing_date + timedelta(days=1))
            backing = [
                r
                for r in context.service_reports
                if r.status == "approved"
                and r.product_id == line.product_id
                and days.contains(r.service_date)
                and r.billed_invoice_id in (None, invoice.id)
            ]
        reported = sum((r.quantity for r in backing), Decimal(0))
        if reported >= line.quantity:
            continue
        ids = tuple(sorted(r.id for r in backing))
        if not backing:
            what = f"{line.label} bills a service with no approved service report"
        else:
            what = (
                f"{line.label} bills {_qty(line.quantity)} but approved service reports "
                f"cover {_qty(reported)}"
            )
        findings.append(
            Finding(
                "service_report",
                Severity.BLOCKING,
                what,
                _where(invoice, line, service_report_ids=ids),
                "a service is billed on the evidence of a signed-off service report; without "
                "one the customer can refuse to pay",
                expected=f"reports for {_qty(line.quantity)}",
                actual=f"reports for {_qty(reported)}",
            )
        )
    return findings


# -- duplicates ------------------------------------------------------------------------------------


def _same_charge(a: DraftLine, b: DraftLine | OtherLine, b_period: Period | None) -> bool:
    if a.product_id is None or a.product_id != b.product_id:
        return False
    if a.time_entry_ids or b.time_entry_ids:
        # Lines that name their time entries are the same charge only if they share one;
        # hours typed in beside them are the three-way match's business.
        return bool(set(a.time_entry_ids) & set(b.time_entry_ids))
    if a.period is None or b_period is None or not a.period.overlaps(b_period):
        return False
    if (a.subscription_id or b.subscription_id) and a.subscription_id != b.subscription_id:
        return False
    return a.usage_key == b.usage_key


def _check_duplicates(
    invoice: DraftInvoice,
    context: InvoiceContext,
    po: PurchaseOrder | None,
    matched: dict[str, PurchaseOrderLine],
    settings: VerificationSettings,
) -> list[Finding]:
    findings: list[Finding] = []
    lines = [line for line in invoice.lines if _billable(line)]
    for index, line in enumerate(lines):
        for earlier in lines[:index]:
            if _same_charge(line, earlier, earlier.period):
                findings.append(
                    Finding(
                        "duplicate_charge",
                        Severity.BLOCKING,
                        f"{line.label} bills {line.product_code or line.description} for "
                        f"{_span(line, earlier.period)} again: line {earlier.position} already "
                        "does",
                        _where(invoice, line, other_line_id=earlier.id),
                        "the same product for the same period is charged twice",
                        expected="billed once",
                        actual="billed twice on this invoice",
                    )
                )
                break
    others = [
        o for o in context.other_invoices if o.id != invoice.id and o.currency == invoice.currency
    ]
    for line in lines:
        for other in sorted(others, key=lambda o: (o.day, o.id)):
            hit = next(
                (
                    o
                    for o in other.lines
                    if o.kind not in CORRECTION_KINDS
                    and o.amount > 0
                    and _same_charge(line, o, o.period)
                ),
                None,
            )
            if hit is None:
                continue
            findings.append(
                Finding(
                    "duplicate_charge",
                    Severity.BLOCKING,
                    f"{line.label} bills {line.product_code or line.description} for "
                    f"{_span(line, hit.period)}, already billed on {other.label}",
                    _where(
                        invoice,
                        line,
                        other_invoice_id=other.id,
                        other_invoice_number=other.number,
                        other_line_id=hit.id,
                    ),
                    "the customer would pay twice for the same thing; drop the line or credit "
                    "the other invoice first",
                    expected="billed once",
                    actual=f"also on {other.label} line {hit.position}",
                )
            )
            break
    if po is not None:
        findings += _duplicate_po_lines(invoice, lines, others, matched, po)
    findings += _near_duplicates(invoice, others, settings)
    return findings


def _span(line: DraftLine, other: Period | None) -> str:
    if line.period is not None:
        return line.period.text()
    return other.text() if other else "the same period"


def _duplicate_po_lines(
    invoice: DraftInvoice,
    lines: list[DraftLine],
    others: list[OtherInvoice],
    matched: dict[str, PurchaseOrderLine],
    po: PurchaseOrder,
) -> list[Finding]:
    findings = []
    seen: dict[str, DraftLine] = {}
    for line in lines:
        po_line = matched.get(line.id)
        if po_line is None:
            continue
        earlier = seen.get(po_line.id)
        if earlier is not None and _billed_again(line, earlier, po_line, delivered=True):
            findings.append(
                Finding(
                    "duplicate_po_line",
                    Severity.BLOCKING,
                    f"{line.label} bills PO {po.number} line {po_line.position} "
                    f"({po_line.description}) again: line {earlier.position} already does",
                    _po_where(invoice, po, line, po_line),
                    "a PO line delivered once is billed once",
                    expected="billed once",
                    actual="billed twice on this invoice",
                )
            )
            continue
        seen.setdefault(po_line.id, line)
        for other in sorted(others, key=lambda o: (o.day, o.id)):
            hit = next(
                (
                    o
                    for o in other.lines
                    if o.purchase_order_line_id == po_line.id
                    and o.amount > 0
                    and o.kind not in CORRECTION_KINDS
                    # A draft has delivered nothing yet: only its period can clash.
                    and _billed_again(line, o, po_line, delivered=other.status != "draft")
                ),
                None,
            )
            if hit is None:
                continue
            findings.append(
                Finding(
                    "duplicate_po_line",
                    Severity.BLOCKING,
                    f"{line.label} bills PO {po.number} line {po_line.position} "
                    f"({po_line.description})"
                    + (f" for {line.period.text()}" if line.period else "")
                    + f", already billed on {other.label}",
                    replace(
                        _po_where(invoice, po, line, po_line),
                        other_invoice_id=other.id,
                        other_invoice_number=other.number,
                        other_line_id=hit.id,
                    ),
                    "a PO line delivered once is billed once; the customer's AP rejects the "
                    "second invoice",
                    expected="billed once",
                    actual=f"also on {other.label} line {hit.position}",
                )
            )
            break
    return findings


def _billed_again(
    line: DraftLine,
    before: DraftLine | OtherLine,
    po_line: PurchaseOrderLine,
    *,
    delivered: bool,
) -> bool:
    """A PO line is billed again when an earlier billing already took all of it (a delivery
    such as an installation), or billed the same subscription or usage for the same period
    (a recurring fee). Two subscriptions drawing on one PO line in a month are not."""
    if delivered and before.quantity is not None and before.quantity >= po_line.quantity:
        return True
    return (
        line.period is not None
        and before.period is not None
        and line.period.overlaps(before.period)
        and line.subscription_id == before.subscription_id
        and line.usage_key == before.usage_key
    )


def _near_duplicates(
    invoice: DraftInvoice, others: list[OtherInvoice], settings: VerificationSettings
) -> list[Finding]:
    if invoice.total_minor <= 0 or settings.near_duplicate_days < 0:
        return []
    window = settings.near_duplicate_days
    close = [
        o
        for o in others
        if o.total_minor == invoice.total_minor
        and abs((o.day - invoice.billing_date).days) <= window
    ]
    if not close:
        return []
    other = min(close, key=lambda o: (abs((o.day - invoice.billing_date).days), o.day, o.id))
    days = abs((other.day - invoice.billing_date).days)
    return [
        Finding(
            "near_duplicate",
            Severity.WARNING,
            f"{invoice.label} for {format_minor(invoice.total_minor, invoice.currency)} looks "
            f"like {other.label} of {other.day.isoformat()} ({days} days apart, same amount)",
            _where(invoice, other_invoice_id=other.id, other_invoice_number=other.number),
            f"the same customer billed the same amount within {window} days is often the same "
            "invoice sent twice",
            expected=f"no other invoice of {format_minor(invoice.total_minor, invoice.currency)} "
            f"within {window} days",
            actual=other.number or other.id,
        )
    ]


# -- anomaly ---------------------------------------------------------------------------------------


def _check_anomaly(
    invoice: DraftInvoice, context: InvoiceContext, settings: VerificationSettings
) -> list[Finding]:
    if settings.anomaly_percent is None:
        return []
    history = sorted(
        (
            o
            for o in context.other_invoices
            if o.id != invoice.id
            and o.status != "draft"
            and o.currency == invoice.currency
            and o.day <= invoice.billing_date
        ),
        key=lambda o: (o.day, o.id),
    )[-settings.anomaly_history :]
    if len(history) < settings.anomaly_min_history:
        return []
    # The median: one exceptional invoice (an installation, a year's true-up) does not move it.
    totals = sorted(o.total_minor for o in history)
    middle = len(totals) // 2
    average = (
        Decimal(totals[middle])
        if len(totals) % 2
        else Decimal(totals[middle - 1] + totals[middle]) / 2
    )
    if average <= 0:
        return []
    deviation = (Decimal(invoice.total_minor) - average) / average * 100
    if abs(deviation) <= settings.anomaly_percent:
        return []
    shown_average = format_minor(int(average.to_integral_value()), invoice.currency)
    direction = "above" if deviation > 0 else "below"
    return [
        Finding(
            "anomaly",
            Severity.WARNING,
            f"{invoice.label} totals {format_minor(invoice.total_minor, invoice.currency)}, "
            f"{_qty(abs(deviation).quantize(Decimal('0.1')))}% {direction} "
            f"{invoice.customer_name}'s trailing average of {shown_average} (the median of "
            f"the last {len(history)} invoices)",
            _where(invoice),
            f"a total more than {_qty(settings.anomaly_percent)}% away from the customer's "
            "usual is often a wrong quantity or price; check it before it goes out",
            expected=f"within {_qty(settings.anomaly_percent)}% of {shown_average}",
            actual=format_minor(invoice.total_minor, invoice.currency),
        )
    ]


# -- entry points ----------------------------------------------------------------------------------


def verify_invoice(
    invoice: DraftInvoice,
    context: InvoiceContext,
    settings: VerificationSettings = VerificationSettings(),  # noqa: B008 - frozen
) -> tuple[Finding, ...]:
    """Every finding for one invoice, blocking first; the same input gives the same findings
    in the same order, whatever the order of its lines."""
    sorted_lines = tuple(sorted(invoice.lines, key=lambda line: (line.position, line.id)))
    invoice = replace(invoice, lines=sorted_lines)
    findings: list[Finding] = []
    po_findings, po, matched = _check_purchase_order(invoice, context)
    findings += po_findings
    findings += _check_contracts(invoice, context)
    findings += _check_time(invoice, context)
    findings += _check_service_reports(invoice, context)
    findings += _check_duplicates(invoice, context, po, matched, settings)
    findings += _check_anomaly(invoice, context, settings)
    return ordered(findings)


_UNBILLED = {
    "subscription": (
        "unbilled_subscription",
        "{description}: a billing period was due on {due} and is on no invoice",
        "a period the customer used and was never billed for is revenue lost; run billing "
        "for it or find why the run skipped it",
    ),
    "charge": (
        "unbilled_charge",
        "{description}: due since {due} and on no invoice",
        "a due charge left off the invoices is revenue lost",
    ),
    "milestone": (
        "unbilled_milestone",
        "{description}: completed on {due} and not invoiced",
        "the customer accepted the milestone; its fixed fee is owed and not billed",
    ),
    "usage": (
        "unbilled_usage",
        "{description}",
        "usage the customer consumed and was never billed for is revenue lost",
    ),
    "time": (
        "unbilled_time",
        "{description}: approved and not billed",
        "approved hours not on any invoice are revenue lost; bill them on the next invoice",
    ),
}


def unbilled_findings(
    items: Iterable[DueItem], as_of: date, drafts_by_customer: dict[str, DraftInvoice] | None = None
) -> tuple[Finding, ...]:
    """Revenue leakage: each item due on or before `as_of` and on no invoice is a warning,
    attached to the customer's draft when there is one (so it can be added to it)."""
    drafts_by_customer = drafts_by_customer or {}
    findings = []
    for item in items:
        if item.due_on > as_of:
            continue
        check, what, why = _UNBILLED[item.kind]
        draft = drafts_by_customer.get(item.customer_id) if item.customer_id else None
        amount = (
            f"{_price(item.amount, item.currency)} {item.currency}"
            if item.amount is not None and item.currency
            else None
        )
        findings.append(
            Finding(
                check,
                Severity.WARNING,
                what.format(description=item.description, due=item.due_on.isoformat())
                + (f" ({item.customer_name})" if item.customer_name else ""),
                Where(
                    customer_id=item.customer_id,
                    invoice_id=draft.id if draft else None,
                    invoice_number=draft.number if draft else None,
                    contract_id=item.contract_id,
                    contract_reference=item.contract_reference,
                    subject_kind=item.kind,
                    subject_id=item.id,
                    time_entry_ids=item.time_entry_ids,
                ),
                why,
                expected="invoiced",
                actual="not invoiced" + (f": {amount}" if amount else ""),
            )
        )
    return ordered(findings)


def summarise(findings: Iterable[Finding]) -> dict[str, int]:
    counts = {"blocking": 0, "warning": 0}
    for finding in findings:
        counts[finding.severity.value] += 1
    return counts
