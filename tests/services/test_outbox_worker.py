"""The real job worker (`tallybook worker`, a separate process) on a fresh SQLite file and a
fresh PostgreSQL database: it sends the outbox's e-mails to a real SMTP server; killed with
SIGKILL while the server holds a message, and started again, it sends no message twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from local_servers import SmtpServer
from sqlalchemy import create_engine, select, text
from test_einvoices import SELLER

from tallybook.db.engine import upgrade_database
from tallybook.db.models import Delivery
from tallybook.services import customers, invoices, organizations
from tallybook.services.base import Actor, Database, Role

TALLYBOOK = str(Path(sys.executable).parent / "tallybook")
MESSAGES = 6


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own: the worker sends whatever is due in the whole database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'worker.db'}"
        upgrade_database(url)
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip("PostgreSQL unavailable (see the loud message above)")
    name = f"tallybook_worker_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    upgrade_database(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _statuses(db: Database) -> list[tuple[str, str]]:
    with db.reading() as session:
        return [
            (d.message_id, d.status)
            for d in session.scalars(select(Delivery).order_by(Delivery.created_at, Delivery.id))
        ]


def _wait(what, seconds: float = 90.0):  # type: ignore[no-untyped-def]
    """Until `what()` is true (a bounded wait for another process, not a timed assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = what()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting after {seconds} s")


def test_a_killed_worker_restarted_sends_no_message_twice(fresh_url: str) -> None:
    db = Database(fresh_url)
    org, key = organizations.create_organization(
        db, "Northwind Cloud Ltd", "EUR", timezone="Europe/London", settings=SELLER
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    customer = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Kunde GmbH",
            "country": "DE",
            "currency": "EUR",
            "emails": ["ap@kunde.example"],
        },
    )
    for number in range(MESSAGES):
        draft = invoices.create_draft(db, actor, customer.id)
        invoices.add_line(
            db, actor, draft.id, {"description": f"Month {number + 1}", "unit_price": "100"}
        )
        invoices.issue_invoice(db, actor, draft.id)
    queued = _statuses(db)
    assert [status for _, status in queued] == ["queued"] * MESSAGES

    with SmtpServer() as smtp:
        smtp.inbox.hold_at = 3  # the third message waits for its answer: a kill lands then
        env = {
            **os.environ,
            "TALLYBOOK_DATABASE_URL": fresh_url,
            "TALLYBOOK_SMTP_HOST": "127.0.0.1",
            "TALLYBOOK_SMTP_PORT": str(smtp.port),
            "TALLYBOOK_SMTP_SECURITY": "none",
            "TALLYBOOK_SMTP_FROM": "billing@northwind.example",
            "TALLYBOOK_WORKER_SWEEP_SECONDS": "1",
            "TALLYBOOK_SECRET_KEY": Fernet.generate_key().decode(),
        }
        first = subprocess.Popen(
            [TALLYBOOK, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert smtp.inbox.holding.wait(90), first.stderr.read1().decode()  # type: ignore[union-attr]
            first.send_signal(signal.SIGKILL)
            first.wait(30)  # reaped: its pid is gone
            assert first.returncode == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        states = dict(_statuses(db))
        assert sorted(states.values()) == ["queued"] * 3 + ["sending"] + ["sent"] * 2
        smtp.inbox.release.set()  # the server took the third message: the sender never heard

        second = subprocess.Popen(
            [TALLYBOOK, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            _wait(lambda: {s for _, s in _statuses(db)} <= {"sent", "unknown"})
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait(10)

    final = dict(_statuses(db))
    # The message in flight at the kill is `unknown`, for a clerk: never sent again by itself.
    assert sorted(final.values()) == ["sent"] * (MESSAGES - 1) + ["unknown"]
    per_id = smtp.inbox.per_message_id()
    assert per_id == {message_id: 1 for message_id, _ in queued}
    assert second.returncode == 0, second.stderr.read().decode()  # type: ignore[union-attr]
    db.dispose()
