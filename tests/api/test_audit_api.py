"""The audit trail over HTTP: verify, list and export; managers and admins only."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from test_api import _org, auth

from tallybook.api.app import create_app
from tallybook.services import customers
from tallybook.services.base import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def test_verify_list_and_export(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    customer = customers.create_customer(
        db, admin, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    customers.update_customer(db, admin, customer.id, {"legal_name": "Brandt & Co KG"})
    verified = client.get("/v1/audit/verify", headers=auth(keys["billing_manager"]))
    assert verified.status_code == 200
    body = verified.json()
    assert body["ok"] is True and body["first_break"] is None
    assert body["events_checked"] == body["head"]["last_sequence"] == 6

    page = client.get(
        "/v1/audit/events",
        params={"entity": "customer", "entity_id": customer.id},
        headers=auth(keys["admin"]),
    ).json()
    assert [e["action"] for e in page["data"]] == ["customer.created", "customer.updated"]
    assert page["data"][1]["data"]["before"] == {"legal_name": "Brandt KG"}
    assert page["data"][1]["data"]["after"] == {"legal_name": "Brandt & Co KG"}

    first = client.get("/v1/audit/events", params={"limit": 4}, headers=auth(keys["admin"])).json()
    assert [e["sequence"] for e in first["data"]] == [1, 2, 3, 4] and first["next_cursor"] == 4
    rest = client.get("/v1/audit/events", params={"cursor": 4}, headers=auth(keys["admin"])).json()
    assert [e["sequence"] for e in rest["data"]] == [5, 6] and rest["next_cursor"] is None

    exported = client.get(
        "/v1/audit/events",
        params={"format": "csv", "from": "2000-01-01", "to": "2100-01-01"},
        headers=auth(keys["admin"]),
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 6 and rows[0]["previous_hash"] == "0" * 64
    document = client.get(
        "/v1/audit/events", params={"format": "export"}, headers=auth(keys["admin"])
    ).json()
    assert len(document["events"]) == 6 and document["events"][-1]["hash"] == body["last_hash"]


def test_a_broken_chain_is_reported(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    customers.create_customer(
        db, admin, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE audit_events SET action = 'forged' WHERE organization_id = :org "
                "AND sequence = 2"
            ),
            {"org": admin.organization_id},
        )
    body = client.get("/v1/audit/verify", headers=auth(keys["admin"])).json()
    assert body["ok"] is False
    assert body["first_break"]["kind"] == "content_changed"
    assert body["first_break"]["sequence"] == 2


def test_viewers_and_clerks_are_refused(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    for role in ("viewer", "billing_clerk"):
        for path in ("/v1/audit/verify", "/v1/audit/events"):
            answer = client.get(path, headers=auth(keys[role]))
            assert answer.status_code == 403 and role in answer.json()["detail"]


def test_bad_filters_name_the_field(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    answer = client.get(
        "/v1/audit/events", params={"from": "yesterday"}, headers=auth(keys["admin"])
    )
    assert answer.status_code == 422 and answer.json()["field"] == "from"
    answer = client.get("/v1/audit/events", params={"format": "xml"}, headers=auth(keys["admin"]))
    assert answer.status_code == 422


def test_each_organisation_sees_only_its_own_events(client: TestClient, db: Database) -> None:
    first, first_keys = _org(db, "First")
    _, other_keys = _org(db, "Other")
    customer = customers.create_customer(
        db, first, {"legal_name": "Brandt KG", "country": "DE", "currency": "EUR"}
    )
    page = client.get(
        "/v1/audit/events", params={"entity_id": customer.id}, headers=auth(other_keys["admin"])
    ).json()
    assert page["data"] == []
    mine = client.get(
        "/v1/audit/events", params={"entity_id": customer.id}, headers=auth(first_keys["admin"])
    ).json()
    assert len(mine["data"]) == 1
