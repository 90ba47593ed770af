"""The audit trail over HTTP: verify the hash chain, list events, export them for auditors."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from tallybook.api import render
from tallybook.api.deps import Db, Who
from tallybook.services import audit_trail

router = APIRouter(prefix="/v1")

DAY_OR_INSTANT = "a day (the organisation's time zone) or an ISO 8601 date-time with offset"


@router.get("/audit/verify", tags=["audit"])
def get_audit_verify(db: Db, who: Who) -> dict:
    """Recompute the organisation's audit chain; `ok` false names the first broken link
    (`content_changed`, `event_missing`, `event_inserted`, `order_changed`, `head_mismatch`)."""
    return render.audit_verification(audit_trail.verify_audit_chain(db, who))


@router.get("/audit/events", tags=["audit"], response_model=None)
def get_audit_events(
    db: Db,
    who: Who,
    start: Annotated[
        str | None, Query(alias="from", description=f"from: {DAY_OR_INSTANT}")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", description=f"to (a day is included): {DAY_OR_INSTANT}")
    ] = None,
    entity: Annotated[str | None, Query(description="invoice, payment, customer...")] = None,
    entity_id: str | None = None,
    format: Annotated[
        Literal["json", "csv", "export"],
        Query(description="json: a page; csv or export (one JSON document): every event"),
    ] = "json",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[int | None, Query(ge=0, description="next_cursor of the last page")] = None,
) -> dict | StreamingResponse:
    """Audit events in chain order with who, when, what and the values before and after, and
    their hashes: `format=csv` (or `export`, JSON) streams every matching event as a file an
    auditor can recompute the hashes from."""
    where = audit_trail.event_filter(
        db, who, start=start, end=end, entity=entity, entity_id=entity_id
    )
    if format == "json":
        records, next_cursor = audit_trail.list_audit_events(
            db, who, where, limit=limit, after=cursor
        )
        return {"data": records, "next_cursor": next_cursor}
    kind = "csv" if format == "csv" else "json"
    chunks = audit_trail.export_audit_events(db, who, where, kind)
    media = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
    return StreamingResponse(
        chunks,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-events.{kind}"'},
    )
