"""Usage billing over the API: metrics, events, the quarantine, current and late usage."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tallybook.api.app import create_app
from tallybook.db.models import UsageEvent
from tallybook.services.base import Actor, Database, Role
from tallybook.services.organizations import create_api_key, create_organization


def _org(db: Database, name: str = "Org") -> tuple[Actor, dict[str, str]]:
    org, key = create_organization(db, name, "EUR", timezone="UTC")
    admin = Actor(org.id, key.id, Role.ADMIN)
    keys = {"admin": key.secret, "viewer": create_api_key(db, admin, "viewer", "viewer").secret}
    return admin, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db))


def _stored(db: Database, actor: Actor) -> int:
    with db.reading() as session:
        return session.scalar(
            select(func.count())
            .select_from(UsageEvent)
            .where(UsageEvent.organization_id == actor.organization_id)
        )


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def usage_world(client: TestClient, key: str) -> dict[str, str]:
    """A metric (sum of calls), a usage price of 0.01 per call, a plan, a customer 'acme'
    subscribed from 2026-01-01 (calendar months, UTC)."""
    h = auth(key)
    ids: dict[str, str] = {}
    ids["metric"] = _created(
        client.post(
            "/v1/metrics",
            json={"code": "api_calls", "aggregation": "sum", "field": "calls"},
            headers=h,
        )
    )["id"]
    product = _created(client.post("/v1/products", json={"code": "api", "name": "API"}, headers=h))
    price = _created(
        client.post(
            "/v1/prices",
            json={
                "code": "api-calls",
                "product_id": product["id"],
                "currency": "EUR",
                "kind": "usage",
                "metric_code": "api_calls",
                "terms": {"model": "per_unit", "amount": "0.01"},
                "effective_from": "2020-01-01T00:00:00Z",
            },
            headers=h,
        )
    )
    ids["price"] = price["id"]
    plan = _created(
        client.post(
            "/v1/plans",
            json={
                "code": "metered",
                "name": "Metered",
                "currency": "EUR",
                "price_codes": ["api-calls"],
            },
            headers=h,
        )
    )
    customer = _created(
        client.post(
            "/v1/customers",
            json={"legal_name": "Acme", "country": "DE", "currency": "EUR", "external_id": "acme"},
            headers=h,
        )
    )
    ids["customer"] = customer["id"]
    ids["subscription"] = _created(
        client.post(
            "/v1/subscriptions",
            json={
                "customer_id": customer["id"],
                "plan_id": plan["id"],
                "start_at": "2026-01-01T00:00:00Z",
                "anchor": "calendar",
            },
            headers=h,
        )
    )["id"]
    return ids


def _event(tid: str, calls: Any, at: str = "2026-01-10T12:00:00Z", **extra: Any) -> dict:
    return {
        "transaction_id": tid,
        "customer": "acme",
        "metric": "api_calls",
        "timestamp": at,
        "properties": {"calls": calls},
        **extra,
    }


def test_metrics_create_list_get_and_problems_name_the_field(
    client: TestClient, db: Database
) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    created = client.post(
        "/v1/metrics",
        json={
            "code": "storage",
            "name": "Storage",
            "aggregation": "weighted_sum",
            "field": "gb",
            "filters": {"region": ["eu", "us"], "tier": "hot"},
            "weighted_unit": "day",
        },
        headers=h,
    )
    body = _created(created)
    assert body["id"].startswith("bm_")
    assert {k: body[k] for k in ("code", "name", "aggregation", "field", "weighted_unit")} == {
        "code": "storage",
        "name": "Storage",
        "aggregation": "weighted_sum",
        "field": "gb",
        "weighted_unit": "day",
    }
    assert body["filters"] == {"region": ["eu", "us"], "tier": ["hot"]}
    count = _created(
        client.post("/v1/metrics", json={"code": "logins", "aggregation": "count"}, headers=h)
    )
    assert count["name"] == "logins" and count["field"] is None
    listed = client.get("/v1/metrics", headers=auth(keys["viewer"])).json()["data"]
    assert [m["code"] for m in listed] == ["logins", "storage"]
    assert client.get(f"/v1/metrics/{body['id']}", headers=h).json() == body

    def problem(payload: dict, status: int = 422) -> dict:
        response = client.post("/v1/metrics", json=payload, headers=h)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return response.json()

    median = problem({"code": "x", "aggregation": "median", "field": "v"})
    assert median["field"] == "aggregation" and median["title"] == "Invalid input"
    no_field = problem({"code": "x", "aggregation": "sum"})
    assert no_field["field"] == "field"
    assert no_field["detail"] == "field: sum needs the property it reads"
    unit = problem({"code": "x", "aggregation": "weighted_sum", "field": "v", "weighted_unit": "x"})
    assert unit["field"] == "weighted_unit"
    taken = problem({"code": "logins", "aggregation": "count"}, status=409)
    assert taken["field"] == "code"
    viewer = client.post(
        "/v1/metrics", json={"code": "v", "aggregation": "count"}, headers=auth(keys["viewer"])
    )
    assert viewer.status_code == 403
    assert [m["code"] for m in client.get("/v1/metrics", headers=h).json()["data"]] == [
        "logins",
        "storage",
    ]


def test_usage_price_renders_its_metering(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    h = auth(keys["admin"])
    client.post("/v1/metrics", json={"code": "gb", "aggregation": "sum", "field": "gb"}, headers=h)
    product = client.post("/v1/products", json={"code": "st", "name": "Storage"}, headers=h).json()
    price = client.post(
        "/v1/prices",
        json={
            "code": "gb-eu",
            "product_id": product["id"],
            "currency": "EUR",
            "kind": "usage",
            "metric_code": "gb",
            "usage_filters": {"region": "eu"},
            "group_by": ["tier"],
            "terms": {"model": "per_unit", "amount": "0.02"},
        },
        headers=h,
    )
    body = _created(price)
    assert (body["metric_code"], body["usage_filters"], body["group_by"]) == (
        "gb",
        {"region": ["eu"]},
        ["tier"],
    )
    assert client.get(f"/v1/prices/{body['id']}", headers=h).json() == body
    unknown = client.post(
        "/v1/prices",
        json={
            "code": "x",
            "product_id": product["id"],
            "currency": "EUR",
            "kind": "usage",
            "metric_code": "nope",
            "terms": {"model": "per_unit", "amount": "1"},
        },
        headers=h,
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "metric_code"


def test_batch_answers_each_event(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    usage_world(client, keys["admin"])
    h = auth(keys["admin"])
    batch = client.post(
        "/v1/events/batch",
        json={
            "events": [
                _event("b1", 10),
                _event("b2", 5, at="last tuesday"),
                "not an event",
                _event("b3", "many"),
                _event("b1", 10),
            ]
        },
        headers=h,
    )
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 1, 3)
    assert [(r["index"], r["status"], r.get("reason")) for r in body["results"]] == [
        (0, "accepted", None),
        (1, "rejected", "timestamp: not an ISO 8601 date-time"),
        (2, "rejected", "event: must be an object"),
        (3, "rejected", "properties.calls: metric api_calls needs a number here"),
        (4, "duplicate", None),
    ]
    assert _stored(db, admin) == 1


def test_quarantine_list_and_reprocess_release_the_events(client: TestClient, db: Database) -> None:
    admin, keys = _org(db)
    h = auth(keys["admin"])
    sent = client.post(
        "/v1/events/batch",
        json={
            "events": [
                {
                    "transaction_id": f"q{i}",
                    "customer": "late-co",
                    "metric": "storage",
                    "timestamp": "2026-01-05T00:00:00Z",
                    "properties": {"gb": i + 1},
                }
                for i in range(3)
            ]
        },
        headers=h,
    ).json()
    assert (sent["accepted"], sent["quarantined"]) == (3, 3)
    assert sent["results"][0]["quarantined"] == "customer late-co does not exist yet"
    first = client.get("/v1/events/quarantine", params={"limit": 2}, headers=h).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = client.get(
        "/v1/events/quarantine", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    assert rest["next_cursor"] is None
    held = first["data"] + rest["data"]
    assert sorted(q["transaction_id"] for q in held) == ["q0", "q1", "q2"]
    assert {q["customer_external_id"] for q in held} == {"late-co"}
    assert {q["metric_code"] for q in held} == {"storage"}

    # The metric arrives: still waiting for the customer, and now says so.
    client.post(
        "/v1/metrics", json={"code": "storage", "aggregation": "max", "field": "gb"}, headers=h
    )
    reasons = {q["reason"] for q in client.get("/v1/events/quarantine", headers=h).json()["data"]}
    assert reasons == {"customer late-co does not exist yet"}
    # The customer existed under another name and gets its external id later.
    customer = _created(
        client.post(
            "/v1/customers",
            json={"legal_name": "Late Co", "country": "DE", "currency": "EUR"},
            headers=h,
        )
    )
    patched = client.patch(
        f"/v1/customers/{customer['id']}", json={"external_id": "late-co"}, headers=h
    )
    assert patched.status_code == 200
    # Giving the customer its external id releases its events in the same transaction.
    assert _stored(db, admin) == 3
    assert client.get("/v1/events/quarantine", headers=h).json() == {
        "data": [],
        "next_cursor": None,
    }
    viewer = client.post("/v1/events/quarantine/reprocess", headers=auth(keys["viewer"]))
    assert viewer.status_code == 403
    again = client.post("/v1/events/quarantine/reprocess", headers=h)
    assert again.status_code == 200 and again.json() == {"released": 0}


def test_current_usage_rates_the_open_period(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = usage_world(client, keys["admin"])
    h = auth(keys["admin"])
    batch = client.post(
        "/v1/events/batch",
        json={
            "events": [
                _event("u1", 1000),
                _event("u2", "200"),
                _event("u3", 34, at="2026-01-19T23:59:59Z"),
                _event("u4", 5000, at="2026-02-02T00:00:00Z"),  # next period
            ]
        },
        headers=h,
    ).json()
    assert batch["accepted"] == 4
    usage = client.get(
        f"/v1/customers/{ids['customer']}/current-usage",
        params={"at": "2026-01-20T00:00:00Z"},
        headers=auth(keys["viewer"]),
    )
    assert usage.status_code == 200, usage.text
    body = usage.json()
    # 1,234 calls x 0.01 EUR = 12.34 EUR
    assert (body["currency"], body["amount_minor"], body["amount"]) == ("EUR", 1234, "12.34 EUR")
    [subscription] = body["subscriptions"]
    assert subscription["subscription_id"] == ids["subscription"]
    assert subscription["period"]["start"].startswith("2026-01-01T00:00:00")
    [charge] = subscription["charges"]
    assert charge["metric"] == "api_calls" and charge["events"] == 3
    assert (charge["quantity"], charge["amount_minor"]) == ("1234", 1234)
    naive = client.get(
        f"/v1/customers/{ids['customer']}/current-usage",
        params={"at": "2026-01-20T00:00:00"},
        headers=h,
    )
    assert naive.status_code == 422 and naive.json()["field"] == "at"


def test_late_periods_and_grace_days(client: TestClient, db: Database) -> None:
    _, keys = _org(db)
    ids = usage_world(client, keys["admin"])
    h = auth(keys["admin"])
    patched = client.patch("/v1/organization", json={"usage_grace_days": 0}, headers=h)
    assert patched.status_code == 200 and patched.json()["usage_grace_days"] == 0
    assert client.patch("/v1/organization", json={"usage_grace_days": 61}, headers=h).json()[
        "field"
    ] == ("usage_grace_days")
    client.post("/v1/events", json=_event("l1", 100), headers=h)
    run = client.post("/v1/billing-runs", json={"as_of": "2026-02-01T00:00:01Z"}, headers=h)
    assert run.status_code == 200, run.text
    for invoice_id in run.json()["invoice_ids"]:
        issued = client.post(f"/v1/invoices/{invoice_id}/issue", headers=h)
        assert issued.status_code == 200, issued.text
    assert client.get("/v1/usage/late-periods", headers=h).json() == {"data": []}
    late = client.post("/v1/events", json=_event("l2", 50, at="2026-01-25T00:00:00Z"), headers=h)
    assert late.status_code == 201, late.text
    periods = client.get("/v1/usage/late-periods", headers=auth(keys["viewer"])).json()["data"]
    assert len(periods) == 1
    assert periods[0]["subscription_id"] == ids["subscription"]
    assert periods[0]["period_start"].startswith("2026-01-01T00:00:00")
    assert periods[0]["period_end"].startswith("2026-02-01T00:00:00")


def test_another_organization_sees_nothing(client: TestClient, db: Database) -> None:
    owner, keys = _org(db, "Owner")
    ids = usage_world(client, keys["admin"])
    client.post("/v1/events", json=_event("o1", 7), headers=auth(keys["admin"]))
    client.post(
        "/v1/events",
        json={**_event("o2", 1), "customer": "not-yet"},
        headers=auth(keys["admin"]),
    )
    intruder, other = _org(db, "Intruder")
    h = auth(other["admin"])
    for path in (f"/v1/metrics/{ids['metric']}", f"/v1/customers/{ids['customer']}/current-usage"):
        response = client.get(path, headers=h)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["status"] == 404
    assert client.get("/v1/metrics", headers=h).json() == {"data": []}
    assert client.get("/v1/events/quarantine", headers=h).json()["data"] == []
    batch = client.post(
        "/v1/events/batch",
        json={
            "events": [
                {
                    "transaction_id": "o1",
                    "subscription_id": ids["subscription"],
                    "metric": "api_calls",
                    "timestamp": "2026-01-10T12:00:00Z",
                    "properties": {"calls": 1},
                }
            ]
        },
        headers=h,
    ).json()
    [result] = batch["results"]
    assert result["status"] == "rejected"
    assert result["reason"] == f"subscription_id: subscription {ids['subscription']} not found"
    single = client.post(
        "/v1/events",
        json={**_event("x1", 1), "customer": None, "subscription_id": ids["subscription"]},
        headers=h,
    )
    assert single.status_code == 422 and "not found" in single.json()["detail"]
    assert client.post("/v1/events/quarantine/reprocess", headers=h).json() == {"released": 0}
    assert _stored(db, intruder) == 0
    assert _stored(db, owner) == 1
    owner_held = client.get("/v1/events/quarantine", headers=auth(keys["admin"])).json()["data"]
    assert [q["transaction_id"] for q in owner_held] == ["o2"]


def test_openapi_documents_the_usage_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    batch = spec["paths"]["/v1/events/batch"]["post"]
    schema = batch["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/EventBatchIn"}
    components = spec["components"]["schemas"]
    assert "events" in components["EventBatchIn"]["properties"]
    assert "EventIn" in components and "MetricIn" in components
    assert set(components["MetricIn"]["properties"]["aggregation"]["enum"]) == {
        "count",
        "sum",
        "max",
        "unique_count",
        "latest",
        "weighted_sum",
    }
    usage_routes = {
        ("post", "/v1/metrics"),
        ("get", "/v1/metrics"),
        ("get", "/v1/metrics/{metric_id}"),
        ("post", "/v1/events"),
        ("post", "/v1/events/batch"),
        ("get", "/v1/events/quarantine"),
        ("post", "/v1/events/quarantine/reprocess"),
        ("get", "/v1/customers/{customer_id}/current-usage"),
        ("get", "/v1/usage/late-periods"),
    }
    for method, path in usage_routes:
        assert spec["paths"][path][method]["tags"] == ["usage"], (method, path)
    price = components["PriceIn"]["properties"]
    assert {"metric_code", "usage_filters", "group_by"} <= set(price)
