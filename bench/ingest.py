"""Benchmark usage event ingestion on a throwaway PostgreSQL database: HTTP batches through the
real server, a bulk NDJSON file import, and a raw COPY floor; the last line printed is one JSON
object with the figures.

    python bench/ingest.py [--events 1000000] [--duplicates 0.05] [--batch 10000]
                           [--clients 4] [--workers 2] [--customers 1000]

Every phase starts from empty event tables (TRUNCATE) and ends by checking that exactly the
unique transaction ids are stored. TALLYBOOK_DATABASE_URL names the server (default: the local
one); a database is created on it for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg

# Run as a script from bench/: the billing benchmark's throwaway PostgreSQL database.
from billing_run import postgres_database  # noqa: E402

from tallybook.config import normalise_database_url
from tallybook.db.engine import upgrade_database
from tallybook.services import customers, events, metering, organizations
from tallybook.services.base import Actor, Database, Role

METRIC = "api_calls"
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 59 * 86_400  # January and February 2026: two monthly partitions
EVENT_TABLES = "usage_events, usage_event_keys, usage_quarantine"


def log(message: str) -> None:
    print(message, flush=True)


# -- database --------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """psycopg wants postgresql://, not SQLAlchemy's postgresql+psycopg://."""
    return normalise_database_url(url).replace("postgresql+psycopg://", "postgresql://")


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        cursor = connection.execute(statement)
        return cursor.fetchall() if cursor.description else []


def empty_event_tables(url: str) -> None:
    """Empty event tables, and a quiet server: no checkpoint or autovacuum of the previous
    phase's writes may run (and be counted) inside the next phase."""
    sql(url, f"TRUNCATE {EVENT_TABLES}")
    sql(url, "CHECKPOINT")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        [(busy,)] = sql(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
            "AND datname = current_database()",
        )
        if not busy:
            return
        time.sleep(0.5)


def stored_counts(url: str) -> tuple[int, int]:
    [(count, distinct)] = sql(
        url, "SELECT count(*), count(DISTINCT transaction_id) FROM usage_events"
    )
    return count, distinct


def postgres_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of this database's backends and of the server's writers (WAL writer,
    checkpointer, background writer), by process id; other databases' sessions are left out.
    """
    rows = sql(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
    )
    seconds = {}
    for (pid,) in rows:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def postgres_cpu_since(url: str, before: dict[int, float]) -> float:
    """CPU seconds used since `before` by the processes postgres_cpu counts (a backend that
    ended in between is missed: each phase keeps its connections open until it is measured)."""
    after = postgres_cpu(url)
    return round(sum(spent - before.get(pid, 0.0) for pid, spent in after.items()), 1)


def tree_cpu_seconds(root: psutil.Process) -> float:
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop: on a shared host, how fast the machine is now
    (compare runs only when their probes agree)."""
    began = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(time.perf_counter() - began, 3)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the workload ----------------------------------------------------------------------------


@dataclass
class Workload:
    """Events as a sequence of unique indexes: a repeated index is a re-sent copy."""

    unique: int
    customers: int
    sequence: array
    duplicates: int
    bodies: list[bytes] = field(default_factory=list)

    def event(self, i: int) -> dict[str, Any]:
        return {
            "transaction_id": f"tx-{i:010d}",
            "customer": f"cust-{i % self.customers:05d}",
            "metric": METRIC,
            "timestamp": self.timestamp(i).isoformat().replace("+00:00", "Z"),
            "properties": {"n": i % 10 + 1, "region": "eu" if i % 3 else "us"},
        }

    def timestamp(self, i: int) -> datetime:
        return START + timedelta(seconds=i * SPAN_SECONDS // self.unique)


def make_workload(events_count: int, duplicate_share: float, customers_count: int) -> Workload:
    rng = random.Random(20260101)
    duplicates = round(events_count * duplicate_share)
    unique = events_count - duplicates
    # Each duplicate re-sends an event that was already sent: it follows its original.
    after = [0] * unique
    for _ in range(duplicates):
        after[rng.randrange(unique)] += 1
    sequence = array("q")
    for i in range(unique):
        sequence.append(i)
        for _ in range(after[i]):
            sequence.append(rng.randrange(i + 1))
    assert len(sequence) == events_count
    return Workload(unique, customers_count, sequence, duplicates)


def serialise(workload: Workload, batch: int, ndjson: Path) -> None:
    """Request bodies for the HTTP phase and the same events, in order, as an NDJSON file."""
    with ndjson.open("wb") as out:
        for start in range(0, len(workload.sequence), batch):
            chunk = [workload.event(i) for i in workload.sequence[start : start + batch]]
            workload.bodies.append(orjson.dumps({"events": chunk}))
            out.write(b"\n".join(orjson.dumps(e) for e in chunk))
            out.write(b"\n")


def copy_blocks(
    workload: Workload, org_id: str, customer_ids: dict[str, str], batch: int
) -> list[bytes]:
    """The unique events, resolved, in COPY text format, in blocks of `batch` rows."""
    received = datetime.now(UTC).isoformat()
    blocks = []
    for start in range(0, workload.unique, batch):
        lines = []
        for i in range(start, min(start + batch, workload.unique)):
            e = workload.event(i)
            lines.append(
                "\t".join(
                    (
                        org_id,
                        customer_ids[e["customer"]],
                        METRIC,
                        workload.timestamp(i).isoformat(),
                        e["transaction_id"],
                        orjson.dumps(e["properties"]).decode(),
                        received,
                    )
                )
            )
        blocks.append(("\n".join(lines) + "\n").encode())
    return blocks


def setup_organisation(db: Database, customers_count: int) -> tuple[Actor, str, dict[str, str]]:
    org, key = organizations.create_organization(db, "Bench Metering GmbH", "EUR", timezone="UTC")
    actor = Actor(org.id, key.id, Role.ADMIN)
    metering.create_metric(
        db, actor, {"code": METRIC, "name": "API calls", "aggregation": "sum", "field": "n"}
    )
    customer_ids = {}
    for n in range(customers_count):
        external = f"cust-{n:05d}"
        row = customers.create_customer(
            db,
            actor,
            {
                "external_id": external,
                "legal_name": f"Bench Customer {n:05d} GmbH",
                "country": "DE",
                "currency": "EUR",
            },
        )
        customer_ids[external] = row.id
    return actor, key.secret, customer_ids


# -- phase a: HTTP batches through the real server --------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(url: str, workers: int, logdir: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    tallybook = Path(sys.executable).with_name("tallybook")
    command = (
        [str(tallybook)] if tallybook.exists() else [sys.executable, "-m", "tallybook.cli.main"]
    )
    # The server's output goes to a file: an unread pipe fills up and blocks the server.
    logfile = logdir / "server.log"
    with logfile.open("wb") as output:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--workers", str(workers)],
            env={**os.environ, "TALLYBOOK_DATABASE_URL": url},
            stdout=subprocess.DEVNULL,
            stderr=output,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{tail(logfile)}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within 60 s:\n{tail(logfile)}")
            time.sleep(0.1)
        # Every worker imports the app on its own; give the others a moment to listen too.
        time.sleep(0.5 * (workers - 1))
        yield base, psutil.Process(process.pid)
    except BaseException:
        log(f"server log:\n{tail(logfile)}")
        raise
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind, if any
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_phase(
    url: str, workload: Workload, secret: str, clients: int, workers: int, logdir: Path
) -> dict[str, Any]:
    with running_server(url, workers, logdir) as (base, server):
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        # Untimed empty batches: the workers authenticate and open their first connections.
        warm = orjson.dumps({"events": []})
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            for _ in range(workers * 2):
                client.post("/v1/events/batch", content=warm).raise_for_status()
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "quarantined": 0}
        failures: list[str] = []
        lock = threading.Lock()
        next_batch = itertools.count()
        done = [0]
        step = max(1, len(workload.bodies) // 10)

        def client_loop() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                while True:
                    index = next(next_batch)
                    if index >= len(workload.bodies):
                        return
                    try:
                        answer = client.post("/v1/events/batch", content=workload.bodies[index])
                    except httpx.HTTPError as error:
                        with lock:
                            failures.append(f"batch {index}: {error!r}")
                        continue
                    if answer.status_code != 200:
                        with lock:
                            failures.append(f"batch {index}: {answer.status_code} {answer.text}")
                        continue
                    data = orjson.loads(answer.content)
                    with lock:
                        for key in totals:
                            totals[key] += data[key]
                        done[0] += 1
                        if done[0] % step == 0:
                            elapsed = time.perf_counter() - began
                            log(
                                f"  http: {done[0]}/{len(workload.bodies)} batches answered "
                                f"in {elapsed:.1f} s"
                            )

        server_cpu = tree_cpu_seconds(server)
        pg_cpu = postgres_cpu(url)
        own_cpu = own_cpu_seconds()
        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        cpu = {
            "server": round(tree_cpu_seconds(server) - server_cpu, 1),
            "postgres": postgres_cpu_since(url, pg_cpu),
            "clients": round(own_cpu_seconds() - own_cpu, 1),
        }
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, first: {failures[0]}")
    check_answers("http", totals, workload)
    return {"seconds": seconds, "cpu_s": cpu, **totals}


def check_answers(phase: str, totals: dict[str, int], workload: Workload) -> None:
    """Every event answered: each unique one accepted once, every re-sent copy a duplicate."""
    answered = totals["accepted"] + totals["duplicates"]
    log(
        f"  {phase}: {totals['accepted']:,} accepted + {totals['duplicates']:,} duplicates = "
        f"{answered:,}; {totals['rejected']:,} rejected"
    )
    if (
        answered != len(workload.sequence)
        or totals["accepted"] != workload.unique
        or totals["duplicates"] != workload.duplicates
        or totals["rejected"]
        or totals["quarantined"]
    ):
        raise RuntimeError(
            f"{phase}: answers {totals}, expected {workload.unique} accepted and "
            f"{workload.duplicates} duplicates of {len(workload.sequence)} events"
        )


# -- phase b: bulk file import ---------------------------------------------------------------


def bulk_phase(
    db: Database, actor: Actor, path: Path, batch: int, workload: Workload
) -> dict[str, Any]:
    from tallybook.services.event_import import import_events_file

    last = [time.perf_counter()]
    size = path.stat().st_size

    def progress(bytes_read: int) -> None:
        if time.perf_counter() - last[0] >= 5:
            last[0] = time.perf_counter()
            log(
                f"  bulk: {bytes_read / 1e6:.0f} of {size / 1e6:.0f} MB imported "
                f"in {last[0] - began:.1f} s"
            )

    pg_cpu = postgres_cpu(db.url)
    own_cpu = own_cpu_seconds()
    began = time.perf_counter()
    result = import_events_file(
        db, actor, path, format="ndjson", progress=progress, chunk_size=batch
    )
    seconds = time.perf_counter() - began
    cpu = {
        "importer": round(own_cpu_seconds() - own_cpu, 1),
        "postgres": postgres_cpu_since(db.url, pg_cpu),
    }
    check_answers("bulk", result.summary(), workload)
    return {"seconds": seconds, "cpu_s": cpu, **result.summary()}


# -- phase c: raw COPY floor -----------------------------------------------------------------


def copy_phase(url: str, blocks: list[bytes]) -> dict[str, Any]:
    columns = (
        "organization_id, customer_id, metric_code, occurred_at, transaction_id, properties, "
        "received_at"
    )
    with psycopg.connect(libpq_url(url)) as connection:
        pg_cpu = postgres_cpu(url)
        began = time.perf_counter()
        for block in blocks:
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY usage_events ({columns}) FROM STDIN") as copy:
                    copy.write(block)
            connection.commit()  # one transaction per batch, as the ingestion paths do
        seconds = time.perf_counter() - began
        cpu = {"postgres": postgres_cpu_since(url, pg_cpu)}
    return {"seconds": seconds, "cpu_s": cpu}


# -- the run ---------------------------------------------------------------------------------


def check_stored(url: str, phase: str, unique: int) -> int:
    count, distinct = stored_counts(url)
    log(f"  {phase}: stored {count:,} events ({distinct:,} distinct ids; expected {unique:,})")
    if count != unique or distinct != unique:
        raise RuntimeError(f"{phase}: stored {count} events / {distinct} ids, expected {unique}")
    return count


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    probes = [cpu_probe()]
    workload = make_workload(args.events, args.duplicates, args.customers)
    workdir = Path(tempfile.mkdtemp(prefix="tallybook-ingest-"))
    ndjson = workdir / "events.ndjson"
    phases: dict[str, Any] = {}
    try:
        serialise(workload, args.batch, ndjson)
        log(
            f"{len(workload.sequence):,} events ({workload.unique:,} unique, "
            f"{workload.duplicates:,} re-sent) in {len(workload.bodies)} bodies of up to "
            f"{args.batch:,}; {sum(map(len, workload.bodies)) / 1e6:.0f} MB of JSON, "
            f"{ndjson.stat().st_size / 1e6:.0f} MB NDJSON; "
            f"{time.perf_counter() - began:.1f} s"
        )
        with postgres_database() as url:
            upgrade_database(url)
            db = Database(url)
            try:
                started = time.perf_counter()
                actor, secret, customer_ids = setup_organisation(db, args.customers)
                months = {(2026, 1), (2026, 2), (2026, 3)}
                events.ensure_partitions(db, months)
                blocks = copy_blocks(workload, actor.organization_id, customer_ids, args.batch)
                log(
                    f"set-up: organisation, metric, {args.customers:,} customers, COPY data in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                stored = 0
                if not args.skip_http:
                    empty_event_tables(url)
                    log(f"a) HTTP: {args.clients} clients, server with {args.workers} workers")
                    phases["http"] = http_phase(
                        url, workload, secret, args.clients, args.workers, workdir
                    )
                    stored = check_stored(url, "http", workload.unique)
                    log(f"  http: {rate(phases['http'], args.events)}")
                if not args.skip_bulk:
                    empty_event_tables(url)
                    log("b) bulk import of the NDJSON file")
                    phases["bulk"] = bulk_phase(db, actor, ndjson, args.batch, workload)
                    stored = check_stored(url, "bulk", workload.unique)
                    log(f"  bulk: {rate(phases['bulk'], args.events)}")
                empty_event_tables(url)
                log("c) raw COPY of the resolved unique rows")
                phases["copy"] = copy_phase(url, blocks)
                stored = check_stored(url, "copy", workload.unique)
                log(f"  copy: {rate(phases['copy'], workload.unique)}")
            finally:
                db.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    probes.append(cpu_probe())

    def per_s(phase: str, count: int) -> float | None:
        return round(count / phases[phase]["seconds"]) if phase in phases else None

    http = per_s("http", args.events)
    bulk = per_s("bulk", args.events)
    copy = per_s("copy", workload.unique)
    return {
        "events": args.events,
        "http_batch_events_per_s": http,
        "bulk_import_events_per_s": bulk,
        "raw_copy_events_per_s": copy,
        "bulk_vs_copy": round(bulk / copy, 3) if bulk and copy else None,
        "stored": stored,
        "duplicates": workload.duplicates,
        "unique": workload.unique,
        "batch": args.batch,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": {name: round(p["seconds"], 2) for name, p in phases.items()},
        "cpu_s": {name: p["cpu_s"] for name, p in phases.items()},
        "cores": os.cpu_count(),
        "cpu_probe_s": probes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def rate(phase: dict[str, Any], count: int) -> str:
    return (
        f"{count:,} in {phase['seconds']:.2f} s = {count / phase['seconds']:,.0f} events/s; "
        f"CPU s {phase['cpu_s']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of re-sent events")
    parser.add_argument("--batch", type=int, default=10_000, help="events per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    args = parser.parse_args(argv)
    if args.events < 1 or not 0 <= args.duplicates < 1:
        parser.error("--events must be at least 1 and --duplicates in [0, 1)")
    if not 1 <= args.batch <= events.MAX_BATCH:
        parser.error(f"--batch must be 1 to {events.MAX_BATCH}")
    if args.clients < 1 or args.workers < 1 or args.customers < 1:
        parser.error("--clients, --workers and --customers must be at least 1")
    figures = run(args)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
