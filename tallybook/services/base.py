"""What every service shares: the database handle, the acting key, errors, scoping and audit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from tallybook.core.audit_chain import canonical_value
from tallybook.db.audit_chaining import record_event, record_event_rows
from tallybook.db.engine import make_engine, make_sessionmaker
from tallybook.db.models import AuditEvent, Base, new_id

T = TypeVar("T", bound=Base)


class Role(StrEnum):
    ADMIN = "admin"
    BILLING_MANAGER = "billing_manager"
    BILLING_CLERK = "billing_clerk"
    VIEWER = "viewer"


WRITERS = (Role.ADMIN, Role.BILLING_MANAGER, Role.BILLING_CLERK)
MANAGERS = (Role.ADMIN, Role.BILLING_MANAGER)


class ServiceError(Exception):
    """A refusal the user can act on. Edges render it (problem details, one CLI line)."""

    status = 400
    title = "Bad request"
    type_suffix = "bad-request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(ServiceError):
    status = 422
    title = "Invalid input"
    type_suffix = "invalid-input"


class NotFound(ServiceError):
    status = 404
    title = "Not found"
    type_suffix = "not-found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"
    type_suffix = "conflict"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"
    type_suffix = "forbidden"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"
    type_suffix = "unauthorized"


@dataclass(frozen=True)
class Actor:
    """Who is acting: an API key of one organisation, with one role."""

    organization_id: str
    key_id: str | None
    role: Role

    def require(self, *roles: Role, action: str) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"role {self.role.value} may not {action}; it needs one of: {allowed}")


class Database:
    """An engine and its session factory; services open their own transactions from it."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, **engine_options)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def utcnow() -> datetime:
    """The clock lives at the edge of the core: services read it, core functions are given it."""
    return datetime.now(UTC)


def get_owned(
    session: Session,
    model: type[T],
    object_id: str,
    actor: Actor,
    *,
    lock: bool = False,
    label: str | None = None,
) -> T:
    """Fetch a row of the actor's organisation; anything else is simply 'not found'."""
    statement = select(model).where(
        model.id == object_id,  # type: ignore[attr-defined]
        model.organization_id == actor.organization_id,  # type: ignore[attr-defined]
    )
    if lock:
        statement = statement.with_for_update()
    row = session.scalars(statement).first()
    if row is None:
        name = label or model.__tablename__.rstrip("s").replace("_", " ")
        raise NotFound(f"{name} {object_id} not found")
    return row


def audit(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: str,
    data: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
    before: Mapping[str, Any] | None = None,
    after: Base | Mapping[str, Any] | None = None,
) -> None:
    """Record who did what, in the same transaction as the change itself.

    `after` alone (a new row) records its values; `before` (a `snapshot` taken before the
    change) with `after` (the changed row) records the fields that changed, before and after.
    The event is hash-chained when the transaction commits (db.audit_chaining).
    """
    payload = dict(data or {})
    if before is not None or after is not None:
        payload.update(changes(before, after))
    record_event(
        session,
        AuditEvent(
            id=new_id("aud"),
            organization_id=actor.organization_id,
            actor=actor.key_id,
            action=action,
            entity=entity,
            entity_id=entity_id,
            data=payload,
            created_at=at or utcnow(),
        ),
    )


def audit_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Audit events of a bulk path, as rows (id, organization_id, actor, action, entity,
    entity_id, data, created_at); written at commit, chained, in one go. Never insert audit
    rows any other way: a row outside the chain is what `audit verify` reports as inserted."""
    record_event_rows(session, rows)


# Never copied into the audit trail: an API key's hash, a payment provider's token.
NOT_AUDITED = frozenset({"secret_hash", "token", "organization_id"})


def snapshot(row: Base, *fields: str) -> dict[str, Any]:
    """A row's values (the named fields, or every column) as the audit trail keeps them."""
    names = fields or tuple(
        attribute.key
        for attribute in sa_inspect(row).mapper.column_attrs
        if attribute.key not in NOT_AUDITED and not attribute.deferred
    )
    return {name: canonical_value(getattr(row, name)) for name in names}


def changes(
    before: Mapping[str, Any] | None, after: Base | Mapping[str, Any] | None
) -> dict[str, Any]:
    """{"before": {...}, "after": {...}} with only the fields that changed; a new row (no
    `before`) has its values under "after"."""
    if before is None:
        if after is None:
            return {}
        return {"after": snapshot(after) if isinstance(after, Base) else canonical_value(after)}
    old = canonical_value(dict(before))
    if after is None:
        return {"before": old}
    new = snapshot(after, *old) if isinstance(after, Base) else canonical_value(dict(after))
    changed = [name for name in old if old[name] != new.get(name)]
    changed += [name for name in new if name not in old]
    return {
        "before": {name: old.get(name) for name in changed},
        "after": {name: new.get(name) for name in changed},
    }


def keyset_page(
    session: Session, query: Select[tuple[T]], model: type[T], limit: int, after: str | None
) -> tuple[list[T], str | None]:
    """One page of `query` in id order after the cursor, and the cursor of the next page."""
    id_column = model.id  # type: ignore[attr-defined]
    if after:
        query = query.where(id_column > after)
    rows = list(session.scalars(query.order_by(id_column).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id  # type: ignore[attr-defined]
    return rows, None
