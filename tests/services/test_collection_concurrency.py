"""Collection on PostgreSQL with runs racing each other: every invoice is charged once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from conftest import make_org
from sqlalchemy import func, select

from tallybook.db.models import Payment, PaymentAttempt
from tallybook.providers.payments import ChargeResult, ProviderRegistry, SimulatedProvider
from tallybook.services import collection, customers, invoices, payment_methods
from tallybook.services.base import Actor, Database

DAY = date(2026, 3, 2)


class SlowProvider(SimulatedProvider):
    """The simulated provider, answering slowly so that runs overlap while charging."""

    def charge(self, *args, **kwargs) -> ChargeResult:  # type: ignore[no-untyped-def]
        time.sleep(0.005)
        return super().charge(*args, **kwargs)


def due_invoices(db: Database, actor: Actor, count: int) -> dict[str, str]:
    """`count` invoices due on DAY over ten customers; invoice id -> the customer's token."""
    tokens = ["sim_card_ok", "sim_card_declined", "sim_sepa_ok", "sim_card_fail"]
    result: dict[str, str] = {}
    people = []
    for index in range(10):
        customer = customers.create_customer(
            db,
            actor,
            {
                "legal_name": f"Customer {index}",
                "country": "DE",
                "currency": "EUR",
                "payment_terms_days": 0,
            },
        )
        token = tokens[index % len(tokens)]
        payment_methods.attach_payment_method(
            db, actor, customer.id, {"provider": "simulated", "token": token}
        )
        people.append((customer, token))
    for index in range(count):
        customer, token = people[index % len(people)]
        draft = invoices.create_draft(db, actor, customer.id)
        invoices.add_line(
            db, actor, draft.id, {"description": "Seat", "unit_price": f"{10 + index}.00"}
        )
        result[invoices.issue_invoice(db, actor, draft.id, issue_date=DAY).id] = token
    return result


def test_two_collection_runs_at_once_charge_each_invoice_once(postgres_db: Database) -> None:
    db = postgres_db
    actor = make_org(db)
    due = due_invoices(db, actor, 30)
    provider = SlowProvider(keep_journal=True)
    registry = ProviderRegistry({"simulated": provider})
    start = threading.Barrier(3)

    def run(_: int) -> collection.CollectionRun:
        start.wait()
        return collection.collect_due_invoices(db, actor, DAY, providers=registry)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(run, range(3)))

    outcomes = [o for r in runs for o in r.outcomes]
    assert sorted(o.invoice_id for o in outcomes) == sorted(due)
    assert len(provider.sent_keys) == len(set(provider.sent_keys)) == 30
    approved = {i for i, token in due.items() if token.endswith("_ok")}
    assert {k.split(":")[0] for k in provider.charged_keys} == approved
    with db.reading() as session:
        attempts = Counter(
            session.scalars(
                select(PaymentAttempt.invoice_id).where(
                    PaymentAttempt.organization_id == actor.organization_id
                )
            )
        )
        payments = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.organization_id == actor.organization_id, Payment.source == "collection")
        )
    assert set(attempts) == set(due) and set(attempts.values()) == {1}
    assert payments == len(approved)


def test_claims_racing_without_the_run_lock_claim_each_invoice_once(
    postgres_db: Database,
) -> None:
    """Row locks (SKIP LOCKED, then a fresh look at the last attempt) and the unique
    (invoice, attempt) constraint keep claimers apart even without the run lock."""
    db = postgres_db
    actor = make_org(db)
    due = due_invoices(db, actor, 40)
    registry = ProviderRegistry({"simulated": SimulatedProvider()})
    start = threading.Barrier(4)

    def claim(_: int) -> list[str]:
        start.wait()
        claimed: list[str] = []
        after = None
        while True:
            claims, _, after = collection.claim_due_invoices(
                db, actor, DAY, providers=registry, after=after, limit=7
            )
            claimed.extend(c.invoice_id for c in claims)
            if after is None:
                return claimed

    with ThreadPoolExecutor(max_workers=4) as pool:
        claimed = [i for batch in pool.map(claim, range(4)) for i in batch]
    with db.reading() as session:
        rows = session.execute(
            select(PaymentAttempt.invoice_id, PaymentAttempt.attempt, PaymentAttempt.status).where(
                PaymentAttempt.organization_id == actor.organization_id
            )
        ).all()
    assert sorted(claimed) == sorted(due)
    assert sorted(r.invoice_id for r in rows) == sorted(due)
    assert {(r.attempt, r.status) for r in rows} == {(1, "pending")}
    # The next run completes every pending claim, each with its own key, once.
    provider = SimulatedProvider(keep_journal=True)
    run = collection.collect_due_invoices(
        db, actor, DAY, providers=ProviderRegistry({"simulated": provider})
    )
    assert run.attempted == 40 and all(o.resent for o in run.outcomes)
    assert sorted(provider.sent_keys) == sorted(f"{i}:1" for i in due)


class HoldingProvider(SimulatedProvider):
    """Signals when the first charge begins and answers it only after a pause, so a second
    run can start while the first one's attempts are still pending."""

    def __init__(self) -> None:
        super().__init__(keep_journal=True)
        self.charging = threading.Event()

    def charge(self, *args, **kwargs) -> ChargeResult:  # type: ignore[no-untyped-def]
        if not self.charging.is_set():
            self.charging.set()
            time.sleep(0.3)
        return super().charge(*args, **kwargs)


def test_a_run_started_while_another_is_charging_does_not_resend_its_attempts(
    postgres_db: Database,
) -> None:
    db = postgres_db
    actor = make_org(db)
    due = due_invoices(db, actor, 12)
    provider = HoldingProvider()
    registry = ProviderRegistry({"simulated": provider})
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(collection.collect_due_invoices, db, actor, DAY, providers=registry)
        provider.charging.wait()
        # The first run's claims are committed and pending now; the second run queues behind
        # it instead of taking them for a crashed run's.
        second = pool.submit(collection.collect_due_invoices, db, actor, DAY, providers=registry)
        runs = [first.result(), second.result()]
    assert [r.attempted for r in runs] == [12, 0]
    assert sorted(provider.sent_keys) == sorted(f"{i}:1" for i in due)
