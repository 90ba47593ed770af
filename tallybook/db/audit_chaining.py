"""Appending audit events to their organisation's hash chain when the transaction commits.

Services record events while they work (`services.base.audit` for one event, `audit_rows` for
a bulk path); nothing is locked then. Just before the commit the organisation's chain head row
is locked (FOR UPDATE on PostgreSQL; SQLite's writers already queue), this transaction's events
get the next sequence numbers and their hashes (core.audit_chain), and the head moves on. Two
transactions of one organisation therefore queue only for that last step, and the order of the
chain is the order of the commits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction

from tallybook.core.audit_chain import (
    GENESIS,
    ChainEvent,
    ChainHead,
    canonical_value,
    extend,
)
from tallybook.db.bulk import insert_rows
from tallybook.db.models import AuditChainHead, AuditEvent, Organization

_PENDING = "tallybook.audit_chain.pending"

# Every column of a bulk audit row, in one order, so the rows make one COPY / executemany.
ROW_COLUMNS = (
    "id",
    "organization_id",
    "actor",
    "action",
    "entity",
    "entity_id",
    "data",
    "created_at",
    "sequence",
    "previous_hash",
    "hash",
)


@dataclass
class _Pending:
    """Events of the open transaction, in the order they were recorded."""

    entries: list[AuditEvent | dict[str, Any]] = field(default_factory=list)
    # Savepoint -> how many entries there were when it began (a rollback to it drops the rest).
    savepoints: dict[int, int] = field(default_factory=dict)


def _pending(session: Session) -> _Pending:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = _Pending()
    return pending


def record_event(session: Session, audit_event: AuditEvent) -> None:
    """Add one event to the session; it is chained when the transaction commits."""
    audit_event.data = canonical_value(audit_event.data or {})
    session.add(audit_event)
    _pending(session).entries.append(audit_event)


def record_event_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Events of a bulk path (id, organization_id, actor, action, entity, entity_id, data,
    created_at): written in one go at commit, already chained, instead of inserted now."""
    entries = _pending(session).entries
    for row in rows:
        entries.append(
            {
                "id": row["id"],
                "organization_id": row["organization_id"],
                "actor": row.get("actor"),
                "action": row["action"],
                "entity": row["entity"],
                "entity_id": row["entity_id"],
                "data": canonical_value(row.get("data") or {}),
                "created_at": row["created_at"],
                "sequence": None,
                "previous_hash": None,
                "hash": None,
            }
        )


def chain_pending(session: Session) -> None:
    """Chain this transaction's events now (the commit hook calls it; a caller that must see
    the hashes before committing may too)."""
    pending = session.info.pop(_PENDING, None)
    if pending is None or not pending.entries:
        return
    by_organization: dict[str, list[AuditEvent | dict[str, Any]]] = defaultdict(list)
    for entry in pending.entries:
        if isinstance(entry, AuditEvent):
            if entry not in session:  # discarded with a savepoint
                continue
            by_organization[entry.organization_id].append(entry)
        else:
            by_organization[entry["organization_id"]].append(entry)
    now = datetime.now(UTC)
    # Everything else of the transaction is written before the head is locked, so that while
    # it holds the head it only writes its own audit rows and never waits for another lock.
    session.flush()
    postgresql = session.get_bind().dialect.name == "postgresql"
    with session.no_autoflush:
        # One organisation after another, in id order, so two transactions never deadlock.
        for organization_id in sorted(by_organization):
            entries = by_organization[organization_id]
            if postgresql:
                # The audit rows' foreign key share-locks the organisation; taken before the
                # head, a transaction holding the organisation FOR UPDATE (a settings change)
                # is waited for here, not while holding the head it will ask for at commit.
                session.execute(
                    select(Organization.id)
                    .where(Organization.id == organization_id)
                    .with_for_update(key_share=True, read=True)
                )
            head = _locked_head(session, organization_id, now)
            links = extend(
                ChainHead(head.last_sequence, head.last_hash, head.last_event_id),
                (_chain_event(entry) for entry in entries),
            )
            rows = []
            for entry, link in zip(entries, links, strict=True):
                if isinstance(entry, AuditEvent):
                    entry.sequence = link.sequence
                    entry.previous_hash = link.previous_hash
                    entry.hash = link.hash
                else:
                    entry.update(
                        sequence=link.sequence, previous_hash=link.previous_hash, hash=link.hash
                    )
                    rows.append(entry)
            insert_rows(session, AuditEvent, rows)
            last = entries[-1]
            head.last_sequence = links[-1].sequence
            head.last_hash = links[-1].hash
            head.last_event_id = last.id if isinstance(last, AuditEvent) else last["id"]
            head.updated_at = now


def _chain_event(entry: AuditEvent | dict[str, Any]) -> ChainEvent:
    if isinstance(entry, AuditEvent):
        return ChainEvent(
            id=entry.id,
            organization_id=entry.organization_id,
            actor=entry.actor,
            action=entry.action,
            entity=entry.entity,
            entity_id=entry.entity_id,
            data=entry.data,
            created_at=entry.created_at,
        )
    return ChainEvent(**{name: entry[name] for name in ROW_COLUMNS[:8]})


def _locked_head(session: Session, organization_id: str, now: datetime) -> AuditChainHead:
    query = (
        select(AuditChainHead)
        .where(AuditChainHead.organization_id == organization_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.scalars(query).first()
    if head is not None:
        return head
    # The organisation's first event: make its head, or find the one a concurrent first
    # event just made (the unique key makes this wait for it).
    values = {
        "organization_id": organization_id,
        "last_sequence": 0,
        "last_hash": GENESIS,
        "last_event_id": None,
        "updated_at": now,
    }
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    session.execute(dialect_insert(AuditChainHead).values(**values).on_conflict_do_nothing())
    return session.scalars(query).one()


@event.listens_for(Session, "before_commit")
def _chain_before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # releasing a savepoint: the outer commit chains
    chain_pending(session)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        pending = _pending(session)
        pending.savepoints[id(transaction)] = len(pending.entries)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)
        return
    pending = session.info.get(_PENDING)
    if pending is not None:
        mark = pending.savepoints.pop(id(previous_transaction), None)
        if mark is not None:
            del pending.entries[mark:]
