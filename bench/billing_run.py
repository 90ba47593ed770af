"""Benchmark one billing run: N customers with one monthly subscription each, in a throwaway
SQLite file or PostgreSQL database; the last line printed is one JSON object with the figures.

    python bench/billing_run.py --customers 10000 --db sqlite|postgres [--batch-size 2000]
        [--events-per-customer 100]

With --events-per-customer every plan also bills API calls (a graduated price on a sum
metric) and each customer gets that many usage events in the period the run rates in arrears;
they are loaded with COPY (PostgreSQL) before the clock starts, and the run aggregates them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, insert, text

from tallybook.config import normalise_database_url
from tallybook.db.engine import upgrade_database
from tallybook.db.models import Customer, Subscription, SubscriptionChange, new_id
from tallybook.services import billing, catalog, metering, organizations
from tallybook.services.base import Actor, Database, Role

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
INSERT_BATCH = 5_000
TIMEZONE = "Europe/Berlin"
# Subscriptions started on day 1..28 of December 2025, December already billed: the run at the
# end of January bills each one's next period in advance, one invoice per customer.
AS_OF = datetime(2026, 1, 31, 12, tzinfo=UTC)


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


def setup_catalog(db: Database) -> tuple[Actor, dict[str, str]]:
    """Organisation, tax rate, products, prices and plans: through the services, as a user would."""
    org, key = organizations.create_organization(db, "Bench Billing GmbH", "EUR", timezone=TIMEZONE)
    actor = Actor(org.id, key.id, Role.ADMIN)
    catalog.create_tax_rate(
        db, actor, {"code": "DE-VAT-19", "name": "DE VAT", "jurisdiction": "DE", "percent": "19"}
    )
    platform = catalog.create_product(db, actor, {"code": "platform", "name": "Platform fee"})
    seats = catalog.create_product(
        db, actor, {"code": "seats", "name": "User seats", "unit_label": "seats"}
    )
    since = datetime(2025, 1, 1, tzinfo=UTC)
    for code, product, terms in (
        ("platform", platform.id, {"model": "flat", "amount": "29"}),
        ("seats-per-unit", seats.id, {"model": "per_unit", "amount": "9.50"}),
        (
            "seats-graduated",
            seats.id,
            {
                "model": "graduated",
                "tiers": [
                    {"up_to": "10", "unit_price": "12"},
                    {"up_to": "50", "unit_price": "9"},
                    {"up_to": None, "unit_price": "6"},
                ],
            },
        ),
    ):
        catalog.create_price(
            db,
            actor,
            {
                "code": code,
                "product_id": product,
                "currency": "EUR",
                "terms": terms,
                "effective_from": since,
            },
        )
    metering.create_metric(
        db, actor, {"code": "api_calls", "name": "API calls", "aggregation": "sum", "field": "n"}
    )
    calls = catalog.create_product(
        db, actor, {"code": "api", "name": "API calls", "unit_label": "calls"}
    )
    catalog.create_price(
        db,
        actor,
        {
            "code": "api-calls",
            "product_id": calls.id,
            "currency": "EUR",
            "kind": "usage",
            "metric_code": "api_calls",
            "terms": {
                "model": "graduated",
                "tiers": [
                    {"up_to": "1000", "unit_price": "0"},
                    {"up_to": None, "unit_price": "0.002"},
                ],
            },
            "effective_from": since,
        },
    )
    plans = {}
    for code, prices in (
        ("team", ["platform", "seats-per-unit", "api-calls"]),
        ("scale", ["platform", "seats-graduated", "api-calls"]),
    ):
        plans[code] = catalog.create_plan(
            db,
            actor,
            {"code": code, "name": code.capitalize(), "currency": "EUR", "price_codes": prices},
        ).id
    return actor, plans


def bulk_customers(db: Database, actor: Actor, plans: dict[str, str], count: int) -> None:
    """Customers, subscriptions and their start changes with bulk Core inserts."""
    now = datetime.now(UTC)
    zone = ZoneInfo(TIMEZONE)
    org_id = actor.organization_id
    for offset in range(0, count, INSERT_BATCH):
        customer_rows: list[dict[str, Any]] = []
        subscription_rows: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        for n in range(offset, min(offset + INSERT_BATCH, count)):
            customer_id = new_id("cus")
            subscription_id = new_id("sub")
            plan_id = plans["scale"] if n % 3 == 0 else plans["team"]
            quantity = Decimal(1 + n % 60)
            anchor = date(2025, 12, 1 + n % 28)
            start_at = datetime(anchor.year, anchor.month, anchor.day, tzinfo=zone)
            customer_rows.append(
                {
                    "id": customer_id,
                    "organization_id": org_id,
                    "external_id": f"bench-{n}",
                    "legal_name": f"Bench Customer {n:07d} GmbH",
                    "emails": [],
                    "address_line1": None,
                    "address_line2": None,
                    "city": "Berlin",
                    "postal_code": "10115",
                    "region": None,
                    "country": "DE",
                    "currency": "EUR",
                    "timezone": TIMEZONE,
                    "language": "de",
                    "payment_terms_days": 30,
                    "tax_ids": [],
                    "tax_exempt": False,
                    "reverse_charge": False,
                    "po_required": False,
                    "credit_balance_minor": 0,
                    "archived_at": None,
                    "created_at": now,
                }
            )
            subscription_rows.append(
                {
                    "id": subscription_id,
                    "organization_id": org_id,
                    "customer_id": customer_id,
                    "plan_id": plan_id,
                    "quantity": quantity,
                    "status": "active",
                    "start_at": start_at,
                    "end_at": None,
                    "trial_end_at": None,
                    "anchor": "anniversary",
                    "anchor_date": anchor,
                    "cancel_at_period_end": False,
                    "canceled_at": None,
                    "auto_renew": True,
                    "renewal_term_months": None,
                    # December is already billed: the cursor stands at the January anniversary.
                    "next_billing_at": start_at.replace(month=1, year=2026),
                    "rerate_from": None,
                    "created_at": now,
                }
            )
            change_rows.append(
                {
                    "id": new_id("chg"),
                    "organization_id": org_id,
                    "subscription_id": subscription_id,
                    "kind": "start",
                    "effective_at": start_at,
                    "plan_id": plan_id,
                    "quantity": quantity,
                    "note": None,
                    "created_at": now,
                }
            )
        with db.transaction() as session:
            session.execute(insert(Customer), customer_rows)
            session.execute(insert(Subscription), subscription_rows)
            session.execute(insert(SubscriptionChange), change_rows)
        log(f"inserted {offset + len(customer_rows)}/{count} customers and subscriptions")


def bulk_events(db: Database, actor: Actor, per_customer: int) -> int:
    """`per_customer` usage events for each customer inside its December-to-January period."""
    import random

    from tallybook.services.events import ensure_partitions

    ensure_partitions(db, {(2025, 11), (2025, 12), (2026, 1)})
    rng = random.Random(7)
    org_id = actor.organization_id
    received = datetime(2026, 1, 31, tzinfo=UTC).isoformat()
    total = 0
    with db.engine.connect() as connection:
        customers = connection.execute(
            text(
                "SELECT c.id, s.start_at FROM customers c JOIN subscriptions s "
                "ON s.customer_id = c.id WHERE c.organization_id = :org ORDER BY c.id"
            ),
            {"org": org_id},
        ).all()
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy(
                "COPY usage_events (organization_id, customer_id, metric_code, occurred_at, "
                "transaction_id, subscription_id, properties, received_at) FROM STDIN"
            ) as copy:
                lines: list[str] = []
                for customer_id, start_at in customers:
                    base = int(start_at.timestamp())
                    for k in range(per_customer):
                        # Within the first 28 days of the customer's period.
                        at = datetime.fromtimestamp(base + rng.randrange(2_419_200), UTC)
                        lines.append(
                            f"{org_id}\t{customer_id}\tapi_calls\t{at.isoformat()}\t"
                            f'{customer_id}-{k}\t\\N\t{{"n": {rng.randint(1, 100)}}}\t'
                            f"{received}\n"
                        )
                    if len(lines) >= 100_000:
                        copy.write("".join(lines))
                        total += len(lines)
                        lines.clear()
                        if total % 1_000_000 < 100_000:
                            log(f"loaded {total} usage events")
                copy.write("".join(lines))
                total += len(lines)
        connection.commit()
        connection.execute(text("ANALYZE usage_events"))
        connection.commit()
    log(f"loaded {total} usage events")
    return total


def run(customers: int, backend: str, batch_size: int, events: int = 0) -> dict[str, Any]:
    database = sqlite_database() if backend == "sqlite" else postgres_database()
    with database as url:
        upgrade_database(url)
        db = Database(url)
        try:
            started = time.perf_counter()
            actor, plans = setup_catalog(db)
            bulk_customers(db, actor, plans, customers)
            loaded = 0
            if events:
                if backend != "postgres":
                    raise SystemExit("--events-per-customer needs --db postgres")
                loaded = bulk_events(db, actor, events)
            log(
                f"set-up took {time.perf_counter() - started:.1f} s; billing as of "
                f"{AS_OF.isoformat()} in batches of {batch_size}"
            )
            seen = 0
            began = time.perf_counter()
            step = max(batch_size, customers // 10)

            def progress(count: int) -> None:
                nonlocal seen
                before, seen = seen, seen + count
                if seen // step != before // step or seen == customers:
                    elapsed = time.perf_counter() - began
                    log(
                        f"billed {seen}/{customers} customers in {elapsed:.1f} s "
                        f"({seen / elapsed:.0f}/s)"
                    )

            # Invoice ids are not kept: their list would grow with the number of customers.
            result = billing.run_billing(
                db,
                actor,
                AS_OF,
                batch_size=batch_size,
                progress=progress,
                keep_invoice_ids=False,
            )
            seconds = time.perf_counter() - began
        finally:
            db.dispose()
    if result.invoices_created != customers:
        log(f"warning: expected {customers} invoices, the run created {result.invoices_created}")
    return {
        "customers": customers,
        "invoices": result.invoices_created,
        "seconds": round(seconds, 3),
        "invoices_per_s": round(result.invoices_created / seconds, 1) if seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "db": backend,
        "usage_events": loaded,
        "lines": result.lines_created,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--events-per-customer", type=int, default=0)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.batch_size < 1 or args.events_per_customer < 0:
        parser.error("--customers and --batch-size must be at least 1")
    figures = run(args.customers, args.db, args.batch_size, args.events_per_customer)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
