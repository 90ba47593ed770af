"""Dependencies shared by every route module: the database, the acting key, paging types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from tallybook.services import organizations
from tallybook.services.base import Actor, Database, Unauthorized


def database(request: Request) -> Database:
    return request.app.state.db


def current_actor(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Actor:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    return organizations.authenticate(
        request.app.state.db, authorization.removeprefix("Bearer ").strip()
    )


Db = Annotated[Database, Depends(database)]
Who = Annotated[Actor, Depends(current_actor)]
Idem = Annotated[
    str | None, Header(alias="Idempotency-Key", description="replays the first answer")
]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(description="the next_cursor of the previous page")]
