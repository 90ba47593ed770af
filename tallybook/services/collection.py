"""Automatic collection: charge due invoices to the customer's default payment method through
the payment provider, record each attempt, and retry declines on the organisation's schedule.

An invoice is charged from its due date (`core.collection.collectable_from`): the payment terms
agreed with the customer hold; customers who pay by card on issue have terms of 0 days. It is
charged when it is issued or partially paid with an amount due, not disputed, its customer has
a default payment method, and it has no attempt yet or its last attempt failed and is due for a
retry (`next_attempt_on <= as_of`, counted from the first attempt: core.collection).

Never a provider call inside a database transaction: each attempt is claimed (a `pending` row
with its number) in one short transaction, charged with the idempotency key
`<invoice id>:<attempt>`, and its outcome recorded in a second one. An approved charge becomes
a payment (source `collection`) applied to the invoice, with its journal entry. A run that
stopped between the two (a crash, or a provider that did not answer) leaves the attempt
pending; the next run sends the same key again, which the provider answers without charging
twice, and records that answer. The unique (invoice, attempt) constraint is the last guard
against two claims; on PostgreSQL runs of one organisation also queue on an advisory lock, so a
pending attempt a run finds is never one another live run is still working on. (On SQLite, two
processes running at once may both send a pending attempt's key: the provider answers both
alike and charges once, and only the first answer is recorded.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from tallybook.core.collection import next_attempt_on
from tallybook.core.payments import contains_card_number
from tallybook.core.periods import local_date
from tallybook.db.models import (
    Customer,
    Invoice,
    Organization,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    new_id,
)
from tallybook.providers.payments import (
    ChargeResult,
    ChargeStatus,
    ProviderRegistry,
    ProviderUnavailable,
    default_registry,
)
from tallybook.services.base import (
    WRITERS,
    Actor,
    Database,
    InvalidInput,
    NotFound,
    ServiceError,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.payments import apply_received

PENDING, APPROVED, DECLINED, FAILED = "pending", "approved", "declined", "failed"
STATUSES = (PENDING, APPROVED, DECLINED, FAILED)
UNSUCCESSFUL = (DECLINED, FAILED)  # the collections worklist reads these names
OPEN_STATES = ("issued", "partially_paid")
PAYMENT_METHOD_OF_KIND = {"card": "card", "sepa_debit": "direct_debit", "ach_debit": "direct_debit"}
CLAIM_BATCH = 200
# pg_advisory_lock(namespace, hashtext(organisation)): one collection run per organisation.
_RUN_LOCK_NAMESPACE = 7325003


@dataclass(frozen=True)
class Claim:
    """An attempt claimed for charging, as plain values (no session needed to charge it)."""

    attempt_id: str
    invoice_id: str
    invoice_number: str
    customer_id: str
    attempt: int
    amount_minor: int
    currency: str
    payment_method_id: str
    provider: str
    token: str
    kind: str
    resent: bool  # a pending attempt of an earlier run, sent again with its own key
    run_on: date  # the day of the run that sends it

    @property
    def idempotency_key(self) -> str:
        return f"{self.invoice_id}:{self.attempt}"


@dataclass(frozen=True)
class AttemptOutcome:
    attempt_id: str
    invoice_id: str
    invoice_number: str
    customer_id: str
    attempt: int
    status: str
    amount_minor: int
    currency: str
    failure_code: str | None = None
    failure_message: str | None = None
    next_attempt_on: date | None = None
    payment_id: str | None = None
    payment_number: str | None = None
    resent: bool = False


@dataclass
class CollectionRun:
    """What one run did: every attempt it charged (or re-sent) and how each ended."""

    as_of: date
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def attempted(self) -> int:
        return len(self.outcomes)

    def amounts(self) -> dict[str, dict[str, int]]:
        """Per currency: minor units attempted, and by outcome."""
        totals: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            counter = totals.setdefault(outcome.currency, Counter())
            counter["attempted_minor"] += outcome.amount_minor
            counter[f"{outcome.status}_minor"] += outcome.amount_minor
        keys = ("attempted_minor", *(f"{s}_minor" for s in (APPROVED, DECLINED, FAILED, PENDING)))
        return {cur: {k: c[k] for k in keys} for cur, c in sorted(totals.items())}


@dataclass(frozen=True)
class AttemptView:
    attempt: PaymentAttempt
    invoice_number: str | None
    customer_name: str | None


@dataclass(frozen=True)
class CustomerCollection:
    """What a specialist needs to see about a customer's automatic collection."""

    customer: Customer
    payment_methods: list[PaymentMethod]
    # Invoices whose last attempt was declined or failed: why, and when the next try is.
    failing: list[AttemptView]
    recent: list[AttemptView]

    @property
    def default_method(self) -> PaymentMethod | None:
        return next((m for m in self.payment_methods if m.is_default), None)

    @property
    def next_retry_on(self) -> date | None:
        days = [v.attempt.next_attempt_on for v in self.failing if v.attempt.next_attempt_on]
        return min(days) if days else None


# -- the run -----------------------------------------------------------------------------------


def collect_due_invoices(
    db: Database,
    actor: Actor,
    as_of: date | None = None,
    *,
    providers: ProviderRegistry | None = None,
) -> CollectionRun:
    """Charge every invoice due for collection on `as_of` (default: today in the organisation's
    time zone), first completing attempts an earlier run left pending."""
    actor.require(*WRITERS, action="run collection")
    registry = providers or default_registry()
    if as_of is None:
        with db.reading() as session:
            org = session.get(Organization, actor.organization_id)
            assert org is not None
            as_of = local_date(utcnow(), org.timezone)
    elif not isinstance(as_of, date):
        raise InvalidInput("as_of: give a date (YYYY-MM-DD)", field="as_of")
    run = CollectionRun(as_of)
    with _run_lock(db, actor.organization_id):
        for claim in pending_claims(db, actor, as_of):
            run.outcomes.append(settle(db, actor, registry, claim))
        after: str | None = None
        while True:
            try:
                claims, skipped, after = claim_due_invoices(
                    db, actor, as_of, providers=registry, after=after
                )
            except IntegrityError:
                # Another claimer took an attempt number first (only possible without the
                # PostgreSQL run lock): read again, the invoice is no longer unclaimed.
                claims, skipped, after = claim_due_invoices(
                    db, actor, as_of, providers=registry, after=after
                )
            run.skipped.extend(skipped)
            for claim in claims:
                run.outcomes.append(settle(db, actor, registry, claim))
            if after is None:
                break
    return run


@contextmanager
def _run_lock(db: Database, organization_id: str) -> Iterator[None]:
    """On PostgreSQL, runs of one organisation queue: a session-level advisory lock held by
    a connection outside any transaction (released by the server if the process dies)."""
    if db.dialect != "postgresql":
        yield
        return
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        parameters = {"ns": _RUN_LOCK_NAMESPACE, "org": organization_id}
        connection.execute(text("SELECT pg_advisory_lock(:ns, hashtext(:org))"), parameters)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:ns, hashtext(:org))"), parameters)


def _claim_of(
    attempt: PaymentAttempt,
    invoice_number: str,
    method: PaymentMethod,
    *,
    resent: bool,
    run_on: date,
) -> Claim:
    return Claim(
        attempt_id=attempt.id,
        invoice_id=attempt.invoice_id,
        invoice_number=invoice_number,
        customer_id=attempt.customer_id,
        attempt=attempt.attempt,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        payment_method_id=method.id,
        provider=method.provider,
        token=method.token,
        kind=method.kind,
        resent=resent,
        run_on=run_on,
    )


def pending_claims(db: Database, actor: Actor, run_on: date) -> list[Claim]:
    """Attempts claimed by a run that never recorded their outcome: to be sent again with the
    same amount, payment method and key, whatever happened to the invoice since."""
    with db.reading() as session:
        rows = session.execute(
            select(PaymentAttempt, Invoice.number, PaymentMethod)
            .join(Invoice, Invoice.id == PaymentAttempt.invoice_id)
            .join(PaymentMethod, PaymentMethod.id == PaymentAttempt.payment_method_id)
            .where(
                PaymentAttempt.organization_id == actor.organization_id,
                PaymentAttempt.status == PENDING,
            )
            .order_by(PaymentAttempt.invoice_id, PaymentAttempt.attempt)
        ).all()
        return [
            _claim_of(a, number or a.invoice_id, m, resent=True, run_on=run_on)
            for a, number, m in rows
        ]


def _still_due(invoice: Invoice, last: PaymentAttempt | None, as_of: date) -> bool:
    if invoice.status not in OPEN_STATES or invoice.amount_due_minor <= 0:
        return False
    if invoice.due_date is None or invoice.due_date > as_of or invoice.disputed_at is not None:
        return False
    if last is None:
        return True
    return (
        last.status in UNSUCCESSFUL
        and last.next_attempt_on is not None
        and last.next_attempt_on <= as_of
    )


def claim_due_invoices(
    db: Database,
    actor: Actor,
    as_of: date,
    *,
    providers: ProviderRegistry,
    after: str | None = None,
    limit: int = CLAIM_BATCH,
) -> tuple[list[Claim], list[dict[str, str]], str | None]:
    """Claim the next batch (invoice id order, after `after`) of invoices due for a charge:
    one short transaction that writes a pending attempt for each. Returns the claims, the
    invoices skipped and why, and where the next batch starts (None: no more)."""
    org_id = actor.organization_id
    last_number = (
        select(PaymentAttempt.invoice_id, func.max(PaymentAttempt.attempt).label("attempt"))
        .where(PaymentAttempt.organization_id == org_id)
        .group_by(PaymentAttempt.invoice_id)
        .subquery()
    )
    last = aliased(PaymentAttempt)
    default = aliased(PaymentMethod)
    candidates = (
        select(Invoice.id)
        .join(
            default,
            and_(
                default.organization_id == org_id,
                default.customer_id == Invoice.customer_id,
                default.is_default.is_(True),
                default.detached_at.is_(None),
            ),
        )
        .outerjoin(last_number, last_number.c.invoice_id == Invoice.id)
        .outerjoin(last, and_(last.invoice_id == Invoice.id, last.attempt == last_number.c.attempt))
        .where(
            Invoice.organization_id == org_id,
            Invoice.status.in_(OPEN_STATES),
            Invoice.amount_due_minor > 0,
            Invoice.due_date <= as_of,
            Invoice.disputed_at.is_(None),
            or_(
                last.id.is_(None),
                and_(last.status.in_(UNSUCCESSFUL), last.next_attempt_on <= as_of),
            ),
        )
        .order_by(Invoice.id)
        .limit(limit)
    )
    if after is not None:
        candidates = candidates.where(Invoice.id > after)
    claims: list[Claim] = []
    skipped: list[dict[str, str]] = []
    with db.transaction() as session:
        ids = list(session.scalars(candidates))
        if not ids:
            return [], [], None
        # Invoices being paid or claimed right now are left for the next run (SKIP LOCKED);
        # locking in id order matches how payments lock invoices.
        locked = list(
            session.scalars(
                select(Invoice)
                .where(Invoice.id.in_(ids))
                .order_by(Invoice.id)
                .with_for_update(skip_locked=True)
            )
        )
        latest: dict[str, PaymentAttempt] = {}
        for attempt in session.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.invoice_id.in_([i.id for i in locked]))
            .order_by(PaymentAttempt.invoice_id, PaymentAttempt.attempt)
        ):
            latest[attempt.invoice_id] = attempt
        methods = {
            m.customer_id: m
            for m in session.scalars(
                select(PaymentMethod).where(
                    PaymentMethod.organization_id == org_id,
                    PaymentMethod.customer_id.in_({i.customer_id for i in locked}),
                    PaymentMethod.is_default.is_(True),
                    PaymentMethod.detached_at.is_(None),
                )
            )
        }
        now = utcnow()
        for invoice in locked:
            previous = latest.get(invoice.id)
            method = methods.get(invoice.customer_id)
            if method is None or not _still_due(invoice, previous, as_of):
                continue
            number = invoice.number or invoice.id
            if method.provider not in providers:
                skipped.append(
                    {
                        "invoice_id": invoice.id,
                        "invoice_number": number,
                        "reason": f"payment provider {method.provider!r} is not configured",
                    }
                )
                continue
            attempt = PaymentAttempt(
                id=new_id("pat"),
                organization_id=org_id,
                invoice_id=invoice.id,
                customer_id=invoice.customer_id,
                payment_method_id=method.id,
                attempt=previous.attempt + 1 if previous else 1,
                amount_minor=invoice.amount_due_minor,
                currency=invoice.currency,
                status=PENDING,
                attempted_on=as_of,
                created_at=now,
            )
            session.add(attempt)
            audit(
                session,
                actor,
                "payment_attempt.claimed",
                "payment_attempt",
                attempt.id,
                {
                    "invoice": number,
                    "attempt": attempt.attempt,
                    "amount_minor": attempt.amount_minor,
                    "currency": attempt.currency,
                    "payment_method_id": method.id,
                },
                at=now,
                after=attempt,
            )
            claims.append(_claim_of(attempt, number, method, resent=False, run_on=as_of))
        session.flush()
    return claims, skipped, ids[-1] if len(ids) == limit else None


def send_charge(providers: ProviderRegistry, claim: Claim) -> ChargeResult | None:
    """Ask the provider; None when it gave no answer (the outcome is unknown, so the attempt
    stays pending and is sent again with the same key, never with a new one)."""
    provider = providers.get(claim.provider)
    try:
        return provider.charge(
            claim.token,
            claim.amount_minor,
            claim.currency,
            claim.idempotency_key,
            f"Invoice {claim.invoice_number}",
        )
    except ProviderUnavailable:
        return None
    except Exception:  # noqa: BLE001 - whatever a provider's client raises, the outcome is unknown
        return None


def _safe(value: str | None, limit: int) -> str | None:
    """Provider text is stored, so it must never carry a card number."""
    if value is None:
        return None
    if contains_card_number(value):
        return "[removed: looked like a card number]"
    return value[:limit]


def settle(db: Database, actor: Actor, providers: ProviderRegistry, claim: Claim) -> AttemptOutcome:
    """Charge one claimed attempt and record the answer."""
    if claim.provider not in providers:
        return _unsettled(claim, "provider_not_configured", "the payment provider is not set up")
    result = send_charge(providers, claim)
    if result is None:
        return _unsettled(claim, "no_answer", "the payment provider did not answer; sent again")
    try:
        return record_outcome(db, actor, claim, result)
    except ServiceError as error:
        # The provider's answer stands; the attempt stays pending and the next run records it.
        return _unsettled(claim, "not_recorded", error.detail)


def _unsettled(claim: Claim, code: str, message: str) -> AttemptOutcome:
    return AttemptOutcome(
        claim.attempt_id,
        claim.invoice_id,
        claim.invoice_number,
        claim.customer_id,
        claim.attempt,
        PENDING,
        claim.amount_minor,
        claim.currency,
        failure_code=code,
        failure_message=message,
        resent=claim.resent,
    )


def record_outcome(
    db: Database, actor: Actor, claim: Claim, result: ChargeResult
) -> AttemptOutcome:
    """The second short transaction: the provider's answer onto the pending attempt. Approved:
    a payment applied to the invoice, with its journal entry. Declined or failed: the day of
    the next try from the organisation's schedule. An attempt recorded already is left alone."""
    with db.transaction() as session:
        # The customer first (as payments lock), then the attempt.
        customer = get_owned(
            session, Customer, claim.customer_id, actor, lock=True, label="customer"
        )
        attempt = get_owned(
            session, PaymentAttempt, claim.attempt_id, actor, lock=True, label="payment attempt"
        )
        invoice = session.get(Invoice, attempt.invoice_id)
        assert invoice is not None
        number = invoice.number or invoice.id
        if attempt.status != PENDING:
            return _outcome(session, attempt, number, resent=claim.resent)
        pending = snapshot(
            attempt, "status", "completed_at", "payment_id", "failure_code", "next_attempt_on"
        )
        now = utcnow()
        attempt.completed_at = now
        attempt.provider_reference = _safe(result.provider_reference, 200)
        if result.status is ChargeStatus.APPROVED:
            still_open = invoice.status in OPEN_STATES and invoice.amount_due_minor > 0
            payment = apply_received(
                session,
                actor,
                customer,
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                received_on=attempt.attempted_on,
                method=PAYMENT_METHOD_OF_KIND.get(claim.kind, "other"),
                reference=f"automatic collection of {number}, attempt {attempt.attempt}",
                # Paid meanwhile (a bank transfer, say): the charge becomes customer credit.
                only=[invoice.id] if still_open else [],
                source="collection",
                payment_method_id=attempt.payment_method_id,
                provider_reference=attempt.provider_reference,
            )
            attempt.status = APPROVED
            attempt.payment_id = payment.id
            attempt.next_attempt_on = None
            detail: dict[str, Any] = {"payment": payment.number}
        else:
            org = session.get(Organization, actor.organization_id)
            assert org is not None
            first_on = session.scalar(
                select(PaymentAttempt.attempted_on).where(
                    PaymentAttempt.invoice_id == attempt.invoice_id, PaymentAttempt.attempt == 1
                )
            )
            attempt.status = DECLINED if result.status is ChargeStatus.DECLINED else FAILED
            attempt.failure_code = _safe(result.failure_code, 60) or attempt.status
            attempt.failure_message = _safe(result.failure_message, 300)
            # A pending attempt answered on a later run: the next try comes after that run.
            attempt.next_attempt_on = next_attempt_on(
                org.collection_retry_days or [],
                first_on or attempt.attempted_on,
                max(attempt.attempted_on, claim.run_on),
                attempt.attempt,
            )
            detail = {
                "failure_code": attempt.failure_code,
                "next_attempt_on": attempt.next_attempt_on.isoformat()
                if attempt.next_attempt_on
                else None,
            }
        audit(
            session,
            actor,
            f"payment_attempt.{attempt.status}",
            "payment_attempt",
            attempt.id,
            {
                "invoice": number,
                "attempt": attempt.attempt,
                "amount_minor": attempt.amount_minor,
                "currency": attempt.currency,
                "provider_reference": attempt.provider_reference,
                "resent": claim.resent,
                **detail,
            },
            at=now,
            before=pending,
            after=attempt,
        )
        if attempt.status != APPROVED:
            from tallybook.services.outbox import payment_failed

            payment_failed(session, attempt, invoice)
        session.flush()
        return _outcome(session, attempt, number, resent=claim.resent)


def _outcome(
    session: Session, attempt: PaymentAttempt, invoice_number: str, *, resent: bool
) -> AttemptOutcome:
    payment_number = (
        session.scalar(select(Payment.number).where(Payment.id == attempt.payment_id))
        if attempt.payment_id
        else None
    )
    return AttemptOutcome(
        attempt.id,
        attempt.invoice_id,
        invoice_number,
        attempt.customer_id,
        attempt.attempt,
        attempt.status,
        attempt.amount_minor,
        attempt.currency,
        failure_code=attempt.failure_code,
        failure_message=attempt.failure_message,
        next_attempt_on=attempt.next_attempt_on,
        payment_id=attempt.payment_id,
        payment_number=payment_number,
        resent=resent,
    )


# -- what the specialist looks at --------------------------------------------------------------


def _views(session: Session, attempts: Sequence[PaymentAttempt]) -> list[AttemptView]:
    invoice_ids = {a.invoice_id for a in attempts}
    customer_ids = {a.customer_id for a in attempts}
    numbers = {
        invoice_id: number
        for invoice_id, number in session.execute(
            select(Invoice.id, Invoice.number).where(Invoice.id.in_(invoice_ids))
        )
    }
    names = {
        customer_id: name
        for customer_id, name in session.execute(
            select(Customer.id, Customer.legal_name).where(Customer.id.in_(customer_ids))
        )
    }
    return [AttemptView(a, numbers.get(a.invoice_id), names.get(a.customer_id)) for a in attempts]


def _statuses(status: str | Sequence[str] | None) -> list[str]:
    if status is None or status == "":
        return []
    wanted = [s.strip() for s in status.split(",")] if isinstance(status, str) else list(status)
    for value in wanted:
        if value not in STATUSES:
            raise InvalidInput(
                f"status: {value!r} is not one of {', '.join(STATUSES)}", field="status"
            )
    return wanted


def list_attempts(
    db: Database,
    actor: Actor,
    *,
    status: str | Sequence[str] | None = None,
    customer_id: str | None = None,
    invoice_id: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[AttemptView], str | None]:
    """Payment attempts, filtered by status ("declined,failed"), customer or invoice; a
    customer or invoice of another organisation is 'not found'."""
    statuses = _statuses(status)
    with db.reading() as session:
        query = select(PaymentAttempt).where(
            PaymentAttempt.organization_id == actor.organization_id
        )
        if statuses:
            query = query.where(PaymentAttempt.status.in_(statuses))
        if customer_id:
            get_owned(session, Customer, customer_id, actor, label="customer")
            query = query.where(PaymentAttempt.customer_id == customer_id)
        if invoice_id:
            invoice = session.scalars(
                select(Invoice).where(
                    Invoice.organization_id == actor.organization_id,
                    or_(Invoice.id == invoice_id, Invoice.number == invoice_id),
                )
            ).first()
            if invoice is None:
                raise NotFound(f"invoice {invoice_id} not found")
            query = query.where(PaymentAttempt.invoice_id == invoice.id)
        rows, cursor = keyset_page(session, query, PaymentAttempt, limit, after)
        return _views(session, rows), cursor


def get_attempt(db: Database, actor: Actor, attempt_id: str) -> AttemptView:
    with db.reading() as session:
        attempt = get_owned(session, PaymentAttempt, attempt_id, actor, label="payment attempt")
        return _views(session, [attempt])[0]


def customer_collection(db: Database, actor: Actor, customer_id: str) -> CustomerCollection:
    """The customer's payment methods, the invoices whose automatic charge is failing (with
    the failure and the next retry, none when the schedule is used up) and recent attempts."""
    with db.reading() as session:
        customer = get_owned(session, Customer, customer_id, actor, label="customer")
        methods = list(
            session.scalars(
                select(PaymentMethod)
                .where(
                    PaymentMethod.organization_id == actor.organization_id,
                    PaymentMethod.customer_id == customer.id,
                    PaymentMethod.detached_at.is_(None),
                )
                .order_by(PaymentMethod.created_at, PaymentMethod.id)
            )
        )
        attempts = list(
            session.scalars(
                select(PaymentAttempt)
                .where(
                    PaymentAttempt.organization_id == actor.organization_id,
                    PaymentAttempt.customer_id == customer.id,
                )
                .order_by(PaymentAttempt.invoice_id, PaymentAttempt.attempt)
            )
        )
        latest: dict[str, PaymentAttempt] = {}
        for attempt in attempts:
            latest[attempt.invoice_id] = attempt
        open_ids = set(
            session.scalars(
                select(Invoice.id).where(
                    Invoice.id.in_(list(latest)),
                    Invoice.status.in_(OPEN_STATES),
                    Invoice.amount_due_minor > 0,
                )
            )
        )
        failing = sorted(
            (a for a in latest.values() if a.status in UNSUCCESSFUL and a.invoice_id in open_ids),
            key=lambda a: (a.next_attempt_on or date.max, a.invoice_id),
        )
        recent = sorted(attempts, key=lambda a: (a.created_at, a.attempt), reverse=True)[:20]
        return CustomerCollection(
            customer, methods, _views(session, failing), _views(session, recent)
        )
