"""Upgrading a database written before the hash chain: migration 0004 chains the audit events
already there, in the order they were written, so the first verify finds every chain whole."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from tallybook.config import normalise_database_url
from tallybook.db.engine import MIGRATIONS_DIR
from tallybook.services import audit_trail, customers
from tallybook.services.base import Actor, Database, Role


def _migrate(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_database_url(url))
    command.upgrade(config, revision)


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at revision 0003 (before the chain)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        _migrate(url, "0003")
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip("PostgreSQL unavailable (see the loud message above)")
    name = f"tallybook_old_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_database_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    _migrate(url, "0003")
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def test_existing_events_are_chained_by_the_upgrade(old_database: str) -> None:
    engine = create_engine(normalise_database_url(old_database))
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as connection:
        for org in ("org_a", "org_b"):
            connection.execute(
                text(
                    "INSERT INTO organizations (id, name, default_currency, timezone, "
                    "proration_policy, downgrade_credit, rounding_mode, tax_rounding, "
                    "prices_include_tax, approval_thresholds, invoice_number_pattern, "
                    "credit_note_number_pattern, debit_note_number_pattern, usage_grace_days, "
                    "created_at) VALUES (:id, 'Old books', 'EUR', 'UTC', 'exact_days', "
                    "'immediate', 'half_up', 'per_line', false, '{}', 'INV-{seq}', 'CN-{seq}', "
                    "'DN-{seq}', 0, :at)"
                ),
                {"id": org, "at": start.replace(tzinfo=None) if sqlite else start},
            )
        # Written out of id order and with the same instant twice: created_at, then id.
        for index, (org, event_id, seconds) in enumerate(
            [
                ("org_a", "aud_3", 2),
                ("org_a", "aud_1", 0),
                ("org_b", "aud_9", 0),
                ("org_a", "aud_2", 0),
                ("org_a", "aud_4", 5),
            ]
        ):
            at = start + timedelta(seconds=seconds)
            connection.execute(
                text(
                    "INSERT INTO audit_events (id, organization_id, actor, action, entity, "
                    "entity_id, data, created_at) VALUES (:id, :org, 'key_old', :action, "
                    "'customer', 'cus_1', :data, :at)"
                ),
                {
                    "id": event_id,
                    "org": org,
                    "action": f"customer.step_{index}",
                    "data": json.dumps({"amount": "12.50", "n": index}),
                    "at": at.replace(tzinfo=None) if sqlite else at,
                },
            )
    engine.dispose()
    _migrate(old_database, "head")
    db = Database(old_database)
    try:
        a = audit_trail.verify_organization_chain(db, "org_a")
        b = audit_trail.verify_organization_chain(db, "org_b")
        assert a.report.ok and a.report.events_checked == 4
        assert b.report.ok and b.report.events_checked == 1
        with db.reading() as session:
            order = (
                session.execute(
                    text(
                        "SELECT id FROM audit_events WHERE organization_id = 'org_a' "
                        "ORDER BY sequence"
                    )
                )
                .scalars()
                .all()
            )
        assert order == ["aud_1", "aud_2", "aud_3", "aud_4"]
        # New events carry on from the migrated head.
        actor = Actor("org_a", None, Role.ADMIN)
        customers.create_customer(
            db, actor, {"legal_name": "After", "country": "DE", "currency": "EUR"}
        )
        after = audit_trail.verify_organization_chain(db, "org_a")
        assert after.report.ok and after.report.events_checked == 5
    finally:
        db.dispose()
