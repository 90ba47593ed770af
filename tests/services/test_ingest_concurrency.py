"""Concurrent ingestion (PostgreSQL) through the real server: clients racing with overlapping
batches store every event exactly once, and exactly one of them hears 'accepted' for it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from test_ingest_crash import (
    REQUEST_TIMEOUT,
    ApiServer,
    Tenant,
    api_server,
    event,
    make_tenant,
    post_batch,
    stored_ids,
)

from tallybook.services.base import Database

CLIENTS = 8
UNIQUE = 6_000


@pytest.fixture(scope="module")
def server(postgres_url: str | None) -> Iterator[ApiServer]:
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable (see the loud message above)")
    with api_server(postgres_url) as running:
        yield running


def race(
    server: ApiServer, tenant: Tenant, plans: list[list[list[dict[str, Any]]]]
) -> list[list[httpx.Response]]:
    """Each client posts its batches in turn, all clients at once (started by a barrier)."""
    answers: list[list[httpx.Response]] = [[] for _ in plans]
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(plans))

    def client_loop(number: int) -> None:
        try:
            with httpx.Client(
                base_url=server.base_url, headers=tenant.headers, timeout=REQUEST_TIMEOUT
            ) as client:
                client.get("/health")  # connect before the start line
                barrier.wait(timeout=REQUEST_TIMEOUT)
                for batch in plans[number]:
                    answers[number].append(post_batch(client, batch))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(len(plans))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a client hung"
    assert not failures, failures
    return answers


def test_overlapping_batches_from_eight_clients(server: ApiServer, postgres_db: Database) -> None:
    tenant = make_tenant(postgres_db)
    # Two months, the second one probably new: partitions are created under load too.
    start = datetime(2027, 5, 20, tzinfo=UTC)
    everything = [
        event(tenant, f"race-{i:05d}", start + timedelta(minutes=5 * i), i % 17)
        for i in range(UNIQUE)
    ]
    plans = []
    for number in range(CLIENTS):
        rng = random.Random(number)
        order = everything[:]
        rng.shuffle(order)
        batches = []
        while order:
            size = rng.randint(150, 1_500)
            batch, order = order[:size], order[size:]
            # A retry inside the same batch as well: the batch answers it as a duplicate.
            batch += rng.sample(batch, min(len(batch), 5))
            rng.shuffle(batch)
            batches.append(batch)
        plans.append(batches)

    answers = race(server, tenant, plans)

    statuses: dict[str, Counter[str]] = {}
    sent = 0
    for client_answers, batches in zip(answers, plans, strict=True):
        assert len(client_answers) == len(batches)
        for answer, batch in zip(client_answers, batches, strict=True):
            assert answer.status_code == 200, answer.text
            body = answer.json()
            results = body["results"]
            assert [r["index"] for r in results] == list(range(len(batch)))
            assert [r["transaction_id"] for r in results] == [e["transaction_id"] for e in batch]
            assert body["rejected"] == 0, [r for r in results if r["status"] == "rejected"]
            assert body["accepted"] + body["duplicates"] == len(batch)
            sent += len(batch)
            for result in results:
                statuses.setdefault(result["transaction_id"], Counter())[result["status"]] += 1
    assert len(statuses) == UNIQUE
    for transaction_id, counts in statuses.items():
        assert counts["accepted"] == 1, (transaction_id, counts)
        assert set(counts) == {"accepted", "duplicate"}, (transaction_id, counts)
    assert sum(c["duplicate"] for c in statuses.values()) == sent - UNIQUE

    stored = stored_ids(postgres_db.url, tenant.actor.organization_id)
    assert len(stored) == len(set(stored)) == UNIQUE
    assert set(stored) == set(statuses)


def test_same_id_different_content_at_once(server: ApiServer, postgres_db: Database) -> None:
    """Two clients, the same ids with different content: one wins each id, the other is told."""
    tenant = make_tenant(postgres_db)
    at = datetime(2027, 5, 21, tzinfo=UTC)
    contested = [f"clash-{i:04d}" for i in range(300)]
    plans = []
    for number in range(2):
        # Each client's batches also carry ids of its own, so the two transactions overlap.
        batches = []
        for part in range(0, len(contested), 100):
            batch = [event(tenant, tid, at, 1000 + number) for tid in contested[part : part + 100]]
            batch += [event(tenant, f"own-{number}-{part}-{i:04d}", at, 1) for i in range(1_000)]
            random.Random(number * 1000 + part).shuffle(batch)
            batches.append(batch)
        plans.append(batches)

    answers = race(server, tenant, plans)

    outcome: dict[str, dict[int, dict[str, Any]]] = {}
    for number, client_answers in enumerate(answers):
        for answer in client_answers:
            assert answer.status_code == 200, answer.text
            for result in answer.json()["results"]:
                if result["transaction_id"].startswith("own-"):
                    assert result["status"] == "accepted", result
                else:
                    outcome.setdefault(result["transaction_id"], {})[number] = result
    assert set(outcome) == set(contested)
    winners: dict[str, int] = {}
    for transaction_id, by_client in outcome.items():
        statuses = sorted(r["status"] for r in by_client.values())
        assert statuses == ["accepted", "rejected"], (transaction_id, by_client)
        [loser] = [r for r in by_client.values() if r["status"] == "rejected"]
        assert loser["reason"].startswith("transaction_id:"), loser
        assert "different content" in loser["reason"], loser
        [winners[transaction_id]] = [n for n, r in by_client.items() if r["status"] == "accepted"]

    # What is stored is the winner's version, once.
    with psycopg.connect(postgres_db.url) as connection:
        rows = connection.execute(
            "SELECT transaction_id, properties->>'n' FROM usage_events "
            "WHERE organization_id = %s AND transaction_id LIKE 'clash-%%'",
            (tenant.actor.organization_id,),
        ).fetchall()
    assert len(rows) == len(contested)
    assert {tid: int(n) for tid, n in rows} == {
        tid: 1000 + winner for tid, winner in winners.items()
    }
    stored = stored_ids(postgres_db.url, tenant.actor.organization_id)
    assert len(stored) == len(set(stored)) == len(contested) + 2 * 3 * 1_000
