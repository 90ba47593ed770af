"""Benchmark pre-flight verification on a realistic month, in a throwaway PostgreSQL database (or
SQLite file): thousands of January drafts of time-and-materials, subscription and field-service
customers with their POs, contracts (price versions, allowed discounts), time sheets, service
reports and six months of issued history, with mistakes of every kind planted on some of them
(the truth is known per invoice) and revenue left unbilled on quiet customers. One verification
run over all drafts; a table per planted kind (planted, caught, missed, false positives), and as
the last line one JSON object with the figures.

    python bench/verification.py [--invoices 2400] [--db postgres|sqlite] [--seed 7]

Clean invoices are not trivially clean: several workers with fractional hours, time entries not
yet approved or rejected, contract price versions that changed on 1 January, POs partly used by
earlier invoices, allowed discounts and coupons, two subscriptions of one plan, usage split per
region, seat changes credited and re-charged for December, travel and parts at PO prices,
totals varying month to month. A clean invoice with any finding is a false positive.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, text

from tallybook.config import normalise_database_url
from tallybook.core.money import round_to_minor
from tallybook.db.bulk import insert_rows
from tallybook.db.engine import upgrade_database
from tallybook.db.models import (
    Base,
    Charge,
    Contract,
    ContractPrice,
    Customer,
    Invoice,
    InvoiceLine,
    Milestone,
    PurchaseOrder,
    PurchaseOrderConsumption,
    PurchaseOrderLine,
    QuarantinedEvent,
    ServiceReport,
    Subscription,
    TimeEntry,
    new_id,
)
from tallybook.services import catalog, organizations, verification
from tallybook.services.base import Actor, Database, Role

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TIMEZONE = "Europe/Berlin"
ZONE = ZoneInfo(TIMEZONE)
JANUARY = (date(2026, 1, 1), date(2026, 2, 1))
BILLING_DATE = date(2026, 2, 1)
HISTORY = [
    (date(2025, m, 1), date(2025, m + 1, 1) if m < 12 else date(2026, 1, 1)) for m in range(7, 13)
]
VAT = Decimal("0.19")
NOW = datetime(2026, 2, 1, 6, tzinfo=UTC)

# kind -> (check, severity, archetype, and the findings the mistake rightly brings along: an
# installation billed twice also exceeds the PO line and makes the total unusual)
PLANTS: dict[str, tuple[str, str, frozenset[str], str]] = {
    "po_missing": ("po_missing", "blocking", frozenset(), "tm"),
    "po_closed": ("po_closed", "blocking", frozenset(), "tm"),
    "po_expired": ("po_expired", "blocking", frozenset(), "tm"),
    "po_currency": ("po_currency", "blocking", frozenset(), "tm"),
    "po_price": ("po_price", "blocking", frozenset({"anomaly"}), "tm"),
    "po_quantity": ("po_quantity", "blocking", frozenset(), "tm"),
    "po_ceiling": ("po_ceiling", "blocking", frozenset(), "tm"),
    "contract_price": ("contract_price", "blocking", frozenset(), "tm"),
    "contract_dates": ("contract_dates", "blocking", frozenset(), "tm"),
    "contract_discount": ("contract_discount", "blocking", frozenset(), "saas"),
    "time_hours_over": ("time_hours", "blocking", frozenset({"anomaly"}), "tm"),
    "time_unapproved": ("time_hours", "blocking", frozenset(), "tm"),
    "service_report_missing": ("service_report", "blocking", frozenset(), "field"),
    "service_report_short": ("service_report", "blocking", frozenset({"anomaly"}), "field"),
    "duplicate_period": ("duplicate_charge", "blocking", frozenset(), "saas"),
    "duplicate_time_entry": (
        "duplicate_charge",
        "blocking",
        frozenset({"duplicate_po_line"}),
        "tm",
    ),
    "duplicate_po_line": (
        "duplicate_po_line",
        "blocking",
        frozenset({"po_quantity", "anomaly"}),
        "field",
    ),
    "po_unknown": ("po_unknown", "warning", frozenset(), "tm"),
    "po_unlisted_line": ("po_unlisted_line", "warning", frozenset({"anomaly"}), "tm"),
    "time_hours_under": ("time_hours", "warning", frozenset(), "tm"),
    "near_duplicate": ("near_duplicate", "warning", frozenset(), "field"),
    "anomaly": ("anomaly", "warning", frozenset(), "saas"),
}
# Revenue left unbilled, on customers with no draft this month.
LEAKS = {
    "unbilled_subscription": "subscription",
    "unbilled_charge": "charge",
    "unbilled_milestone": "milestone",
    "unbilled_usage": "usage",
    "unbilled_time": "time",
}


def log(message: str) -> None:
    print(message, flush=True)


@contextmanager
def sqlite_database() -> Iterator[str]:
    workdir = tempfile.mkdtemp(prefix="tallybook-bench-")
    try:
        yield f"sqlite:///{workdir}/bench.db"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def postgres_database() -> Iterator[str]:
    server = os.environ.get("TALLYBOOK_DATABASE_URL", DEFAULT_SERVER)
    if not server.startswith(("postgres://", "postgresql")):
        server = DEFAULT_SERVER
    name = f"tallybook_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_database_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZONE).astimezone(UTC)


def money(value: Decimal) -> int:
    """An exact amount in euros to cents."""
    return round_to_minor(value, "EUR")


def minor(value: Decimal) -> int:
    """An exact amount of cents to whole cents, half up."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- the month's rows --------------------------------------------------------------------------


@dataclass
class Line:
    kind: str
    description: str
    quantity: Decimal
    amount: Decimal
    unit_price: Decimal | None = None
    product: str | None = None
    period: tuple[date, date] | None = None
    subscription_id: str | None = None
    charge_id: str | None = None
    usage_key: str | None = None
    id: str = field(default_factory=lambda: new_id("line"))


@dataclass
class Month:
    """Rows of every table, filled in with the columns' defaults, inserted in bulk."""

    org: str
    products: dict[str, str]
    plan: str
    rows: dict[type[Base], list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    truth: dict[str, set[str]] = field(default_factory=dict)  # draft id -> planted kinds
    leaks: list[tuple[str, str]] = field(default_factory=list)  # (check, subject id)
    numbers: Counter[str] = field(default_factory=Counter)

    def add(self, model: type[Base], **values: Any) -> dict[str, Any]:
        row = {}
        for column in model.__table__.columns:
            if column.name in values:
                row[column.name] = values[column.name]
            elif column.name == "organization_id":
                row[column.name] = self.org
            elif column.name in ("created_at", "updated_at"):
                row[column.name] = NOW
            elif column.default is not None:
                arg = column.default.arg
                row[column.name] = arg(None) if column.default.is_callable else arg
            else:
                row[column.name] = None
        self.rows[model].append(row)
        return row

    def customer(self, index: int, name: str, **extra: Any) -> str:
        row = self.add(
            Customer,
            id=new_id("cus"),
            external_id=f"C-{index:06d}",
            legal_name=name,
            country="DE",
            currency="EUR",
            timezone=TIMEZONE,
            **extra,
        )
        return row["id"]

    def invoice(
        self,
        customer: str,
        lines: list[Line],
        *,
        day: date,
        draft: bool,
        po_number: str | None = None,
        discount: dict[str, Any] | None = None,
        invoice_id: str | None = None,
    ) -> dict[str, Any]:
        """An invoice with its lines, taxed at 19% per line after a percent discount."""
        invoice_id = invoice_id or new_id("inv")
        percent = Decimal(discount["value"]) if discount else Decimal(0)
        subtotal = discount_total = tax = 0
        for position, line in enumerate(lines):
            line_subtotal = money(line.amount)
            line_discount = minor(line_subtotal * percent / 100) if line.amount > 0 else 0
            line_tax = minor((line_subtotal - line_discount) * VAT)
            subtotal += line_subtotal
            discount_total += line_discount
            tax += line_tax
            self.add(
                InvoiceLine,
                id=line.id,
                invoice_id=invoice_id,
                position=position,
                kind=line.kind,
                description=line.description,
                product_id=self.products[line.product] if line.product else None,
                subscription_id=line.subscription_id,
                charge_id=line.charge_id,
                period_start=midnight(line.period[0]) if line.period else None,
                period_end=midnight(line.period[1]) if line.period else None,
                coverage_weight=0,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                subtotal_minor=line_subtotal,
                discount_minor=line_discount,
                tax_minor=line_tax,
                total_minor=line_subtotal - line_discount + line_tax,
                usage_key=line.usage_key,
            )
        total = subtotal - discount_total + tax
        number = None
        if not draft:
            self.numbers[day.year] += 1
            number = f"INV-{day.year}-{self.numbers[day.year]:06d}"
        return self.add(
            Invoice,
            id=invoice_id,
            customer_id=customer,
            number=number,
            status="draft" if draft else "paid",
            currency="EUR",
            billing_date=day,
            issue_date=None if draft else day,
            due_date=None if draft else day + timedelta(days=30),
            po_number=po_number,
            discounts=[discount] if discount else [],
            subtotal_minor=subtotal,
            discount_minor=discount_total,
            tax_minor=tax,
            total_minor=total,
            paid_minor=0 if draft else total,
            amount_due_minor=total if draft else 0,
            created_at=midnight(day),
            issued_at=None if draft else midnight(day),
        )

    def charge(
        self,
        customer: str,
        invoice_id: str | None,
        kind: str,
        product: str,
        quantity: Decimal,
        unit_price: Decimal,
        service_date: date,
        *,
        contract: str | None = None,
        details: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> str:
        row = self.add(
            Charge,
            id=new_id("chg"),
            customer_id=customer,
            contract_id=contract,
            kind=kind,
            description=description or product.capitalize(),
            product_id=self.products[product],
            currency="EUR",
            quantity=quantity,
            unit_price=unit_price,
            service_date=service_date,
            billable_at=midnight(service_date) + timedelta(hours=18),
            invoice_id=invoice_id,
            details=details or {},
        )
        return row["id"]

    def purchase_order(
        self,
        customer: str,
        number: str,
        valid: tuple[date, date | None],
        lines: list[tuple[str, Decimal, Decimal]],
        *,
        ceiling: int | None = None,
        currency: str = "EUR",
        status: str = "open",
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        order = self.add(
            PurchaseOrder,
            id=new_id("po"),
            customer_id=customer,
            number=number,
            currency=currency,
            valid_from=valid[0],
            valid_to=valid[1],
            ceiling_minor=ceiling,
            consumed_minor=0,
            status=status,
            source="csv",
        )
        by_product = {}
        for position, (product, quantity, unit_price) in enumerate(lines, start=1):
            by_product[product] = self.add(
                PurchaseOrderLine,
                id=new_id("pol"),
                purchase_order_id=order["id"],
                position=position,
                product_id=self.products[product],
                description=product.capitalize(),
                quantity=quantity,
                unit_price=unit_price,
                consumed_quantity=Decimal(0),
                consumed_minor=0,
            )
        return order, by_product

    def consume(
        self,
        order: dict[str, Any],
        po_line: dict[str, Any] | None,
        invoice: dict[str, Any],
        line: Line,
    ) -> None:
        amount = money(line.amount)
        order["consumed_minor"] += amount
        if po_line is not None:
            po_line["consumed_quantity"] += line.quantity
            po_line["consumed_minor"] += amount
        self.add(
            PurchaseOrderConsumption,
            id=new_id("poc"),
            purchase_order_id=order["id"],
            purchase_order_line_id=po_line["id"] if po_line else None,
            invoice_id=invoice["id"],
            invoice_line_id=line.id,
            kind="invoice_issued",
            quantity=line.quantity,
            amount_minor=amount,
        )

    def contract(
        self,
        customer: str,
        reference: str,
        start: date,
        prices: list[tuple[str, Decimal, date, date | None]],
        *,
        end: date | None = None,
        discount_max: Decimal | None = None,
        coupons: list[str] | None = None,
    ) -> str:
        row = self.add(
            Contract,
            id=new_id("ctr"),
            customer_id=customer,
            reference=reference,
            name=f"Agreement {reference}",
            currency="EUR",
            start_date=start,
            end_date=end,
            discount_percent_max=discount_max,
            allowed_coupon_codes=coupons or [],
        )
        for product, unit_price, valid_from, valid_to in prices:
            self.add(
                ContractPrice,
                id=new_id("cpr"),
                contract_id=row["id"],
                product_id=self.products[product],
                unit_price=unit_price,
                valid_from=valid_from,
                valid_to=valid_to,
            )
        return row["id"]


def quarter_hours(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(round(rng.uniform(low, high) * 4)) / 4


def history_factor(rng: random.Random) -> Decimal:
    return Decimal(str(round(rng.uniform(0.82, 1.18), 2)))


# -- time and materials ------------------------------------------------------------------------


def time_and_materials(month: Month, rng: random.Random, index: int, plant: str | None) -> None:
    """A consulting customer billed monthly for approved hours at the contracted rate, with
    travel at the PO's flat price."""
    customer = month.customer(
        index, f"Beratungskunde {index:05d} GmbH", po_required=plant == "po_missing"
    )
    versions = index % 2 == 0  # the contracted rate went from 110.00 to 120.00 on 1 January
    no_po = plant in ("contract_price", "contract_dates")
    rate = Decimal("120.00")
    contract_prices = (
        [
            ("consulting", Decimal("110.00"), date(2025, 1, 1), date(2025, 12, 31)),
            ("consulting", rate, date(2026, 1, 1), None),
        ]
        if versions
        else [("consulting", rate, date(2025, 1, 1), None)]
    )
    contract_prices.append(("senior", Decimal("150.00"), date(2025, 1, 1), None))
    contract = month.contract(
        customer,
        f"SOW-{index:05d}",
        date(2025, 1, 1),
        contract_prices,
        end=date(2025, 12, 31) if plant == "contract_dates" else None,
        discount_max=Decimal(5) if index % 3 else None,
    )
    workers = rng.sample(["Ana", "Ben", "Chen", "Dora", "Emil", "Fatma"], rng.randint(1, 3))
    products = ["consulting"] + (["senior"] if index % 4 == 0 else [])
    prices = {"consulting": rate, "senior": Decimal("150.00")}
    if plant == "contract_price":
        prices = {**prices, "consulting": Decimal("110.00")}  # last year's rate on the charge
    past_prices = {
        "consulting": Decimal("110.00") if versions else rate,
        "senior": prices["senior"],
    }
    invoice_id = new_id("inv")
    draft_lines: list[Line] = []
    billed_hours: dict[str, Decimal] = {}
    repeated_entry = None
    for product in products:
        entries = [
            month.add(
                TimeEntry,
                id=new_id("te"),
                customer_id=customer,
                contract_id=contract,
                worker=worker,
                work_date=date(2026, 1, rng.randint(2, 30)),
                hours=quarter_hours(rng, 0.5, 8),
                product_id=month.products[product],
                status="approved",
                entered_by="key_import",
                approved_by="key_lead",
                approved_at=NOW,
                source="csv",
            )
            for worker in workers
            for _ in range(rng.randint(3, 9))
        ]
        # Time not approved yet, or rejected: not billed, and rightly so.
        for status in rng.sample(["draft", "draft", "rejected", None, None], 2):
            if status:
                month.add(
                    TimeEntry,
                    id=new_id("te"),
                    customer_id=customer,
                    contract_id=contract,
                    worker=workers[0],
                    work_date=date(2026, 1, rng.randint(28, 31)),
                    hours=quarter_hours(rng, 1, 6),
                    product_id=month.products[product],
                    status=status,
                    source="csv",
                )
        billed = sum((e["hours"] for e in entries), Decimal(0))
        if product == "consulting":
            if plant == "time_hours_over":
                billed += 2  # 42 typed for 40
            elif plant == "time_hours_under":
                billed -= Decimal("1.5")
            elif plant == "time_unapproved":
                entries[0].update(status="draft", approved_by=None, approved_at=None)
            elif plant == "duplicate_time_entry":
                repeated_entry = entries[0]["id"]
        charge = month.charge(
            customer,
            invoice_id,
            "time_and_materials",
            product,
            billed,
            prices[product],
            max(e["work_date"] for e in entries),
            contract=contract,
            details={"time_entry_ids": [e["id"] for e in entries]},
            description=f"{product.capitalize()}: {billed} h",
        )
        for entry in entries:
            entry["charge_id"] = charge
        billed_hours[product] = billed
        draft_lines.append(
            Line(
                "time_and_materials",
                f"{product.capitalize()}: {billed} h",
                billed,
                billed * prices[product],
                prices[product],
                product,
                charge_id=charge,
            )
        )
    trips = rng.choice([0, 0, 1, 1, 2]) or (1 if plant == "po_price" else 0)
    trip_price = Decimal("480.00") if plant == "po_price" else Decimal("450.00")
    if trips:
        draft_lines.append(
            one_off(month, customer, invoice_id, "travel", trips, trip_price, date(2026, 1, 20))
        )
    if plant == "po_unlisted_line":
        draft_lines.append(
            one_off(
                month, customer, invoice_id, "training", 1, Decimal("900.00"), date(2026, 1, 22)
            )
        )

    order = po_lines = None
    if not no_po:
        # An annual PO for 2026, or one running since October that earlier invoices used.
        rows = [("consulting", Decimal(1500), rate), ("travel", Decimal(12), Decimal("450.00"))]
        if "senior" in products:
            rows.append(("senior", Decimal(400), Decimal("150.00")))
        valid: tuple[date, date | None] = (
            (date(2026, 1, 1), date(2026, 12, 31))
            if versions
            else (date(2025, 10, 1), date(2026, 9, 30))
        )
        if plant == "po_expired":
            valid = (date(2025, 1, 1), date(2025, 12, 31))
        order, po_lines = month.purchase_order(
            customer,
            f"45{index:08d}",
            valid,
            rows,
            ceiling=money(Decimal(90_000)),
            currency="USD" if plant == "po_currency" else "EUR",
            status="closed" if plant == "po_closed" else "open",
        )
    discount = None
    if index % 3 and index % 5 == 0:
        discount = {"key": "manual-1", "name": "Loyalty 3%", "kind": "percent", "value": "3"}

    # Six months of issued invoices: hours like January's, give or take a fifth.
    for start, end in HISTORY:
        factor = history_factor(rng)
        issued_id = new_id("inv")
        lines = []
        for product in products:
            past = (billed_hours[product] * factor).quantize(Decimal("0.25"))
            details = {"time_entry_ids": [new_id("te") for _ in range(5)]}
            if repeated_entry and product == "consulting" and start.month == 12:
                details["time_entry_ids"].append(repeated_entry)
            charge = month.charge(
                customer,
                issued_id,
                "time_and_materials",
                product,
                past,
                past_prices[product],
                end - timedelta(days=2),
                contract=contract,
                details=details,
            )
            lines.append(
                Line(
                    "time_and_materials",
                    f"{product.capitalize()}: {past} h",
                    past,
                    past * past_prices[product],
                    past_prices[product],
                    product,
                    charge_id=charge,
                )
            )
        if trips:
            lines.append(
                one_off(
                    month,
                    customer,
                    issued_id,
                    "travel",
                    trips,
                    Decimal("450.00"),
                    start + timedelta(days=14),
                )
            )
        quoted = order is not None and not versions and start >= date(2025, 10, 1)
        issued = month.invoice(
            customer,
            lines,
            day=end,
            draft=False,
            po_number=order["number"] if quoted else None,
            discount=discount,
            invoice_id=issued_id,
        )
        if quoted:
            for line in lines:
                month.consume(order, po_lines.get(line.product), issued, line)
    po_number = order["number"] if order is not None and plant != "po_missing" else None
    if plant == "po_unknown":
        po_number = f"45{index:08d}-X"
    draft = month.invoice(
        customer,
        draft_lines,
        day=BILLING_DATE,
        draft=True,
        po_number=po_number,
        discount=discount,
        invoice_id=invoice_id,
    )
    if plant == "po_quantity":
        consulting = po_lines["consulting"]
        consulting["quantity"] = consulting["consumed_quantity"] + billed_hours["consulting"] / 2
    if plant == "po_ceiling":
        net = draft["subtotal_minor"] - draft["discount_minor"]
        order["ceiling_minor"] = order["consumed_minor"] + net - 10_000
    month.truth[invoice_id] = {plant} if plant else set()


def one_off(
    month: Month,
    customer: str,
    invoice_id: str,
    product: str,
    quantity: int,
    unit_price: Decimal,
    day: date,
) -> Line:
    charge = month.charge(
        customer, invoice_id, "one_off", product, Decimal(quantity), unit_price, day
    )
    return Line(
        "one_off",
        product.capitalize(),
        Decimal(quantity),
        quantity * unit_price,
        unit_price,
        product,
        charge_id=charge,
    )


# -- subscriptions -----------------------------------------------------------------------------


def api_amount(calls: int) -> Decimal:
    """Graduated: the first million calls free, then 0.0004 each."""
    return max(Decimal(calls - 1_000_000), Decimal(0)) * Decimal("0.0004")


def subscription_lines(
    subscriptions: list[tuple[str, int]], period: tuple[date, date], calls: dict[str, int]
) -> list[Line]:
    lines = []
    for sub_id, seats in subscriptions:
        lines += [
            Line(
                "subscription",
                "Platform",
                Decimal(1),
                Decimal("299.00"),
                Decimal("299.00"),
                "platform",
                period,
                sub_id,
            ),
            Line(
                "subscription",
                "Seats",
                Decimal(seats),
                seats * Decimal("12.00"),
                Decimal("12.00"),
                "seats",
                period,
                sub_id,
            ),
        ]
        for region, count in calls.items():
            lines.append(
                Line(
                    "usage",
                    f"API calls ({region})",
                    Decimal(count),
                    api_amount(count),
                    None,
                    "api_calls",
                    period,
                    sub_id,
                    usage_key=f"api-calls|usage|region={region}",
                )
            )
    return lines


def subscription_customer(month: Month, rng: random.Random, index: int, plant: str | None) -> None:
    """A software customer: platform fee and seats per subscription, API calls per region."""
    customer = month.customer(index, f"Softwarekunde {index:05d} AG")
    coupons = ["LOYAL5"] if index % 2 else []
    month.contract(
        customer,
        f"SUB-{index:05d}",
        date(2025, 3, 1),
        [
            ("platform", Decimal("299.00"), date(2025, 3, 1), None),
            ("seats", Decimal("12.00"), date(2025, 3, 1), None),
        ],
        coupons=coupons,
    )
    subscriptions = []
    for _ in range(2 if index % 5 == 0 else 1):  # two departments on the same plan
        seats = rng.randint(5, 120)
        sub = month.add(
            Subscription,
            id=new_id("sub"),
            customer_id=customer,
            plan_id=month.plan,
            quantity=Decimal(seats),
            status="active",
            start_at=midnight(date(2025, 3, 1)),
            anchor="calendar",
            anchor_date=date(2025, 3, 1),
            next_billing_at=midnight(date(2026, 3, 1)),
        )
        subscriptions.append((sub["id"], seats))
    regions = rng.sample(["eu", "us", "apac"], rng.randint(0, 2))
    base_calls = {r: rng.randint(200_000, 3_000_000) for r in regions}
    order = po_lines = None
    if index % 2 == 0 and plant not in ("duplicate_period", "anomaly"):
        seats_total = sum(s for _, s in subscriptions)
        order, po_lines = month.purchase_order(
            customer,
            f"PO-S{index:06d}",
            (date(2025, 7, 1), date(2026, 6, 30)),
            [
                ("platform", Decimal(12 * len(subscriptions)), Decimal("299.00")),
                ("seats", Decimal(seats_total * 14), Decimal("12.00")),
                ("api_calls", Decimal(200_000_000), Decimal("0.0004")),
            ],
            ceiling=money(Decimal(400_000)),
        )
    po_number = order["number"] if order else None
    discount = (
        {"key": "LOYAL5", "name": "Loyalty", "kind": "percent", "value": "5", "coupon_id": "cpn_1"}
        if coupons
        else None
    )
    for start, end in HISTORY:
        calls = {r: int(c * float(history_factor(rng))) for r, c in base_calls.items()}
        lines = subscription_lines(subscriptions, (start, end), calls)
        issued = month.invoice(
            customer, lines, day=end, draft=False, po_number=po_number, discount=discount
        )
        if order is not None:
            for line in lines:
                month.consume(order, po_lines[line.product], issued, line)
    if plant == "duplicate_period":
        # January's platform fee already went out on an invoice of its own.
        platform = Line(
            "subscription",
            "Platform",
            Decimal(1),
            Decimal("299.00"),
            Decimal("299.00"),
            "platform",
            JANUARY,
            subscriptions[0][0],
        )
        month.invoice(customer, [platform], day=date(2026, 1, 12), draft=False)
    current = subscriptions
    if plant == "anomaly":
        current = [(sub_id, seats * 4 + 40) for sub_id, seats in subscriptions]
    lines = subscription_lines(current, JANUARY, base_calls)
    if index % 10 == 3 and plant is None:
        # Seats changed in December: the old quantity credited, the new one charged.
        sub_id, seats = subscriptions[0]
        december = HISTORY[-1]
        lines += [
            Line(
                "adjustment",
                "Seats (credit for December)",
                Decimal(-seats),
                -seats * Decimal("12.00"),
                Decimal("12.00"),
                "seats",
                december,
                sub_id,
            ),
            Line(
                "adjustment",
                "Seats (December, new quantity)",
                Decimal(seats + 3),
                (seats + 3) * Decimal("12.00"),
                Decimal("12.00"),
                "seats",
                december,
                sub_id,
            ),
        ]
    if plant == "contract_discount":
        discount = {"key": "manual-1", "name": "Goodwill 10%", "kind": "percent", "value": "10"}
    draft = month.invoice(
        customer, lines, day=BILLING_DATE, draft=True, po_number=po_number, discount=discount
    )
    month.truth[draft["id"]] = {plant} if plant else set()


# -- field service -----------------------------------------------------------------------------


def field_customer(month: Month, rng: random.Random, index: int, plant: str | None) -> None:
    """A field-service customer: repair visits backed by signed service reports, parts at the
    PO price, sometimes an installation ordered once."""
    required = index % 3 == 0
    customer = month.customer(index, f"Servicekunde {index:05d} KG", po_required=required)
    contract = month.contract(
        customer,
        f"FS-{index:05d}",
        date(2025, 1, 1),
        [("repair", Decimal("180.00"), date(2025, 1, 1), None)],
    )
    order = po_lines = None
    if required or index % 2 == 0 or plant == "duplicate_po_line":
        rows = [
            ("repair", Decimal(80), Decimal("180.00")),
            ("parts", Decimal(400), Decimal("35.00")),
        ]
        if index % 4 == 0 or plant == "duplicate_po_line":
            rows.append(("installation", Decimal(1), Decimal("1500.00")))
        order, po_lines = month.purchase_order(
            customer,
            f"FS-PO-{index:06d}",
            (date(2025, 7, 1), date(2026, 6, 30)),
            rows,
            ceiling=money(Decimal(120_000)),
        )
    po_number = order["number"] if order else None
    visits = rng.randint(1, 5)
    parts = rng.randint(0, 6)

    def month_lines(invoice_id: str, start: date, end: date, count: int, draft: bool) -> list[Line]:
        reports = [
            month.add(
                ServiceReport,
                id=new_id("sr"),
                customer_id=customer,
                contract_id=contract,
                product_id=month.products["repair"],
                service_date=start + timedelta(days=rng.randint(1, 26)),
                quantity=Decimal(1),
                reference=f"SR-{index}-{start.month}-{n}",
                status="approved",
                approved_by="key_lead",
                approved_at=NOW,
                billed_invoice_id=None if draft else invoice_id,
                source="xlsx",
            )
            for n in range(count)
        ]
        named = [r["id"] for r in reports]
        billed = Decimal(count)
        if draft and plant == "service_report_missing":
            for report in reports:
                month.rows[ServiceReport].remove(report)
            named = []
        elif draft and plant == "service_report_short":
            billed += 1
        charge = month.charge(
            customer,
            invoice_id,
            "time_and_materials",
            "repair",
            billed,
            Decimal("180.00"),
            max(r["service_date"] for r in reports),
            contract=contract,
            details={"service_report_ids": named} if named else {},
            description=f"Repair visits ({billed})",
        )
        for report in reports:
            report["charge_id"] = charge
        lines = [
            Line(
                "time_and_materials",
                f"Repair visits ({billed})",
                billed,
                billed * Decimal("180.00"),
                Decimal("180.00"),
                "repair",
                charge_id=charge,
            )
        ]
        if parts:
            lines.append(
                one_off(
                    month,
                    customer,
                    invoice_id,
                    "parts",
                    parts,
                    Decimal("35.00"),
                    end - timedelta(days=3),
                )
            )
        return lines

    for number, (start, end) in enumerate(HISTORY):
        issued_id = new_id("inv")
        count = max(1, int(visits * float(history_factor(rng)) + 0.5))
        lines = month_lines(issued_id, start, end, count, draft=False)
        if po_lines is not None and "installation" in po_lines and number == 2:
            lines.append(
                one_off(
                    month,
                    customer,
                    issued_id,
                    "installation",
                    1,
                    Decimal("1500.00"),
                    start + timedelta(days=5),
                )
            )
        issued = month.invoice(
            customer, lines, day=end, draft=False, po_number=po_number, invoice_id=issued_id
        )
        if order is not None:
            for line in lines:
                month.consume(order, po_lines.get(line.product), issued, line)
    invoice_id = new_id("inv")
    lines = month_lines(invoice_id, *JANUARY, visits, draft=True)
    if plant == "duplicate_po_line":
        lines.append(
            one_off(
                month, customer, invoice_id, "installation", 1, Decimal("1500.00"), date(2026, 1, 9)
            )
        )
    draft = month.invoice(
        customer, lines, day=BILLING_DATE, draft=True, po_number=po_number, invoice_id=invoice_id
    )
    if plant == "near_duplicate":
        # The same amounts went out four days ago on an invoice of their own.
        copies = [
            Line(
                "manual",
                f"Services: {line.description}",
                line.quantity,
                line.amount,
                line.unit_price,
            )
            for line in lines
        ]
        copy = month.invoice(customer, copies, day=date(2026, 1, 28), draft=False)
        assert copy["total_minor"] == draft["total_minor"]
    month.truth[invoice_id] = {plant} if plant else set()


# -- revenue left unbilled ---------------------------------------------------------------------


def quiet_customer(month: Month, rng: random.Random, index: int, leak: str) -> None:
    customer = month.customer(index, f"Ruhiger Kunde {index:05d} GmbH")
    if leak == "unbilled_subscription":
        sub = month.add(
            Subscription,
            id=new_id("sub"),
            customer_id=customer,
            plan_id=month.plan,
            quantity=Decimal(10),
            status="active",
            start_at=midnight(date(2025, 6, 1)),
            anchor="calendar",
            anchor_date=date(2025, 6, 1),
            next_billing_at=midnight(date(2026, 1, 1)),  # January never billed
        )
        month.leaks.append((leak, sub["id"]))
    elif leak == "unbilled_charge":
        charge = month.charge(
            customer, None, "one_off", "training", Decimal(1), Decimal("900.00"), date(2026, 1, 14)
        )
        month.leaks.append((leak, charge))
    elif leak == "unbilled_milestone":
        contract = month.contract(customer, f"PRJ-{index:05d}", date(2025, 9, 1), [])
        charge = month.charge(
            customer,
            None,
            "milestone",
            "installation",
            Decimal(1),
            Decimal("4500.00"),
            date(2026, 1, 19),
            contract=contract,
            description=f"Agreement PRJ-{index:05d}: milestone Go-live",
        )
        month.add(
            Milestone,
            id=new_id("ms"),
            contract_id=contract,
            name="Go-live",
            product_id=month.products["installation"],
            amount=Decimal("4500.00"),
            completed_at=midnight(date(2026, 1, 19)),
            charge_id=charge,
        )
        month.leaks.append((leak, charge))
    elif leak == "unbilled_time":
        entries = [
            month.add(
                TimeEntry,
                id=new_id("te"),
                customer_id=customer,
                worker="Gert",
                work_date=date(2026, 1, rng.randint(5, 25)),
                hours=quarter_hours(rng, 1, 6),
                product_id=month.products["consulting"],
                status="approved",
                approved_by="key_lead",
                approved_at=NOW,
                source="api",
            )
            for _ in range(3)
        ]
        from tallybook.services.verification import due_item_id

        month.leaks.append(
            (leak, due_item_id("time", customer, month.products["consulting"], "2026-01"))
        )
        assert entries
    elif leak == "unbilled_usage":
        external = f"ghost-{index}"
        for n in range(rng.randint(2, 40)):
            month.add(
                QuarantinedEvent,
                id=new_id("qev"),
                transaction_id=f"{external}-{n}",
                reason="customer not found",
                customer_external_id=external,
                metric_code="api_calls",
                occurred_at=midnight(date(2026, 1, 10)) + timedelta(minutes=n),
                properties={"region": "eu"},
                received_at=NOW,
            )
        from tallybook.services.verification import due_item_id

        month.leaks.append((leak, due_item_id("quarantine", external, "api_calls")))


# -- set-up, run, score --------------------------------------------------------------------------


def setup(db: Database) -> tuple[Actor, dict[str, str], str]:
    org, key = organizations.create_organization(
        db, "Bench Verification GmbH", "EUR", timezone=TIMEZONE
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    products = {}
    for code, unit in (
        ("consulting", "hours"),
        ("senior", "hours"),
        ("travel", None),
        ("training", None),
        ("platform", None),
        ("seats", "seats"),
        ("api_calls", "calls"),
        ("repair", "visits"),
        ("parts", None),
        ("installation", None),
    ):
        values = {"code": code, "name": code.replace("_", " ").capitalize()}
        if unit:
            values["unit_label"] = unit
        products[code] = catalog.create_product(db, actor, values).id
    since = datetime(2025, 1, 1, tzinfo=UTC)
    for code, product, amount in (("platform", "platform", "299.00"), ("seats", "seats", "12.00")):
        catalog.create_price(
            db,
            actor,
            {
                "code": code,
                "product_id": products[product],
                "currency": "EUR",
                "terms": {"model": "per_unit", "amount": amount},
                "effective_from": since,
            },
        )
    plan = catalog.create_plan(
        db,
        actor,
        {"code": "pro", "name": "Pro", "currency": "EUR", "price_codes": ["platform", "seats"]},
    )
    return actor, products, plan.id


def generate(actor: Actor, products: dict[str, str], plan: str, invoices: int, seed: int) -> Month:
    rng = random.Random(seed)
    month = Month(actor.organization_id, products, plan)
    scale = max(invoices / 2000, 0.05)
    plants: list[str] = []
    for kind in PLANTS:
        plants += [kind] * max(2, round(22 * scale))
    by_archetype: dict[str, list[str]] = defaultdict(list)
    for kind in plants:
        by_archetype[PLANTS[kind][3]].append(kind)
    for kinds in by_archetype.values():
        rng.shuffle(kinds)
    archetypes = ["tm"] * 8 + ["saas"] * 7 + ["field"] * 5
    makers = {"tm": time_and_materials, "saas": subscription_customer, "field": field_customer}
    for index in range(invoices):
        archetype = archetypes[index % len(archetypes)]
        # Plants go to every other customer of an archetype while any are left.
        plant = by_archetype[archetype].pop() if by_archetype[archetype] and index % 2 else None
        makers[archetype](month, rng, index, plant)
    left = sum(len(k) for k in by_archetype.values())
    if left:
        raise SystemExit(f"{left} planted mistakes found no customer: use more --invoices")
    index = invoices
    for leak in LEAKS:
        for _ in range(max(2, round(15 * scale))):
            quiet_customer(month, rng, index, leak)
            index += 1
    return month


INSERT_ORDER = (
    Customer,
    Contract,
    ContractPrice,
    PurchaseOrder,
    PurchaseOrderLine,
    Subscription,
    Charge,
    Invoice,
    InvoiceLine,
    TimeEntry,
    ServiceReport,
    PurchaseOrderConsumption,
    Milestone,
    QuarantinedEvent,
)


def load(db: Database, month: Month) -> int:
    total = 0
    for model in INSERT_ORDER:
        rows = month.rows.get(model, [])
        for start in range(0, len(rows), 20_000):
            with db.transaction() as session:
                insert_rows(session, model, rows[start : start + 20_000])
        total += len(rows)
    return total


@dataclass
class Score:
    planted: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    false_positives: Counter[str] = field(default_factory=Counter)


def score(month: Month, run: verification.VerificationRunResult) -> tuple[Score, int, int]:
    result = Score()
    by_invoice = {v.invoice_id: v for v in run.invoices}
    clean = clean_flagged = 0
    for invoice_id, planted in month.truth.items():
        findings = by_invoice[invoice_id].findings
        allowed = set()
        for kind in planted:
            check, severity, side_effects, _ = PLANTS[kind]
            allowed |= {check, *side_effects}
            result.planted[kind] += 1
            if any(f.check == check and f.severity.value == severity for f in findings):
                result.caught[kind] += 1
        if not planted:
            clean += 1
            clean_flagged += bool(findings)
        for finding in findings:
            if finding.check not in allowed:
                result.false_positives[finding.check] += 1
    found = {(f.check, f.where.subject_id) for f in run.unattached}
    for check, subject in month.leaks:
        result.planted[check] += 1
        result.caught[check] += (check, subject) in found
    expected = set(month.leaks)
    for key in found - expected:
        result.false_positives[key[0]] += 1
    return result, clean, clean_flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=2400, help="drafts in the month")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.invoices < 100:
        raise SystemExit("--invoices: at least 100, so every kind of mistake has customers")
    database = postgres_database if args.db == "postgres" else sqlite_database
    with database() as url:
        upgrade_database(url)
        db = Database(url)
        try:
            actor, products, plan = setup(db)
            log(f"generating {args.invoices} drafts with six months of history (seed {args.seed})")
            month = generate(actor, products, plan, args.invoices, args.seed)
            started = time.perf_counter()
            rows = load(db, month)
            log(f"inserted {rows} rows in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            run = verification.verify_run(db, actor, as_of=BILLING_DATE)
            seconds = time.perf_counter() - started
        finally:
            db.dispose()
    result, clean, clean_flagged = score(month, run)
    # One row per check (and severity), the planted kinds it covers added up.
    rows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for kind in [*PLANTS, *LEAKS]:
        check, severity = (
            (PLANTS[kind][0], PLANTS[kind][1]) if kind in PLANTS else (kind, "warning")
        )
        rows[(check, severity)].append(kind)
    header = (
        f"{'check':<24}{'severity':<10}{'planted':>8}{'caught':>8}{'missed':>8}"
        f"{'false pos.':>12}  planted as"
    )
    log(header)
    log("-" * (len(header) + 30))
    shown: set[str] = set()
    for (check, severity), kinds in rows.items():
        planted = sum(result.planted[k] for k in kinds)
        caught = sum(result.caught[k] for k in kinds)
        false = result.false_positives[check] if check not in shown else 0
        shown.add(check)
        log(
            f"{check:<24}{severity:<10}{planted:>8}{caught:>8}{planted - caught:>8}{false:>12}"
            f"  {', '.join(kinds)}"
        )
    others = {c: n for c, n in result.false_positives.items() if c not in shown}
    for check, count in sorted(others.items()):
        log(f"{check:<24}{'':<10}{0:>8}{0:>8}{0:>8}{count:>12}  (never planted)")
    planted_total = sum(result.planted.values())
    caught_total = sum(result.caught.values())
    blocking = [k for k in PLANTS if PLANTS[k][1] == "blocking"]
    blocking_planted = sum(result.planted[k] for k in blocking)
    blocking_caught = sum(result.caught[k] for k in blocking)
    log(
        f"\n{len(run.invoices)} drafts verified in {seconds:.2f} s "
        f"({len(run.invoices) / seconds:.0f} per second); {clean} clean drafts, "
        f"{clean_flagged} of them flagged"
    )
    print(
        json.dumps(
            {
                "invoices": len(run.invoices),
                "planted": planted_total,
                "caught": caught_total,
                "recall": round(caught_total / planted_total, 4),
                "blocking_recall": round(blocking_caught / blocking_planted, 4),
                "false_positives": sum(result.false_positives.values()),
                "clean_invoices": clean,
                "false_positive_rate": round(clean_flagged / clean, 4) if clean else 0.0,
                "seconds": round(seconds, 3),
                "db": args.db,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
