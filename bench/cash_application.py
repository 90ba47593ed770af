"""Benchmark cash application end to end: 50,000 open invoices and a 100,000-line camt.053
statement with noise (bench/cash_data.py says what the lines are), imported through the real
service into a throwaway database. The last line printed is one JSON object with the figures.

    python bench/cash_application.py [--invoices 50000] [--lines 100000] [--seed 1]
        [--db postgres|sqlite] [--show-wrong 5]

Customers (with the accounts they are known to pay from) and invoices (open ones issued, settled
ones paid) are written in bulk before the clock starts. `seconds` is the import: reading the
file, storing its lines, matching, and posting the sure matches as payments with their journal
entries, in one transaction. Then the stored outcome is compared with the truth: a wrong auto
posting is a line applied automatically whose payment allocations differ from what the payer
meant in any invoice or amount; `auto_matched_correct_pct` is the correct automatic postings
over the lines a careful clerk could be certain of (`matchable_lines`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from billing_run import postgres_database, sqlite_database  # noqa: E402
from cash_data import KINDS, CashDataset, generate  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from tallybook.db.engine import upgrade_database  # noqa: E402
from tallybook.db.models import (  # noqa: E402
    BankStatementLine,
    Customer,
    Invoice,
    PaymentAllocation,
)
from tallybook.formats.bank_statements.camt053_writer import (  # noqa: E402
    Movement,
    write_camt053_accounts,
)
from tallybook.services import cash_application, organizations  # noqa: E402
from tallybook.services.base import Actor, Database, Role  # noqa: E402

OUR_ACCOUNTS = {
    "EUR": "DE02120300000000202051",
    "GBP": "GB33BUKB20201555555555",
    "CHF": "CH9300762011623852957",
    "USD": "DE02120300000000202052",
}
BATCH = 5_000
SETTLED_ON = date(2025, 12, 1)  # settled invoices only need a real number and reference


def log(message: str) -> None:
    print(message, flush=True)


def load_world(db: Database, data: CashDataset) -> Actor:
    org, key = organizations.create_organization(db, "Bench Cash GmbH", "EUR", timezone="UTC")
    actor = Actor(org.id, key.id, Role.ADMIN)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    customers = [
        {
            "id": customer.id,
            "organization_id": org.id,
            "legal_name": customer.name,
            "country": customer.country,
            "currency": customer.currency,
            "bank_accounts": list(customer.known_accounts),
            "created_at": now,
        }
        for customer in data.customers
    ]
    invoices: list[dict[str, Any]] = []
    for invoice in data.invoices:
        invoices.append(
            _invoice(
                org.id,
                invoice.id,
                invoice.number,
                invoice.customer_id,
                invoice.currency,
                invoice.amount_due_minor,
                invoice.issue_date,
                invoice.due_date,
                invoice.reference,
                now,
                paid=False,
            )
        )
    for settled in data.settled:
        invoices.append(
            _invoice(
                org.id,
                settled.id,
                settled.number,
                settled.customer_id,
                settled.currency,
                settled.total_minor,
                SETTLED_ON,
                SETTLED_ON,
                settled.reference,
                now,
                paid=True,
            )
        )
    with db.transaction() as session:
        for start in range(0, len(customers), BATCH):
            session.execute(insert(Customer), customers[start : start + BATCH])
        for start in range(0, len(invoices), BATCH):
            session.execute(insert(Invoice), invoices[start : start + BATCH])
    return actor


def _invoice(
    organization_id: str,
    invoice_id: str,
    number: str,
    customer_id: str,
    currency: str,
    amount: int,
    issued: date,
    due: date,
    reference: str,
    now: datetime,
    *,
    paid: bool,
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "organization_id": organization_id,
        "customer_id": customer_id,
        "number": number,
        "status": "paid" if paid else "issued",
        "currency": currency,
        "billing_date": issued,
        "issue_date": issued,
        "due_date": due,
        "subtotal_minor": amount,
        "total_minor": amount,
        "paid_minor": amount if paid else 0,
        "amount_due_minor": 0 if paid else amount,
        "payment_reference": reference,
        "created_at": now,
        "issued_at": now,
    }


def statement_file(data: CashDataset) -> tuple[bytes, dict[str, int]]:
    """The statement (one camt.053 Stmt per currency) and, by bank reference, each line's
    position in the dataset."""
    by_currency: dict[str, list[Movement]] = defaultdict(list)
    positions: dict[str, int] = {}
    for position, line in enumerate(data.lines):
        reference = f"BNK{position:08d}"
        positions[reference] = position
        by_currency[line.currency].append(
            Movement(
                booking_date=line.booking_date,
                amount_minor=line.amount_minor,
                currency=line.currency,
                payer_name=line.payer_name,
                payer_account=line.payer_account,
                remittance_text=line.remittance_text,
                creditor_reference=line.creditor_reference,
                referred_documents=line.referred_documents,
                bank_reference=reference,
            )
        )
    accounts = [
        (OUR_ACCOUNTS.get(currency, OUR_ACCOUNTS["EUR"]), currency, movements, 10_000_000)
        for currency, movements in sorted(by_currency.items())
    ]
    data_bytes = write_camt053_accounts(
        accounts, statement_id=f"BENCH-{data.seed}", created=date(2026, 3, 31)
    )
    return data_bytes, positions


def outcome(db: Database, actor: Actor) -> dict[str, tuple[str, tuple[tuple[str, int], ...]]]:
    """Per bank reference: the line's status and, if applied, its payment's allocations."""
    with db.reading() as session:
        lines = session.execute(
            select(
                BankStatementLine.bank_reference,
                BankStatementLine.status,
                BankStatementLine.payment_id,
            ).where(BankStatementLine.organization_id == actor.organization_id)
        ).all()
        allocations: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for payment_id, invoice_id, amount in session.execute(
            select(
                PaymentAllocation.payment_id,
                PaymentAllocation.invoice_id,
                PaymentAllocation.amount_minor,
            ).where(PaymentAllocation.organization_id == actor.organization_id)
        ):
            allocations[payment_id].append((invoice_id, amount))
    return {
        reference: (status, tuple(sorted(allocations.get(payment_id or "", ()))))
        for reference, status, payment_id in lines
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    data = generate(args.seed, invoices=args.invoices, lines=args.lines)
    log(
        f"generated {len(data.lines)} lines, {len(data.invoices)} open invoices, "
        f"{len(data.customers)} customers, {len(data.settled)} settled invoices "
        f"in {time.perf_counter() - started:.1f} s (seed {args.seed})"
    )
    content, positions = statement_file(data)
    log(f"statement: camt.053, {len(content) / 1e6:.1f} MB")
    database = postgres_database() if args.db == "postgres" else sqlite_database()
    with database as url:
        upgrade_database(url)
        db = Database(url)
        try:
            started = time.perf_counter()
            actor = load_world(db, data)
            log(f"customers and invoices written in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            result = cash_application.import_statement(db, actor, content, file_name="bench.xml")
            seconds = time.perf_counter() - started
            log(
                f"imported in {seconds:.1f} s: {result.lines_new} lines, {result.applied} "
                f"applied, {result.review} for review, {result.outgoing} outgoing"
            )
            stored = outcome(db, actor)
        finally:
            db.dispose()
    rows: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    wrong: list[str] = []
    for reference, (status, allocations) in stored.items():
        position = positions[reference]
        truth = data.truth[position]
        row = rows[truth.kind]
        row["lines"] += 1
        row["matchable"] += truth.matchable
        expected = tuple(sorted((a.invoice_id, a.amount_minor) for a in truth.allocations))
        if status == "applied":
            row["auto"] += 1
            if allocations != expected:
                row["wrong"] += 1
                if len(wrong) < args.show_wrong:
                    line = data.lines[position]
                    wrong.append(
                        f"  [{truth.kind}] {line.amount_minor} {line.currency} "
                        f"payer={line.payer_name!r} remittance={line.remittance_text!r}\n"
                        f"    truth {expected} posted {allocations}"
                    )
            elif truth.matchable:
                row["correct"] += 1
        elif status == "review":
            row["review"] += 1
    header = (
        f"{'kind':<20} {'lines':>7} {'matchable':>9} {'auto':>7} {'correct':>7} "
        f"{'wrong':>5} {'review':>7} {'correct %':>9}"
    )
    log(header)
    log("-" * len(header))
    total: Counter[str] = Counter()
    for kind, row in rows.items():
        total.update(row)
        share = f"{100 * row['correct'] / row['matchable']:.1f}" if row["matchable"] else "-"
        log(
            f"{kind:<20} {row['lines']:>7} {row['matchable']:>9} {row['auto']:>7} "
            f"{row['correct']:>7} {row['wrong']:>5} {row['review']:>7} {share:>9}"
        )
    for text in wrong:
        log("wrong auto posting:\n" + text)
    return {
        "lines": len(data.lines),
        "open_invoices": len(data.invoices),
        "seconds": round(seconds, 2),
        "auto_matched_pct": round(100 * total["auto"] / max(1, len(data.lines)), 2),
        "auto_matched_correct_pct": round(100 * total["correct"] / max(1, total["matchable"]), 2),
        "wrong_auto_postings": total["wrong"],
        "matchable_lines": total["matchable"],
        "applied": result.applied,
        "review": result.review,
        "db": args.db,
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--show-wrong", type=int, default=5)
    args = parser.parse_args(argv)
    figures = run(args)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
