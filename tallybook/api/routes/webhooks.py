"""Webhooks over HTTP: endpoints (the signing secret shown once), their deliveries with each
attempt's status code and response, replay, and a test event."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.schemas import Body
from tallybook.services import outbox, webhooks

router = APIRouter(prefix="/v1")


class WebhookEndpointIn(Body):
    url: str = Field(description="where events are posted (https in production)")
    events: list[str] = Field(description='event types, or ["*"] for every event')
    description: str | None = None
    enabled: bool = True


class WebhookEndpointPatch(Body):
    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


@router.post("/webhook-endpoints", status_code=201, tags=["webhooks"])
def post_webhook_endpoint(body: WebhookEndpointIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Register an endpoint. The answer holds its signing secret (whsec_...): the only time it
    is shown."""
    created = webhooks.create_endpoint(db, who, body.values())
    return render.webhook_endpoint(created.endpoint, created.secret)


@router.get("/webhook-endpoints", tags=["webhooks"])
def get_webhook_endpoints(db: Db, who: Who) -> dict:
    return {
        "data": [render.webhook_endpoint(e) for e in webhooks.list_endpoints(db, who)],
        "event_types": list(webhooks.EVENT_TYPES),
    }


@router.get("/webhook-endpoints/{endpoint_id}", tags=["webhooks"])
def get_webhook_endpoint(endpoint_id: str, db: Db, who: Who) -> dict:
    return render.webhook_endpoint(webhooks.get_endpoint(db, who, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", tags=["webhooks"])
def patch_webhook_endpoint(endpoint_id: str, body: WebhookEndpointPatch, db: Db, who: Who) -> dict:
    return render.webhook_endpoint(webhooks.update_endpoint(db, who, endpoint_id, body.values()))


@router.delete("/webhook-endpoints/{endpoint_id}", tags=["webhooks"])
def delete_webhook_endpoint(endpoint_id: str, db: Db, who: Who) -> dict:
    """Remove an endpoint; its deliveries still waiting fail."""
    failed = webhooks.delete_endpoint(db, who, endpoint_id)
    return {"id": endpoint_id, "deleted": True, "queued_deliveries_failed": failed}


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", tags=["webhooks"])
def post_rotate_secret(endpoint_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    """A new signing secret, shown once; later deliveries are signed with it."""
    created = webhooks.rotate_secret(db, who, endpoint_id)
    return render.webhook_endpoint(created.endpoint, created.secret)


@router.post("/webhook-endpoints/{endpoint_id}/test", status_code=202, tags=["webhooks"])
def post_webhook_test(endpoint_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    """Queue a webhook.test event to this endpoint."""
    return render.delivery(webhooks.send_test_event(db, who, endpoint_id))


@router.get("/webhook-deliveries", tags=["webhooks"])
def get_webhook_deliveries(
    db: Db,
    who: Who,
    endpoint_id: str | None = None,
    event_type: str | None = None,
    status: str | None = Query(
        default=None, description="queued, sending, sent, failed; several: failed,queued"
    ),
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = outbox.list_deliveries(
        db,
        who,
        channel="webhook",
        status=status,
        endpoint_id=endpoint_id,
        event_type=event_type,
        limit=limit,
        after=cursor,
    )
    return {"data": [render.delivery(d) for d in rows], "next_cursor": next_cursor}


@router.get("/webhook-deliveries/{delivery_id}", tags=["webhooks"])
def get_webhook_delivery(delivery_id: str, db: Db, who: Who) -> dict:
    """A delivery with each attempt: status code, response excerpt, error."""
    return render.delivery_view(outbox.get_delivery(db, who, delivery_id, channel="webhook"))


@router.post("/webhook-deliveries/{delivery_id}/replay", status_code=202, tags=["webhooks"])
def post_webhook_replay(delivery_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    """Post the event again (same body and webhook-id, new signature): a new delivery."""
    return render.delivery(outbox.replay_webhook(db, who, delivery_id))
