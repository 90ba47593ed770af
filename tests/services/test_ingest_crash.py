"""Crash safety of event ingestion (PostgreSQL): an acknowledged event survives a SIGKILL of the
server in the middle of ingestion, and re-sending everything afterwards stores every event
exactly once, answering the ones already stored as duplicates.

The server is the real one (`tallybook serve`) in a subprocess; the helpers here are shared
with test_ingest_concurrency.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tallybook.services import customers, metering, organizations
from tallybook.services.base import Actor, Database, Role

START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0


# -- helpers shared with test_ingest_concurrency.py -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    base_url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing; in-flight requests die with it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def api_server(database_url: str) -> Iterator[ApiServer]:
    """`tallybook serve` on a free port; killed on the way out, whatever happened."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tallybook-serve-") as logdir:
        # Output to a file, never to an unread pipe: a full pipe would block the server.
        logfile = Path(logdir) / "server.log"
        with logfile.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "tallybook.cli.main", "serve", "--port", str(port)],
                env={**os.environ, "TALLYBOOK_DATABASE_URL": database_url},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches nothing else
            )
        server = ApiServer(f"http://127.0.0.1:{port}", process)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server exited with {process.returncode}:\n{_tail(logfile)}")
                try:
                    if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer within {START_TIMEOUT:.0f} s:\n{_tail(logfile)}")
                time.sleep(0.05)
            yield server
            # No request may have failed on the way (a 500 leaves a traceback in the log).
            assert "Traceback" not in logfile.read_text(errors="replace"), _tail(logfile, 60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Tenant:
    actor: Actor
    secret: str
    customer: str  # external id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}


def make_tenant(db: Database, customer: str = "cust-1") -> Tenant:
    """An organisation with a metric (sum of property n) and one customer."""
    org, key = organizations.create_organization(db, "Ingest GmbH", "EUR", timezone="UTC")
    actor = Actor(org.id, key.id, Role.ADMIN)
    metering.create_metric(db, actor, {"code": "calls", "aggregation": "sum", "field": "n"})
    customers.create_customer(
        db,
        actor,
        {
            "external_id": customer,
            "legal_name": "Ingest Customer",
            "country": "DE",
            "currency": "EUR",
        },
    )
    return Tenant(actor, key.secret, customer)


def event(tenant: Tenant, transaction_id: str, at: datetime, n: int) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "customer": tenant.customer,
        "metric": "calls",
        "timestamp": at.isoformat(),
        "properties": {"n": n},
    }


def post_batch(client: httpx.Client, events: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/v1/events/batch", content=orjson.dumps({"events": events}))


def stored_ids(database_url: str, org_id: str) -> list[str]:
    """Every stored transaction id of the organisation, repeats included."""
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT transaction_id FROM usage_events WHERE organization_id = %s", (org_id,)
        ).fetchall()
    return [tid for (tid,) in rows]


def wait_for_quiet(database_url: str, timeout: float = 20.0) -> None:
    """Until no other session of the database is inside a transaction: a killed server's
    backends finish (commit or roll back) what they were doing before the test looks."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as connection:
        while True:
            [(busy,)] = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
            ).fetchall()
            if busy == 0:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{busy} sessions still busy {timeout:.0f} s after the kill")
            time.sleep(0.05)


def key_count(database_url: str, org_id: str) -> int:
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        [(count,)] = connection.execute(
            "SELECT count(*) FROM usage_event_keys WHERE organization_id = %s", (org_id,)
        ).fetchall()
    return count


# -- the test ---------------------------------------------------------------------------------

BATCHES = 40
PER_BATCH = 2_000
KILL_AFTER = 8  # acknowledged batches before the SIGKILL
SENDERS = 2


def test_sigkill_mid_ingestion_loses_no_acknowledged_event(postgres_db: Database) -> None:
    url = postgres_db.url
    tenant = make_tenant(postgres_db)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    batches = [
        [
            event(tenant, f"crash-{b:02d}-{i:04d}", start + timedelta(seconds=b * PER_BATCH + i), i)
            for i in range(PER_BATCH)
        ]
        for b in range(BATCHES)
    ]
    acknowledged: set[str] = set()
    acked_batches: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    next_batch = iter(range(BATCHES))
    in_flight: dict[int, float] = {}  # batch -> when its request was sent

    with api_server(url) as server:

        def send() -> None:
            with httpx.Client(
                base_url=server.base_url, headers=tenant.headers, timeout=REQUEST_TIMEOUT
            ) as client:
                while True:
                    with lock:
                        index = next(next_batch, None)
                        if index is None:
                            return
                        in_flight[index] = time.monotonic()
                    try:
                        answer = post_batch(client, batches[index])
                    except httpx.TransportError:
                        return  # the server is gone: this batch was never acknowledged
                    if answer.status_code != 200:
                        with lock:
                            errors.append(f"batch {index}: {answer.status_code} {answer.text}")
                        return
                    results = answer.json()["results"]
                    with lock:
                        del in_flight[index]
                        for result in results:
                            if result["status"] in ("accepted", "duplicate"):
                                acknowledged.add(result["transaction_id"])
                        acked_batches.add(index)
                        if len(acked_batches) >= KILL_AFTER:
                            enough.set()

        senders = [threading.Thread(target=send, daemon=True) for _ in range(SENDERS)]
        for sender in senders:
            sender.start()
        assert enough.wait(timeout=60), f"only {len(acked_batches)} batches acknowledged"
        # Kill while a batch is being ingested: its request went out a little while ago.
        deadline = time.monotonic() + 30
        while True:
            with lock:
                now = time.monotonic()
                if any(now - sent >= 0.02 for sent in in_flight.values()):
                    server.kill()
                    break
            assert now < deadline, "no batch in flight to interrupt"
            time.sleep(0.002)
        for sender in senders:
            sender.join(timeout=REQUEST_TIMEOUT)
            assert not sender.is_alive()
    assert not errors, errors
    with lock:
        acknowledged = set(acknowledged)
        acked = set(acked_batches)
    assert len(acked) < BATCHES, "the kill came after the last batch: nothing was in flight"
    assert len(acknowledged) == len(acked) * PER_BATCH

    # Everything acknowledged before the kill is stored, once.
    wait_for_quiet(url)
    before = stored_ids(url, tenant.actor.organization_id)
    assert len(before) == len(set(before))
    survived = set(before)
    assert acknowledged <= survived, f"{len(acknowledged - survived)} acknowledged events lost"
    # A batch is one transaction: an unacknowledged batch is stored whole or not at all.
    for index, batch in enumerate(batches):
        ids = {e["transaction_id"] for e in batch}
        assert ids <= survived or not ids & survived, f"batch {index} half stored"

    # Restart and re-send everything: stored once, and what survived comes back as duplicate.
    statuses: dict[str, list[str]] = {}
    with api_server(url) as server:
        pending = iter(enumerate(batches))

        def resend() -> None:
            with httpx.Client(
                base_url=server.base_url, headers=tenant.headers, timeout=REQUEST_TIMEOUT
            ) as client:
                while True:
                    with lock:
                        item = next(pending, None)
                    if item is None:
                        return
                    index, batch = item
                    answer = post_batch(client, batch)
                    with lock:
                        if answer.status_code != 200:
                            errors.append(f"batch {index}: {answer.status_code} {answer.text}")
                            continue
                        for result in answer.json()["results"]:
                            statuses.setdefault(result["transaction_id"], []).append(
                                result["status"]
                            )

        resenders = [threading.Thread(target=resend, daemon=True) for _ in range(SENDERS)]
        for resender in resenders:
            resender.start()
        for resender in resenders:
            resender.join(timeout=60)
            assert not resender.is_alive()
    assert not errors, errors
    every_id = {e["transaction_id"] for batch in batches for e in batch}
    assert set(statuses) == every_id
    assert all(len(answers) == 1 for answers in statuses.values())
    for transaction_id, [status] in statuses.items():
        expected = "duplicate" if transaction_id in survived else "accepted"
        assert status == expected, (transaction_id, status)
    assert all(statuses[tid] == ["duplicate"] for tid in acknowledged)

    after = stored_ids(url, tenant.actor.organization_id)
    assert len(after) == len(set(after)) == BATCHES * PER_BATCH
    assert set(after) == every_id
    assert key_count(url, tenant.actor.organization_id) == BATCHES * PER_BATCH
