"""The customer portal's pages: server-rendered HTML (Jinja2, no scripts) under /portal, opened
by a signed link (services.portal): the customer's documents, each invoice's lines and why they
cost what they cost, statements for a chosen period, downloads (PDF, UBL, Factur-X) and a form
to dispute an invoice or one of its lines.

Mounted on the API app as its own small app, so it stays out of the OpenAPI document and
answers in HTML: a refused link gets a plain page that shows nothing of anyone's data. Every
answer is marked not to be cached, framed or sent on as a referrer (the token is in the URL).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from tallybook.api.portal_labels import LABELS
from tallybook.core.money import from_minor
from tallybook.core.references import display as reference_display
from tallybook.db.models import Customer
from tallybook.services import portal as service
from tallybook.services.base import Database, InvalidInput, NotFound, ServiceError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "portal"
LANGUAGE_NAMES = (("en", "English"), ("de", "Deutsch"), ("fr", "Français"))
DEFAULT_COLOR = "#1f4e79"
MAX_FORM_BYTES = 32 * 1024
FILE_KINDS = {"invoices": "invoice", "credit-notes": "credit_note", "debit-notes": "debit_note"}


# -- words, numbers, dates -------------------------------------------------------------------


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


class Words:
    """The labels of one language, and amounts and dates the way its readers write them (as
    the PDF documents do)."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LABELS else "en"
        self.locale = _locale(self.language)
        self.labels = LABELS[self.language]

    def __call__(self, key: str, **values: Any) -> str:
        text = self.labels[key]
        return text.format(**values) if values else text

    def money(self, minor: int, currency: str) -> str:
        return format_currency(from_minor(minor, currency), currency, locale=self.locale)

    def price(self, value: Decimal, currency: str) -> str:
        # Unit prices may have more places than the currency (0.0006 per call): all shown.
        return format_currency(value, currency, locale=self.locale, decimal_quantization=False)

    def number(self, value: Decimal) -> str:
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal) -> str:
        return format_percent(value / 100, locale=self.locale, decimal_quantization=False)

    def day(self, value: date | None) -> str:
        return format_date(value, "medium", locale=self.locale) if value else ""

    def moment(self, value: datetime, customer: Customer | None) -> str:
        """The day of an instant in the customer's time zone."""
        try:
            zone = ZoneInfo((customer.timezone if customer else None) or "UTC")
        except (ValueError, KeyError):
            zone = ZoneInfo("UTC")
        return self.day(value.astimezone(zone).date())

    def kind(self, kind: str) -> str:
        return self.labels.get(f"kind_{kind}") or self.labels["kind_other"]


def _accepted_language(request: Request) -> str:
    """For pages shown before we know whose portal it is: ?lang, else the browser's choice."""
    chosen = _chosen_language(request)
    if chosen:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LABELS:
            return code
    return "en"


def _chosen_language(request: Request) -> str | None:
    value = (request.query_params.get("lang") or "").strip().lower()
    return value if value in LABELS else None


# -- colours ---------------------------------------------------------------------------------


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: float, b: float) -> float:
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def brand_colors(color: str | None) -> dict[str, str]:
    """The organisation's colour for the header, with text that stays readable on it (WCAG
    contrast), and a link colour readable on white."""
    brand = color if color and re.fullmatch(r"#[0-9a-fA-F]{6}", color) else DEFAULT_COLOR
    lum = _luminance(brand)
    on_brand = "#ffffff" if _contrast(lum, 1.0) >= _contrast(lum, 0.0) else "#111111"
    link = brand if _contrast(lum, 1.0) >= 4.5 else DEFAULT_COLOR
    return {"brand": brand, "on_brand": on_brand, "link_color": link}


# -- pages -----------------------------------------------------------------------------------


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class _Pages:
    def __init__(self) -> None:
        self.environment = _environment()

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        html = self.environment.get_template(name).render(
            nonce=request.state.nonce if hasattr(request.state, "nonce") else "", **context
        )
        return HTMLResponse(html, status_code=status)

    def refused(
        self, request: Request, status: int, title: str, detail: str | None, hint: str | None
    ) -> Response:
        words = Words(_accepted_language(request))
        return self.render(
            request, "refused.html", status, w=words, title=title, detail=detail, hint=hint
        )


def _portal_context(
    request: Request,
    token: str,
    access: service.PortalAccess,
    seller: Any,
    customer: Customer,
    current: str,
) -> dict[str, Any]:
    chosen = _chosen_language(request)
    words = Words(service.portal_language(customer, chosen))
    base = f"{request.scope.get('root_path', '')}/{token}"

    def href(path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v is not None}
        if chosen:
            query["lang"] = chosen
        return f"{path}?{urlencode(query)}" if query else path

    def switch(code: str) -> str:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        query.append(("lang", code))
        return f"{request.url.path}?{urlencode(query)}"

    return {
        "w": words,
        "base": base,
        "href": href,
        "switch": switch,
        "seller": seller,
        "customer": customer,
        "expires_at": access.expires_at,
        "languages": LANGUAGE_NAMES,
        "chosen_language": chosen,
        "current": current,
        **brand_colors(seller.brand_color),
    }


def _file(rendered: Any) -> Response:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", rendered.file_name)
    return Response(
        rendered.content,
        media_type=rendered.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _day(value: str | None, field: str) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a date (YYYY-MM-DD)", field=field) from None


async def _form(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded), the first value of each."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("body: send the portal's form", field="body")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInput("body: the form is too large", field="body")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=20, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("body: not a form", field="body") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


# -- headers ----------------------------------------------------------------------------------


def _security_headers(response: Response, nonce: str) -> None:
    headers = response.headers
    headers["Cache-Control"] = "no-store, max-age=0"
    headers["Pragma"] = "no-cache"
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    # The token is in every URL: no page may pass it on as a referrer.
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Robots-Tag"] = "noindex, nofollow"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


# -- access logs ----------------------------------------------------------------------------------


class HideTokens(logging.Filter):
    """Access log lines keep the portal's paths but not the tokens in them: whoever reads the
    server's logs must not be able to open customers' portals with them."""

    PATTERN = re.compile(r"(/portal/)[^/?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                self.PATTERN.sub(r"\1<token>", a) if isinstance(a, str) else a
                for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1<token>", record.msg)
        return True


def _hide_tokens_in_access_logs() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideTokens) for f in access.filters):
        access.addFilter(HideTokens())


# -- the app ------------------------------------------------------------------------------------


def create_portal_app(db: Database) -> FastAPI:
    """The portal as an app of its own, for `app.mount("/portal", ...)`."""
    portal = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    _hide_tokens_in_access_logs()
    pages = _Pages()

    @portal.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        nonce = secrets.token_urlsafe(18)
        request.state.nonce = nonce
        response = await call_next(request)
        _security_headers(response, nonce)
        return response

    @portal.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        w = Words(_accepted_language(request))
        if isinstance(error, service.PortalRefused):
            hint = None if error.reason == "form" else w("ask_new_link")
            return pages.refused(request, 403, w(f"refused_{error.reason}"), None, hint)
        if isinstance(error, NotFound):
            return pages.refused(request, 404, w("not_found"), None, None)
        if error.status >= 500:
            return pages.refused(request, error.status, w("unavailable"), None, None)
        return pages.refused(request, error.status, w("error_title"), error.detail, None)

    @portal.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        w = Words(_accepted_language(request))
        title = w("not_found") if error.status_code == 404 else w("error_title")
        return pages.refused(request, error.status_code, title, None, None)

    @portal.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        w = Words(_accepted_language(request))
        return pages.refused(request, 422, w("error_title"), None, None)

    # -- pages --

    @portal.get("/{token}", response_class=HTMLResponse)
    def home(token: str, request: Request) -> Response:
        access = service.open_portal(db, token)
        overview = service.portal_overview(db, access)
        context = _portal_context(
            request, token, access, overview.seller, overview.customer, "documents"
        )
        return pages.render(request, "home.html", overview=overview, **context)

    @portal.get("/{token}/invoices/{invoice_id}", response_class=HTMLResponse)
    def invoice(token: str, invoice_id: str, request: Request) -> Response:
        access = service.open_portal(db, token)
        detail = service.portal_invoice(db, access, invoice_id)
        context = _portal_context(
            request, token, access, detail.seller, detail.customer, "documents"
        )
        line = request.query_params.get("line", "")
        reference = detail.invoice.payment_reference
        return pages.render(
            request,
            "invoice.html",
            detail=detail,
            disputable=detail.invoice.status != "void",
            csrf=service.form_token(access),
            # The form's own id: the same form sent twice records one dispute.
            submission=secrets.token_urlsafe(18),
            selected_line=int(line) if line.isdigit() else None,
            max_reason=service.MAX_REASON,
            payment_reference=reference_display(reference) if reference else None,
            **context,
        )

    @portal.post("/{token}/invoices/{invoice_id}/disputes")
    async def dispute(token: str, invoice_id: str, request: Request) -> Response:
        access = await run_in_threadpool(service.open_portal, db, token)
        fields = await _form(request)
        service.check_form_token(access, fields.get("csrf"))
        row = await run_in_threadpool(
            service.file_dispute,
            db,
            token,
            invoice_id,
            fields.get("reason"),
            fields.get("line"),
            submission=fields.get("submission"),
        )
        lang = (fields.get("lang") or "").strip().lower()
        query = f"?{urlencode({'lang': lang})}" if lang in LABELS else ""
        # Post, redirect, get: reloading the confirmation does not send the form again.
        return RedirectResponse(
            f"{request.scope.get('root_path', '')}/{token}/disputes/{row.id}{query}",
            status_code=303,
        )

    @portal.get("/{token}/disputes/{dispute_id}", response_class=HTMLResponse)
    def dispute_received(token: str, dispute_id: str, request: Request) -> Response:
        access = service.open_portal(db, token)
        shown = service.portal_dispute(db, access, dispute_id)
        context = _portal_context(request, token, access, shown.seller, shown.customer, "documents")
        return pages.render(
            request,
            "dispute.html",
            dispute=shown.dispute,
            invoice_number=shown.invoice_number,
            **context,
        )

    @portal.get("/{token}/statement", response_class=HTMLResponse)
    def statement(token: str, request: Request) -> Response:
        access = service.open_portal(db, token)
        shown = service.portal_statement(
            db,
            access,
            _day(request.query_params.get("from"), "from"),
            _day(request.query_params.get("to"), "to"),
        )
        context = _portal_context(request, token, access, shown.seller, shown.customer, "statement")
        return pages.render(request, "statement.html", statement=shown, **context)

    # -- files --

    @portal.get("/{token}/statement.pdf")
    def statement_pdf(token: str, request: Request) -> Response:
        access = service.open_portal(db, token)
        return _file(
            service.portal_file(
                db,
                access,
                "statement",
                access.customer_id,
                "pdf",
                language=_chosen_language(request),
                date_from=_day(request.query_params.get("from"), "from"),
                date_to=_day(request.query_params.get("to"), "to"),
            )
        )

    @portal.get("/{token}/logo")
    def logo(token: str) -> Response:
        access = service.open_portal(db, token)
        found = service.portal_logo(db, access)
        if found is None:
            raise NotFound("no logo")
        content, media_type = found
        return Response(content, media_type=media_type)

    @portal.get("/{token}/{kind}/{document_id}/{file_format}")
    def document_file(
        token: str, kind: str, document_id: str, file_format: str, request: Request
    ) -> Response:
        if kind not in FILE_KINDS:
            raise NotFound("no such page")
        access = service.open_portal(db, token)
        return _file(
            service.portal_file(
                db,
                access,
                FILE_KINDS[kind],
                document_id,
                file_format,
                language=_chosen_language(request),
            )
        )

    @portal.api_route("/{rest:path}", methods=["GET", "POST"])
    def nowhere(rest: str) -> Response:
        raise NotFound("no such page")

    return portal
