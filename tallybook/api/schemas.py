"""Request bodies. Amounts and quantities are decimal strings (or integers), never floats."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Decimal_ = str | int


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Fields a PATCH may set to null to clear them; any other null means "leave as is".
    clearable: ClassVar[frozenset[str]] = frozenset()

    def values(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True)
        return {k: v for k, v in data.items() if v is not None or k in self.clearable}


class TaxId(Body):
    country: str | None = None
    value: str


class CustomerIn(Body):
    legal_name: str
    country: str = Field(description="ISO 3166 alpha-2")
    currency: str = Field(description="ISO 4217")
    external_id: str | None = None
    emails: list[str] = []
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None
    timezone: str = "UTC"
    language: str = "en"
    payment_terms_days: int = 30
    tax_ids: list[TaxId | str] = []
    tax_exempt: bool = False
    reverse_charge: bool = False
    po_required: bool = False
    bank_accounts: list[str] = Field(
        default=[], description="IBANs or account numbers the customer pays from"
    )
    electronic_address: str | None = Field(
        default=None, description="e-invoice address, e.g. a Peppol participant id or GLN"
    )
    electronic_address_scheme: str | None = Field(
        default=None, description="its EAS scheme: 0088 (GLN), 9930 (German VAT), EM (e-mail)"
    )

    def values(self) -> dict[str, Any]:
        data = super().values()
        if "tax_ids" in data:
            data["tax_ids"] = [
                t if isinstance(t, str) else {k: v for k, v in t.items() if v}
                for t in data["tax_ids"]
            ]
        return data


class CustomerPatch(Body):
    clearable: ClassVar[frozenset[str]] = frozenset(
        {"external_id", "address_line1", "address_line2", "city", "postal_code", "region"}
        | {"electronic_address", "electronic_address_scheme"}
    )
    legal_name: str | None = None
    country: str | None = None
    currency: str | None = None
    external_id: str | None = None
    emails: list[str] | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None
    timezone: str | None = None
    language: str | None = None
    payment_terms_days: int | None = None
    tax_ids: list[TaxId | str] | None = None
    tax_exempt: bool | None = None
    reverse_charge: bool | None = None
    po_required: bool | None = None
    bank_accounts: list[str] | None = None
    electronic_address: str | None = None
    electronic_address_scheme: str | None = None


class TaxRateIn(Body):
    code: str
    name: str
    jurisdiction: str
    percent: Decimal_
    tax_category: str = "standard"


class ProductIn(Body):
    code: str
    name: str
    description: str | None = None
    tax_category: str = "standard"
    unit_label: str | None = None


class PriceIn(Body):
    code: str
    product_id: str
    currency: str
    terms: dict[str, Any] = Field(
        description='pricing model and parameters, e.g. {"model": "per_unit", "amount": "0.0006"}'
    )
    kind: Literal["recurring", "usage"] = "recurring"
    timing: Literal["in_advance", "in_arrears"] | None = None
    interval: Literal["day", "week", "month", "quarter", "year"] = "month"
    interval_count: int = 1
    effective_from: datetime | None = None
    metric_code: str | None = Field(default=None, description="usage prices: the metric billed")
    usage_filters: dict[str, str | list[str]] | None = Field(
        default=None,
        description='usage prices: only events with these properties, e.g. {"region": "eu"}',
    )
    group_by: list[str] | None = Field(
        default=None, description="usage prices: one line per value of these properties"
    )


class PriceVersionIn(Body):
    terms: dict[str, Any]
    effective_from: datetime | None = None


class MetricIn(Body):
    code: str = Field(min_length=1, max_length=100, description="what events name in `metric`")
    name: str | None = Field(default=None, max_length=300, description="default: the code")
    description: str | None = None
    aggregation: Literal["count", "sum", "max", "unique_count", "latest", "weighted_sum"]
    field: str | None = Field(
        default=None, max_length=100, description="the property read (all but count)"
    )
    filters: dict[str, str | list[str]] | None = Field(
        default=None, description='only events with these properties, e.g. {"region": ["eu"]}'
    )
    weighted_unit: Literal["second", "minute", "hour", "day"] | None = Field(
        default=None, description="weighted_sum: the time unit (default hour)"
    )


class PlanIn(Body):
    code: str
    name: str
    currency: str
    price_codes: list[str]
    interval: Literal["day", "week", "month", "quarter", "year"] = "month"
    interval_count: int = 1
    trial_days: int = 0


class CouponIn(Body):
    code: str
    name: str
    kind: Literal["percent", "fixed"]
    value: Decimal_
    duration: Literal["once", "repeating", "forever"]
    duration_periods: int | None = None
    currency: str | None = None
    product_codes: list[str] | None = None


class CouponApply(Body):
    coupon: str


class SubscriptionIn(Body):
    customer_id: str
    plan_id: str
    quantity: Decimal_ = 1
    start_at: datetime | None = None
    end_at: datetime | None = None
    trial_days: int | None = None
    trial_end_at: datetime | None = None
    anchor: Literal["calendar", "anniversary"] = "anniversary"
    auto_renew: bool = True
    renewal_term_months: int | None = None


class SubscriptionChangeIn(Body):
    plan_id: str | None = None
    quantity: Decimal_ | None = None
    effective_at: datetime | None = None
    note: str | None = None


class CancelIn(Body):
    at_period_end: bool = False
    effective_at: datetime | None = None


class PauseIn(Body):
    effective_at: datetime | None = None
    resume_at: datetime | None = None


class MilestoneIn(Body):
    name: str
    amount: Decimal_
    product_id: str | None = None


class ContractIn(Body):
    customer_id: str
    reference: str
    name: str
    start_date: date
    end_date: date | None = None
    milestones: list[MilestoneIn] = []


class CompleteIn(Body):
    completed_at: datetime | None = None


class ChargeIn(Body):
    customer_id: str
    description: str
    unit_price: Decimal_
    quantity: Decimal_ = 1
    kind: Literal["one_off", "time_and_materials"] = "one_off"
    product_id: str | None = None
    contract_id: str | None = None
    service_date: date | None = None
    billable_at: datetime | None = None
    reference: str | None = None


class BillingRunIn(Body):
    as_of: datetime | None = None
    dry_run: bool = False


class DraftIn(Body):
    customer_id: str
    po_number: str | None = None
    notes: str | None = None


class DiscountIn(Body):
    kind: Literal["percent", "fixed"]
    value: Decimal_
    key: str | None = None
    name: str | None = None
    product_ids: list[str] | None = None


class DraftPatch(Body):
    clearable: ClassVar[frozenset[str]] = frozenset({"po_number", "notes"})
    po_number: str | None = None
    notes: str | None = None
    discounts: list[DiscountIn] | None = None


class LineIn(Body):
    description: str
    unit_price: Decimal_
    quantity: Decimal_ = 1
    product_id: str | None = None
    reference: str | None = None


class ReasonIn(Body):
    reason: str


class CreditLineIn(Body):
    line_id: str
    quantity: Decimal_ | None = None
    amount: Decimal_ | None = None


class CreditNoteIn(Body):
    reason: str
    issue_date: date | None = None
    lines: list[CreditLineIn] | None = None
    settlement: Literal["reduce_amount_due", "customer_credit"] = "reduce_amount_due"


class DebitLineIn(Body):
    description: str
    unit_price: Decimal_
    quantity: Decimal_ = 1
    product_id: str | None = None


class DebitNoteIn(Body):
    reason: str
    lines: list[DebitLineIn]


class ApiKeyIn(Body):
    name: str
    role: Literal["admin", "billing_manager", "billing_clerk", "viewer"]


class SettingsPatch(Body):
    # The seller's e-invoice details may be cleared with null.
    clearable: ClassVar[frozenset[str]] = frozenset(
        {
            "address_line1",
            "address_line2",
            "city",
            "postal_code",
            "vat_id",
            "legal_registration_id",
            "electronic_address",
            "electronic_address_scheme",
            "iban",
            "bic",
            "contact_email",
            "anomaly_percent",
        }
    )
    name: str | None = None
    timezone: str | None = None
    country: str | None = None
    proration_policy: Literal["exact_days", "exact_seconds", "thirty_day_month"] | None = None
    downgrade_credit: Literal["immediate", "period_end"] | None = None
    rounding_mode: Literal["half_up", "half_even"] | None = None
    tax_rounding: Literal["per_line", "per_invoice"] | None = None
    prices_include_tax: bool | None = None
    approval_thresholds: dict[str, Decimal_] | None = None
    invoice_number_pattern: str | None = None
    credit_note_number_pattern: str | None = None
    debit_note_number_pattern: str | None = None
    usage_grace_days: int | None = Field(default=None, ge=0, le=60)
    collection_retry_days: list[int] | None = Field(
        default=None, description="days after the first failed charge to retry, e.g. [1, 3, 7]"
    )
    anomaly_percent: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="flag drafts this percent away from the customer's average; null: never",
    )
    near_duplicate_days: int | None = Field(
        default=None, ge=0, le=90, description="same customer and amount within N days"
    )
    # The seller on e-invoices (UBL / Factur-X).
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    vat_id: str | None = Field(default=None, description="with country prefix: DE136695976")
    legal_registration_id: str | None = Field(
        default=None, description="company register number, e.g. Companies House 07228130"
    )
    electronic_address: str | None = Field(
        default=None, description="Peppol participant id, e.g. a GLN"
    )
    electronic_address_scheme: str | None = Field(
        default=None, description="EAS scheme of the electronic address: 0088, 9930, EM..."
    )
    iban: str | None = None
    bic: str | None = None
    contact_email: str | None = None


class EventIn(BaseModel):
    """A usage event. The API reads events itself, so that one bad event in a batch gets its
    own answer instead of failing the batch: this model documents the shape."""

    transaction_id: str = Field(max_length=200, description="unique per organisation")
    customer: str | None = Field(default=None, description="the customer's external id")
    subscription_id: str | None = Field(default=None, description="instead of, or with, customer")
    metric: str = Field(description="billable metric code")
    timestamp: datetime | int = Field(description="ISO 8601 with offset, or Unix seconds")
    properties: dict[str, Any] = Field(default_factory=dict)


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(max_length=10_000)


class EventOutcomeOut(BaseModel):
    index: int
    transaction_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    quarantined: str | None = None


class EventBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    quarantined: int
    late_periods: int
    results: list[EventOutcomeOut]


class AllocationIn(Body):
    invoice_id: str
    amount: Decimal_


class PaymentIn(Body):
    customer_id: str | None = None
    amount: Decimal_
    currency: str
    received_on: date | None = None
    method: Literal["bank_transfer", "check", "card", "direct_debit", "cash", "other"] = (
        "bank_transfer"
    )
    reference: str | None = None
    allocations: list[AllocationIn] | None = None
    invoice_ids: list[str] | None = None


class RefundIn(Body):
    reason: str
    amount: Decimal_ | None = None
    method: Literal["bank_transfer", "check", "card", "direct_debit", "cash", "other"] | None = None
    refunded_on: date | None = None
    provider_reference: str | None = None


class LedgerAccountIn(Body):
    name: str
    type: Literal["asset", "liability", "equity", "revenue", "expense"]
    role: (
        Literal[
            "bank",
            "receivable",
            "tax_payable",
            "customer_credit",
            "revenue",
            "late_fee_income",
            "bad_debt",
        ]
        | None
    ) = None
