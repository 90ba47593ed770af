"""Idempotency-Key on every POST: the same key and body replay the first answer; the same key
with a different body is refused with 422; a twin arriving while the first is still running gets
409. Records are kept for 48 hours. Authentication failures and server errors are not stored, so
a corrected retry with the same key is processed.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from tallybook.api.problems import MEDIA_TYPE, problem
from tallybook.db.models import IdempotencyRecord, new_id
from tallybook.services.base import Actor, Database, ServiceError, utcnow
from tallybook.services.organizations import authenticate

RETENTION = timedelta(hours=48)
ABANDONED = timedelta(minutes=5)  # a pending record this old belongs to a crashed request
NOT_STORED = {401, 403}


def bearer_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if not authorization.startswith("Bearer "):
        return None
    return authorization.removeprefix("Bearer ").strip()


class IdempotencyMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, db: Database) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        self.db = db

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        key = request.headers.get("idempotency-key")
        if request.method != "POST" or not key:
            return await call_next(request)
        if len(key) > 255:
            return problem(
                422,
                "Invalid input",
                "Idempotency-Key: at most 255 characters",
                type_suffix="invalid-input",
                field="Idempotency-Key",
            )
        secret = bearer_key(request)
        try:
            actor = authenticate(self.db, secret) if secret else None
        except ServiceError:
            actor = None
        if actor is None:
            return await call_next(request)  # the route answers 401 itself; nothing is kept
        body = await request.body()
        digest = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        claimed = self._claim(actor, key, digest)
        if claimed is not None:
            return claimed
        try:
            response = await call_next(request)
            chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
        except BaseException:
            self._release(actor, key)
            raise
        payload = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        media_type = response.headers.get("content-type", "application/json")
        if response.status_code >= 500 or response.status_code in NOT_STORED:
            self._release(actor, key)
        else:
            with self.db.transaction() as session:
                session.execute(
                    update(IdempotencyRecord)
                    .where(
                        IdempotencyRecord.organization_id == actor.organization_id,
                        IdempotencyRecord.key == key,
                    )
                    .values(
                        status_code=response.status_code,
                        response_body=payload.decode(),
                        media_type=media_type,
                    )
                )
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(payload, status_code=response.status_code, headers=headers)

    def _claim(self, actor: Actor, key: str, digest: str) -> Response | None:
        """Take the key for this request, or answer from (or about) the request that has it."""
        now = utcnow()
        try:
            with self.db.transaction() as session:
                session.execute(
                    delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - RETENTION)
                )
                session.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.organization_id == actor.organization_id,
                        IdempotencyRecord.key == key,
                        IdempotencyRecord.status_code == 0,
                        IdempotencyRecord.created_at < now - ABANDONED,
                    )
                )
                session.add(
                    IdempotencyRecord(
                        id=new_id("idem"),
                        organization_id=actor.organization_id,
                        key=key,
                        request_hash=digest,
                        status_code=0,
                        response_body="",
                        media_type="application/json",
                        created_at=now,
                    )
                )
            return None
        except IntegrityError:
            pass
        with self.db.reading() as session:
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.organization_id == actor.organization_id,
                    IdempotencyRecord.key == key,
                )
            ).first()
        if record is None:  # released between our insert and this read: let the client retry
            return problem(
                409,
                "Conflict",
                "Idempotency-Key: retry the request",
                type_suffix="idempotency-retry",
                field="Idempotency-Key",
            )
        if record.request_hash != digest:
            return problem(
                422,
                "Idempotency key reused",
                "Idempotency-Key: this key was already used with a different "
                "request; use a new key for a new request",
                type_suffix="idempotency-key-reused",
                field="Idempotency-Key",
            )
        if record.status_code == 0:
            return problem(
                409,
                "Request in progress",
                "Idempotency-Key: the first request with this key is still being "
                "processed; retry shortly",
                type_suffix="idempotency-in-progress",
                field="Idempotency-Key",
            )
        return Response(
            record.response_body,
            status_code=record.status_code,
            media_type=record.media_type or MEDIA_TYPE,
            headers={"Idempotent-Replayed": "true"},
        )

    def _release(self, actor: Actor, key: str) -> None:
        with self.db.transaction() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.organization_id == actor.organization_id,
                    IdempotencyRecord.key == key,
                )
            )
