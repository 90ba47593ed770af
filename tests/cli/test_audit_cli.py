"""`tallybook audit verify|export|events`, and the tampering acceptance test: rows of the audit
table updated, deleted, inserted and reordered directly in SQL (SQLite and PostgreSQL) are each
caught by `tallybook audit verify`, which exits non-zero naming the event."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text
from test_cli import Cli, one_error_line

from tallybook.db.models import AuditEvent
from tallybook.services import customers, invoices, organizations
from tallybook.services.base import Actor, Database, Role


@dataclass
class Books:
    db: Database
    cli: Cli
    admin: Actor
    events: list[AuditEvent]

    def sql(self, statement: str, **params: object) -> None:
        with self.db.engine.begin() as connection:
            connection.execute(text(statement), params)

    def verify(self):  # type: ignore[no-untyped-def]
        return self.cli.run("audit", "verify")


@pytest.fixture
def books(db: Database, monkeypatch: pytest.MonkeyPatch) -> Books:
    """An organisation with a dozen audit events, and the CLI pointed at the same database."""
    org, key = organizations.create_organization(db, "Kanzlei Roth", "EUR")
    admin = Actor(org.id, key.id, Role.ADMIN)
    customer = customers.create_customer(
        db, admin, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    customers.update_customer(db, admin, customer.id, {"payment_terms_days": 14})
    for price in ("100.00", "250.00", "75.50"):
        draft = invoices.create_draft(db, admin, customer.id)
        invoices.add_line(db, admin, draft.id, {"description": "Audit", "unit_price": price})
        invoices.issue_invoice(db, admin, draft.id)
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", db.url)
    cli = Cli()
    cli.key = key.secret
    with db.reading() as session:
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.organization_id == org.id)
                .order_by(AuditEvent.sequence)
            )
        )
    assert len(events) >= 10
    return Books(db, cli, admin, events)


def broken(books: Books) -> str:
    result = books.verify()
    assert result.exit_code != 0
    return one_error_line(result)


def test_an_untouched_trail_verifies(books: Books) -> None:
    out = books.cli.ok("audit", "verify")
    assert "audit trail intact" in out and f"{len(books.events)} events" in out
    report = books.cli.json("audit", "verify")
    assert report["ok"] is True and report["events_checked"] == len(books.events)
    assert report["last_hash"] == books.events[-1].hash


def test_an_updated_row_is_caught(books: Books) -> None:
    victim = books.events[4]
    forged = '{"legal_name": "Someone else"}'
    value = "CAST(:data AS JSONB)" if books.db.dialect == "postgresql" else ":data"
    books.sql(f"UPDATE audit_events SET data = {value} WHERE id = :id", data=forged, id=victim.id)
    line = broken(books)
    assert victim.id in line and f"sequence {victim.sequence}" in line
    assert "content changed" in line


def test_an_updated_actor_is_caught_too(books: Books) -> None:
    victim = books.events[2]
    books.sql("UPDATE audit_events SET actor = 'key_somebody_else' WHERE id = :id", id=victim.id)
    line = broken(books)
    assert victim.id in line and "content changed" in line


def test_a_deleted_row_is_caught(books: Books) -> None:
    victim, after = books.events[5], books.events[6]
    books.sql("DELETE FROM audit_events WHERE id = :id", id=victim.id)
    line = broken(books)
    assert "event missing" in line
    assert f"sequence number {victim.sequence} is missing" in line and after.id in line


def test_deleting_the_last_row_is_caught(books: Books) -> None:
    victim = books.events[-1]
    books.sql("DELETE FROM audit_events WHERE id = :id", id=victim.id)
    line = broken(books)
    assert "event missing" in line and victim.id in line


def test_deleting_and_renumbering_is_caught(books: Books) -> None:
    victim = books.events[3]
    books.sql("DELETE FROM audit_events WHERE id = :id", id=victim.id)
    for event in books.events[4:]:
        books.sql(
            "UPDATE audit_events SET sequence = :n WHERE id = :id",
            n=(event.sequence or 0) - 1,
            id=event.id,
        )
    line = broken(books)
    assert "event missing" in line and books.events[4].id in line


def _insert(books: Books, event_id: str, sequence: int | None, previous: str | None) -> None:
    model = books.events[1]
    value = "CAST(:data AS JSONB)" if books.db.dialect == "postgresql" else ":data"
    books.sql(
        "INSERT INTO audit_events (id, organization_id, actor, action, entity, entity_id, data, "
        "created_at, sequence, previous_hash, hash) VALUES (:id, :org, :actor, 'invoice.voided', "
        f"'invoice', 'inv_x', {value}, :at, :sequence, :previous, :hash)",
        id=event_id,
        org=model.organization_id,
        actor=model.actor,
        data=json.dumps({"reason": "never happened"}),
        at=model.created_at.replace(tzinfo=None)
        if books.db.dialect == "sqlite"
        else model.created_at,
        sequence=sequence,
        previous=previous,
        hash=None if sequence is None else "f" * 64,
    )


def test_an_inserted_row_is_caught(books: Books) -> None:
    _insert(books, "aud_forged_plain", None, None)
    line = broken(books)
    assert "event inserted" in line and "aud_forged_plain" in line


def test_a_row_appended_after_the_head_is_caught(books: Books) -> None:
    last = books.events[-1]
    _insert(books, "aud_forged_tail", (last.sequence or 0) + 1, last.hash)
    line = broken(books)
    assert "event inserted" in line and "aud_forged_tail" in line


def test_a_row_slipped_into_the_middle_is_caught(books: Books) -> None:
    place = books.events[4]
    for event in reversed(books.events[4:]):
        books.sql(
            "UPDATE audit_events SET sequence = :n WHERE id = :id",
            n=(event.sequence or 0) + 1,
            id=event.id,
        )
    _insert(books, "aud_forged_middle", place.sequence, books.events[3].hash)
    line = broken(books)
    assert "event inserted" in line and "aud_forged_middle" in line


def test_reordered_rows_are_caught(books: Books) -> None:
    first, second = books.events[6], books.events[7]
    books.sql("UPDATE audit_events SET sequence = -1 WHERE id = :id", id=first.id)
    books.sql(
        "UPDATE audit_events SET sequence = :n WHERE id = :id", n=first.sequence, id=second.id
    )
    books.sql(
        "UPDATE audit_events SET sequence = :n WHERE id = :id", n=second.sequence, id=first.id
    )
    line = broken(books)
    assert "order changed" in line and second.id in line


def test_reordering_by_swapping_contents_is_caught(books: Books) -> None:
    """Two rows keep their sequence numbers but trade places by trading every other column."""
    a, b = books.events[2], books.events[3]
    for one, other in ((a, b), (b, a)):
        books.sql(
            "UPDATE audit_events SET action = :action, entity = :entity, entity_id = :entity_id "
            "WHERE id = :id",
            action=other.action,
            entity=other.entity,
            entity_id=other.entity_id,
            id=one.id,
        )
    line = broken(books)
    assert a.id in line and "content changed" in line


def test_json_report_names_the_first_break(books: Books) -> None:
    victim = books.events[2]
    books.sql("UPDATE audit_events SET action = 'x.y' WHERE id = :id", id=victim.id)
    result = books.cli.run("audit", "verify", "--json")
    assert result.exit_code != 0
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["first_break"]["kind"] == "content_changed"
    assert report["first_break"]["event_id"] == victim.id
    assert report["events_checked"] == 2


def test_clerks_and_viewers_cannot_verify(books: Books) -> None:
    for role in ("billing_clerk", "viewer"):
        issued = organizations.create_api_key(books.db, books.admin, role, role)
        result = books.cli.run("audit", "verify", key=issued.secret)
        assert result.exit_code != 0 and role in one_error_line(result)


def test_export_events_and_every_organisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    cli = Cli()
    cli.init()
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )
    out = tmp_path / "audit.csv"
    written = cli.ok(
        "audit", "export", "--from", "2000-01-01", "--to", "2100-12-31", "-o", str(out)
    )
    assert "Wrote" in written
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["action"] for r in rows] == ["organization.created", "customer.created"]
    assert rows[1]["entity_id"] == customer["id"] and len(rows[1]["hash"]) == 64
    document = json.loads(cli.ok("audit", "export", "--format", "json", "--entity", "customer"))
    assert [e["action"] for e in document["events"]] == ["customer.created"]
    listed = cli.ok("audit", "events", "--entity-id", customer["id"])
    assert "customer.created" in listed
    bad = cli.run("audit", "export", "--format", "xml")
    assert bad.exit_code != 0 and "--format" in one_error_line(bad)
    bad_day = cli.run("audit", "export", "--from", "31.12.2026")
    assert bad_day.exit_code != 0 and "from" in one_error_line(bad_day)
    everyone = cli.run("audit", "verify", "--all-organizations", key="")
    assert everyone.exit_code == 0 and "audit trail intact, 2 events" in everyone.stdout
