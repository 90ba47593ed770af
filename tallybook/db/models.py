"""Database tables. Every business row carries organization_id: tenants are walls.

Rounded money is BigInteger minor units (`*_minor`); unit prices and quantities are exact
decimal strings (ExactDecimal). Unique constraints are the last guard of the billing rules:
one invoice per (subscription, period, timing), one number per series, one event per key.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tallybook.db.types import ExactDecimal, UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id(prefix: str) -> str:
    """Readable, unguessable ids: 'cus_3f9c...'. The prefix tells a specialist what it is."""
    return f"{prefix}_{uuid.uuid4().hex}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        Decimal: ExactDecimal(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


def org_fk() -> Mapped[str]:
    return mapped_column(String(40), ForeignKey("organizations.id"), index=True)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    country: Mapped[str | None] = mapped_column(String(2))
    # Billing policy: how proration, rounding, tax and approvals work in this organisation.
    proration_policy: Mapped[str] = mapped_column(String(20), default="exact_days")
    downgrade_credit: Mapped[str] = mapped_column(String(20), default="immediate")
    rounding_mode: Mapped[str] = mapped_column(String(20), default="half_up")
    tax_rounding: Mapped[str] = mapped_column(String(20), default="per_line")
    prices_include_tax: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"USD": "5000.00"}: drafts above this total need a billing manager's approval.
    approval_thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    invoice_number_pattern: Mapped[str] = mapped_column(String(60), default="INV-{YYYY}-{seq:06}")
    credit_note_number_pattern: Mapped[str] = mapped_column(
        String(60), default="CN-{YYYY}-{seq:06}"
    )
    debit_note_number_pattern: Mapped[str] = mapped_column(String(60), default="DN-{YYYY}-{seq:06}")
    # Days after a usage period ends during which its invoice stays a draft, so late events
    # re-rate the draft instead of landing on the next invoice.
    usage_grace_days: Mapped[int] = mapped_column(Integer, default=0)
    # Pre-flight verification: a draft whose total is more than this percent away from the
    # customer's trailing average is flagged (None: never); the same customer billed the same
    # amount within this many days is a near-duplicate.
    anomaly_percent: Mapped[int | None] = mapped_column(Integer, default=50)
    near_duplicate_days: Mapped[int] = mapped_column(Integer, default=7)
    # Cash: days after a failed automatic charge to try again ([1, 3, 7]: three retries), the
    # confidence from which a bank line is applied without review, payment numbers.
    collection_retry_days: Mapped[list[Any]] = mapped_column(default=lambda: [1, 3, 7])
    cash_match_threshold: Mapped[int] = mapped_column(Integer, default=90)
    payment_number_pattern: Mapped[str] = mapped_column(String(60), default="PAY-{YYYY}-{seq:06}")
    # Approval rules beyond approval_thresholds (invoices): {"EUR": "500.00"} per currency;
    # a credit note or a write-off above the amount needs another billing manager's approval
    # ("0" for a write-off: every one).
    credit_note_approval_thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    write_off_approval_thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The seller on e-invoices (EN 16931): postal address, VAT and legal registration ids, the
    # electronic address (Peppol participant id: scheme such as 0088 or 9930, and value), the
    # account customers pay into, and who answers questions about invoices.
    address_line1: Mapped[str | None] = mapped_column(String(300))
    address_line2: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(40))
    vat_id: Mapped[str | None] = mapped_column(String(40))
    legal_registration_id: Mapped[str | None] = mapped_column(String(100))
    electronic_address: Mapped[str | None] = mapped_column(String(200))
    electronic_address_scheme: Mapped[str | None] = mapped_column(String(10))
    iban: Mapped[str | None] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11))
    contact_email: Mapped[str | None] = mapped_column(String(300))
    # -- distribution (migration 0005): who e-mails come from ("Billing <billing@example.com>"),
    # and the runs the job worker starts every day for this organisation ("collection",
    # "dunning"): opt-in.
    email_from: Mapped[str | None] = mapped_column(String(300))
    scheduled_runs: Mapped[list[Any]] = mapped_column(default=list)
    # -- branding of PDF documents ----------------------------------------------------------
    # The logo printed on invoices, credit notes, statements and letters (PNG, JPEG or SVG,
    # size-limited and checked when set), deferred so that loading the organisation for
    # everything else never reads it; and the primary colour of headings and rules (#RRGGBB).
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    logo_media_type: Mapped[str | None] = mapped_column(String(40))
    brand_color: Mapped[str | None] = mapped_column(String(7))
    # -- end of branding -------------------------------------------------------------------
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # Only a SHA-256 of the secret is kept; the prefix finds the row without revealing the key.
    prefix: Mapped[str] = mapped_column(String(20), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("organization_id", "external_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    external_id: Mapped[str | None] = mapped_column(String(200))
    legal_name: Mapped[str] = mapped_column(String(300))
    emails: Mapped[list[Any]] = mapped_column(default=list)
    address_line1: Mapped[str | None] = mapped_column(String(300))
    address_line2: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(40))
    region: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    language: Mapped[str] = mapped_column(String(10), default="en")
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    tax_ids: Mapped[list[Any]] = mapped_column(default=list)
    tax_exempt: Mapped[bool] = mapped_column(Boolean, default=False)
    reverse_charge: Mapped[bool] = mapped_column(Boolean, default=False)
    po_required: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # None: the organisation's default dunning policy.
    dunning_policy_id: Mapped[str | None] = mapped_column(String(40))
    # Accounts (IBANs, compact) the customer pays from: cash application recognises the payer.
    bank_accounts: Mapped[list[Any]] = mapped_column(default=list)
    # Where e-invoices reach the customer: a Peppol participant id (scheme 0088, 9930...) or EM.
    electronic_address: Mapped[str | None] = mapped_column(String(200))
    electronic_address_scheme: Mapped[str | None] = mapped_column(String(10))
    # How documents reach the customer (migration 0005): "email" (to `emails`) or "portal"
    # (never e-mailed), and which e-invoice goes along: None, "ubl", "cii" (the XML attached)
    # or "facturx" (the PDF sent is Factur-X, the CII inside it).
    delivery_channel: Mapped[str] = mapped_column(String(20), default="email")
    einvoice_attachment: Mapped[str | None] = mapped_column(String(10))
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TaxRate(Base):
    __tablename__ = "tax_rates"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    # "DE", "US-NY" (state) or "US-NY-NEW YORK" (city): matched against the customer's address.
    jurisdiction: Mapped[str] = mapped_column(String(120))
    tax_category: Mapped[str] = mapped_column(String(60), default="standard")
    percent: Mapped[Decimal]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    tax_category: Mapped[str] = mapped_column(String(60), default="standard")
    unit_label: Mapped[str | None] = mapped_column(String(60))
    # Ledger account its revenue posts to; None: the chart's default revenue account.
    revenue_account: Mapped[str | None] = mapped_column(String(20))
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Price(Base):
    """One version of a price. A change writes a new version; old versions stay for old invoices."""

    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("organization_id", "code", "version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"))
    code: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    # recurring (per seat or flat per period) or usage (metered, billed on reported usage)
    kind: Mapped[str] = mapped_column(String(20))
    interval_unit: Mapped[str] = mapped_column(String(10), default="month")
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    timing: Mapped[str] = mapped_column(String(10), default="in_advance")
    terms: Mapped[dict[str, Any]]
    # Usage prices: the metric they bill, extra property filters, and properties that split
    # the usage into one line per group (a price per region).
    metric_code: Mapped[str | None] = mapped_column(String(100))
    usage_filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    group_by: Mapped[list[Any]] = mapped_column(default=list)
    effective_from: Mapped[datetime]
    created_at: Mapped[datetime]


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    interval_unit: Mapped[str] = mapped_column(String(10), default="month")
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    # Price codes; each period bills the version of each code in force at the period's start.
    price_codes: Mapped[list[Any]] = mapped_column(default=list)
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(10))  # percent | fixed
    value: Mapped[Decimal]
    currency: Mapped[str | None] = mapped_column(String(3))
    duration: Mapped[str] = mapped_column(String(12))  # once | repeating | forever
    duration_periods: Mapped[int | None] = mapped_column(Integer)
    product_codes: Mapped[list[Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime]


class CouponRedemption(Base):
    __tablename__ = "coupon_redemptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    coupon_id: Mapped[str] = mapped_column(String(40), ForeignKey("coupons.id"))
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    invoices_applied: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    plan_id: Mapped[str] = mapped_column(String(40), ForeignKey("plans.id"))
    quantity: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(20))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    trial_end_at: Mapped[datetime | None]
    anchor: Mapped[str] = mapped_column(String(12))  # calendar | anniversary
    anchor_date: Mapped[date] = mapped_column(Date)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None]
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    renewal_term_months: Mapped[int | None] = mapped_column(Integer)
    # Periods before this instant have been billed (advance) or rated (arrears): the run's cursor.
    next_billing_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Earliest effective time of a change not yet re-rated; None when nothing is pending.
    rerate_from: Mapped[datetime | None]
    created_at: Mapped[datetime]


class SubscriptionChange(Base):
    """The subscription's history: each change is effective from an instant, maybe backdated."""

    __tablename__ = "subscription_changes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    subscription_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("subscriptions.id"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    effective_at: Mapped[datetime]
    plan_id: Mapped[str | None] = mapped_column(String(40))
    quantity: Mapped[Decimal | None]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class BillableMetric(Base):
    """What usage events add up to: an aggregation of one property, maybe filtered.

    Immutable once created (only the name changes): issued invoices explain themselves by it.
    """

    __tablename__ = "billable_metrics"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    aggregation: Mapped[str] = mapped_column(String(20))
    field: Mapped[str | None] = mapped_column(String(100))
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weighted_unit: Mapped[str] = mapped_column(String(10), default="hour")
    created_at: Mapped[datetime]


class UsageEventKey(Base):
    """One row per transaction id ever accepted: the exactly-once guard, across all months.

    The events table is partitioned by time, so it cannot itself hold a unique transaction id;
    this table does, with a fingerprint of the content to tell a retry from a conflict.
    """

    __tablename__ = "usage_event_keys"
    # No foreign keys on the two ingestion tables: the service resolves the organisation from
    # the API key, and a per-row key check would cost more than the insert itself.
    organization_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16))


class UsageEvent(Base):
    """A usage event, attributed to a customer (and maybe one of its subscriptions).

    The primary key leads with what a billing period's aggregation asks for: organisation,
    customer, metric and time. On PostgreSQL the table is partitioned by month of occurred_at.
    """

    __tablename__ = "usage_events"
    __table_args__ = {"postgresql_partition_by": "RANGE (occurred_at)"}
    organization_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    metric_code: Mapped[str] = mapped_column(String(100), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]


class QuarantinedEvent(Base):
    """An accepted event that cannot be attributed yet (unknown customer or metric).

    Kept with the reason, and moved into usage_events once the customer or metric exists.
    """

    __tablename__ = "usage_quarantine"
    __table_args__ = (UniqueConstraint("organization_id", "transaction_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    transaction_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(300))
    customer_external_id: Mapped[str | None] = mapped_column(String(200), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    metric_code: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime]
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]


class LateUsagePeriod(Base):
    """A rated usage period that received events after it was rated: re-rate it.

    Written by ingestion in the event's own transaction, so no late event goes unnoticed;
    removed when the draft is re-rated or the difference is billed on the next invoice.
    """

    __tablename__ = "late_usage_periods"
    subscription_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("subscriptions.id"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    period_end: Mapped[datetime]
    detected_at: Mapped[datetime]


class Contract(Base):
    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("organization_id", "reference"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    reference: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    # Discounts the contract allows: a percent discount up to this (None: no percent discount)
    # and these coupon codes. Anything else on an invoice under the contract is not agreed.
    discount_percent_max: Mapped[Decimal | None]
    allowed_coupon_codes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]


class Milestone(Base):
    __tablename__ = "milestones"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    product_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("products.id"))
    amount: Mapped[Decimal]
    completed_at: Mapped[datetime | None]
    charge_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class Charge(Base):
    """A pending charge (one-off, milestone, time and materials, adjustment) awaiting an invoice."""

    __tablename__ = "charges"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    contract_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("contracts.id"))
    kind: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(500))
    product_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("products.id"))
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[Decimal]
    unit_price: Mapped[Decimal]
    service_date: Mapped[date | None] = mapped_column(Date)
    billable_at: Mapped[datetime]
    invoice_id: Mapped[str | None] = mapped_column(String(40), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class NumberSeries(Base):
    """Gapless counters. One row per (organisation, document kind, scope such as the year)."""

    __tablename__ = "number_series"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "scope"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    kind: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str] = mapped_column(String(20))
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        Index("ix_invoices_org_status", "organization_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    number: Mapped[str | None] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20))
    approval_status: Mapped[str] = mapped_column(String(20), default="not_required")
    approved_by: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    billing_date: Mapped[date] = mapped_column(Date)
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    po_number: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    discounts: Mapped[list[Any]] = mapped_column(default=list)
    customer_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    tax_treatment: Mapped[str] = mapped_column(String(20), default="standard")
    legal_note: Mapped[str | None] = mapped_column(Text)
    tax_summary: Mapped[list[Any]] = mapped_column(default=list)
    subtotal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_applied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    debited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    written_off_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_due_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # ISO 11649 structured creditor reference ("RF18INV2026000123"), set when issued: the
    # customer quotes it when paying, and cash application finds the invoice by it.
    payment_reference: Mapped[str | None] = mapped_column(String(35))
    # Disputed by the customer: dunning pauses until the dispute is resolved.
    disputed_at: Mapped[datetime | None]
    dispute_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    void_reason: Mapped[str | None] = mapped_column(Text)
    # Settings in force when the draft was rated, so an issued invoice explains itself later.
    rating_context: Mapped[dict[str, Any]] = mapped_column(default=dict)


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(500))
    product_id: Mapped[str | None] = mapped_column(String(40))
    price_id: Mapped[str | None] = mapped_column(String(40))
    subscription_id: Mapped[str | None] = mapped_column(String(40), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(40))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    service_from: Mapped[datetime | None]
    service_to: Mapped[datetime | None]
    # +1 charges the service window, -1 credits it back (re-rating after a change).
    coverage_weight: Mapped[int] = mapped_column(Integer, default=0)
    quantity: Mapped[Decimal]
    unit_price: Mapped[Decimal | None]
    amount: Mapped[Decimal]  # exact amount before rounding
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    taxes: Mapped[list[Any]] = mapped_column(default=list)
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Usage lines: price code, line kind and group, so late usage can be billed as the
    # difference between what a period owes now and what its lines already billed.
    usage_key: Mapped[str | None] = mapped_column(String(300))


class SubscriptionPeriodInvoice(Base):
    """The guard: a (subscription, period, timing) is billed on exactly one invoice."""

    __tablename__ = "subscription_period_invoices"
    __table_args__ = (UniqueConstraint("subscription_id", "period_start", "timing"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    subscription_id: Mapped[str] = mapped_column(String(40), ForeignKey("subscriptions.id"))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    timing: Mapped[str] = mapped_column(String(10))
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"))


class CreditNote(Base):
    __tablename__ = "credit_notes"
    __table_args__ = (UniqueConstraint("organization_id", "number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(60))
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    settlement: Mapped[str] = mapped_column(String(20))  # reduce_amount_due | customer_credit
    issue_date: Mapped[date] = mapped_column(Date)
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class CreditNoteLine(Base):
    __tablename__ = "credit_note_lines"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    credit_note_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("credit_notes.id"), index=True
    )
    invoice_line_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoice_lines.id"))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal]
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    taxes: Mapped[list[Any]] = mapped_column(default=list)


class DebitNote(Base):
    __tablename__ = "debit_notes"
    __table_args__ = (UniqueConstraint("organization_id", "number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(60))
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    lines: Mapped[list[Any]] = mapped_column(default=list)
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class CustomerCreditEntry(Base):
    """Movements of a customer's credit balance (from credit notes, used on later invoices)."""

    __tablename__ = "customer_credit_entries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(30))
    source_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Who did what, when, with the values before and after; hash-chained per organisation
    (core.audit_chain). sequence and the hashes are set when the writing transaction commits:
    NULL only inside it, so a committed row without them was slipped in behind the chain."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("organization_id", "sequence"),
        Index("ix_audit_events_org_created", "organization_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    actor: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    previous_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # 0 while the first request is still being processed.
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(100), default="application/json")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


# -- cash: payments, refunds, automatic collection -------------------------------------------


class PaymentMethod(Base):
    """A customer's stored way to pay, as the payment provider's token: never a card number."""

    __tablename__ = "payment_methods"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    token: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # card | sepa_debit | ach_debit
    label: Mapped[str] = mapped_column(String(100))  # "Visa ending 4242", shown to clerks
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    detached_at: Mapped[datetime | None]


class Payment(Base):
    """Money received from a customer, applied to invoices; what is left is customer credit."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        Index("ix_payments_org_customer", "organization_id", "customer_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(60))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    received_on: Mapped[date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(20))  # bank_transfer | check | card | direct_debit
    reference: Mapped[str | None] = mapped_column(String(200))
    payment_method_id: Mapped[str | None] = mapped_column(String(40))
    provider_reference: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20), default="manual")  # manual|collection|bank
    # Left over after applying to invoices: became customer credit.
    unapplied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(20), default="completed")  # completed | reversed
    reversed_at: Mapped[datetime | None]
    reversal_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class PaymentAllocation(Base):
    """Part of a payment applied to one invoice; refunds and reversals reduce `undone_minor`."""

    __tablename__ = "payment_allocations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    payment_id: Mapped[str] = mapped_column(String(40), ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    undone_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]


class Refund(Base):
    """Money paid back to a customer: from a payment, or from the customer's credit balance."""

    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("payments.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    # Of the amount: reopened on invoices / taken from customer credit.
    from_invoices_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    from_credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(20))
    provider_reference: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class PaymentAttempt(Base):
    """One automatic charge of an invoice through the payment provider, and its outcome."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        # The last guard against charging one invoice twice: one row per (invoice, attempt).
        UniqueConstraint("invoice_id", "attempt"),
        Index("ix_payment_attempts_org_status", "organization_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    payment_method_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # pending (claimed, outcome not recorded yet) | approved | declined | failed
    status: Mapped[str] = mapped_column(String(20))
    provider_reference: Mapped[str | None] = mapped_column(String(200))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    attempted_on: Mapped[date] = mapped_column(Date)
    # The day of the next try; None: no more tries (paid, or the schedule is used up).
    next_attempt_on: Mapped[date | None] = mapped_column(Date)
    payment_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    # When the provider's answer was recorded; None while pending.
    completed_at: Mapped[datetime | None]


# -- cash application: bank statements --------------------------------------------------------


class BankStatement(Base):
    __tablename__ = "bank_statements"
    __table_args__ = (UniqueConstraint("organization_id", "file_sha256"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    format: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(300))
    file_sha256: Mapped[str] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(60))
    statement_ref: Mapped[str | None] = mapped_column(String(100))
    lines_total: Mapped[int] = mapped_column(Integer)
    lines_new: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(40))
    imported_at: Mapped[datetime]


class BankStatementLine(Base):
    """A statement line: applied automatically, waiting for a clerk, or set aside."""

    __tablename__ = "bank_statement_lines"
    __table_args__ = (
        UniqueConstraint("organization_id", "line_key"),
        Index("ix_bank_statement_lines_org_status", "organization_id", "status"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    statement_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bank_statements.id"), index=True
    )
    line_key: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    booking_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payer_name: Mapped[str | None] = mapped_column(String(300))
    payer_account: Mapped[str | None] = mapped_column(String(60))
    remittance_text: Mapped[str | None] = mapped_column(Text)
    creditor_reference: Mapped[str | None] = mapped_column(String(60))
    # Invoice numbers the payer listed in structured fields (camt.053 RfrdDocInf).
    referred_documents: Mapped[list[Any]] = mapped_column(default=list)
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    # applied (automatically or by a clerk) | review | ignored | outgoing
    status: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[str] = mapped_column(String(30), default="none")
    proposal: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_id: Mapped[str | None] = mapped_column(String(40))
    payment_id: Mapped[str | None] = mapped_column(String(40))
    resolved_by: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[datetime | None]
    # Why a clerk set the line aside, or what they noted when applying it.
    resolution_note: Mapped[str | None] = mapped_column(Text)


# -- dunning ----------------------------------------------------------------------------------


class DunningPolicy(Base):
    __tablename__ = "dunning_policies"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    name: Mapped[str] = mapped_column(String(200))
    # [{"offset_days": -3, "level": 1, "name": "friendly reminder", "late_fee": false}, ...]
    steps: Mapped[list[Any]]
    # {"kind": "percent", "percent": "1.5", "fixed": {"EUR": "10.00"}, "cap": {"EUR": "40.00"}}
    late_fee: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class DunningReminder(Base):
    """A reminder step done for an invoice (sent, or skipped after a gap): never repeated."""

    __tablename__ = "dunning_reminders"
    __table_args__ = (UniqueConstraint("invoice_id", "step"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    policy_id: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer)
    level: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # recorded | skipped
    due_on: Mapped[date] = mapped_column(Date)
    recorded_on: Mapped[date] = mapped_column(Date)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    debit_note_id: Mapped[str | None] = mapped_column(String(40))
    # What was owed when the reminder went out, and its text: what a later e-mail sends.
    currency: Mapped[str] = mapped_column(String(3))
    open_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


# -- the general ledger -----------------------------------------------------------------------


class LedgerAccount(Base):
    """The chart of accounts. `role` marks the accounts postings look for (receivable, bank,
    tax_payable, customer_credit, revenue, bad_debt, late_fee_income)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))  # asset|liability|equity|revenue|expense
    role: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime]


class JournalEntry(Base):
    """A balanced journal entry, posted in the same transaction as the event it records."""

    __tablename__ = "journal_entries"
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        Index("ix_journal_entries_org_date", "organization_id", "entry_date"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    number: Mapped[str] = mapped_column(String(60))
    entry_date: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(40))
    memo: Mapped[str] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    source_type: Mapped[str] = mapped_column(String(30))
    source_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class JournalLine(Base):
    __tablename__ = "journal_lines"
    __table_args__ = (Index("ix_journal_lines_org_account", "organization_id", "account_code"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    entry_id: Mapped[str] = mapped_column(String(40), ForeignKey("journal_entries.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    account_code: Mapped[str] = mapped_column(String(20))
    debit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    description: Mapped[str] = mapped_column(String(500), default="")
    document: Mapped[str | None] = mapped_column(String(60))


# -- verification sources: purchase orders, contract prices, time sheets, service reports -----


class ContractPrice(Base):
    """A contracted price version: the unit price agreed for a product from one day to another."""

    __tablename__ = "contract_prices"
    __table_args__ = (UniqueConstraint("contract_id", "product_id", "valid_from"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    contract_id: Mapped[str] = mapped_column(String(40), ForeignKey("contracts.id"), index=True)
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"))
    unit_price: Mapped[Decimal]
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


class PurchaseOrder(Base):
    """A customer's purchase order. Amounts are net of tax, like the PO's own line prices;
    `consumed_minor` is what issued invoices quoting its number have used of it."""

    __tablename__ = "purchase_orders"
    __table_args__ = (UniqueConstraint("organization_id", "customer_id", "number"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"), index=True)
    contract_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("contracts.id"))
    number: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[date | None] = mapped_column(Date)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    # None: no ceiling beyond the lines themselves.
    ceiling_minor: Mapped[int | None] = mapped_column(BigInteger)
    consumed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | closed | cancelled
    buyer_reference: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10), default="api")  # api | csv | xlsx | ubl
    closed_at: Mapped[datetime | None]
    close_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_lines"
    __table_args__ = (UniqueConstraint("purchase_order_id", "position"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    purchase_order_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("purchase_orders.id"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("products.id"))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal]
    unit_price: Mapped[Decimal]
    unit_code: Mapped[str | None] = mapped_column(String(10))
    consumed_quantity: Mapped[Decimal] = mapped_column(default=Decimal(0))
    consumed_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class PurchaseOrderConsumption(Base):
    """A movement of a purchase order's balance: an issued invoice line using it (positive),
    a credit note or a void giving it back (negative). Summed per invoice: what it still uses."""

    __tablename__ = "purchase_order_consumptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    purchase_order_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("purchase_orders.id"), index=True
    )
    purchase_order_line_id: Mapped[str | None] = mapped_column(String(40))
    invoice_id: Mapped[str] = mapped_column(String(40), ForeignKey("invoices.id"), index=True)
    invoice_line_id: Mapped[str | None] = mapped_column(String(40))
    credit_note_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # invoice_issued | credit_note | invoice_voided
    quantity: Mapped[Decimal]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class TimeEntry(Base):
    """Hours worked for a customer, entered or imported, approved before they are billed."""

    __tablename__ = "time_entries"
    __table_args__ = (
        Index("ix_time_entries_org_customer_date", "organization_id", "customer_id", "work_date"),
        Index("ix_time_entries_org_file", "organization_id", "import_file_sha256"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    contract_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("contracts.id"))
    worker: Mapped[str] = mapped_column(String(200))
    work_date: Mapped[date] = mapped_column(Date)
    hours: Mapped[Decimal]
    product_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("products.id"))
    service_code: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    reference: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft|approved|rejected
    entered_by: Mapped[str | None] = mapped_column(String(40))
    approved_by: Mapped[str | None] = mapped_column(String(40))
    approved_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(Text)
    # The charge it was billed through, and the invoice once that invoice is issued.
    charge_id: Mapped[str | None] = mapped_column(String(40), index=True)
    billed_invoice_id: Mapped[str | None] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(String(10), default="api")  # api | csv | xlsx
    import_file_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ServiceReport(Base):
    """A service delivered (a visit, a repair, a delivery), the proof an invoice line rests on."""

    __tablename__ = "service_reports"
    __table_args__ = (
        Index(
            "ix_service_reports_org_customer_date", "organization_id", "customer_id", "service_date"
        ),
        Index("ix_service_reports_org_file", "organization_id", "import_file_sha256"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    contract_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("contracts.id"))
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"))
    service_date: Mapped[date] = mapped_column(Date)
    quantity: Mapped[Decimal]
    reference: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    performed_by: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft|approved|rejected
    entered_by: Mapped[str | None] = mapped_column(String(40))
    approved_by: Mapped[str | None] = mapped_column(String(40))
    approved_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(Text)
    charge_id: Mapped[str | None] = mapped_column(String(40), index=True)
    billed_invoice_id: Mapped[str | None] = mapped_column(String(40), index=True)
    source: Mapped[str] = mapped_column(String(10), default="api")  # api | csv | xlsx
    import_file_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


# -- audit chain and approvals (issue 5, items 5-6) --------------------------------------------


class AuditChainHead(Base):
    """Where an organisation's audit chain ends; locked only while a transaction appends."""

    __tablename__ = "audit_chain_heads"
    organization_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("organizations.id"), primary_key=True
    )
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    last_event_id: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime]


class ApprovalRequest(Base):
    """An action that needs a second person: an invoice above the threshold, a credit note or
    write-off above the organisation's limit, overriding a blocking verification finding. It is
    decided by a billing manager or admin other than the one who asked, with a reason."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("ix_approval_requests_org_status", "organization_id", "status"),
        Index("ix_approval_requests_subject", "organization_id", "subject_type", "subject_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    subject_type: Mapped[str] = mapped_column(String(30))
    subject_id: Mapped[str] = mapped_column(String(40))
    rule: Mapped[str] = mapped_column(String(60))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    # What approving carries out (a held credit note's lines, a write-off's reason).
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20))  # pending | approved | rejected
    requested_by: Mapped[str | None] = mapped_column(String(40))
    request_reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    # The document approving produced (the credit note), when it produced one.
    result_type: Mapped[str | None] = mapped_column(String(30))
    result_id: Mapped[str | None] = mapped_column(String(40))


# -- verification findings, discrepancies and disputes (issue 5, items 3-4 and 7) -----------------


class VerificationRun(Base):
    """One verification of many drafts at once: what was checked and what was found."""

    __tablename__ = "verification_runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    as_of: Mapped[date] = mapped_column(Date)
    invoices: Mapped[int] = mapped_column(Integer, default=0)
    failing_invoices: Mapped[int] = mapped_column(Integer, default=0)
    blocking: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


class Discrepancy(Base):
    """A verification finding or a customer's dispute, worked from open through investigating
    to resolved (the draft adjusted, a credit or debit note) or waived (with a reason).

    The same mistake found again is the same discrepancy: `fingerprint` is the finding's key
    (check and what it points at), unique per organisation."""

    __tablename__ = "discrepancies"
    __table_args__ = (
        UniqueConstraint("organization_id", "fingerprint"),
        Index("ix_discrepancies_org_status", "organization_id", "status"),
        Index("ix_discrepancies_org_invoice", "organization_id", "invoice_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))  # verification | dispute
    check: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))  # blocking | warning
    status: Mapped[str] = mapped_column(String(20))  # open | investigating | resolved | waived
    what: Mapped[str] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)
    expected: Mapped[str | None] = mapped_column(Text)
    actual: Mapped[str | None] = mapped_column(Text)
    # Everything the finding points at (invoice and line numbers, PO, time entries...).
    location: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_id: Mapped[str | None] = mapped_column(String(40))
    invoice_id: Mapped[str | None] = mapped_column(String(40))
    invoice_line_id: Mapped[str | None] = mapped_column(String(40))
    purchase_order_id: Mapped[str | None] = mapped_column(String(40))
    time_entry_id: Mapped[str | None] = mapped_column(String(40))
    # What else it is about: subscription, charge, milestone, usage, time.
    subject_type: Mapped[str | None] = mapped_column(String(20))
    subject_id: Mapped[str | None] = mapped_column(String(40))
    assignee_key_id: Mapped[str | None] = mapped_column(String(40))
    # adjust_draft | credit_note | debit_note | waive
    resolution: Mapped[str | None] = mapped_column(String(20))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # What the customer is told: what changed and why.
    customer_message: Mapped[str | None] = mapped_column(Text)
    credit_note_id: Mapped[str | None] = mapped_column(String(40))
    debit_note_id: Mapped[str | None] = mapped_column(String(40))
    # The approval request of a manager's override of this blocking finding.
    override_approval_id: Mapped[str | None] = mapped_column(String(40))
    run_id: Mapped[str | None] = mapped_column(String(40))
    opened_by: Mapped[str | None] = mapped_column(String(40))
    resolved_by: Mapped[str | None] = mapped_column(String(40))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class DiscrepancyComment(Base):
    __tablename__ = "discrepancy_comments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    discrepancy_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("discrepancies.id"), index=True
    )
    author_key_id: Mapped[str | None] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


# -- distribution: the outbox of e-mails and webhooks (issue 6, items 3 and 5) -----------------


class Delivery(Base):
    """One message to send, written in the same transaction as the event it tells about: a
    document e-mailed to a customer, or an event posted to a webhook endpoint. The job worker
    claims it (status `sending`, committed before talking to the server), sends it and records
    the outcome; an e-mail found in `sending` after a crash is never sent again by itself."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_org_status", "organization_id", "status"),
        Index("ix_deliveries_org_document", "organization_id", "document_id"),
        Index("ix_deliveries_org_endpoint", "organization_id", "endpoint_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    channel: Mapped[str] = mapped_column(String(10))  # email | webhook
    status: Mapped[str] = mapped_column(String(10))  # queued|sending|sent|failed|unknown
    # E-mail: the document sent (invoice, credit_note, debit_note, dunning_reminder,
    # statement), its number, the customer and the addresses.
    document_type: Mapped[str | None] = mapped_column(String(20))
    document_id: Mapped[str | None] = mapped_column(String(40))
    document_number: Mapped[str | None] = mapped_column(String(60))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str | None] = mapped_column(String(300))
    # What goes along: {"einvoice": "ubl", "from": "2026-01-01", "to": "2026-03-31"}.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Webhook: the endpoint, the event and its body (the same bytes on every attempt).
    endpoint_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str | None] = mapped_column(String(60))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The Message-ID header of an e-mail, the webhook-id of a webhook: stable across attempts.
    message_id: Mapped[str] = mapped_column(String(300))
    replay_of: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    # host:pid:token of the worker that claimed it: a restarted worker recognises its dead
    # predecessor's claims at once instead of waiting for the lease to run out.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    requested_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class DeliveryAttempt(Base):
    """The log of a delivery: each attempt and what the server answered."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    delivery_id: Mapped[str] = mapped_column(String(40), ForeignKey("deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(10))  # sent | retry | failed | unknown
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


class WebhookEndpoint(Base):
    """Where an organisation wants its events posted. The signing secret is kept encrypted
    (Fernet, with TALLYBOOK_SECRET_KEY): it is needed to sign, and shown once at creation."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(300))
    # Event types ("invoice.issued"), or ["*"] for every event.
    events: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# -- customer portal links (issue 6, item 4) ----------------------------------------------------


class PortalLink(Base):
    """A signed, expiring link to a customer's portal. The token itself is never stored: it is
    the signature (TALLYBOOK_SECRET_KEY) over this row's id, organisation, customer and expiry.
    A link is refused once `revoked_at` is set; revoking all a customer's links sets them all."""

    __tablename__ = "portal_links"
    __table_args__ = (Index("ix_portal_links_org_customer", "organization_id", "customer_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    customer_id: Mapped[str] = mapped_column(String(40), ForeignKey("customers.id"))
    expires_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(40))
