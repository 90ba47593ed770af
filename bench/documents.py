"""Benchmark documents: N issued invoices (3-15 lines, two VAT rates, a discount on every
fourth) in a throwaway SQLite file or PostgreSQL database, each rendered as PDF, as UBL and as
Factur-X; the last line printed is one JSON object with the figures.

    python bench/documents.py [--invoices 1000] [--db sqlite|postgres] [--workers 2]
        [--profile]

PDF and Factur-X use the batch API (`services.documents.document_sheet` / `facturx_job` to
load, then `render_documents`, which renders across --workers processes); the figures are
end to end: loading each document from the database and rendering it. UBL is
loaded as one batch (`invoice_einvoices`, what `tallybook einvoice export` reads) and written
one by one in this process (`ubl_write_per_s` is the writing alone). --profile prints a
pyinstrument profile of rendering 30 invoices in this process. Besides the rates, the JSON
gives the CPU time per document and the load average: on a machine shared with other work,
the rates fall with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

from sqlalchemy import create_engine, text

from tallybook.config import normalise_database_url
from tallybook.db.engine import upgrade_database
from tallybook.formats.ubl import to_ubl
from tallybook.services import catalog, customers, documents, einvoices, invoices, organizations
from tallybook.services.base import Actor, Database, Role

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SELLER = {
    "country": "DE",
    "address_line1": "Friedrichstraße 10",
    "city": "Berlin",
    "postal_code": "10117",
    "vat_id": "DE136695976",
    "legal_registration_id": "HRB 12345",
    "iban": "DE44500105175407324931",
    "bic": "INGDDEFFXXX",
    "contact_email": "billing@northwind.example",
}
ITEMS = [
    ("Team seat", "12.50", None),
    ("Storage (GB-month)", "0.023", None),
    ("Support plan", "199.00", None),
    ("Consulting day", "950.00", None),
    ("API calls (thousands)", "0.40", None),
    ("Onboarding workshop", "1450.00", None),
    ("Printed handbook", "24.90", "reduced"),
    ("Training e-book", "9.90", "reduced"),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def build(db: Database, count: int, seed: int = 6) -> tuple[Actor, list[str]]:
    """An organisation with German VAT at 19 % and 7 %, 50 customers and `count` issued
    invoices of 3 to 15 lines; every fourth has a 10 % discount."""
    rng = random.Random(seed)
    org, key = organizations.create_organization(
        db, "Northwind Cloud GmbH", "EUR", timezone="Europe/Berlin", settings=SELLER
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    catalog.create_tax_rate(
        db, actor, {"code": "DE19", "name": "USt 19%", "jurisdiction": "DE", "percent": "19"}
    )
    catalog.create_tax_rate(
        db,
        actor,
        {
            "code": "DE7",
            "name": "USt 7%",
            "jurisdiction": "DE",
            "percent": "7",
            "tax_category": "reduced",
        },
    )
    products = []
    for index, (name, price, category) in enumerate(ITEMS):
        values = {"code": f"item-{index}", "name": name}
        if category:
            values["tax_category"] = category
        products.append((catalog.create_product(db, actor, values), price))
    buyers = [
        customers.create_customer(
            db,
            actor,
            {
                "legal_name": f"Kunde {index:02d} GmbH",
                "country": "DE",
                "currency": "EUR",
                "city": "München",
                "postal_code": "80331",
                "address_line1": f"Hauptstraße {index + 1}",
                "external_id": f"crm-{index:03d}",
                "language": ("de", "en", "fr")[index % 3],
            },
        )
        for index in range(50)
    ]
    ids = []
    day = date(2026, 3, 2)
    for number in range(count):
        customer = buyers[number % len(buyers)]
        draft = invoices.create_draft(db, actor, customer.id, {"po_number": f"PO-{number:05d}"})
        for _ in range(rng.randint(3, 15)):
            product, price = rng.choice(products)
            invoices.add_line(
                db,
                actor,
                draft.id,
                {
                    "description": product.name,
                    "quantity": str(rng.randint(1, 40)),
                    "unit_price": price,
                    "product_id": product.id,
                },
            )
        if number % 4 == 0:
            invoices.update_draft(
                db, actor, draft.id, {"discounts": [{"kind": "percent", "value": "10"}]}
            )
        issued = invoices.issue_invoice(
            db, actor, draft.id, issue_date=day + timedelta(days=number % 20)
        )
        ids.append(issued.id)
        if (number + 1) % 100 == 0:
            log(f"  {number + 1} invoices issued")
    return actor, ids


def cpu_seconds() -> float:
    """CPU time of this process, user and system (the workers report theirs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def profile(db: Database, actor: Actor, ids: list[str]) -> None:
    from pyinstrument import Profiler

    from tallybook.formats import pdf_documents

    sheets = [documents.document_sheet(db, actor, "invoice", i) for i in ids[:30]]
    pdf_documents.render(sheets[0])
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for sheet in sheets:
        pdf_documents.render(sheet)
    profiler.stop()
    log(profiler.output_text(unicode=False, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()

    database = sqlite_database() if options.db == "sqlite" else postgres_database()
    with database as url:
        upgrade_database(url)
        db = Database(url)
        started = time.perf_counter()
        actor, ids = build(db, options.invoices)
        log(f"built {len(ids)} invoices in {time.perf_counter() - started:.1f} s")
        if options.profile:
            profile(db, actor, ids)

        # Warm-up outside the clock: the pool's processes are new each batch, but this
        # process's renderer (fonts, stylesheet) and the e-invoice code are loaded once.
        documents.render_documents([documents.document_sheet(db, actor, "invoice", ids[0])])

        started = time.perf_counter()
        models = einvoices.invoice_einvoices(db, actor, ids)  # a batch, as an export reads
        loaded = time.perf_counter() - started
        ubl_bytes = sum(len(to_ubl(model)) for model in models)
        ubl_seconds = time.perf_counter() - started
        log(f"UBL: {len(ids)} in {ubl_seconds:.2f} s (loading {loaded:.2f} s)")

        started, cpu, usage = time.perf_counter(), cpu_seconds(), {}
        sheets = (documents.document_sheet(db, actor, "invoice", i) for i in ids)
        pdfs = documents.render_documents(sheets, workers=options.workers, usage=usage)
        pdf_seconds = time.perf_counter() - started
        pdf_cpu = cpu_seconds() - cpu + usage["render_cpu_seconds"]
        log(f"PDF: {len(pdfs)} in {pdf_seconds:.2f} s, {pdf_cpu:.1f} CPU seconds")

        started, cpu, usage = time.perf_counter(), cpu_seconds(), {}
        jobs = (documents.facturx_job(db, actor, i) for i in ids)
        facturx = documents.render_documents(jobs, workers=options.workers, usage=usage)
        facturx_seconds = time.perf_counter() - started
        facturx_cpu = cpu_seconds() - cpu + usage["render_cpu_seconds"]
        log(f"Factur-X: {len(facturx)} in {facturx_seconds:.2f} s")
        db.dispose()

    print(
        json.dumps(
            {
                "invoices": len(ids),
                "database": options.db,
                "workers": options.workers,
                "pdf_count": len(pdfs),
                "pdf_seconds": round(pdf_seconds, 2),
                "pdf_per_s": round(len(pdfs) / pdf_seconds, 1),
                "pdf_mean_bytes": sum(map(len, pdfs)) // len(pdfs),
                # CPU time per document (loading, worker start-up and rendering): what the
                # figure would be on cores nobody else uses is workers x 1000 / this.
                "pdf_cpu_ms_per_doc": round(pdf_cpu / len(pdfs) * 1000, 1),
                "ubl_count": len(ids),
                "ubl_seconds": round(ubl_seconds, 2),
                "ubl_per_s": round(len(ids) / ubl_seconds, 1),
                # Writing alone, from models already loaded: loading each invoice from the
                # database is most of the time above.
                "ubl_write_per_s": round(len(ids) / (ubl_seconds - loaded), 1),
                "ubl_mean_bytes": ubl_bytes // len(ids),
                "facturx_count": len(facturx),
                "facturx_seconds": round(facturx_seconds, 2),
                "facturx_per_s": round(len(facturx) / facturx_seconds, 1),
                "facturx_cpu_ms_per_doc": round(facturx_cpu / len(facturx) * 1000, 1),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
