"""What every service shares: the database handle, the acting key, errors, scoping and audit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

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
) -> None:
    """Record who did what, in the same transaction as the change itself."""
    session.add(
        AuditEvent(
            id=new_id("aud"),
            organization_id=actor.organization_id,
            actor=actor.key_id,
            action=action,
            entity=entity,
            entity_id=entity_id,
            data=data or {},
            created_at=at or utcnow(),
        )
    )


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
