"""The customer portal: signed, expiring links that open one customer's own documents, and what
the portal pages show and do with such a link (invoices, credit and debit notes, statements,
downloads, disputes).

A link's token is signed with TALLYBOOK_SECRET_KEY (itsdangerous, HMAC-SHA256) over the link's
id, the organisation, the customer and the expiry; nothing else is in it. The `portal_links` row
says whether the link was revoked. Whoever holds a token acts as that customer and nobody else:
every read is scoped to the organisation AND the customer, anything else is simply not found.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tallybook.config import public_url, secret_keys
from tallybook.core.explain import explain_line
from tallybook.db.models import (
    CreditNote,
    Customer,
    DebitNote,
    Discrepancy,
    Invoice,
    InvoiceLine,
    Organization,
    PortalLink,
    new_id,
)
from tallybook.formats.pdf_documents import DEFAULT_COLOR
from tallybook.formats.pdf_labels import LANGUAGES
from tallybook.services import discrepancies, documents, einvoices, receivables
from tallybook.services.base import (
    WRITERS,
    Actor,
    Database,
    InvalidInput,
    NotFound,
    Role,
    ServiceError,
    audit,
    get_owned,
    snapshot,
    utcnow,
)
from tallybook.services.webhooks import NotConfigured

__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "IssuedLink",
    "LinkClaims",
    "PortalAccess",
    "PortalDispute",
    "PortalInvoice",
    "PortalOverview",
    "PortalRefused",
    "check_form_token",
    "create_portal_link",
    "file_dispute",
    "form_token",
    "link_status",
    "list_portal_links",
    "open_portal",
    "portal_dispute",
    "portal_file",
    "portal_invoice",
    "portal_language",
    "portal_logo",
    "portal_overview",
    "portal_statement",
    "read_token",
    "revoke_portal_link",
    "revoke_portal_links",
    "sign_token",
]

DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_TOKEN_LENGTH = 1000
MAX_REASON = 2000
SHOWN_DOCUMENTS = 500  # per kind, newest first: a portal page, not an export
STATEMENT_MONTHS = 6  # the statement a customer sees first: this month and the five before
SHOWN_STATES = ("issued", "partially_paid", "paid", "uncollectible", "void")
# The salts keep the uses of TALLYBOOK_SECRET_KEY apart: a link token is never a form token,
# and neither is a webhook secret's encryption.
LINK_SALT = "tallybook.portal-link"
FORM_SALT = "tallybook.portal-form"
SUBMISSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

FILES = {
    "invoice": ("pdf", "ubl", "facturx"),
    "credit_note": ("pdf", "ubl"),
    "debit_note": ("pdf", "ubl"),
    "statement": ("pdf",),
}


class PortalRefused(ServiceError):
    """A portal token that opens nothing: forged or garbled (`invalid`), past its expiry
    (`expired`) or withdrawn (`revoked`); or a form that did not come from the portal (`form`).
    It never says more than that."""

    status = 403
    title = "Link refused"
    type_suffix = "portal-link-refused"

    def __init__(self, reason: str) -> None:
        messages = {
            "invalid": "this portal link is not valid",
            "expired": "this portal link has expired",
            "revoked": "this portal link has been withdrawn",
            "form": "the form did not come from this portal page; reload the page and send it "
            "again",
        }
        super().__init__(messages[reason])
        self.reason = reason


# -- tokens --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkClaims:
    """What a link token carries, all of it readable by whoever holds the link."""

    link_id: str
    organization_id: str
    customer_id: str
    expires_at: datetime


def _keys() -> list[str]:
    keys = secret_keys()
    if not keys:
        raise NotConfigured(
            "TALLYBOOK_SECRET_KEY is not set: customer portal links are signed with it (make one "
            "with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    # itsdangerous signs with the last key and verifies with any; TALLYBOOK_SECRET_KEY lists
    # the current key first and older ones after it, for rotation.
    return list(reversed(keys))


_SIGNING = {"key_derivation": "hmac", "digest_method": hashlib.sha256}


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(_keys(), salt=LINK_SALT, signer_kwargs=_SIGNING)


def sign_token(claims: LinkClaims) -> str:
    """The link's token: its claims, signed. The same claims always give the same token."""
    return _serializer().dumps(
        {
            "l": claims.link_id,
            "o": claims.organization_id,
            "c": claims.customer_id,
            "e": int(claims.expires_at.timestamp()),
        }
    )


def read_token(token: str, now: datetime | None = None) -> LinkClaims:
    """The claims of a token whose signature holds and whose expiry has not passed."""
    serializer = _serializer()
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise PortalRefused("invalid")
    try:
        data = serializer.loads(token)
    except (BadSignature, UnicodeError, ValueError):
        raise PortalRefused("invalid") from None
    if not isinstance(data, dict) or set(data) != {"l", "o", "c", "e"}:
        raise PortalRefused("invalid")
    link_id, organization_id, customer_id, expiry = data["l"], data["o"], data["c"], data["e"]
    if not all(
        isinstance(x, str) and 0 < len(x) <= 40 for x in (link_id, organization_id, customer_id)
    ):
        raise PortalRefused("invalid")
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 < expiry < 2**40:
        raise PortalRefused("invalid")
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if (now or utcnow()) >= expires_at:
        raise PortalRefused("expired")
    return LinkClaims(link_id, organization_id, customer_id, expires_at)


def _form_signer() -> Signer:
    return Signer(_keys(), salt=FORM_SALT, **_SIGNING)


def form_token(access: PortalAccess) -> str:
    """The token a portal form carries: tied to the link it was shown through."""
    return _form_signer().get_signature(access.link_id.encode()).decode()


def check_form_token(access: PortalAccess, value: str | None) -> None:
    if not value or len(value) > 200:
        raise PortalRefused("form")
    try:
        valid = _form_signer().verify_signature(access.link_id.encode(), value.encode())
    except (BadSignature, UnicodeError):
        valid = False
    if not valid:
        raise PortalRefused("form")


# -- links (for the billing team, with an API key) -----------------------------------------------


@dataclass(frozen=True)
class IssuedLink:
    link: PortalLink
    token: str
    url: str


def _days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(
            f"expires_in_days: a whole number of days, 1 to {MAX_DAYS}", field="expires_in_days"
        )
    try:
        days = int(value)
    except ValueError:
        raise InvalidInput(
            f"expires_in_days: {value!r} is not a whole number of days", field="expires_in_days"
        ) from None
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"expires_in_days: {days} is not between 1 and {MAX_DAYS}", field="expires_in_days"
        )
    return days


def _base_url() -> str:
    try:
        return public_url()
    except ValueError as error:
        raise NotConfigured(str(error)) from None


def _claims(link: PortalLink) -> LinkClaims:
    return LinkClaims(link.id, link.organization_id, link.customer_id, link.expires_at)


def link_url(link: PortalLink) -> str:
    return f"{_base_url()}/portal/{sign_token(_claims(link))}"


def create_portal_link(
    db: Database,
    actor: Actor,
    customer_id: str,
    expires_in_days: Any = DEFAULT_DAYS,
    *,
    now: datetime | None = None,
) -> IssuedLink:
    """A new link to the customer's portal, valid for `expires_in_days` (1 to 366) from now.
    The URL is shown to the caller and stored nowhere; another link can always be made."""
    actor.require(*WRITERS, action="create customer portal links")
    days = _days(expires_in_days)
    _keys()  # refuse before writing anything when links cannot be signed
    base = _base_url()
    created = now or utcnow()
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, label="customer")
        link = PortalLink(
            id=new_id("ptl"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            # Whole seconds: the token carries the expiry as a Unix time and must match the row.
            expires_at=(created + timedelta(days=days)).replace(microsecond=0),
            created_by=actor.key_id,
            created_at=created,
        )
        session.add(link)
        session.flush()
        audit(
            session,
            actor,
            "portal_link.created",
            "portal_link",
            link.id,
            {"customer_id": customer.id, "expires_in_days": days},
            after=link,
        )
    token = sign_token(_claims(link))
    return IssuedLink(link, token, f"{base}/portal/{token}")


def link_status(link: PortalLink, now: datetime | None = None) -> str:
    """active, expired or revoked."""
    if link.revoked_at is not None:
        return "revoked"
    return "expired" if (now or utcnow()) >= link.expires_at else "active"


def list_portal_links(db: Database, actor: Actor, customer_id: str) -> list[PortalLink]:
    """The customer's links, newest first, revoked and expired ones included (without URLs)."""
    with db.reading() as session:
        customer = get_owned(session, Customer, customer_id, actor, label="customer")
        return list(
            session.scalars(
                select(PortalLink)
                .where(
                    PortalLink.organization_id == actor.organization_id,
                    PortalLink.customer_id == customer.id,
                )
                .order_by(PortalLink.created_at.desc(), PortalLink.id)
            )
        )


def revoke_portal_link(
    db: Database, actor: Actor, link_id: str, *, customer_id: str | None = None
) -> PortalLink:
    """Withdraw one link (of `customer_id`, when given): it opens nothing from now on.
    Revoking twice changes nothing."""
    actor.require(*WRITERS, action="revoke customer portal links")
    with db.transaction() as session:
        link = get_owned(session, PortalLink, link_id, actor, lock=True, label="portal link")
        if customer_id is not None and link.customer_id != customer_id:
            raise NotFound(f"portal link {link_id} not found for customer {customer_id}")
        if link.revoked_at is None:
            before = snapshot(link, "revoked_at", "revoked_by")
            link.revoked_at = utcnow()
            link.revoked_by = actor.key_id
            audit(
                session,
                actor,
                "portal_link.revoked",
                "portal_link",
                link.id,
                before=before,
                after=link,
            )
        return link


def revoke_portal_links(db: Database, actor: Actor, customer_id: str) -> int:
    """Withdraw every link of the customer still in force; returns how many."""
    actor.require(*WRITERS, action="revoke customer portal links")
    now = utcnow()
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, lock=True, label="customer")
        revoked = list(
            session.scalars(
                update(PortalLink)
                .where(
                    PortalLink.organization_id == actor.organization_id,
                    PortalLink.customer_id == customer.id,
                    PortalLink.revoked_at.is_(None),
                )
                .values(revoked_at=now, revoked_by=actor.key_id)
                .returning(PortalLink.id)
            )
        )
        audit(
            session,
            actor,
            "portal_links.revoked",
            "customer",
            customer.id,
            {"links": sorted(revoked)},
            at=now,
        )
        return len(revoked)


# -- opening the portal (for the customer, with the token) -------------------------------------


@dataclass(frozen=True)
class PortalAccess:
    """A link that opened: whose portal it is. Its actor reads as the organisation, scoped by
    the portal to this customer, and may change nothing but what the portal itself writes."""

    link_id: str
    organization_id: str
    customer_id: str
    expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(self.organization_id, self.link_id, Role.VIEWER)


def _live_link(session: Session, claims: LinkClaims) -> PortalLink:
    link = session.get(PortalLink, claims.link_id)
    # A validly signed token whose claims disagree with the row was not made by us for this
    # link (another organisation or customer): no different from a forged one.
    if (
        link is None
        or link.organization_id != claims.organization_id
        or link.customer_id != claims.customer_id
        or link.expires_at != claims.expires_at
    ):
        raise PortalRefused("invalid")
    if link.revoked_at is not None:
        raise PortalRefused("revoked")
    return link


def open_portal(db: Database, token: str, *, now: datetime | None = None) -> PortalAccess:
    """The portal a token opens; PortalRefused if it is forged, expired or revoked."""
    claims = read_token(token, now)
    with db.reading() as session:
        link = _live_link(session, claims)
    return PortalAccess(link.id, link.organization_id, link.customer_id, link.expires_at)


def portal_language(customer: Customer | None, requested: str | None) -> str:
    """The language asked for (en, de, fr), else the customer's, else English."""
    for value in (requested, customer.language if customer else None):
        code = re.split(r"[-_]", (value or "").strip().lower())[0]
        if code in LANGUAGES:
            return code
    return "en"


@dataclass(frozen=True)
class Seller:
    name: str
    brand_color: str
    has_logo: bool
    contact_email: str | None


@dataclass(frozen=True)
class PortalOverview:
    seller: Seller
    customer: Customer
    invoices: list[Invoice]
    credit_notes: list[tuple[CreditNote, str | None]]  # with the number of the invoice
    debit_notes: list[tuple[DebitNote, str | None]]
    disputed: frozenset[str]  # invoices with an open dispute


def _seller(session: Session, organization_id: str) -> Seller:
    org = session.get(Organization, organization_id)
    assert org is not None
    return Seller(
        org.name, org.brand_color or DEFAULT_COLOR, bool(org.logo_media_type), org.contact_email
    )


def _customer(session: Session, access: PortalAccess) -> Customer:
    customer = session.get(Customer, access.customer_id)
    if customer is None or customer.organization_id != access.organization_id:
        raise PortalRefused("invalid")
    return customer


def _open_disputes(session: Session, access: PortalAccess) -> list[Discrepancy]:
    return list(
        session.scalars(
            select(Discrepancy)
            .where(
                Discrepancy.organization_id == access.organization_id,
                Discrepancy.customer_id == access.customer_id,
                Discrepancy.source == "dispute",
            )
            .order_by(Discrepancy.first_seen_at.desc(), Discrepancy.id)
        )
    )


def portal_overview(db: Database, access: PortalAccess) -> PortalOverview:
    """The customer's issued invoices, credit notes and debit notes, newest first."""
    with db.reading() as session:
        customer = _customer(session, access)
        invoices = list(
            session.scalars(
                select(Invoice)
                .where(
                    Invoice.organization_id == access.organization_id,
                    Invoice.customer_id == access.customer_id,
                    Invoice.status.in_(SHOWN_STATES),
                )
                .order_by(Invoice.issue_date.desc(), Invoice.number.desc())
                .limit(SHOWN_DOCUMENTS)
            )
        )
        credit_notes = session.execute(
            select(CreditNote, Invoice.number)
            .join(Invoice, Invoice.id == CreditNote.invoice_id)
            .where(
                CreditNote.organization_id == access.organization_id,
                CreditNote.customer_id == access.customer_id,
            )
            .order_by(CreditNote.issue_date.desc(), CreditNote.number.desc())
            .limit(SHOWN_DOCUMENTS)
        ).all()
        debit_notes = session.execute(
            select(DebitNote, Invoice.number)
            .join(Invoice, Invoice.id == DebitNote.invoice_id)
            .where(
                DebitNote.organization_id == access.organization_id,
                DebitNote.customer_id == access.customer_id,
            )
            .order_by(DebitNote.issue_date.desc(), DebitNote.number.desc())
            .limit(SHOWN_DOCUMENTS)
        ).all()
        disputed = frozenset(
            d.invoice_id
            for d in _open_disputes(session, access)
            if d.status in discrepancies.OPEN_STATES and d.invoice_id
        )
        return PortalOverview(
            _seller(session, access.organization_id),
            customer,
            invoices,
            [(note, number) for note, number in credit_notes],
            [(note, number) for note, number in debit_notes],
            disputed,
        )


@dataclass(frozen=True)
class ShownLine:
    position: int
    line: InvoiceLine
    explanation: str | None  # "why was I charged this?"
    period: tuple[date, date] | None  # first and last day served, in the customer's time zone
    tax_percent: Decimal | None


@dataclass(frozen=True)
class PortalInvoice:
    seller: Seller
    customer: Customer
    invoice: Invoice
    lines: list[ShownLine]
    disputes: list[Discrepancy]
    credit_notes: list[CreditNote]
    debit_notes: list[DebitNote]


def _shown_invoice(
    session: Session, access: PortalAccess, invoice_id: str, *, lock: bool = False
) -> Invoice:
    query = select(Invoice).where(
        Invoice.id == invoice_id,
        Invoice.organization_id == access.organization_id,
        Invoice.customer_id == access.customer_id,
        Invoice.status.in_(SHOWN_STATES),
    )
    if lock:
        query = query.with_for_update()
    invoice = session.scalars(query).first()
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return invoice


def portal_invoice(db: Database, access: PortalAccess, invoice_id: str) -> PortalInvoice:
    """One of the customer's invoices with every line and how it was computed, its disputes and
    the credit and debit notes that correct it."""
    with db.reading() as session:
        customer = _customer(session, access)
        invoice = _shown_invoice(session, access, invoice_id)
        lines = list(
            session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.position)
            )
        )
        zone = einvoices._zone(customer)
        shown = [
            ShownLine(
                position,
                line,
                explain_line(line.explanation, invoice.currency) if line.explanation else None,
                einvoices._period(line, zone),
                einvoices._applied_percent(einvoices._line_taxes(line)),
            )
            for position, line in enumerate(lines, start=1)
        ]
        disputes = [d for d in _open_disputes(session, access) if d.invoice_id == invoice.id]
        credit_notes = list(
            session.scalars(
                select(CreditNote)
                .where(
                    CreditNote.organization_id == access.organization_id,
                    CreditNote.invoice_id == invoice.id,
                )
                .order_by(CreditNote.issue_date, CreditNote.number)
            )
        )
        debit_notes = list(
            session.scalars(
                select(DebitNote)
                .where(
                    DebitNote.organization_id == access.organization_id,
                    DebitNote.invoice_id == invoice.id,
                )
                .order_by(DebitNote.issue_date, DebitNote.number)
            )
        )
        return PortalInvoice(
            _seller(session, access.organization_id),
            customer,
            invoice,
            shown,
            disputes,
            credit_notes,
            debit_notes,
        )


@dataclass(frozen=True)
class PortalStatement:
    seller: Seller
    customer: Customer
    view: receivables.StatementView


def portal_statement(
    db: Database, access: PortalAccess, date_from: date | None, date_to: date | None
) -> PortalStatement:
    """The customer's statement for a period (default: this month and the five before it,
    to today in the organisation's time zone)."""
    with db.reading() as session:
        customer = _customer(session, access)
        seller = _seller(session, access.organization_id)
        if date_to is None:
            date_to = receivables.organization_today(session, access.organization_id)
        if date_from is None:
            month = date_to.year * 12 + date_to.month - 1 - (STATEMENT_MONTHS - 1)
            date_from = date(month // 12, month % 12 + 1, 1)
    view = receivables.customer_statement(db, access.actor, customer.id, date_from, date_to)
    return PortalStatement(seller, customer, view)


def portal_logo(db: Database, access: PortalAccess) -> tuple[bytes, str] | None:
    """The organisation's logo and its media type, if it has one."""
    branding = documents.get_branding(db, access.actor, with_logo=True)
    if not branding.logo or not branding.logo_media_type:
        return None
    return branding.logo, branding.logo_media_type


def portal_file(
    db: Database,
    access: PortalAccess,
    kind: str,
    document_id: str,
    file_format: str,
    *,
    language: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> documents.RenderedDocument:
    """A download: an invoice as PDF, UBL or Factur-X; a credit or debit note as PDF or UBL;
    the statement as PDF. Only the customer's own issued documents."""
    if kind not in FILES or file_format not in FILES[kind]:
        raise NotFound(f"no {file_format} file of a {kind.replace('_', ' ')}")
    actor = access.actor
    if kind == "statement":
        return documents.document_pdf(
            db,
            actor,
            "statement",
            access.customer_id,
            language=language,
            date_from=date_from,
            date_to=date_to,
        )
    with db.reading() as session:
        if kind == "invoice":
            _shown_invoice(session, access, document_id)
        else:
            model = CreditNote if kind == "credit_note" else DebitNote
            found = session.scalar(
                select(model.id).where(
                    model.id == document_id,
                    model.organization_id == access.organization_id,
                    model.customer_id == access.customer_id,
                )
            )
            if found is None:
                raise NotFound(f"{kind.replace('_', ' ')} {document_id} not found")
    if file_format == "pdf":
        return documents.document_pdf(db, actor, kind, document_id, language=language)
    if file_format == "facturx":
        return documents.document_facturx(db, actor, document_id)
    xml = einvoices.einvoice_file(db, actor, document_id, kind, "ubl")
    return documents.RenderedDocument(xml.file_name, xml.media_type, xml.content)


# -- disputes --------------------------------------------------------------------------------------


def _reason(value: Any) -> str:
    reason = " ".join(str(value or "").split())
    if not reason:
        raise InvalidInput("reason: say what is wrong with the invoice", field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason: at most {MAX_REASON} characters", field="reason")
    return reason


def file_dispute(
    db: Database,
    token: str,
    invoice_id: str,
    reason: Any,
    line: str | None = None,
    *,
    submission: str | None = None,
) -> Discrepancy:
    """The customer disputes one of its invoices, or one line of it (1-based position): a
    customer dispute for the discrepancy workflow, and dunning on the invoice pauses. The
    link is checked again in the writing transaction, so a link revoked a moment ago records
    nothing. The same form sent twice (`submission`, the form's own id) records one dispute."""
    reason = _reason(reason)
    line = (line or "").strip() or None
    if submission is not None and not SUBMISSION.match(submission):
        submission = None
    claims = read_token(token)
    with db.transaction() as session:
        link = _live_link(session, claims)
        access = PortalAccess(link.id, link.organization_id, link.customer_id, link.expires_at)
        invoice = _shown_invoice(session, access, invoice_id, lock=True)
        if submission is not None:
            for earlier in session.scalars(
                select(Discrepancy).where(
                    Discrepancy.organization_id == access.organization_id,
                    Discrepancy.invoice_id == invoice.id,
                    Discrepancy.source == "dispute",
                    Discrepancy.opened_by == link.id,
                )
            ):
                if (earlier.location or {}).get("submission") == submission:
                    return earlier
        row = discrepancies.open_dispute_in(session, access.actor, invoice, reason, line)
        row.location = {
            **row.location,
            "via": "customer_portal",
            "portal_link_id": link.id,
            **({"submission": submission} if submission else {}),
        }
        session.flush()
        return row


@dataclass(frozen=True)
class PortalDispute:
    seller: Seller
    customer: Customer
    dispute: Discrepancy
    invoice_number: str


def portal_dispute(db: Database, access: PortalAccess, dispute_id: str) -> PortalDispute:
    """A dispute of this customer (the confirmation page), with the invoice's number."""
    with db.reading() as session:
        customer = _customer(session, access)
        row = session.scalars(
            select(Discrepancy).where(
                Discrepancy.id == dispute_id,
                Discrepancy.organization_id == access.organization_id,
                Discrepancy.customer_id == access.customer_id,
                Discrepancy.source == "dispute",
            )
        ).first()
        if row is None or row.invoice_id is None:
            raise NotFound(f"dispute {dispute_id} not found")
        number = session.scalar(select(Invoice.number).where(Invoice.id == row.invoice_id))
        return PortalDispute(
            _seller(session, access.organization_id), customer, row, number or row.invoice_id
        )
