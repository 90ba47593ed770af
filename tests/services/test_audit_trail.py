"""The audit trail through the services, on SQLite and PostgreSQL: every change writes an event
with what changed, events are hash-chained per organisation at commit, a chain verifies, any
tampering is named, and an auditor can recompute the hashes from an export alone."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from tallybook.core.audit_chain import GENESIS
from tallybook.db.models import AuditChainHead, AuditEvent, Customer, new_id
from tallybook.services import audit_trail, customers, invoices, organizations
from tallybook.services.base import (
    Actor,
    Database,
    Forbidden,
    InvalidInput,
    Role,
    audit,
    audit_rows,
    utcnow,
)


def key(db: Database, admin: Actor, role: str, name: str | None = None) -> Actor:
    issued = organizations.create_api_key(db, admin, name or role, role)
    return Actor(admin.organization_id, issued.id, Role(role))


def events_of(db: Database, actor: Actor) -> list[AuditEvent]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.organization_id == actor.organization_id)
                .order_by(AuditEvent.sequence)
            )
        )


def customer_of(db: Database, actor: Actor, name: str = "Kanzlei Roth") -> Customer:
    return customers.create_customer(
        db, actor, {"legal_name": name, "country": "DE", "currency": "EUR"}
    )


def draft_with_line(db: Database, actor: Actor, customer: Customer, price: str = "120.00"):  # type: ignore[no-untyped-def]
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Audit work", "unit_price": price})
    return draft


def test_events_are_chained_in_commit_order_and_verify(db: Database) -> None:
    admin = make_org(db)
    customer = customer_of(db, admin)
    customers.update_customer(db, admin, customer.id, {"payment_terms_days": 14})
    draft = draft_with_line(db, admin, customer)
    invoices.void_invoice(db, admin, draft.id, "created by mistake")
    events = events_of(db, admin)
    assert [e.action for e in events] == [
        "organization.created",
        "customer.created",
        "customer.updated",
        "invoice.draft_created",
        "invoice.line_added",
        "invoice.voided",
    ]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].previous_hash == GENESIS
    assert all(b.previous_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    result = audit_trail.verify_audit_chain(db, admin)
    assert result.report.ok and result.report.events_checked == len(events)
    assert result.head is not None and result.head.last_hash == events[-1].hash
    assert result.head.last_event_id == events[-1].id


def test_changes_record_the_fields_before_and_after(db: Database) -> None:
    admin = make_org(db)
    customer = customer_of(db, admin)
    customers.update_customer(db, admin, customer.id, {"payment_terms_days": 14})
    draft = draft_with_line(db, admin, customer)
    invoices.void_invoice(db, admin, draft.id, "created by mistake")
    by_action = {e.action: e.data for e in events_of(db, admin)}
    created = by_action["customer.created"]
    assert created["after"]["legal_name"] == "Kanzlei Roth"
    assert by_action["customer.updated"]["before"] == {"payment_terms_days": 30}
    assert by_action["customer.updated"]["after"] == {"payment_terms_days": 14}
    voided = by_action["invoice.voided"]
    assert voided["before"]["status"] == "draft" and voided["after"]["status"] == "void"
    assert voided["reason"] == "created by mistake"


def test_a_rolled_back_change_leaves_no_event_and_no_gap(db: Database) -> None:
    admin = make_org(db)
    customers.create_customer(
        db, admin, {"legal_name": "A", "country": "DE", "currency": "EUR", "external_id": "a"}
    )
    with pytest.raises(Exception, match="external_id"):
        customers.create_customer(
            db, admin, {"legal_name": "B", "country": "DE", "currency": "EUR", "external_id": "a"}
        )
    customer_of(db, admin, "C")
    events = events_of(db, admin)
    assert [e.sequence for e in events] == [1, 2, 3]
    assert audit_trail.verify_audit_chain(db, admin).report.ok


def test_bulk_rows_and_savepoints_follow_the_order_recorded(db: Database) -> None:
    admin = make_org(db)
    now = utcnow()

    def row(action: str) -> dict:
        return {
            "id": new_id("aud"),
            "organization_id": admin.organization_id,
            "actor": admin.key_id,
            "action": action,
            "entity": "payment",
            "entity_id": "pay_1",
            "data": {"amount": "1.10", "at": now},
            "created_at": now,
        }

    with db.transaction() as session:
        audit(session, admin, "first", "payment", "pay_1")
        audit_rows(session, [row("bulk.1"), row("bulk.2")])
        savepoint = session.begin_nested()
        audit(session, admin, "dropped", "payment", "pay_1")
        audit_rows(session, [row("dropped.bulk")])
        savepoint.rollback()
        kept = session.begin_nested()
        audit(session, admin, "kept", "payment", "pay_1")
        kept.commit()
        audit(session, admin, "last", "payment", "pay_1")
    actions = [e.action for e in events_of(db, admin)]
    assert actions == ["organization.created", "first", "bulk.1", "bulk.2", "kept", "last"]
    bulk = events_of(db, admin)[2]
    assert bulk.data == {"amount": "1.10", "at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    assert audit_trail.verify_audit_chain(db, admin).report.ok


def test_chains_are_per_organisation(db: Database) -> None:
    first, second = make_org(db), make_org(db)
    customer_of(db, first)
    customer_of(db, second)
    customer_of(db, first)
    assert [e.sequence for e in events_of(db, first)] == [1, 2, 3]
    assert [e.sequence for e in events_of(db, second)] == [1, 2]
    for actor in (first, second):
        assert audit_trail.verify_audit_chain(db, actor).report.ok


def test_only_managers_and_admins_read_the_trail(db: Database) -> None:
    admin = make_org(db)
    everything = audit_trail.event_filter(db, admin)
    for role in ("viewer", "billing_clerk"):
        actor = key(db, admin, role)
        with pytest.raises(Forbidden):
            audit_trail.verify_audit_chain(db, actor)
        with pytest.raises(Forbidden):
            audit_trail.list_audit_events(db, actor, everything)
        with pytest.raises(Forbidden):
            audit_trail.export_audit_events(db, actor, everything, "csv")
    manager = key(db, admin, "billing_manager")
    assert audit_trail.verify_audit_chain(db, manager).report.ok


def test_an_auditor_recomputes_every_hash_from_the_csv_alone(db: Database) -> None:
    admin = make_org(db)
    customer = customer_of(db, admin, "Müller GmbH")
    customers.update_customer(db, admin, customer.id, {"legal_name": "Müller & Söhne GmbH"})
    draft_with_line(db, admin, customer, "0.10")
    export = "".join(
        audit_trail.export_audit_events(db, admin, audit_trail.event_filter(db, admin), "csv")
    )
    rows = list(csv.DictReader(io.StringIO(export)))
    assert len(rows) == 5
    previous = GENESIS
    for row in rows:
        content = {
            "id": row["id"],
            "organization_id": row["organization_id"],
            "sequence": int(row["sequence"]),
            "actor": row["actor"] or None,
            "action": row["action"],
            "entity": row["entity"],
            "entity_id": row["entity_id"],
            "data": json.loads(row["data"]),
            "created_at": row["created_at"],
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["previous_hash"] == previous
        assert hashlib.sha256((previous + canonical).encode()).hexdigest() == row["hash"]
        previous = row["hash"]


def test_export_as_json_and_filters(db: Database) -> None:
    admin = make_org(db)
    customer = customer_of(db, admin)
    customers.update_customer(db, admin, customer.id, {"payment_terms_days": 10})
    customer_of(db, admin, "Other")
    only = audit_trail.event_filter(db, admin, entity="customer", entity_id=customer.id)
    document = json.loads("".join(audit_trail.export_audit_events(db, admin, only, "json")))
    assert [e["action"] for e in document["events"]] == ["customer.created", "customer.updated"]
    assert document["events"][0]["actor_name"] == "initial admin key"
    assert "SHA-256" in document["hash_rule"]
    today = utcnow().date()
    window = audit_trail.event_filter(db, admin, start=today.isoformat(), end=today.isoformat())
    records, _ = audit_trail.list_audit_events(db, admin, window)
    assert len(records) == 4
    yesterday = (today - timedelta(days=2)).isoformat()
    past = audit_trail.event_filter(db, admin, start=yesterday, end=yesterday)
    assert audit_trail.list_audit_events(db, admin, past)[0] == []
    page, cursor = audit_trail.list_audit_events(db, admin, window, limit=2)
    assert [r["sequence"] for r in page] == [1, 2] and cursor == 2
    rest, _ = audit_trail.list_audit_events(db, admin, window, after=cursor)
    assert [r["sequence"] for r in rest] == [3, 4]
    with pytest.raises(InvalidInput, match="from"):
        audit_trail.event_filter(db, admin, start="31.12.2026")
    with pytest.raises(InvalidInput, match="offset"):
        audit_trail.event_filter(db, admin, start="2026-01-01T00:00:00")
    with pytest.raises(InvalidInput, match="after"):
        audit_trail.event_filter(db, admin, start="2026-02-01", end="2026-01-01")
    with pytest.raises(InvalidInput, match="format"):
        audit_trail.export_audit_events(db, admin, window, "xml")


def test_no_service_writes_audit_rows_around_the_chain() -> None:
    """Bulk paths must call services.base.audit_rows: a row inserted any other way has no place
    in the chain and `audit verify` reports it as inserted."""
    root = Path(__file__).resolve().parents[2] / "tallybook"
    allowed = {"db/audit_chaining.py", "db/models.py"}
    bypass = re.compile(r"insert_rows\([^)]*AuditEvent|insert\(AuditEvent|AuditEvent\.__table__")
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if str(path.relative_to(root)) not in allowed and bypass.search(path.read_text())
    ]
    assert offenders == []


# -- concurrency (PostgreSQL) ------------------------------------------------------------------


def test_an_open_transaction_does_not_hold_up_the_chain(postgres_db: Database) -> None:
    """The chain head is locked only at commit: a long transaction that has recorded an event
    does not stop other transactions of the organisation from committing theirs."""
    db = postgres_db
    admin = make_org(db)
    recorded, release, failures = threading.Event(), threading.Event(), []

    def long_transaction() -> None:
        try:
            with db.transaction() as session:
                audit(session, admin, "long.started", "organization", admin.organization_id)
                session.flush()
                recorded.set()
                assert release.wait(60)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    worker = threading.Thread(target=long_transaction)
    worker.start()
    assert recorded.wait(60)
    done = threading.Event()

    def short_ones() -> None:
        for index in range(3):
            customer_of(db, admin, f"Customer {index}")
        done.set()

    other = threading.Thread(target=short_ones)
    other.start()
    finished_while_open = done.wait(60)
    release.set()
    worker.join(60)
    other.join(60)
    assert finished_while_open and not failures
    actions = [e.action for e in events_of(db, admin)]
    assert actions[-1] == "long.started" and actions.count("customer.created") == 3
    assert audit_trail.verify_audit_chain(db, admin).report.ok


def test_concurrent_commits_keep_one_gapless_chain(postgres_db: Database) -> None:
    db = postgres_db
    admin = make_org(db)
    errors: list[Exception] = []

    def writer(worker: int) -> None:
        try:
            for index in range(8):
                customer_of(db, admin, f"W{worker}-{index}")
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    events = events_of(db, admin)
    assert [e.sequence for e in events] == list(range(1, 34))
    assert audit_trail.verify_audit_chain(db, admin).report.ok


# -- properties --------------------------------------------------------------------------------

ACTIONS = st.lists(
    st.sampled_from(["customer", "rename", "terms", "draft", "line", "void", "key"]),
    min_size=1,
    max_size=8,
)
COLUMNS = (
    ("action", "'tampered.action'"),
    ("actor", "'key_forged'"),
    ("entity_id", "'other'"),
    ("data", None),
    ("created_at", None),
    ("sequence", "sequence + 1000"),
    ("previous_hash", f"'{'1' * 64}'"),
    ("hash", f"'{'2' * 64}'"),
    ("id", "id || 'x'"),
)


def _run(db: Database, admin: Actor, steps: list[str]) -> None:
    customer = customer_of(db, admin)
    draft = None
    for step in steps:
        if step == "customer":
            customer = customer_of(db, admin, "Another")
        elif step == "rename":
            customers.update_customer(db, admin, customer.id, {"legal_name": "Renamed"})
        elif step == "terms":
            customers.update_customer(db, admin, customer.id, {"payment_terms_days": 7})
        elif step == "draft":
            draft = invoices.create_draft(db, admin, customer.id)
        elif step == "line" and draft is not None and draft.status == "draft":
            invoices.add_line(db, admin, draft.id, {"description": "x", "unit_price": "9.99"})
        elif step == "void" and draft is not None and draft.status == "draft":
            draft = invoices.void_invoice(db, admin, draft.id, "not needed")
        elif step == "key":
            organizations.create_api_key(db, admin, "temp", "viewer")


def _mutate(db: Database, event_id: str, column: str, value: str | None) -> None:
    if column == "data":
        value = "'{\"tampered\": true}'"
    if column == "created_at":
        moved = datetime(2020, 1, 1, tzinfo=UTC)
        value = "'2020-01-01 00:00:00'" if db.dialect == "sqlite" else f"'{moved.isoformat()}'"
    with db.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE audit_events SET {column} = {value} WHERE id = :id"), {"id": event_id}
        )


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=ACTIONS, pick=st.integers(0, 10_000), column=st.sampled_from(COLUMNS))
def test_any_actions_verify_and_any_single_row_change_is_caught(
    db: Database, steps: list[str], pick: int, column: tuple[str, str | None]
) -> None:
    admin = make_org(db)
    _run(db, admin, steps)
    assert audit_trail.verify_audit_chain(db, admin).report.ok
    events = events_of(db, admin)
    victim = events[pick % len(events)]
    _mutate(db, victim.id, *column)
    report = audit_trail.verify_audit_chain(db, admin).report
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.event_id is not None


def test_head_rows_exist_only_for_organisations_with_events(db: Database) -> None:
    admin = make_org(db)
    with db.reading() as session:
        head = session.get(AuditChainHead, admin.organization_id)
        count = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.organization_id == admin.organization_id)
        )
    assert head is not None and head.last_sequence == count == 1


def test_a_settings_change_and_another_commit_do_not_deadlock(postgres_db: Database) -> None:
    """A transaction holding its organisation FOR UPDATE (settings) asks for the chain head at
    commit; another one committing meanwhile must wait for it before taking the head, not
    after (its audit rows' foreign key share-locks the organisation)."""
    from tallybook.db.models import Organization

    db = postgres_db
    admin = make_org(db)
    customer = customer_of(db, admin)
    holding, go, failures = threading.Event(), threading.Event(), []

    def settings_change() -> None:
        try:
            with db.transaction() as session:
                org = session.get(Organization, admin.organization_id, with_for_update=True)
                assert org is not None
                org.name = "Renamed while another commits"
                audit(session, admin, "organization.renamed", "organization", org.id)
                session.flush()
                holding.set()
                assert go.wait(60)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    def other_commit() -> None:
        try:
            customers.update_customer(db, admin, customer.id, {"payment_terms_days": 21})
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    first = threading.Thread(target=settings_change)
    first.start()
    assert holding.wait(60)
    second = threading.Thread(target=other_commit)
    second.start()
    waiting = False
    for _ in range(600):  # until the second transaction waits for a lock (or 60 s pass)
        with db.engine.connect() as connection:
            waiting = bool(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar()
            )
        if waiting:
            break
        threading.Event().wait(0.1)
    go.set()
    first.join(60)
    second.join(60)
    assert waiting and failures == []
    actions = [e.action for e in events_of(db, admin)]
    assert actions[-2:] == ["organization.renamed", "customer.updated"]
    assert audit_trail.verify_audit_chain(db, admin).report.ok
