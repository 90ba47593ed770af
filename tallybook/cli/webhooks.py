"""`tallybook webhooks`: endpoints (the signing secret printed once), their deliveries, replay
and a test event."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.deliveries import _delivery_rows, _show
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fields,
    _group,
    _session,
    _table,
    command,
)
from tallybook.services import outbox, webhooks

webhooks_app = _group("webhooks", "Webhook endpoints, the events they receive, deliveries.")

EventOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        help="An event type to receive, e.g. invoice.issued; '*' for all (repeatable).",
    ),
]


def _endpoint(endpoint: Any, secret: str | None, as_json: bool) -> None:
    if as_json:
        _emit_json(render.webhook_endpoint(endpoint, secret))
        return
    _fields(
        [
            ("Endpoint", endpoint.id),
            ("URL", endpoint.url),
            ("Events", ", ".join(endpoint.events)),
            ("Enabled", endpoint.enabled),
            ("Description", endpoint.description),
        ]
    )
    if secret:
        typer.echo(f"Signing secret (shown only once, keep it safe): {secret}")


@command(webhooks_app, "create")
def webhooks_create(
    url: str,
    event: EventOpt = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an endpoint; its signing secret is printed once."""
    values: dict[str, Any] = {"url": url, "events": event or [], "enabled": not disabled}
    if description is not None:
        values["description"] = description
    with _session(api_key) as (db, actor):
        created = webhooks.create_endpoint(db, actor, values)
    _endpoint(created.endpoint, created.secret, as_json)


@command(webhooks_app, "list")
def webhooks_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """The organisation's endpoints."""
    with _session(api_key) as (db, actor):
        rows = webhooks.list_endpoints(db, actor)
    if as_json:
        _emit_json([render.webhook_endpoint(e) for e in rows])
        return
    _table(
        ["Id", "URL", "Events", "Enabled", "Description"],
        [[e.id, e.url, ", ".join(e.events), e.enabled, e.description] for e in rows],
    )


@command(webhooks_app, "update")
def webhooks_update(
    endpoint_id: str,
    url: Annotated[str | None, typer.Option("--url")] = None,
    event: EventOpt = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Switch the endpoint on or off.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an endpoint's URL, events, description or switch it on or off."""
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = url
    if event:
        values["events"] = event
    if description is not None:
        values["description"] = description
    if enable is not None:
        values["enabled"] = enable
    with _session(api_key) as (db, actor):
        endpoint = webhooks.update_endpoint(db, actor, endpoint_id, values)
    _endpoint(endpoint, None, as_json)


@command(webhooks_app, "delete")
def webhooks_delete(endpoint_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Remove an endpoint; its deliveries still waiting fail."""
    with _session(api_key) as (db, actor):
        failed = webhooks.delete_endpoint(db, actor, endpoint_id)
    if as_json:
        _emit_json({"id": endpoint_id, "deleted": True, "queued_deliveries_failed": failed})
        return
    typer.echo(f"Endpoint {endpoint_id} deleted; {failed} waiting deliveries failed.")


@command(webhooks_app, "rotate-secret")
def webhooks_rotate_secret(
    endpoint_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """A new signing secret, printed once."""
    with _session(api_key) as (db, actor):
        created = webhooks.rotate_secret(db, actor, endpoint_id)
    _endpoint(created.endpoint, created.secret, as_json)


@command(webhooks_app, "test")
def webhooks_test(endpoint_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Queue a webhook.test event to an endpoint."""
    with _session(api_key) as (db, actor):
        delivery = webhooks.send_test_event(db, actor, endpoint_id)
    if as_json:
        _emit_json(render.delivery(delivery))
        return
    typer.echo(f"Test event queued ({delivery.id}); the worker posts it.")


@command(webhooks_app, "deliveries")
def webhooks_deliveries(
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="One endpoint.")] = None,
    event_type: Annotated[str | None, typer.Option("--event", help="One event type.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="queued, sending, sent, failed.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Webhook deliveries, with their state."""
    with _session(api_key) as (db, actor):
        rows, _ = outbox.list_deliveries(
            db,
            actor,
            channel="webhook",
            status=status,
            endpoint_id=endpoint,
            event_type=event_type,
            limit=limit,
        )
    if as_json:
        _emit_json([render.delivery(d) for d in rows])
        return
    _table(
        ["Id", "Channel", "Status", "Event", "URL", "Attempts", "Sent / next", "Error"],
        _delivery_rows(rows),
        right=("Attempts",),
    )


@command(webhooks_app, "show")
def webhooks_show(delivery_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One webhook delivery and each attempt: status code, answer, error."""
    with _session(api_key) as (db, actor):
        view = outbox.get_delivery(db, actor, delivery_id, channel="webhook")
    if as_json:
        _emit_json(render.delivery_view(view))
        return
    _show(view)


@command(webhooks_app, "replay")
def webhooks_replay(delivery_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Post a webhook event again (same body and webhook-id)."""
    with _session(api_key) as (db, actor):
        replay = outbox.replay_webhook(db, actor, delivery_id)
    if as_json:
        _emit_json(render.delivery(replay))
        return
    typer.echo(f"Replay queued ({replay.id}); the worker posts it.")
