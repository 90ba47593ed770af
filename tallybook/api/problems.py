"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tallybook.services.base import ServiceError

TYPE_BASE = "https://tallybook.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_suffix: str = "about:blank",
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + type_suffix if type_suffix != "about:blank" else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


async def service_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return problem(
        error.status,
        error.title,
        error.detail,
        type_suffix=error.type_suffix,
        instance=request.url.path,
        field=error.field,
    )


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ()) if part not in ("body",)]
        errors.append({"field": ".".join(location), "reason": item.get("msg", "invalid")})
    first = errors[0] if errors else {"field": "", "reason": "invalid request"}
    return problem(
        422,
        "Invalid input",
        f"{first['field']}: {first['reason']}",
        type_suffix="invalid-input",
        instance=request.url.path,
        field=first["field"],
        errors=errors,
    )


async def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
    return problem(
        error.status_code,
        titles.get(error.status_code, "Error"),
        str(error.detail),
        instance=request.url.path,
    )


async def value_error(request: Request, error: Exception) -> JSONResponse:
    return problem(
        422, "Invalid input", str(error), type_suffix="invalid-input", instance=request.url.path
    )
