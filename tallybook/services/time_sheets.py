"""Time sheets and service reports: entered or imported (CSV, XLSX), approved or rejected by a
manager other than who entered them, and billed.

Billing goes through pending charges, as milestones do: `bill_time` turns a customer's approved,
unbilled time into time-and-materials charges (one per contract, product or service and price),
priced at the contracted price version in force on the work day, else the product's per-unit
catalog price, else the rate given. The next billing run puts the charges on a draft; issuing
that draft records the invoice on each time entry (`billed_invoice_id`). Discarding the draft
releases the charges for the next run. Service reports are billed the same way.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tallybook.db.models import (
    Charge,
    Contract,
    Customer,
    Invoice,
    Price,
    Product,
    ServiceReport,
    TimeEntry,
    new_id,
)
from tallybook.formats.import_tables import ImportFileError
from tallybook.formats.time_sheets import (
    MAX_HOURS,
    ServiceReportData,
    TimeEntryData,
    read_service_reports,
    read_time_entries,
)
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.catalog import _decimal
from tallybook.services.contracts import contract_price_on

STATUSES = ("draft", "approved", "rejected")


@dataclass(frozen=True)
class _Kind:
    """What differs between time entries and service reports."""

    model: type
    entity: str  # audit entity
    label: str  # in messages
    date_column: str
    amount_column: str
    unit: str


TIME = _Kind(TimeEntry, "time_entry", "time entry", "work_date", "hours", "h")
REPORTS = _Kind(ServiceReport, "service_report", "service report", "service_date", "quantity", "")


@dataclass(frozen=True)
class SheetImport:
    """What an import created: the rows, how many came approved, the file's fingerprint."""

    format: str
    created: list[Any]
    approved: int
    file_sha256: str


# -- lookups ---------------------------------------------------------------------------------


def _customer(session: Session, actor: Actor, ref: str, where: str) -> Customer:
    customer = session.scalars(
        select(Customer).where(
            Customer.organization_id == actor.organization_id,
            (Customer.id == ref) | (Customer.external_id == ref),
        )
    ).first()
    if customer is None:
        raise InvalidInput(
            f"{where}customer: no customer with id or external id {ref!r}", field="customer"
        )
    return customer


def _contract(
    session: Session, actor: Actor, ref: str | None, customer: Customer, where: str
) -> Contract | None:
    if not ref:
        return None
    contract = session.scalars(
        select(Contract).where(
            Contract.organization_id == actor.organization_id,
            (Contract.id == ref) | (Contract.reference == ref),
        )
    ).first()
    if contract is None:
        raise InvalidInput(f"{where}contract: no contract {ref!r}", field="contract")
    if contract.customer_id != customer.id:
        raise InvalidInput(
            f"{where}contract: contract {contract.reference} is not {customer.legal_name}'s",
            field="contract",
        )
    return contract


def _product(session: Session, actor: Actor, ref: str | None, where: str) -> Product | None:
    if not ref:
        return None
    product = session.scalars(
        select(Product).where(
            Product.organization_id == actor.organization_id,
            (Product.id == ref) | (Product.code == ref),
        )
    ).first()
    if product is None:
        raise InvalidInput(f"{where}product: no product {ref!r}", field="product")
    return product


def _day(value: Any, name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if value is None or value == "":
        raise InvalidInput(f"{name}: is required", field=name)
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(
            f"{name}: {value!r} is not an ISO date (YYYY-MM-DD)", field=name
        ) from None


def _optional_day(value: Any, name: str) -> date | None:
    return None if value is None or value == "" else _day(value, name)


def _text(value: Any, limit: int) -> str | None:
    text = "" if value is None else str(value).strip()
    return text[:limit] or None


# -- time entries ------------------------------------------------------------------------------


def create_time_entry(db: Database, actor: Actor, values: dict[str, Any]) -> TimeEntry:
    """Record hours worked (a draft until a manager approves it)."""
    actor.require(*WRITERS, action="enter time")
    worker = _text(values.get("worker"), 200)
    if not worker:
        raise InvalidInput("worker: is required", field="worker")
    work_date = _day(values.get("work_date"), "work_date")
    hours = _hours(values.get("hours"), "hours")
    if not values.get("customer_id"):
        raise InvalidInput("customer_id: is required", field="customer_id")
    with db.transaction() as session:
        customer = get_owned(session, Customer, values["customer_id"], actor)
        contract = _contract(session, actor, values.get("contract_id"), customer, "")
        product = _product(session, actor, values.get("product_id"), "")
        entry = TimeEntry(
            id=new_id("te"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            contract_id=contract.id if contract else None,
            worker=worker,
            work_date=work_date,
            hours=hours,
            product_id=product.id if product else None,
            service_code=_text(values.get("service_code"), 100),
            description=_text(values.get("description"), 500),
            reference=_text(values.get("reference"), 200),
            status="draft",
            entered_by=actor.key_id,
            source="api",
            created_at=utcnow(),
        )
        session.add(entry)
        session.flush()
        audit(
            session,
            actor,
            "time_entry.created",
            "time_entry",
            entry.id,
            after=entry,
        )
    return entry


def _hours(value: Any, name: str) -> Decimal:
    if value is None or value == "":
        raise InvalidInput(f"{name}: is required", field=name)
    hours = _decimal(value, name)
    if hours <= 0:
        raise InvalidInput(f"{name}: {hours} must be more than 0", field=name)
    if hours > MAX_HOURS:
        raise InvalidInput(f"{name}: {hours} is more than the 24 hours of a day", field=name)
    return hours


def import_time_entries(
    db: Database,
    actor: Actor,
    data: bytes,
    *,
    file_name: str | None = None,
    format: str | None = None,
) -> SheetImport:
    """Import a time sheet: every row or none. Rows marked approved need a manager importing."""
    actor.require(*WRITERS, action="import time sheets")
    try:
        rows = read_time_entries(data, format=format, file_name=file_name)
    except ImportFileError as error:
        raise InvalidInput(str(error), field=error.field or "file") from None
    kind = _format_of(data, format, file_name)
    _check_approving_import(actor, [r.row for r in rows if r.approved], TIME)
    digest = hashlib.sha256(data).hexdigest()
    with db.transaction() as session:
        _refuse_reimport(session, actor, TIME, digest)
        cache = _Lookups(session, actor)
        now = utcnow()
        created = [_time_entry_row(cache, actor, row, kind, digest, file_name, now) for row in rows]
        session.add_all(created)
        session.flush()
        _audit_imported(session, actor, TIME, created, file_name, digest)
    return SheetImport(kind, created, sum(1 for e in created if e.status == "approved"), digest)


def _audit_imported(
    session: Session,
    actor: Actor,
    kind: _Kind,
    created: list[Any],
    file_name: str | None,
    digest: str,
) -> None:
    """One event per imported row (its values), naming the file it came from."""
    for row in created:
        audit(
            session,
            actor,
            f"{kind.entity}.imported",
            kind.entity,
            row.id,
            {"file": file_name, "sha256": digest},
            after=row,
        )


def _format_of(data: bytes, format: str | None, file_name: str | None) -> str:
    from tallybook.formats.import_tables import detect_format

    return (format or detect_format(data, file_name)).lower()


def _check_approving_import(actor: Actor, approved_rows: list[int], kind: _Kind) -> None:
    if approved_rows and actor.role not in MANAGERS:
        raise Forbidden(
            f"row {approved_rows[0]}, approved: only a billing manager or admin may import "
            f"{kind.label}s marked approved; import them unapproved and have a manager approve"
        )


def _refuse_reimport(session: Session, actor: Actor, kind: _Kind, digest: str) -> None:
    model = kind.model
    count = session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.organization_id == actor.organization_id, model.import_file_sha256 == digest)
    )
    if count:
        raise Conflict(
            f"this file was imported before ({count} {kind.label}s); nothing was imported",
            field="file",
        )


class _Lookups:
    """Customers, contracts and products of one import, each looked up once."""

    def __init__(self, session: Session, actor: Actor) -> None:
        self.session = session
        self.actor = actor
        self.customers: dict[str, Customer] = {}
        self.contracts: dict[tuple[str, str], Contract | None] = {}
        self.products: dict[str, Product | None] = {}

    def customer(self, ref: str, where: str) -> Customer:
        if ref not in self.customers:
            self.customers[ref] = _customer(self.session, self.actor, ref, where)
        return self.customers[ref]

    def contract(self, ref: str | None, customer: Customer, where: str) -> Contract | None:
        if not ref:
            return None
        key = (ref, customer.id)
        if key not in self.contracts:
            self.contracts[key] = _contract(self.session, self.actor, ref, customer, where)
        return self.contracts[key]

    def product(self, ref: str | None, where: str) -> Product | None:
        if not ref:
            return None
        if ref not in self.products:
            self.products[ref] = _product(self.session, self.actor, ref, where)
        return self.products[ref]


def _time_entry_row(
    cache: _Lookups,
    actor: Actor,
    row: TimeEntryData,
    kind: str,
    digest: str,
    file_name: str | None,
    now: datetime,
) -> TimeEntry:
    where = f"row {row.row}, "
    customer = cache.customer(row.customer, where)
    contract = cache.contract(row.contract, customer, where)
    product = cache.product(row.product, where)
    return TimeEntry(
        id=new_id("te"),
        organization_id=actor.organization_id,
        customer_id=customer.id,
        contract_id=contract.id if contract else None,
        worker=row.worker[:200],
        work_date=row.work_date,
        hours=row.hours,
        product_id=product.id if product else None,
        service_code=_text(row.service_code, 100),
        description=_text(row.description, 500),
        reference=_text(row.reference, 200),
        entered_by=actor.key_id,
        source=kind,
        import_file_sha256=digest,
        created_at=now,
        **_imported_status(actor, row.approved, file_name, now),
    )


def _imported_status(
    actor: Actor, approved: bool, file_name: str | None, now: datetime
) -> dict[str, Any]:
    if not approved:
        return {"status": "draft"}
    return {
        "status": "approved",
        "approved_by": actor.key_id,
        "approved_at": now,
        "review_note": f"approved in the imported file {file_name or ''}".strip(),
    }


# -- service reports --------------------------------------------------------------------------


def create_service_report(db: Database, actor: Actor, values: dict[str, Any]) -> ServiceReport:
    """Record a service delivered (a draft until a manager approves it)."""
    actor.require(*WRITERS, action="enter service reports")
    service_date = _day(values.get("service_date"), "service_date")
    quantity = _decimal(values.get("quantity", 1), "quantity")
    if quantity <= 0:
        raise InvalidInput(f"quantity: {quantity} must be more than 0", field="quantity")
    for name in ("customer_id", "product_id"):
        if not values.get(name):
            raise InvalidInput(f"{name}: is required", field=name)
    with db.transaction() as session:
        customer = get_owned(session, Customer, values["customer_id"], actor)
        contract = _contract(session, actor, values.get("contract_id"), customer, "")
        product = _product(session, actor, values["product_id"], "")
        report = ServiceReport(
            id=new_id("sr"),
            organization_id=actor.organization_id,
            customer_id=customer.id,
            contract_id=contract.id if contract else None,
            product_id=product.id,
            service_date=service_date,
            quantity=quantity,
            reference=_text(values.get("reference"), 200),
            description=_text(values.get("description"), 500),
            performed_by=_text(values.get("performed_by"), 200),
            status="draft",
            entered_by=actor.key_id,
            source="api",
            created_at=utcnow(),
        )
        session.add(report)
        session.flush()
        audit(
            session,
            actor,
            "service_report.created",
            "service_report",
            report.id,
            after=report,
        )
    return report


def import_service_reports(
    db: Database,
    actor: Actor,
    data: bytes,
    *,
    file_name: str | None = None,
    format: str | None = None,
) -> SheetImport:
    """Import service reports: every row or none. Rows marked approved need a manager."""
    actor.require(*WRITERS, action="import service reports")
    try:
        rows = read_service_reports(data, format=format, file_name=file_name)
    except ImportFileError as error:
        raise InvalidInput(str(error), field=error.field or "file") from None
    kind = _format_of(data, format, file_name)
    _check_approving_import(actor, [r.row for r in rows if r.approved], REPORTS)
    digest = hashlib.sha256(data).hexdigest()
    with db.transaction() as session:
        _refuse_reimport(session, actor, REPORTS, digest)
        cache = _Lookups(session, actor)
        now = utcnow()
        created = [_report_row(cache, actor, row, kind, digest, file_name, now) for row in rows]
        session.add_all(created)
        session.flush()
        _audit_imported(session, actor, REPORTS, created, file_name, digest)
    return SheetImport(kind, created, sum(1 for r in created if r.status == "approved"), digest)


def _report_row(
    cache: _Lookups,
    actor: Actor,
    row: ServiceReportData,
    kind: str,
    digest: str,
    file_name: str | None,
    now: datetime,
) -> ServiceReport:
    where = f"row {row.row}, "
    customer = cache.customer(row.customer, where)
    contract = cache.contract(row.contract, customer, where)
    product = cache.product(row.product, where)
    return ServiceReport(
        id=new_id("sr"),
        organization_id=actor.organization_id,
        customer_id=customer.id,
        contract_id=contract.id if contract else None,
        product_id=product.id,
        service_date=row.service_date,
        quantity=row.quantity,
        reference=_text(row.reference, 200),
        description=_text(row.description, 500),
        performed_by=_text(row.performed_by, 200),
        entered_by=actor.key_id,
        source=kind,
        import_file_sha256=digest,
        created_at=now,
        **_imported_status(actor, row.approved, file_name, now),
    )


# -- review: approve or reject ----------------------------------------------------------------


def approve_time_entries(
    db: Database, actor: Actor, entry_ids: list[str], note: str | None = None
) -> list[TimeEntry]:
    return _review(db, actor, TIME, entry_ids, "approved", note)


def reject_time_entries(
    db: Database, actor: Actor, entry_ids: list[str], reason: str
) -> list[TimeEntry]:
    return _review(db, actor, TIME, entry_ids, "rejected", reason)


def approve_service_reports(
    db: Database, actor: Actor, report_ids: list[str], note: str | None = None
) -> list[ServiceReport]:
    return _review(db, actor, REPORTS, report_ids, "approved", note)


def reject_service_reports(
    db: Database, actor: Actor, report_ids: list[str], reason: str
) -> list[ServiceReport]:
    return _review(db, actor, REPORTS, report_ids, "rejected", reason)


def _review(
    db: Database, actor: Actor, kind: _Kind, ids: list[str], status: str, note: str | None
) -> list[Any]:
    """Approve or reject drafts, all or none; never by the key that entered them."""
    verb = "approve" if status == "approved" else "reject"
    actor.require(*MANAGERS, action=f"{verb} {kind.label}s")
    if not ids:
        raise InvalidInput("ids: give at least one id", field="ids")
    if status == "rejected" and not (note or "").strip():
        raise InvalidInput(f"reason: say why the {kind.label} is rejected", field="reason")
    rows = []
    with db.transaction() as session:
        for row_id in dict.fromkeys(ids):
            row = get_owned(session, kind.model, row_id, actor, lock=True, label=kind.label)
            if row.status != "draft":
                raise Conflict(f"{kind.label} {row.id} is already {row.status}")
            if actor.key_id is not None and row.entered_by == actor.key_id:
                raise Forbidden(
                    f"{kind.label} {row.id} was entered with this key; another manager must "
                    f"{verb} it"
                )
            before = snapshot(row, "status", "approved_by", "approved_at", "review_note")
            row.status = status
            row.review_note = (note or "").strip() or None
            if status == "approved":
                row.approved_by = actor.key_id
                row.approved_at = utcnow()
            audit(
                session,
                actor,
                f"{kind.entity}.{status}",
                kind.entity,
                row.id,
                before=before,
                after=row,
            )
            rows.append(row)
    return rows


# -- lists --------------------------------------------------------------------------------------


def list_time_entries(
    db: Database, actor: Actor, **filters: Any
) -> tuple[list[TimeEntry], str | None]:
    """Time entries by customer, contract, period (date_from..date_to), status, billed."""
    return _list(db, actor, TIME, **filters)


def list_service_reports(
    db: Database, actor: Actor, **filters: Any
) -> tuple[list[ServiceReport], str | None]:
    return _list(db, actor, REPORTS, **filters)


def _list(
    db: Database,
    actor: Actor,
    kind: _Kind,
    *,
    customer_id: str | None = None,
    contract_id: str | None = None,
    date_from: Any = None,
    date_to: Any = None,
    status: str | None = None,
    billed: bool | None = None,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[Any], str | None]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(STATUSES)}", field="status")
    start = _optional_day(date_from, "date_from")
    end = _optional_day(date_to, "date_to")
    model = kind.model
    day = getattr(model, kind.date_column)
    with db.reading() as session:
        query = select(model).where(model.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(model.customer_id == customer_id)
        if contract_id:
            query = query.where(model.contract_id == contract_id)
        if start:
            query = query.where(day >= start)
        if end:
            query = query.where(day <= end)
        if status:
            query = query.where(model.status == status)
        if billed is True:
            query = query.where(model.billed_invoice_id.is_not(None))
        elif billed is False:
            query = query.where(model.billed_invoice_id.is_(None))
        return keyset_page(session, query, model, limit, after)


def get_time_entry(db: Database, actor: Actor, entry_id: str) -> TimeEntry:
    with db.reading() as session:
        return get_owned(session, TimeEntry, entry_id, actor, label="time entry")


def get_service_report(db: Database, actor: Actor, report_id: str) -> ServiceReport:
    with db.reading() as session:
        return get_owned(session, ServiceReport, report_id, actor, label="service report")


# -- billing ----------------------------------------------------------------------------------


def bill_time(
    db: Database,
    actor: Actor,
    customer_id: str,
    *,
    through: Any = None,
    rate: Any = None,
) -> list[Charge]:
    """Approved, unbilled time of a customer (up to `through`) as charges for the next invoice."""
    return _bill(db, actor, TIME, customer_id, through, rate)


def bill_service_reports(
    db: Database,
    actor: Actor,
    customer_id: str,
    *,
    through: Any = None,
    rate: Any = None,
) -> list[Charge]:
    """Approved, unbilled service reports of a customer as charges for the next invoice."""
    return _bill(db, actor, REPORTS, customer_id, through, rate)


def _bill(
    db: Database, actor: Actor, kind: _Kind, customer_id: str, through: Any, rate: Any
) -> list[Charge]:
    actor.require(*WRITERS, action=f"bill {kind.label}s")
    last_day = _optional_day(through, "through")
    fallback = None
    if rate not in (None, ""):
        fallback = _decimal(rate, "rate")
        if fallback < 0:
            raise InvalidInput("rate: must not be negative", field="rate")
    model = kind.model
    day_column = getattr(model, kind.date_column)
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, lock=True)
        query = select(model).where(
            model.organization_id == actor.organization_id,
            model.customer_id == customer.id,
            model.status == "approved",
            model.charge_id.is_(None),
            model.billed_invoice_id.is_(None),
        )
        if last_day is not None:
            query = query.where(day_column <= last_day)
        rows = list(session.scalars(query.order_by(day_column, model.id).with_for_update()))
        if not rows:
            raise Conflict(
                f"{customer.legal_name} has no approved, unbilled {kind.label}s"
                + (f" up to {last_day}" if last_day else "")
            )
        prices = _Prices(session, customer, fallback)
        groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
        for row in rows:
            unit_price, source = prices.of(row, kind)
            groups[(row.contract_id, row.product_id, _service(row), unit_price, source)].append(row)
        charges = []
        now = utcnow()
        for (contract_id, product_id, service, unit_price, source), members in groups.items():
            charge = _charge(
                session, actor, customer, kind, members, service, unit_price, source, now
            )
            charge.contract_id = contract_id
            charge.product_id = product_id
            session.add(charge)
            session.flush()
            for member in members:
                member.charge_id = charge.id
                audit(
                    session,
                    actor,
                    f"{kind.entity}.charged",
                    kind.entity,
                    member.id,
                    before={"charge_id": None},
                    after=member,
                )
            audit(
                session,
                actor,
                "charge.created",
                "charge",
                charge.id,
                {kind.entity: [m.id for m in members], "price_source": source},
                after=charge,
            )
            charges.append(charge)
    return charges


def _service(row: Any) -> str | None:
    return getattr(row, "service_code", None)


def _charge(
    session: Session,
    actor: Actor,
    customer: Customer,
    kind: _Kind,
    members: list[Any],
    service: str | None,
    unit_price: Decimal,
    source: str,
    now: datetime,
) -> Charge:
    quantity = sum((getattr(m, kind.amount_column) for m in members), Decimal(0))
    first = min(getattr(m, kind.date_column) for m in members)
    last = max(getattr(m, kind.date_column) for m in members)
    product = session.get(Product, members[0].product_id) if members[0].product_id else None
    name = product.name if product else (service or ("Time" if kind is TIME else "Service"))
    unit = f" {kind.unit}" if kind.unit else ""
    span = first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
    references = sorted({m.reference for m in members if m.reference})
    return Charge(
        id=new_id("chg"),
        organization_id=actor.organization_id,
        customer_id=customer.id,
        kind="time_and_materials",
        description=f"{name}: {format(quantity, 'f')}{unit} ({span})"[:500],
        currency=customer.currency,
        quantity=quantity,
        unit_price=unit_price,
        service_date=last,
        billable_at=now,
        details={
            "reference": ", ".join(references)[:500] or None,
            "quantity_source": f"{len(members)} approved {kind.label}s, {span}",
            "price_source": source,
            f"{kind.entity}_ids": [m.id for m in members],
        },
        created_at=now,
    )


class _Prices:
    """The unit price of a time entry or service report: contracted price version on its day,
    else the product's per-unit catalog price in the customer's currency, else the rate given."""

    def __init__(self, session: Session, customer: Customer, fallback: Decimal | None) -> None:
        self.session = session
        self.customer = customer
        self.fallback = fallback

    def of(self, row: Any, kind: _Kind) -> tuple[Decimal, str]:
        day = getattr(row, kind.date_column)
        if row.contract_id and row.product_id:
            version = contract_price_on(self.session, row.contract_id, row.product_id, day)
            if version is not None:
                return version.unit_price, f"contract price {version.id} from {version.valid_from}"
        if row.product_id:
            catalog = self._catalog(row.product_id, day)
            if catalog is not None:
                return catalog
        if self.fallback is not None:
            return self.fallback, "rate given when billing"
        raise InvalidInput(
            f"rate: {kind.label} {row.id} ({day}) has no contracted or per-unit catalog price; "
            "give a rate",
            field="rate",
        )

    def _catalog(self, product_id: str, day: date) -> tuple[Decimal, str] | None:
        end_of_day = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
        prices = [
            price
            for price in self.session.scalars(
                select(Price)
                .where(
                    Price.organization_id == self.customer.organization_id,
                    Price.product_id == product_id,
                    Price.currency == self.customer.currency,
                    Price.effective_from < end_of_day,
                )
                .order_by(Price.code, Price.version)
            )
            if (price.terms or {}).get("model") == "per_unit"
        ]
        latest: dict[str, Price] = {}
        for price in prices:
            latest[price.code] = price
        if len(latest) != 1:
            return None  # none, or several price codes: which one is not ours to guess
        price = next(iter(latest.values()))
        return Decimal(str(price.terms["amount"])), f"catalog price {price.code} v{price.version}"


def mark_billed(session: Session, actor: Actor, invoice: Invoice) -> None:
    """Issuing an invoice records it on the time entries and service reports its charges bill."""
    charges = select(Charge.id).where(
        Charge.organization_id == invoice.organization_id, Charge.invoice_id == invoice.id
    )
    for kind in (TIME, REPORTS):
        model = kind.model
        for row in session.scalars(
            select(model).where(
                model.organization_id == invoice.organization_id, model.charge_id.in_(charges)
            )
        ):
            row.billed_invoice_id = invoice.id
            audit(
                session,
                actor,
                f"{kind.entity}.billed",
                kind.entity,
                row.id,
                {"invoice": invoice.number},
                before={"billed_invoice_id": None},
                after=row,
            )


def release_billed(session: Session, actor: Actor, invoice: Invoice) -> None:
    """A voided invoice billed nothing: its time entries and service reports are unbilled
    again and can be billed anew (`bill_time`); the void invoice keeps its charges."""
    for kind in (TIME, REPORTS):
        model = kind.model
        for row in session.scalars(
            select(model).where(
                model.organization_id == invoice.organization_id,
                model.billed_invoice_id == invoice.id,
            )
        ):
            before = snapshot(row, "billed_invoice_id", "charge_id")
            row.billed_invoice_id = None
            row.charge_id = None
            audit(
                session,
                actor,
                f"{kind.entity}.released",
                kind.entity,
                row.id,
                {"invoice": invoice.number, "reason": "invoice voided"},
                before=before,
                after=row,
            )


def unbilled_hours(session: Session, organization_id: str, customer_id: str) -> Decimal:
    """Approved hours of a customer not yet on an issued invoice (for billing health)."""
    hours = session.scalars(
        select(TimeEntry.hours).where(
            TimeEntry.organization_id == organization_id,
            TimeEntry.customer_id == customer_id,
            TimeEntry.status == "approved",
            TimeEntry.billed_invoice_id.is_(None),
        )
    )
    return sum(hours, Decimal(0))
