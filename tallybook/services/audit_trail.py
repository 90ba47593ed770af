"""The audit trail for auditors: verify an organisation's hash chain, list and export events.

Verification reads the chain in one consistent snapshot (REPEATABLE READ on PostgreSQL) while
other transactions keep appending, and walks it in constant memory (core.audit_chain.verify).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tallybook.core.audit_chain import (
    GENESIS,
    ChainEvent,
    ChainHead,
    ChainReport,
    canonical_value,
    utc_text,
    verify,
)
from tallybook.core.periods import local_midnight
from tallybook.db.models import ApiKey, AuditChainHead, AuditEvent, Organization
from tallybook.services.base import MANAGERS, Actor, Database, InvalidInput

PAGE = 2_000
EXPORT_FORMATS = ("csv", "json")
EXPORT_COLUMNS = (
    "sequence",
    "id",
    "created_at",
    "actor",
    "actor_name",
    "action",
    "entity",
    "entity_id",
    "organization_id",
    "data",
    "previous_hash",
    "hash",
)
HASH_RULE = (
    "hash = SHA-256(previous_hash as 64 hex characters + canonical JSON of {id, "
    "organization_id, sequence, actor, action, entity, entity_id, data, created_at}: "
    "sorted keys, no whitespace, UTF-8, created_at as YYYY-MM-DDTHH:MM:SS.ffffffZ); the "
    f"first event's previous_hash is {GENESIS}"
)


@dataclass(frozen=True)
class ChainVerification:
    organization_id: str
    report: ChainReport
    head: ChainHead | None


def verify_audit_chain(db: Database, actor: Actor) -> ChainVerification:
    """Recompute the organisation's chain from its first event; name the first broken link."""
    actor.require(*MANAGERS, action="verify the audit trail")
    return verify_organization_chain(db, actor.organization_id)


def verify_every_chain(db: Database) -> list[ChainVerification]:
    """Every organisation's chain: for the operator of the database (the CLI without a key)."""
    with db.reading() as session:
        organization_ids = list(session.scalars(select(Organization.id).order_by(Organization.id)))
    return [verify_organization_chain(db, organization_id) for organization_id in organization_ids]


def verify_organization_chain(db: Database, organization_id: str) -> ChainVerification:
    with _snapshot(db) as session:
        row = session.get(AuditChainHead, organization_id)
        head = ChainHead(row.last_sequence, row.last_hash, row.last_event_id) if row else None
        chained = _stream(
            session,
            _event_query(organization_id)
            .where(AuditEvent.sequence.is_not(None))
            .order_by(AuditEvent.sequence),
        )
        # Rows that never got a place in the chain come last; each is an insertion.
        unchained = _stream(
            session,
            _event_query(organization_id)
            .where(AuditEvent.sequence.is_(None))
            .order_by(AuditEvent.created_at, AuditEvent.id),
        )

        def locate(value: str) -> int | None:
            return session.scalar(
                select(AuditEvent.sequence)
                .where(AuditEvent.organization_id == organization_id, AuditEvent.hash == value)
                .limit(1)
            )

        report = verify(chain(chained, unchained), head, locate)
    return ChainVerification(organization_id, report, head)


@contextmanager
def _snapshot(db: Database) -> Iterator[Session]:
    """One transaction that sees the chain as of one instant, however long the walk takes."""
    with db.engine.connect() as connection:
        if db.dialect == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with Session(bind=connection) as session, session.begin():
            yield session


def _event_query(organization_id: str) -> Select[Any]:
    return select(
        AuditEvent.id,
        AuditEvent.organization_id,
        AuditEvent.actor,
        AuditEvent.action,
        AuditEvent.entity,
        AuditEvent.entity_id,
        AuditEvent.data,
        AuditEvent.created_at,
        AuditEvent.sequence,
        AuditEvent.previous_hash,
        AuditEvent.hash,
    ).where(AuditEvent.organization_id == organization_id)


def _stream(session: Session, query: Select[Any]) -> Iterator[ChainEvent]:
    for row in session.execute(query.execution_options(yield_per=PAGE)):
        yield ChainEvent(**row._asdict())


# -- listing and export ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    start: datetime | None = None
    end: datetime | None = None
    entity: str | None = None
    entity_id: str | None = None


def event_filter(
    db: Database,
    actor: Actor,
    *,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
) -> EventFilter:
    """A filter from what a specialist types: dates are whole days in the organisation's time
    zone (`end` included), date-times need an offset."""
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        timezone = org.timezone
    low = _instant(start, "from", timezone, end_of_day=False)
    high = _instant(end, "to", timezone, end_of_day=True)
    if low is not None and high is not None and high <= low:
        raise InvalidInput("to: must be after from", field="to")
    return EventFilter(low, high, entity or None, entity_id or None)


def _instant(
    value: date | datetime | str | None, field: str, timezone: str, *, end_of_day: bool
) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{field}: {text!r} is not a date (2026-03-31) or a date-time with an offset",
                field=field,
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(
                f"{field}: give the date-time with an offset, e.g. {value.isoformat()}+00:00",
                field=field,
            )
        return value
    day = value + timedelta(days=1) if end_of_day else value
    return local_midnight(day, timezone)


def list_audit_events(
    db: Database,
    actor: Actor,
    where: EventFilter,
    *,
    limit: int = 100,
    after: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of events in chain order (the cursor is the last sequence number shown)."""
    actor.require(*MANAGERS, action="read the audit trail")
    with db.reading() as session:
        query = _filtered(actor.organization_id, where)
        if after is not None:
            query = query.where(AuditEvent.sequence > after)
        rows = list(session.execute(query.limit(limit + 1)))
        names = _key_names(session, actor.organization_id)
    records = [_record(row, names) for row in rows[:limit]]
    cursor = records[-1]["sequence"] if len(rows) > limit and records else None
    return records, cursor


def export_audit_events(
    db: Database, actor: Actor, where: EventFilter, output_format: str = "csv"
) -> Iterator[str]:
    """The events for auditors, with their hashes so every one can be recomputed: CSV (one
    row per event, data as canonical JSON) or one JSON document. Streamed page by page."""
    actor.require(*MANAGERS, action="export the audit trail")
    if output_format not in EXPORT_FORMATS:
        raise InvalidInput(f"format: one of {', '.join(EXPORT_FORMATS)}", field="format")
    if output_format == "csv":
        return _csv(db, actor, where)
    return _json(db, actor, where)


def _pages(db: Database, actor: Actor, where: EventFilter) -> Iterator[dict[str, Any]]:
    after: int | None = None
    while True:
        records, after = list_audit_events(db, actor, where, limit=PAGE, after=after)
        yield from records
        if after is None:
            return


def _csv(db: Database, actor: Actor, where: EventFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for record in _pages(db, actor, where):
        writer.writerow(
            [
                json.dumps(record[name], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                if name == "data"
                else ("" if record[name] is None else record[name])
                for name in EXPORT_COLUMNS
            ]
        )
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(db: Database, actor: Actor, where: EventFilter) -> Iterator[str]:
    header = {
        "organization_id": actor.organization_id,
        "from": utc_text(where.start) if where.start else None,
        "to": utc_text(where.end) if where.end else None,
        "entity": where.entity,
        "entity_id": where.entity_id,
        "hash_rule": HASH_RULE,
    }
    yield json.dumps(header, ensure_ascii=False)[:-1] + ', "events": ['
    first = True
    for record in _pages(db, actor, where):
        yield ("" if first else ",") + "\n" + json.dumps(record, ensure_ascii=False)
        first = False
    yield "\n]}\n"


def _filtered(organization_id: str, where: EventFilter) -> Select[Any]:
    query = _event_query(organization_id).where(AuditEvent.sequence.is_not(None))
    if where.start is not None:
        query = query.where(AuditEvent.created_at >= where.start)
    if where.end is not None:
        query = query.where(AuditEvent.created_at < where.end)
    if where.entity:
        query = query.where(AuditEvent.entity == where.entity)
    if where.entity_id:
        query = query.where(AuditEvent.entity_id == where.entity_id)
    return query.order_by(AuditEvent.sequence)


def _key_names(session: Session, organization_id: str) -> dict[str, str]:
    rows = session.execute(
        select(ApiKey.id, ApiKey.name).where(ApiKey.organization_id == organization_id)
    )
    return {key_id: name for key_id, name in rows}


def _record(row: Any, names: dict[str, str]) -> dict[str, Any]:
    """An event as exported: the hashed fields exactly as hashed, plus the key's name."""
    return {
        "sequence": row.sequence,
        "id": row.id,
        "created_at": utc_text(row.created_at),
        "actor": row.actor,
        "actor_name": names.get(row.actor or ""),
        "action": row.action,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "organization_id": row.organization_id,
        "data": canonical_value(row.data),
        "previous_hash": row.previous_hash,
        "hash": row.hash,
    }
