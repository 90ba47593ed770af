"""`tallybook demo`: build "Northwind Cloud Ltd" in a fresh SQLite file through the services,
bill three monthly cycles (January to March 2026), and print what a billing team would look at.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from stdnum import ean

from tallybook import demo_cash
from tallybook.core.money import format_minor, from_minor, round_to_minor
from tallybook.db.engine import upgrade_database
from tallybook.db.models import Invoice
from tallybook.demo_cash import CashReport
from tallybook.services import (
    billing,
    catalog,
    contracts,
    credit_notes,
    customers,
    events,
    invoices,
    metering,
    organizations,
    subscriptions,
)
from tallybook.services.base import Actor, Database, Role

DEFAULT_PATH = "tallybook-demo.db"
ORG_NAME = "Northwind Cloud Ltd"
SEED = 42
PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)
# Each run bills at noon UTC on the 1st: past local midnight from Los Angeles to Tokyo.
RUNS = (
    datetime(2026, 2, 1, 12, tzinfo=UTC),
    datetime(2026, 3, 1, 12, tzinfo=UTC),
    datetime(2026, 4, 1, 12, tzinfo=UTC),
)
CREDIT_NOTE_DATE = date(2026, 4, 2)
# Only for ranking customers across currencies in the "Top customers" table.
SELLER = {
    "address_line1": "1 King William Street",
    "city": "London",
    "postal_code": "EC4N 7AR",
    "vat_id": "GB980780684",
    "legal_registration_id": "07228130",
    "electronic_address_scheme": "0088",
    "electronic_address": "5012345000008",
    "iban": "GB33BUKB20201555555555",
    "bic": "BUKBGB22",
    "contact_email": "billing@northwind.example",
}
# GS1 company prefixes (fictitious companies, real country ranges) for customers' GLNs.
GS1_PREFIXES = {"DE": "4012345", "FR": "3012345", "GB": "5012346", "US": "0614141", "JP": "4512345"}
EUR_PER_UNIT = {
    "EUR": Decimal(1),
    "USD": Decimal("0.92"),
    "GBP": Decimal("1.17"),
    "JPY": Decimal("0.0062"),
}

# Prices per currency: fees, seat prices, tiers and usage rates, as a price list would show them.
PRICE_BOOK: dict[str, dict[str, Any]] = {
    "EUR": {
        "starter_fee": "19",
        "starter_seat": "9",
        "business_fee": "79",
        "business_seat": "8",
        "business_seat_v2": "8.50",
        "scale_fee": "249",
        "scale_tiers": ("12", "9", "6"),
        "api_package": "1.50",
        "email_tiers": ("0.0010", "0.0008", "0.0005"),
        "pay_fixed": "0.25",
        "pay_min": "0.40",
        "pay_max": "15",
        "compute_hour": "0.045",
        "commitment": "150",
        "handbook": "4.90",
        "setup": "750",
        "hourly": "135",
    },
    "USD": {
        "starter_fee": "19",
        "starter_seat": "10",
        "business_fee": "89",
        "business_seat": "9",
        "business_seat_v2": "9.50",
        "scale_fee": "279",
        "scale_tiers": ("13", "10", "7"),
        "api_package": "1.75",
        "email_tiers": ("0.0012", "0.0009", "0.0006"),
        "pay_fixed": "0.30",
        "pay_min": "0.50",
        "pay_max": "18",
        "compute_hour": "0.05",
        "commitment": "175",
        "setup": "950",
        "hourly": "160",
    },
    "GBP": {
        "starter_fee": "16",
        "starter_seat": "8",
        "business_fee": "69",
        "business_seat": "7",
        "business_seat_v2": "7.50",
        "scale_fee": "219",
        "scale_tiers": ("10", "8", "5"),
        "api_package": "1.30",
        "email_tiers": ("0.0009", "0.0007", "0.0004"),
        "pay_fixed": "0.20",
        "pay_min": "0.35",
        "pay_max": "12",
        "compute_hour": "0.04",
        "commitment": "130",
        "setup": "650",
        "hourly": "120",
    },
    "JPY": {
        "starter_fee": "2900",
        "starter_seat": "1400",
        "business_fee": "11900",
        "business_seat": "1200",
        "business_seat_v2": "1300",
        "scale_fee": "37900",
        "scale_tiers": ("1900", "1400", "900"),
        "api_package": "230",
        "email_tiers": ("0.15", "0.12", "0.08"),
        "pay_fixed": "40",
        "pay_min": "60",
        "pay_max": "2500",
        "compute_hour": "7",
        "commitment": "23000",
        "setup": "120000",
        "hourly": "21000",
    },
}

# Where customers are: currency, country, region, cities, time zone, language, legal forms, count.
MARKETS = (
    (
        "EUR",
        "DE",
        None,
        ("Berlin", "Munich", "Hamburg", "Cologne", "Leipzig"),
        "Europe/Berlin",
        "de",
        ("GmbH", "AG", "GmbH & Co. KG"),
        20,
    ),
    ("USD", "US", "NY", ("New York",), "America/New_York", "en", ("Inc.", "LLC", "Corp."), 10),
    (
        "USD",
        "US",
        "NY",
        ("Buffalo", "Albany", "Rochester"),
        "America/New_York",
        "en",
        ("Inc.", "LLC"),
        3,
    ),
    (
        "USD",
        "US",
        "CA",
        ("San Francisco", "Los Angeles"),
        "America/Los_Angeles",
        "en",
        ("Inc.", "LLC"),
        3,
    ),
    ("USD", "US", "TX", ("Austin",), "America/Chicago", "en", ("Inc.", "LLC"), 2),
    ("JPY", "JP", None, ("Tokyo", "Osaka", "Yokohama"), "Asia/Tokyo", "ja", ("K.K.",), 10),
    (
        "GBP",
        "GB",
        None,
        ("London", "Manchester", "Edinburgh", "Bristol"),
        "Europe/London",
        "en",
        ("Ltd", "plc"),
        10,
    ),
)
NAME_WORDS = (
    "Alder",
    "Birch",
    "Cobalt",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Indigo",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Onyx",
    "Pioneer",
    "Quarry",
    "Riverside",
    "Saffron",
    "Tidewater",
    "Umber",
    "Vantage",
    "Willow",
    "Zenith",
)
TRADE_WORDS = (
    "Analytics",
    "Logistics",
    "Robotics",
    "Foods",
    "Media",
    "Health",
    "Energy",
    "Labs",
    "Systems",
    "Textiles",
    "Mobility",
    "Design",
    "Finance",
    "Retail",
    "Studios",
    "Marine",
)


@dataclass
class CustomerSpec:
    """A demo customer and the subscription it starts in January."""

    legal_name: str
    currency: str
    country: str
    region: str | None
    city: str
    timezone: str
    language: str
    tier: str  # starter | business | scale
    seats: int
    anchor: str
    start_day: int
    trial_days: int = 0
    role: str | None = None  # the scenario this customer plays, if any
    extra: dict[str, Any] = field(default_factory=dict)
    customer_id: str = ""
    subscription_id: str = ""
    tiers_over_time: list[tuple[datetime, str]] = field(default_factory=list)
    ends_at: datetime | None = None

    @property
    def start_at(self) -> datetime:
        return datetime(2026, 1, self.start_day, 9, tzinfo=ZoneInfo(self.timezone))

    @property
    def billing_start(self) -> datetime:
        return self.start_at + timedelta(days=self.trial_days)


Story = list[tuple[date, str, str]]  # (when, customer, what happened)


@dataclass
class Cast:
    admin: Actor
    manager: Actor
    clerk: Actor


@dataclass
class CycleReport:
    as_of: datetime
    drafts: int
    approved: int
    issued: int
    first_number: str | None
    last_number: str | None


@dataclass
class DemoResult:
    organization_id: str
    cast: Cast
    specs: list[CustomerSpec]
    cycles: list[CycleReport]
    credit_note_id: str
    explained: tuple[str, str]  # (invoice id, line id)
    story: Story
    cash: CashReport | None = None


# -- building the organisation ------------------------------------------------------------------


def _make_specs(rng: random.Random) -> list[CustomerSpec]:
    names = iter(rng.sample([f"{a} {b}" for a in NAME_WORDS for b in TRADE_WORDS], 80))
    specs: list[CustomerSpec] = []
    for currency, country, region, cities, tz, language, forms, count in MARKETS:
        for _ in range(count):
            tier = rng.choices(("starter", "business", "scale"), weights=(45, 35, 20))[0]
            specs.append(
                CustomerSpec(
                    legal_name=f"{next(names)} {rng.choice(forms)}",
                    currency=currency,
                    country=country,
                    region=region,
                    city=rng.choice(cities),
                    timezone=tz,
                    language=language,
                    tier=tier,
                    seats=rng.randint(2, 12) if tier == "starter" else rng.randint(5, 60),
                    anchor=rng.choice(("calendar", "anniversary")),
                    start_day=rng.randint(1, 20),
                )
            )
    by_currency: dict[str, list[CustomerSpec]] = defaultdict(list)
    for spec in specs:
        by_currency[spec.currency].append(spec)
    eur, usd, jpy, gbp = (by_currency[c] for c in ("EUR", "USD", "JPY", "GBP"))

    def cast(
        spec: CustomerSpec,
        role: str,
        tier: str,
        seats: int,
        anchor: str,
        day: int,
        trial: int = 0,
        **extra: Any,
    ) -> None:
        spec.role, spec.tier, spec.seats, spec.anchor = role, tier, seats, anchor
        spec.start_day, spec.trial_days, spec.extra = day, trial, extra

    cast(eur[0], "upgrade", "starter", 8, "calendar", 1)
    cast(eur[1], "coupon_percent", "business", 12, "anniversary", 6, tax_ids=["DE136695976"])
    cast(eur[2], "contract", "scale", 18, "calendar", 5)
    cast(eur[3], "time_and_materials", "business", 6, "anniversary", 14)
    cast(eur[4], "credit_note", "business", 15, "calendar", 1)
    cast(usd[0], "downgrade", "business", 25, "calendar", 1)
    cast(usd[1], "trial_mid_period", "starter", 5, "calendar", 12, trial=30)
    cast(usd[2], "setup_fee_and_fixed_coupon", "scale", 10, "anniversary", 9)
    cast(usd[3], "enterprise", "business", 640, "calendar", 1, payment_terms_days=45)
    cast(jpy[0], "trial_to_31st", "business", 20, "anniversary", 17, trial=14)
    cast(gbp[0], "cancellation", "business", 9, "anniversary", 8)
    specs.append(
        CustomerSpec(
            legal_name="Librairie Lumière SAS",
            currency="EUR",
            country="FR",
            region=None,
            city="Lyon",
            timezone="Europe/Paris",
            language="fr",
            tier="scale",
            seats=14,
            anchor="anniversary",
            start_day=12,
            role="reverse_charge",
            extra={"tax_ids": ["FR40303265045"], "reverse_charge": True},
        )
    )
    specs.append(
        CustomerSpec(
            legal_name="Harlem Community Food Bank Inc.",
            currency="USD",
            country="US",
            region="NY",
            city="New York",
            timezone="America/New_York",
            language="en",
            tier="starter",
            seats=7,
            anchor="calendar",
            start_day=1,
            role="tax_exempt",
            extra={"tax_exempt": True},
        )
    )
    return specs


def _setup_organization(db: Database) -> Cast:
    org, key = organizations.create_organization(db, ORG_NAME, "GBP", timezone="Europe/London")
    admin = Actor(org.id, key.id, Role.ADMIN)
    organizations.update_settings(
        db,
        admin,
        {
            "country": "GB",
            "proration_policy": "exact_days",
            "rounding_mode": "half_up",
            "tax_rounding": "per_line",
            "invoice_number_pattern": "NW-{YYYY}-{seq:05}",
            "credit_note_number_pattern": "NWC-{YYYY}-{seq:05}",
            "approval_thresholds": {"EUR": "5000", "USD": "5000", "GBP": "4000", "JPY": "750000"},
            # The seller on e-invoices: a Peppol GLN endpoint, the UK VAT and company numbers,
            # the account customers pay into.
            **SELLER,
        },
    )
    manager = organizations.create_api_key(db, admin, "Finance manager", "billing_manager")
    clerk = organizations.create_api_key(db, admin, "Billing clerk", "billing_clerk")
    return Cast(
        admin,
        Actor(org.id, manager.id, Role.BILLING_MANAGER),
        Actor(org.id, clerk.id, Role.BILLING_CLERK),
    )


def _setup_taxes(db: Database, admin: Actor) -> None:
    for values in (
        {"code": "DE-VAT-19", "name": "DE VAT", "jurisdiction": "DE", "percent": "19"},
        {
            "code": "DE-VAT-7",
            "name": "DE VAT reduced",
            "jurisdiction": "DE",
            "percent": "7",
            "tax_category": "reduced",
        },
        {
            "code": "US-NY",
            "name": "New York State sales tax",
            "jurisdiction": "US-NY",
            "percent": "4",
        },
        {
            "code": "US-NY-NYC",
            "name": "New York City sales tax",
            "jurisdiction": "US-NY-NEW YORK",
            "percent": "4.5",
        },
        {"code": "GB-VAT-20", "name": "UK VAT", "jurisdiction": "GB", "percent": "20"},
    ):
        catalog.create_tax_rate(db, admin, values)


def _setup_catalog(db: Database, admin: Actor) -> dict[str, str]:
    """Products, prices and three plans per currency; ids by plan code and "product:code"."""
    products = {}
    for code, name, extra in (
        ("platform", "Platform fee", {}),
        ("seats", "User seats", {"unit_label": "seats"}),
        ("api-calls", "API calls", {"unit_label": "API calls"}),
        ("emails", "Transactional e-mails", {"unit_label": "e-mails"}),
        ("payments", "Payment processing", {"unit_label": "transactions"}),
        ("compute", "Managed compute", {"unit_label": "vCPU-hours"}),
        ("handbook", "Developer handbook (e-book)", {"tax_category": "reduced"}),
        ("setup", "Onboarding and setup", {}),
        ("services", "Professional services", {"unit_label": "hours"}),
    ):
        products[code] = catalog.create_product(db, admin, {"code": code, "name": name, **extra})

    # What the meters send: weekly API-call, e-mail and compute readings, one event per payment.
    for code, name, field_name in (
        ("api_calls", "API calls", "calls"),
        ("emails", "E-mails sent", "sent"),
        ("payments", "Card payments", "amount"),
        ("compute", "Compute hours", "hours"),
    ):
        metering.create_metric(
            db, admin, {"code": code, "name": name, "aggregation": "sum", "field": field_name}
        )

    def price(
        code: str,
        product: str,
        currency: str,
        terms: dict[str, Any],
        kind: str = "recurring",
        metric: str | None = None,
    ) -> str:
        catalog.create_price(
            db,
            admin,
            {
                "code": code,
                "product_id": products[product].id,
                "currency": currency,
                "kind": kind,
                "terms": terms,
                "effective_from": PRICES_FROM,
                "metric_code": metric,
            },
        )
        return code

    def tiers(up_to: tuple[str | None, ...], unit_prices: tuple[str, ...]) -> list[dict[str, Any]]:
        return [{"up_to": u, "unit_price": p} for u, p in zip(up_to, unit_prices, strict=True)]

    plans: dict[str, str] = {}
    for currency, book in PRICE_BOOK.items():
        c = currency.lower()
        starter = [
            price(
                f"starter-platform-{c}",
                "platform",
                currency,
                {"model": "flat", "amount": book["starter_fee"]},
            ),
            price(
                f"starter-seats-{c}",
                "seats",
                currency,
                {"model": "per_unit", "amount": book["starter_seat"]},
            ),
        ]
        usage_api = price(
            f"api-calls-{c}",
            "api-calls",
            currency,
            {
                "model": "package",
                "amount": book["api_package"],
                "package_size": "1000",
                "free_units": "100",
            },
            kind="usage",
            metric="api_calls",
        )
        usage_email = price(
            f"emails-{c}",
            "emails",
            currency,
            {"model": "volume", "tiers": tiers(("10000", "100000", None), book["email_tiers"])},
            kind="usage",
            metric="emails",
        )
        business = [
            price(
                f"business-platform-{c}",
                "platform",
                currency,
                {"model": "flat", "amount": book["business_fee"]},
            ),
            price(
                f"business-seats-{c}",
                "seats",
                currency,
                {"model": "per_unit", "amount": book["business_seat"]},
            ),
            usage_api,
            usage_email,
        ]
        if "handbook" in book:
            business.append(
                price(
                    f"handbook-{c}",
                    "handbook",
                    currency,
                    {"model": "flat", "amount": book["handbook"]},
                )
            )
        scale = [
            price(
                f"scale-platform-{c}",
                "platform",
                currency,
                {"model": "flat", "amount": book["scale_fee"]},
            ),
            price(
                f"scale-seats-{c}",
                "seats",
                currency,
                {"model": "graduated", "tiers": tiers(("10", "50", None), book["scale_tiers"])},
            ),
            price(
                f"payments-{c}",
                "payments",
                currency,
                {
                    "model": "percentage",
                    "percent": "2.9",
                    "fixed_fee_per_transaction": book["pay_fixed"],
                    "free_transactions": 3,
                    "min_per_transaction": book["pay_min"],
                    "max_per_transaction": book["pay_max"],
                },
                kind="usage",
                metric="payments",
            ),
            price(
                f"compute-{c}",
                "compute",
                currency,
                {
                    "model": "per_unit",
                    "amount": book["compute_hour"],
                    "minimum_commitment": book["commitment"],
                },
                kind="usage",
                metric="compute",
            ),
        ]
        for tier, codes in (("starter", starter), ("business", business), ("scale", scale)):
            plan = catalog.create_plan(
                db,
                admin,
                {
                    "code": f"{tier}-{c}",
                    "name": tier.capitalize(),
                    "currency": currency,
                    "price_codes": codes,
                },
            )
            plans[f"{tier}-{c}"] = plan.id
        # Business seats go up on 1 March: periods from then on bill version 2.
        catalog.new_price_version(
            db,
            admin,
            f"business-seats-{c}",
            {"model": "per_unit", "amount": book["business_seat_v2"]},
            effective_from=datetime(2026, 3, 1, tzinfo=UTC),
        )
    catalog.create_coupon(
        db,
        admin,
        {
            "code": "LAUNCH20",
            "name": "Launch offer 20%",
            "kind": "percent",
            "value": "20",
            "duration": "repeating",
            "duration_periods": 3,
        },
    )
    catalog.create_coupon(
        db,
        admin,
        {
            "code": "SWITCH100",
            "name": "Switching credit USD 100",
            "kind": "fixed",
            "value": "100",
            "currency": "USD",
            "duration": "once",
        },
    )
    plans.update({f"product:{code}": p.id for code, p in products.items()})
    return plans


def _electronic_address(spec: CustomerSpec, index: int) -> dict[str, str]:
    """Where the customer receives e-invoices: its VAT number where a Peppol VAT scheme exists
    (9930 Germany, 9957 France), else a GLN (0088) under a GS1 company prefix of its country."""
    for value in spec.extra.get("tax_ids", []):
        scheme = {"DE": "9930", "FR": "9957"}.get(value[:2])
        if scheme:
            return {"electronic_address_scheme": scheme, "electronic_address": value}
    body = f"{GS1_PREFIXES[spec.country]}{10000 + index:05d}"
    return {
        "electronic_address_scheme": "0088",
        "electronic_address": body + ean.calc_check_digit(body),
    }


def _create_customers(
    db: Database, cast: Cast, specs: list[CustomerSpec], ids: dict[str, str], rng: random.Random
) -> None:
    for index, spec in enumerate(specs):
        slug = "".join(ch for ch in spec.legal_name.lower().split(" ")[0] if ch.isalnum())
        extra = dict(spec.extra)
        values = {
            "legal_name": spec.legal_name,
            "country": spec.country,
            "currency": spec.currency,
            "timezone": spec.timezone,
            "language": spec.language,
            "city": spec.city,
            "region": spec.region,
            "address_line1": f"{rng.randint(1, 240)} Market Street",
            "postal_code": f"{rng.randint(10000, 99999)}",
            "emails": [f"accounts@{slug}{index}.example"],
            "payment_terms_days": extra.pop("payment_terms_days", rng.choice((14, 30))),
            "external_id": f"crm-{1000 + index}",
            **_electronic_address(spec, index),
            **extra,
        }
        customer = customers.create_customer(db, cast.clerk, values)
        spec.customer_id = customer.id
        plan_code = f"{spec.tier}-{spec.currency.lower()}"
        sub = subscriptions.create_subscription(
            db,
            cast.clerk,
            {
                "customer_id": customer.id,
                "plan_id": ids[plan_code],
                "quantity": spec.seats,
                "start_at": spec.start_at,
                "anchor": spec.anchor,
                "trial_days": spec.trial_days,
            },
        )
        spec.subscription_id = sub.id
        spec.tiers_over_time.append((spec.billing_start, spec.tier))


# -- the story between billing runs ---------------------------------------------------------------


def _by_role(specs: list[CustomerSpec], role: str) -> CustomerSpec:
    return next(spec for spec in specs if spec.role == role)


def _trials(specs: list[CustomerSpec], story: Story) -> None:
    for role in ("trial_mid_period", "trial_to_31st"):
        spec = _by_role(specs, role)
        story.append(
            (
                spec.start_at.date(),
                spec.legal_name,
                f"starts a {spec.trial_days}-day trial of {spec.tier.capitalize()} "
                f"({spec.anchor} billing from {spec.billing_start.date()})",
            )
        )


def _january_events(
    db: Database, cast: Cast, specs: list[CustomerSpec], ids: dict[str, str], story: Story
) -> str:
    _trials(specs, story)
    percent = _by_role(specs, "coupon_percent")
    catalog.apply_coupon(db, cast.clerk, percent.customer_id, "LAUNCH20")
    story.append(
        (
            percent.start_at.date(),
            percent.legal_name,
            "coupon LAUNCH20: 20% off its next 3 invoices",
        )
    )
    switcher = _by_role(specs, "setup_fee_and_fixed_coupon")
    catalog.apply_coupon(db, cast.clerk, switcher.customer_id, "SWITCH100")
    story.append(
        (
            date(2026, 1, 9),
            switcher.legal_name,
            "setup fee USD 950 and coupon SWITCH100 (USD 100 off once)",
        )
    )
    contracts.create_charge(
        db,
        cast.clerk,
        {
            "customer_id": switcher.customer_id,
            "kind": "one_off",
            "description": "Onboarding and setup fee",
            "product_id": ids["product:setup"],
            "quantity": 1,
            "unit_price": PRICE_BOOK["USD"]["setup"],
            "billable_at": datetime(2026, 1, 9, 15, tzinfo=UTC),
            "service_date": "2026-01-09",
        },
    )
    client = _by_role(specs, "contract")
    contract = contracts.create_contract(
        db,
        cast.clerk,
        {
            "customer_id": client.customer_id,
            "reference": "NW-PS-2026-014",
            "name": "Data platform migration",
            "start_date": "2026-01-05",
            "end_date": "2026-06-30",
            "milestones": [
                {
                    "name": "Discovery and design",
                    "amount": "3500",
                    "product_id": ids["product:services"],
                },
                {
                    "name": "Migration of production data",
                    "amount": "8000",
                    "product_id": ids["product:services"],
                },
                {
                    "name": "Go-live and hypercare",
                    "amount": "4500",
                    "product_id": ids["product:services"],
                },
            ],
        },
    )
    milestones = contracts.list_milestones(db, cast.clerk, contract.id)
    contracts.complete_milestone(
        db, cast.clerk, milestones[0].id, completed_at=datetime(2026, 1, 28, 16, tzinfo=UTC)
    )
    story.append(
        (
            date(2026, 1, 28),
            client.legal_name,
            "contract NW-PS-2026-014: milestone 1 of 3 done (EUR 3,500)",
        )
    )
    return milestones[1].id


def _february_events(
    db: Database, cast: Cast, specs: list[CustomerSpec], ids: dict[str, str], story: Story
) -> None:
    upgrade = _by_role(specs, "upgrade")
    subscriptions.change_subscription(
        db,
        cast.clerk,
        upgrade.subscription_id,
        {
            "plan_id": ids["business-eur"],
            "quantity": 10,
            "note": "upgrade to Business",
            "effective_at": datetime(2026, 2, 15, tzinfo=ZoneInfo(upgrade.timezone)),
        },
    )
    upgrade.tiers_over_time.append(
        (datetime(2026, 2, 15, tzinfo=ZoneInfo(upgrade.timezone)), "business")
    )
    downgrade = _by_role(specs, "downgrade")
    subscriptions.change_subscription(
        db,
        cast.clerk,
        downgrade.subscription_id,
        {
            "quantity": 18,
            "note": "seven seats released",
            "effective_at": datetime(2026, 2, 20, tzinfo=ZoneInfo(downgrade.timezone)),
        },
    )
    story.append(
        (
            date(2026, 2, 15),
            upgrade.legal_name,
            "upgrades Starter (8 seats) to Business (10 seats) mid-period",
        )
    )
    story.append((date(2026, 2, 20), downgrade.legal_name, "goes from 25 to 18 seats mid-period"))
    consultant = _by_role(specs, "time_and_materials")
    contracts.create_charge(
        db,
        cast.clerk,
        {
            "customer_id": consultant.customer_id,
            "kind": "time_and_materials",
            "description": "Integration workshop and SSO set-up",
            "product_id": ids["product:services"],
            "quantity": "14.5",
            "unit_price": PRICE_BOOK["EUR"]["hourly"],
            "reference": "timesheets 2026-02 (J. Kowalski)",
            "billable_at": datetime(2026, 2, 26, 17, tzinfo=UTC),
            "service_date": "2026-02-26",
        },
    )
    story.append(
        (date(2026, 2, 26), consultant.legal_name, "14.5 hours of time and materials at EUR 135")
    )
    story.append(
        (
            date(2026, 3, 1),
            "(every Business customer)",
            "seat price version 2 takes effect for periods from 1 March",
        )
    )


def _march_events(
    db: Database, cast: Cast, specs: list[CustomerSpec], milestone_id: str, story: Story
) -> None:
    contracts.complete_milestone(
        db, cast.clerk, milestone_id, completed_at=datetime(2026, 3, 12, 11, tzinfo=UTC)
    )
    leaving = _by_role(specs, "cancellation")
    subscriptions.cancel_subscription(
        db,
        cast.clerk,
        leaving.subscription_id,
        effective_at=datetime(2026, 3, 20, tzinfo=ZoneInfo(leaving.timezone)),
    )
    leaving.ends_at = datetime(2026, 3, 20, tzinfo=ZoneInfo(leaving.timezone))
    client = _by_role(specs, "contract")
    story.append(
        (
            date(2026, 3, 12),
            client.legal_name,
            "milestone 2 of 3 done (EUR 8,000: above the approval threshold)",
        )
    )
    story.append((date(2026, 3, 20), leaving.legal_name, "cancels; service ends 2026-03-20"))


def _report_usage(db: Database, cast: Cast, specs: list[CustomerSpec], month: int) -> int:
    """Usage for one calendar month of 2026, sent as usage events per metered subscription:
    weekly API-call, e-mail and compute meter readings and one event per card payment."""
    batch: list[dict[str, Any]] = []
    for index, spec in enumerate(specs):
        # The customer's own calendar month: usage before local midnight of the 1st belongs to
        # the previous period, which has already been invoiced.
        start_of_month = datetime(2026, month, 1, tzinfo=ZoneInfo(spec.timezone))
        end_of_month = datetime(2026, month + 1, 1, tzinfo=ZoneInfo(spec.timezone))
        rng = random.Random(SEED * 1000 + index * 12 + month)
        for (since, until), tier in _tier_windows(spec):
            lo = max(since, spec.billing_start, start_of_month)
            hi = min(until, spec.ends_at or end_of_month, end_of_month)
            if hi <= lo or tier == "starter":
                continue
            seconds = int((hi - lo).total_seconds())
            weeks = max(1, round(seconds / 604_800))
            records: list[tuple[str, int, Decimal | None]] = []
            if tier == "business":
                records += [("api_calls", rng.randint(4_000, 35_000), None) for _ in range(weeks)]
                records += [("emails", rng.randint(500, 15_000), None) for _ in range(weeks)]
            else:
                payments = max(1, round(rng.randint(6, 14) * seconds / 2_678_400))
                # Card payments of 15.00 to 950.00 (2,000 to 140,000 yen).
                records += [
                    (
                        "payments",
                        1,
                        Decimal(rng.randint(2_000, 140_000))
                        if spec.currency == "JPY"
                        else Decimal(rng.randint(1_500, 95_000)) / 100,
                    )
                    for _ in range(payments)
                ]
                records += [("compute", rng.randint(100, 1_000), None) for _ in range(weeks)]
            fields = {"api_calls": "calls", "emails": "sent", "compute": "hours"}
            for n, (metric, quantity, value) in enumerate(records):
                at = lo + timedelta(seconds=rng.randrange(seconds))
                batch.append(
                    {
                        "transaction_id": f"{spec.subscription_id}-{month}-{since:%m%d}-{n}",
                        "subscription_id": spec.subscription_id,
                        "metric": metric,
                        "timestamp": at.isoformat(),
                        "properties": {"amount": _money(value, spec.currency)}
                        if value is not None
                        else {fields[metric]: quantity},
                    }
                )
    for start in range(0, len(batch), events.MAX_BATCH):
        result = events.ingest_events(db, cast.clerk, batch[start : start + events.MAX_BATCH])
        assert result.accepted == len(batch[start : start + events.MAX_BATCH]), result.summary()
    return len(batch)


def _money(value: Decimal, currency: str) -> str:
    """A generated transaction value in the currency's minor units, as the money module rounds."""
    return str(from_minor(round_to_minor(value, currency), currency))


def _tier_windows(spec: CustomerSpec) -> list[tuple[tuple[datetime, datetime], str]]:
    """(from, until) windows of the plan tier the subscription was on."""
    far = datetime(2100, 1, 1, tzinfo=UTC)
    result = []
    for index, (since, tier) in enumerate(spec.tiers_over_time):
        until = spec.tiers_over_time[index + 1][0] if index + 1 < len(spec.tiers_over_time) else far
        result.append(((since, until), tier))
    return result


# -- billing cycles ------------------------------------------------------------------------------


def _all_invoices(db: Database, actor: Actor, status: str | None = None) -> list[Invoice]:
    rows: list[Invoice] = []
    after = None
    while True:
        page, after = invoices.list_invoices(db, actor, status=status, limit=500, after=after)
        rows.extend(page)
        if after is None:
            return rows


def _cycle(db: Database, cast: Cast, as_of: datetime, names: dict[str, str]) -> CycleReport:
    run = billing.run_billing(db, cast.clerk, as_of)
    drafts = sorted(
        _all_invoices(db, cast.clerk, "draft"),
        key=lambda inv: (inv.billing_date, names[inv.customer_id], inv.currency),
    )
    approved = 0
    numbers = []
    issue_day = as_of.date()
    for draft in drafts:
        if draft.approval_status == "pending":
            invoices.approve_invoice(db, cast.manager, draft.id)
            approved += 1
        numbers.append(
            invoices.issue_invoice(db, cast.clerk, draft.id, issue_date=issue_day).number
        )
    return CycleReport(
        as_of,
        run.invoices_created,
        approved,
        len(numbers),
        numbers[0] if numbers else None,
        numbers[-1] if numbers else None,
    )


def _credit_note(db: Database, cast: Cast, specs: list[CustomerSpec]) -> str:
    """Credit two of the seats on the target customer's March invoice."""
    target = _by_role(specs, "credit_note")
    issued = sorted(_all_invoices(db, cast.manager), key=lambda inv: inv.billing_date)
    invoice = next(
        inv
        for inv in issued
        if inv.customer_id == target.customer_id and inv.billing_date == date(2026, 3, 1)
    )
    _, lines = invoices.get_invoice(db, cast.manager, invoice.id)
    seats = next(
        line
        for line in lines
        if line.kind == "subscription" and line.explanation["price"]["model"] == "per_unit"
    )
    note = credit_notes.create_credit_note(
        db,
        cast.manager,
        invoice.id,
        {
            "reason": "Two seats were provisioned by mistake and never activated",
            "lines": [{"line_id": seats.id, "quantity": "2"}],
            "issue_date": CREDIT_NOTE_DATE,
        },
    )
    return note.id


def _prorated_line(db: Database, cast: Cast, specs: list[CustomerSpec]) -> tuple[str, str]:
    """The upgrade's charge for the rest of February on the Business plan."""
    upgrade = _by_role(specs, "upgrade")
    for invoice in _all_invoices(db, cast.clerk):
        if invoice.customer_id != upgrade.customer_id or invoice.billing_date != date(2026, 3, 1):
            continue
        _, lines = invoices.get_invoice(db, cast.clerk, invoice.id)
        for line in lines:
            explanation = line.explanation
            if (
                explanation.get("proration")
                and explanation.get("weight") == 1
                and explanation["price"]["model"] == "per_unit"
            ):
                return invoice.id, line.id
    raise LookupError("the upgrade produced no prorated line")


def build(db: Database) -> DemoResult:
    """Create the organisation and bill January to March 2026; every instant is explicit."""
    rng = random.Random(SEED)
    cast = _setup_organization(db)
    _setup_taxes(db, cast.admin)
    ids = _setup_catalog(db, cast.admin)
    specs = _make_specs(rng)
    _create_customers(db, cast, specs, ids, rng)
    names = {spec.customer_id: spec.legal_name for spec in specs}
    story: Story = []
    milestone_id = _january_events(db, cast, specs, ids, story)
    cycles = []
    _report_usage(db, cast, specs, 1)
    cycles.append(_cycle(db, cast, RUNS[0], names))
    _february_events(db, cast, specs, ids, story)
    _report_usage(db, cast, specs, 2)
    cycles.append(_cycle(db, cast, RUNS[1], names))
    _march_events(db, cast, specs, milestone_id, story)
    _report_usage(db, cast, specs, 3)
    cycles.append(_cycle(db, cast, RUNS[2], names))
    credit_note_id = _credit_note(db, cast, specs)
    explained = _prorated_line(db, cast, specs)
    cash = demo_cash.run(
        db,
        cast.admin,
        cast.manager,
        cast.clerk,
        names,
        {spec.customer_id: spec.country for spec in specs},
        {spec.customer_id: spec.currency for spec in specs},
    )
    return DemoResult(
        cast.admin.organization_id,
        cast,
        specs,
        cycles,
        credit_note_id,
        explained,
        sorted(story),
        cash,
    )


# -- printing ------------------------------------------------------------------------------------


def _table(
    title: str, columns: tuple[str, ...], right: tuple[str, ...] = (), caption: str | None = None
) -> Table:
    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    return table


def _print(console: Console, db: Database, result: DemoResult, path: Path) -> None:
    actor = result.cast.manager
    names = {spec.customer_id: spec.legal_name for spec in result.specs}
    spec_of = {spec.customer_id: spec for spec in result.specs}
    issued = [inv for inv in _all_invoices(db, actor) if inv.status not in ("draft", "void")]
    currencies = sorted({spec.currency for spec in result.specs})
    console.print(
        f"[bold]{ORG_NAME}[/bold]: {len(result.specs)} customers billing in "
        f"{', '.join(currencies)}; three monthly cycles, January to March 2026."
    )
    console.print(f"Database: {path}\n")

    story = _table("What happened", ("date", "customer", "event"))
    for day, customer, what in result.story:
        story.add_row(day.isoformat(), customer, what)
    console.print(story)

    runs = _table(
        "Billing runs (as of 12:00 UTC; drafts issued the same day)",
        ("run", "drafts", "approved", "issued", "invoice numbers"),
        right=("drafts", "approved", "issued"),
    )
    for cycle in result.cycles:
        runs.add_row(
            cycle.as_of.date().isoformat(),
            str(cycle.drafts),
            str(cycle.approved),
            str(cycle.issued),
            f"{cycle.first_number} to {cycle.last_number}",
        )
    console.print(runs)

    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for inv in issued:
        row = sums[inv.currency]
        for i, value in enumerate(
            (1, inv.subtotal_minor, inv.discount_minor, inv.tax_minor, inv.total_minor)
        ):
            row[i] += value
    by_currency = _table(
        "Invoices by currency",
        ("currency", "invoices", "subtotal", "discount", "tax", "total"),
        right=("invoices", "subtotal", "discount", "tax", "total"),
    )
    for currency in sorted(sums):
        count, subtotal, discount, tax, total = sums[currency]
        by_currency.add_row(
            currency,
            str(count),
            format_minor(subtotal, currency),
            format_minor(-discount, currency),
            format_minor(tax, currency),
            format_minor(total, currency),
        )
    console.print(by_currency)

    totals: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    currency_of: dict[str, str] = {}
    for inv in issued:
        totals[inv.customer_id] += inv.total_minor
        counts[inv.customer_id] += 1
        currency_of[inv.customer_id] = inv.currency

    def in_eur(cid: str) -> Decimal:
        return from_minor(totals[cid], currency_of[cid]) * EUR_PER_UNIT[currency_of[cid]]

    top = _table(
        "Top customers",
        ("customer", "country", "plan", "invoices", "total"),
        right=("invoices", "total"),
        caption="Ranked by EUR equivalent at fixed demo rates.",
    )
    for cid in sorted(totals, key=lambda cid: (-in_eur(cid), names[cid]))[:5]:
        top.add_row(
            names[cid],
            spec_of[cid].country,
            spec_of[cid].tiers_over_time[-1][1].capitalize(),
            str(counts[cid]),
            format_minor(totals[cid], currency_of[cid]),
        )
    console.print(top)
    console.print()

    note, note_lines = credit_notes.get_credit_note(db, actor, result.credit_note_id)
    invoice = invoices.get_invoice(db, actor, note.invoice_id)[0]
    credit = _table(
        f"Credit note {note.number} of {note.issue_date} against {invoice.number}"
        f" ({names[note.customer_id]})",
        ("line", "qty", "net", "tax", "total"),
        right=("qty", "net", "tax", "total"),
        caption=f"Reason: {note.reason}. The invoice's total stays "
        f"{format_minor(invoice.total_minor, invoice.currency)}; it now has "
        f"{format_minor(invoice.amount_due_minor, invoice.currency)} due.",
    )
    for line in note_lines:
        credit.add_row(
            line.description,
            _plain(line.quantity),
            format_minor(-line.subtotal_minor, note.currency),
            format_minor(-line.tax_minor, note.currency),
            format_minor(-line.total_minor, note.currency),
        )
    console.print(credit)
    console.print()

    invoice_id, line_id = result.explained
    line, sentence, currency = invoices.explain_invoice_line(db, actor, invoice_id, line_id)
    explained = invoices.get_invoice(db, actor, invoice_id)[0]
    console.print(
        Panel(
            f"[bold]{line.description}[/bold]\n"
            f"{format_minor(line.total_minor, currency)} on {explained.number} "
            f"({names[explained.customer_id]})\n\n{sentence}",
            title="Why was I charged this?",
            title_align="left",
            width=min(console.width, 100),
        )
    )
    if result.cash is not None:
        console.print()
        demo_cash.print_report(console, result.cash, _table)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def main(database_path: str | None = None) -> int:
    """Rebuild the demo database (default ./tallybook-demo.db) and print the demo report."""
    path = Path(database_path or DEFAULT_PATH).resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade_database(url)
    db = Database(url)
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # piped or captured: wide enough for the tables
    try:
        with console.status("Building Northwind Cloud Ltd and billing three months..."):
            result = build(db)
        _print(console, db, result, path)
    finally:
        db.dispose()
    return 0
