"""Customer portal links over HTTP: make a signed, expiring link to a customer's portal (the URL
is in the answer, and only there), list a customer's links, revoke one or all of them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Db, Idem, Who
from tallybook.api.schemas import Body
from tallybook.services import portal

router = APIRouter(prefix="/v1", tags=["customer portal"])


class PortalLinkIn(Body):
    expires_in_days: int = Field(
        default=portal.DEFAULT_DAYS,
        description=f"how long the link opens the portal, 1 to {portal.MAX_DAYS} days",
    )


@router.post("/customers/{customer_id}/portal-links", status_code=201)
def post_portal_link(
    customer_id: str, db: Db, who: Who, body: PortalLinkIn | None = None, idem: Idem = None
) -> dict:
    """A new link to the customer's portal (`url`: TALLYBOOK_PUBLIC_URL/portal/<token>). The
    token is signed and carries the organisation, the customer and the expiry; send the URL to
    the customer. Billing managers and clerks."""
    days = body.expires_in_days if body is not None else portal.DEFAULT_DAYS
    issued = portal.create_portal_link(db, who, customer_id, days)
    return render.portal_link(issued.link, issued.url)


@router.get("/customers/{customer_id}/portal-links")
def get_portal_links(customer_id: str, db: Db, who: Who) -> dict:
    """The customer's links (active, expired, revoked), newest first, without their URLs."""
    return {"data": [render.portal_link(x) for x in portal.list_portal_links(db, who, customer_id)]}


@router.post("/customers/{customer_id}/portal-links/revoke")
def post_revoke_portal_links(customer_id: str, db: Db, who: Who, idem: Idem = None) -> dict:
    """Revoke every link of the customer still in force: none of them opens anything again."""
    return {"customer_id": customer_id, "revoked": portal.revoke_portal_links(db, who, customer_id)}


@router.delete("/portal-links/{link_id}")
def delete_portal_link(link_id: str, db: Db, who: Who) -> dict:
    """Revoke one link."""
    return render.portal_link(portal.revoke_portal_link(db, who, link_id))
