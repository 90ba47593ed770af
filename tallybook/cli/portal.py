"""`tallybook customers portal-link|portal-links|portal-revoke`: signed, expiring links to a
customer's portal (the URL printed once, stored nowhere), the customer's links, revocation."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fields,
    _session,
    _table,
    command,
    customers_app,
)
from tallybook.services import portal


def _link_fields(link: Any, url: str | None = None) -> None:
    rows: list[tuple[str, Any]] = [
        ("Link", link.id),
        ("Customer", link.customer_id),
        ("Expires", link.expires_at),
        ("Status", portal.link_status(link)),
    ]
    if link.revoked_at is not None:
        rows.append(("Revoked", link.revoked_at))
    _fields(rows)
    if url is not None:
        typer.echo(url)


@command(customers_app, "portal-link")
def customers_portal_link(
    customer_id: str,
    days: Annotated[
        int,
        typer.Option(
            "--days", help=f"How long the link opens the portal (1 to {portal.MAX_DAYS})."
        ),
    ] = portal.DEFAULT_DAYS,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a signed link to the customer's portal and print its URL (send it to the
    customer; it is not stored and cannot be shown again, but another can always be made)."""
    with _session(api_key) as (db, actor):
        issued = portal.create_portal_link(db, actor, customer_id, days)
    if as_json:
        _emit_json(render.portal_link(issued.link, issued.url))
        return
    _link_fields(issued.link, issued.url)


@command(customers_app, "portal-links")
def customers_portal_links(
    customer_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """The customer's portal links, newest first (active, expired, revoked)."""
    with _session(api_key) as (db, actor):
        links = portal.list_portal_links(db, actor, customer_id)
    if as_json:
        _emit_json([render.portal_link(x) for x in links])
        return
    _table(
        ["Link", "Created", "Expires", "Status", "Revoked"],
        [[x.id, x.created_at, x.expires_at, portal.link_status(x), x.revoked_at] for x in links],
    )


@command(customers_app, "portal-revoke")
def customers_portal_revoke(
    customer_id: str,
    link: Annotated[
        str | None, typer.Option("--link", help="Revoke only this link (default: all of them).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke the customer's portal links (or one of them): they open nothing any more."""
    with _session(api_key) as (db, actor):
        if link is None:
            count = portal.revoke_portal_links(db, actor, customer_id)
            revoked = None
        else:
            revoked = portal.revoke_portal_link(db, actor, link, customer_id=customer_id)
            count = 1
    if as_json:
        _emit_json(
            render.portal_link(revoked)
            if revoked is not None
            else {"customer_id": customer_id, "revoked": count}
        )
        return
    if revoked is not None:
        _link_fields(revoked)
    else:
        typer.echo(f"Revoked {count} portal link(s) of customer {customer_id}.")
