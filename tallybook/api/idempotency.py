"""Idempotency-Key on every POST: same key and body replay the first answer; a different
body with the same key is refused with 422. Keys are kept for at least 24 hours.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from tallybook.api.problems import problem
from tallybook.db.models import IdempotencyRecord, new_id
from tallybook.services.base import Database, ServiceError, utcnow
from tallybook.services.organizations import authenticate

RETENTION = timedelta(hours=48)


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
        authorization = request.headers.get("authorization", "")
        try:
            actor = authenticate(self.db, authorization.removeprefix("Bearer ").strip())
        except ServiceError:
            return await call_next(request)  # the route answers 401 itself
        body = await request.body()
        digest = hashlib.sha256(
            request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
        ).hexdigest()
        with self.db.reading() as session:
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.organization_id == actor.organization_id,
                    IdempotencyRecord.key == key,
                )
            ).first()
        if record is not None:
            if record.request_hash != digest:
                return problem(
                    422,
                    "Idempotency key reused",
                    "Idempotency-Key: this key was already used with a different "
                    "request; use a new key for a new request",
                    type_suffix="idempotency-key-reused",
                    field="Idempotency-Key",
                )
            return Response(
                record.response_body,
                status_code=record.status_code,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        response = await call_next(request)
        payload = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        if response.status_code < 500:
            try:
                with self.db.transaction() as session:
                    session.execute(
                        delete(IdempotencyRecord).where(
                            IdempotencyRecord.created_at < utcnow() - RETENTION
                        )
                    )
                    session.add(
                        IdempotencyRecord(
                            id=new_id("idem"),
                            organization_id=actor.organization_id,
                            key=key,
                            request_hash=digest,
                            status_code=response.status_code,
                            response_body=payload.decode(),
                            created_at=utcnow(),
                        )
                    )
            except IntegrityError:
                pass  # a concurrent twin stored it first; both answers are the same request's
        return Response(
            payload,
            status_code=response.status_code,
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
            media_type=response.media_type,
        )
