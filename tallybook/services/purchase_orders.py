"""Customers' purchase orders: create, list, show what is left, close or cancel; import them
from CSV, XLSX and UBL 2.1 Order files; and the balance issued invoices use up.

An issued invoice quoting a PO's number consumes it line by line (matched by product, else by
description), net of tax; a credit note gives back what it credits and a void gives back
everything. Issuing never fails because of a PO problem: verification decides what blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core.money import MoneyError, is_currency, to_minor_exact
from tallybook.core.periods import local_date
from tallybook.db.models import (
    Contract,
    Customer,
    Invoice,
    InvoiceLine,
    Product,
    PurchaseOrder,
    PurchaseOrderConsumption,
    PurchaseOrderLine,
    new_id,
)
from tallybook.formats.import_tables import ImportFileError
from tallybook.formats.purchase_orders import BuyerParty, PurchaseOrderData, read_purchase_orders
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.catalog import _decimal

STATUSES = ("open", "closed", "cancelled")


@dataclass(frozen=True)
class PurchaseOrderView:
    """A purchase order with its lines and the movements of its balance."""

    order: PurchaseOrder
    lines: list[PurchaseOrderLine]
    consumptions: list[PurchaseOrderConsumption] = field(default_factory=list)


@dataclass(frozen=True)
class PurchaseOrderImport:
    format: str
    created: list[PurchaseOrderView]
    unchanged: list[PurchaseOrderView]


def remaining_minor(order: PurchaseOrder) -> int | None:
    """What is left under the ceiling (negative when invoices went over); None: no ceiling."""
    return None if order.ceiling_minor is None else order.ceiling_minor - order.consumed_minor


# -- the order as checked values --------------------------------------------------------------


@dataclass(frozen=True)
class _LineSpec:
    position: int
    product_id: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    unit_code: str | None


@dataclass(frozen=True)
class _OrderSpec:
    customer_id: str
    number: str
    currency: str
    issue_date: date | None
    valid_from: date
    valid_to: date | None
    ceiling_minor: int | None
    contract_id: str | None
    buyer_reference: str | None
    notes: str | None
    lines: tuple[_LineSpec, ...]

    def terms(self) -> dict[str, Any]:
        """What must be equal for a re-imported order to be the same order."""
        return {
            "currency": self.currency,
            "issue_date": self.issue_date,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "ceiling": self.ceiling_minor,
            "contract": self.contract_id,
            "buyer_reference": self.buyer_reference,
            "lines": [
                (
                    line.position,
                    line.product_id,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.unit_code,
                )
                for line in self.lines
            ],
        }


def _terms_of(order: PurchaseOrder, lines: list[PurchaseOrderLine]) -> dict[str, Any]:
    return {
        "currency": order.currency,
        "issue_date": order.issue_date,
        "valid_from": order.valid_from,
        "valid_to": order.valid_to,
        "ceiling": order.ceiling_minor,
        "contract": order.contract_id,
        "buyer_reference": order.buyer_reference,
        "lines": [
            (
                line.position,
                line.product_id,
                line.description,
                line.quantity,
                line.unit_price,
                line.unit_code,
            )
            for line in lines
        ],
    }


def _spec(
    session: Session,
    actor: Actor,
    customer: Customer,
    values: dict[str, Any],
    *,
    where: str = "",
) -> _OrderSpec:
    """Check an order's values (API fields) against the customer, catalog and contracts."""
    at = f"{where}, " if where else ""
    number = str(values.get("number") or "").strip()
    if not number:
        raise InvalidInput(f"{at}number: is required", field="number")
    if len(number) > 100:
        raise InvalidInput(f"{at}number: longer than 100 characters", field="number")
    currency = str(values.get("currency") or customer.currency).strip().upper()
    if not is_currency(currency):
        raise InvalidInput(f"{at}currency: {currency!r} is not an ISO 4217 code", field="currency")
    issue_date = _day(values.get("issue_date"), f"{at}issue_date")
    valid_from = (
        _day(values.get("valid_from"), f"{at}valid_from")
        or issue_date
        or local_date(utcnow(), customer.timezone)
    )
    valid_to = _day(values.get("valid_to"), f"{at}valid_to")
    if valid_to is not None and valid_to < valid_from:
        raise InvalidInput(
            f"{at}valid_to: {valid_to} is before valid_from {valid_from}", field="valid_to"
        )
    ceiling_minor = None
    if values.get("ceiling") not in (None, ""):
        ceiling = _number(values["ceiling"], f"{at}ceiling", "ceiling")
        if ceiling < 0:
            raise InvalidInput(f"{at}ceiling: must not be negative", field="ceiling")
        try:
            ceiling_minor = to_minor_exact(ceiling, currency, f"{at}ceiling")
        except MoneyError as error:
            raise InvalidInput(str(error), field="ceiling") from None
    contract_id = None
    if values.get("contract"):
        contract = _contract(session, actor, str(values["contract"]), customer)
        if contract is None:
            raise InvalidInput(
                f"{at}contract: no contract {values['contract']!r} of this customer",
                field="contract",
            )
        contract_id = contract.id
    lines = []
    positions: set[int] = set()
    for index, line in enumerate(values.get("lines") or [], start=1):
        prefix = line.get("where") or f"{at}lines[{index - 1}]"
        product = None
        if line.get("product"):
            product = _product(session, actor, str(line["product"]))
            if product is None:
                raise InvalidInput(
                    f"{prefix}, product: no product {line['product']!r}", field="product"
                )
        description = str(line.get("description") or "").strip() or (
            product.name if product else ""
        )
        if not description:
            raise InvalidInput(
                f"{prefix}, description: give a product or a description", field="description"
            )
        quantity = _number(line.get("quantity"), f"{prefix}, quantity", "quantity")
        if quantity <= 0:
            raise InvalidInput(
                f"{prefix}, quantity: {quantity} must be more than 0", field="quantity"
            )
        unit_price = _number(line.get("unit_price"), f"{prefix}, unit_price", "unit_price")
        if unit_price < 0:
            raise InvalidInput(f"{prefix}, unit_price: must not be negative", field="unit_price")
        position = _position(line.get("position"), index, prefix)
        if position in positions:
            raise InvalidInput(f"{prefix}, position: line {position} appears twice", field="lines")
        positions.add(position)
        lines.append(
            _LineSpec(
                position=position,
                product_id=product.id if product else None,
                description=description[:500],
                quantity=quantity,
                unit_price=unit_price,
                unit_code=(str(line["unit_code"]).strip()[:10] or None)
                if line.get("unit_code")
                else None,
            )
        )
    if not lines and ceiling_minor is None:
        raise InvalidInput(f"{at}lines: give lines, a ceiling, or both", field="lines")
    return _OrderSpec(
        customer_id=customer.id,
        number=number,
        currency=currency,
        issue_date=issue_date,
        valid_from=valid_from,
        valid_to=valid_to,
        ceiling_minor=ceiling_minor,
        contract_id=contract_id,
        buyer_reference=(str(values["buyer_reference"]).strip() or None)
        if values.get("buyer_reference")
        else None,
        notes=values.get("notes") or None,
        lines=tuple(sorted(lines, key=lambda line: line.position)),
    )


def _number(value: Any, label: str, name: str) -> Decimal:
    if value is None or value == "":
        raise InvalidInput(f"{label}: is required", field=name)
    try:
        return _decimal(value, label)
    except InvalidInput as error:
        raise InvalidInput(error.detail, field=name) from None


def _position(value: Any, index: int, prefix: str) -> int:
    if value is None or value == "":
        return index
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(
            f"{prefix}, position: {value!r} is not a positive whole number", field="lines"
        )
    return int(text)


def _day(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(
            f"{name}: {value!r} is not an ISO date (YYYY-MM-DD)", field=name.rsplit(" ", 1)[-1]
        ) from None


def _product(session: Session, actor: Actor, ref: str) -> Product | None:
    return session.scalars(
        select(Product).where(
            Product.organization_id == actor.organization_id,
            (Product.id == ref) | (Product.code == ref),
        )
    ).first()


def _contract(session: Session, actor: Actor, ref: str, customer: Customer) -> Contract | None:
    return session.scalars(
        select(Contract).where(
            Contract.organization_id == actor.organization_id,
            Contract.customer_id == customer.id,
            (Contract.id == ref) | (Contract.reference == ref),
        )
    ).first()


def _write(session: Session, actor: Actor, spec: _OrderSpec, source: str) -> PurchaseOrderView:
    order = PurchaseOrder(
        id=new_id("po"),
        organization_id=actor.organization_id,
        customer_id=spec.customer_id,
        contract_id=spec.contract_id,
        number=spec.number,
        currency=spec.currency,
        issue_date=spec.issue_date,
        valid_from=spec.valid_from,
        valid_to=spec.valid_to,
        ceiling_minor=spec.ceiling_minor,
        consumed_minor=0,
        status="open",
        buyer_reference=spec.buyer_reference,
        notes=spec.notes,
        source=source,
        created_by=actor.key_id,
        created_at=utcnow(),
    )
    session.add(order)
    lines = [
        PurchaseOrderLine(
            id=new_id("pol"),
            organization_id=actor.organization_id,
            purchase_order_id=order.id,
            position=line.position,
            product_id=line.product_id,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            unit_code=line.unit_code,
            consumed_quantity=Decimal(0),
            consumed_minor=0,
        )
        for line in spec.lines
    ]
    session.add_all(lines)
    session.flush()
    audit(
        session,
        actor,
        "purchase_order.created",
        "purchase_order",
        order.id,
        {
            "lines": [
                {
                    "position": line.position,
                    "product_id": line.product_id,
                    "description": line.description,
                    "quantity": format(line.quantity, "f"),
                    "unit_price": format(line.unit_price, "f"),
                }
                for line in lines
            ]
        },
        after=order,
    )
    return PurchaseOrderView(order, lines, [])


def _existing(
    session: Session, actor: Actor, customer_id: str, number: str
) -> PurchaseOrder | None:
    return session.scalars(
        select(PurchaseOrder).where(
            PurchaseOrder.organization_id == actor.organization_id,
            PurchaseOrder.customer_id == customer_id,
            PurchaseOrder.number == number,
        )
    ).first()


def _lines_of(session: Session, order_id: str, *, lock: bool = False) -> list[PurchaseOrderLine]:
    query = (
        select(PurchaseOrderLine)
        .where(PurchaseOrderLine.purchase_order_id == order_id)
        .order_by(PurchaseOrderLine.position)
    )
    if lock:
        query = query.with_for_update()
    return list(session.scalars(query))


# -- use cases --------------------------------------------------------------------------------


def create_purchase_order(db: Database, actor: Actor, values: dict[str, Any]) -> PurchaseOrderView:
    """Record a customer's PO: number, validity, currency, ceiling and lines (product or
    description, quantity, unit price)."""
    actor.require(*WRITERS, action="record purchase orders")
    if not values.get("customer_id"):
        raise InvalidInput("customer_id: is required", field="customer_id")
    try:
        with db.transaction() as session:
            customer = get_owned(session, Customer, values["customer_id"], actor)
            spec = _spec(session, actor, customer, values)
            if _existing(session, actor, customer.id, spec.number) is not None:
                raise Conflict(
                    f"number: the customer already has purchase order {spec.number!r}",
                    field="number",
                )
            return _write(session, actor, spec, "api")
    except IntegrityError:
        raise Conflict(
            f"number: the customer already has purchase order {values.get('number')!r}",
            field="number",
        ) from None


def import_purchase_orders(
    db: Database,
    actor: Actor,
    data: bytes,
    *,
    file_name: str | None = None,
    format: str | None = None,
    customer_id: str | None = None,
) -> PurchaseOrderImport:
    """Import every PO of a CSV, XLSX or UBL Order file, or none. A PO number the customer
    already has is left alone when the file says exactly the same, else the import is refused."""
    actor.require(*WRITERS, action="import purchase orders")
    try:
        kind, orders = read_purchase_orders(data, format=format, file_name=file_name)
    except ImportFileError as error:
        raise InvalidInput(str(error), field=error.field or "file") from None
    created: list[PurchaseOrderView] = []
    unchanged: list[PurchaseOrderView] = []
    try:
        with db.transaction() as session:
            seen: set[tuple[str, str]] = set()
            for data_order in orders:
                customer = _importing_customer(session, actor, data_order, customer_id)
                spec = _spec(
                    session, actor, customer, _values_of(data_order), where=data_order.where
                )
                key = (customer.id, spec.number)
                if key in seen:
                    raise InvalidInput(
                        f"{data_order.where}: purchase order {spec.number} appears twice",
                        field="po_number",
                    )
                seen.add(key)
                existing = _existing(session, actor, customer.id, spec.number)
                if existing is None:
                    created.append(_write(session, actor, spec, kind))
                    continue
                lines = _lines_of(session, existing.id)
                difference = _first_difference(_terms_of(existing, lines), spec.terms())
                if difference is not None:
                    raise Conflict(
                        f"{data_order.where}: purchase order {spec.number} of "
                        f"{customer.legal_name} was imported before with another {difference}; "
                        "nothing was imported (change the existing PO, or give a new number)",
                        field=difference,
                    )
                unchanged.append(PurchaseOrderView(existing, lines, []))
    except IntegrityError:
        raise Conflict(
            "a purchase order of this file was recorded at the same time; import it again"
        ) from None
    return PurchaseOrderImport(kind, created, unchanged)


def _first_difference(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    for key, value in before.items():
        if key == "lines":
            if len(value) != len(after[key]):
                return "number of lines"
            for old, new in zip(value, after[key], strict=True):
                if old != new:
                    return f"line {new[0]}"
        elif value != after[key]:
            return key
    return None


def _values_of(order: PurchaseOrderData) -> dict[str, Any]:
    return {
        "number": order.number,
        "currency": order.currency,
        "issue_date": order.issue_date,
        "valid_from": order.valid_from,
        "valid_to": order.valid_to,
        "ceiling": order.ceiling,
        "contract": order.contract,
        "buyer_reference": order.buyer_reference,
        "notes": order.notes,
        "lines": [
            {
                "position": line.position,
                "product": line.product,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "unit_code": line.unit_code,
                "where": line.where,
            }
            for line in order.lines
        ],
    }


def _importing_customer(
    session: Session, actor: Actor, order: PurchaseOrderData, customer_id: str | None
) -> Customer:
    """The customer a file's PO belongs to: the one given, else its customer column (id or
    external id), else the UBL buyer (endpoint, party id, VAT id)."""
    if customer_id:
        return get_owned(session, Customer, customer_id, actor)
    if order.customer:
        customer = session.scalars(
            select(Customer).where(
                Customer.organization_id == actor.organization_id,
                (Customer.id == order.customer) | (Customer.external_id == order.customer),
            )
        ).first()
        if customer is None:
            raise InvalidInput(
                f"{order.where}, customer: no customer with id or external id {order.customer!r}",
                field="customer",
            )
        return customer
    if order.buyer is not None:
        customer = _customer_of_buyer(session, actor, order.buyer)
        if customer is not None:
            return customer
        raise InvalidInput(
            f"/Order/cac:BuyerCustomerParty: no customer matches the buyer "
            f"{order.buyer.name or ''} (endpoint {order.buyer.endpoint_id}, ids "
            f"{', '.join(order.buyer.party_ids) or '-'}, tax ids "
            f"{', '.join(order.buyer.tax_ids) or '-'}); give the customer",
            field="customer_id",
        )
    raise InvalidInput(f"{order.where}, customer: is required", field="customer")


def _compact(value: str | None) -> str:
    return re.sub(r"[\s.\-]", "", value or "").upper()


def _customer_of_buyer(session: Session, actor: Actor, buyer: BuyerParty) -> Customer | None:
    customers = list(
        session.scalars(
            select(Customer).where(
                Customer.organization_id == actor.organization_id,
                Customer.archived_at.is_(None),
            )
        )
    )
    if buyer.endpoint_id:
        for customer in customers:
            if customer.electronic_address and _compact(customer.electronic_address) == _compact(
                buyer.endpoint_id
            ):
                return customer
    wanted = {_compact(i) for i in buyer.party_ids}
    for customer in customers:
        if customer.external_id and _compact(customer.external_id) in wanted:
            return customer
    tax_ids = {_compact(i) for i in buyer.tax_ids}
    for customer in customers:
        for tax_id in customer.tax_ids or []:
            value = tax_id.get("value") if isinstance(tax_id, dict) else tax_id
            if _compact(str(value)) in tax_ids:
                return customer
    return None


def list_purchase_orders(
    db: Database,
    actor: Actor,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[PurchaseOrder], str | None]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(STATUSES)}", field="status")
    with db.reading() as session:
        query = select(PurchaseOrder).where(PurchaseOrder.organization_id == actor.organization_id)
        if customer_id:
            query = query.where(PurchaseOrder.customer_id == customer_id)
        if status:
            query = query.where(PurchaseOrder.status == status)
        return keyset_page(session, query, PurchaseOrder, limit, after)


def get_purchase_order(
    db: Database, actor: Actor, ref: str, *, customer_id: str | None = None
) -> PurchaseOrderView:
    """A PO by id, or by number (with the customer when two customers use the same number)."""
    with db.reading() as session:
        order = _find(session, actor, ref, customer_id)
        consumptions = list(
            session.scalars(
                select(PurchaseOrderConsumption)
                .where(PurchaseOrderConsumption.purchase_order_id == order.id)
                .order_by(PurchaseOrderConsumption.created_at, PurchaseOrderConsumption.id)
            )
        )
        return PurchaseOrderView(order, _lines_of(session, order.id), consumptions)


def _find(
    session: Session, actor: Actor, ref: str, customer_id: str | None, *, lock: bool = False
) -> PurchaseOrder:
    query = select(PurchaseOrder).where(
        PurchaseOrder.organization_id == actor.organization_id,
        (PurchaseOrder.id == ref) | (PurchaseOrder.number == ref),
    )
    if customer_id:
        query = query.where(PurchaseOrder.customer_id == customer_id)
    if lock:
        query = query.with_for_update()
    found = list(session.scalars(query.limit(2)))
    if not found:
        raise NotFound(f"purchase order {ref} not found")
    if len(found) > 1:
        raise Conflict(
            f"purchase order number {ref} is used by several customers; give its id or the "
            "customer",
            field="customer_id",
        )
    return found[0]


def close_purchase_order(
    db: Database, actor: Actor, ref: str, reason: str | None = None
) -> PurchaseOrder:
    """No more invoices against it: what is left stays unused."""
    return _finish(db, actor, ref, "closed", reason)


def cancel_purchase_order(db: Database, actor: Actor, ref: str, reason: str) -> PurchaseOrder:
    """The customer withdrew the PO before anything was invoiced against it."""
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why the purchase order is cancelled", field="reason")
    return _finish(db, actor, ref, "cancelled", reason)


def _finish(db: Database, actor: Actor, ref: str, status: str, reason: str | None) -> PurchaseOrder:
    actor.require(*WRITERS, action=f"mark purchase orders {status}")
    with db.transaction() as session:
        order = _find(session, actor, ref, None, lock=True)
        if order.status != "open":
            raise Conflict(f"purchase order {order.number} is already {order.status}")
        if status == "cancelled":
            used = session.scalar(
                select(func.count())
                .select_from(PurchaseOrderConsumption)
                .where(PurchaseOrderConsumption.purchase_order_id == order.id)
            )
            if used:
                raise Conflict(
                    f"purchase order {order.number} has been invoiced against; close it instead"
                )
        before = snapshot(order, "status", "closed_at", "close_reason")
        order.status = status
        order.closed_at = utcnow()
        order.close_reason = (reason or "").strip() or None
        audit(
            session,
            actor,
            f"purchase_order.{status}",
            "purchase_order",
            order.id,
            {"number": order.number},
            before=before,
            after=order,
        )
    return order


# -- consumption: called inside issue_invoice, void_invoice and create_credit_note -------------


def _norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _match(
    line: InvoiceLine, po_lines: list[PurchaseOrderLine], quantity: Decimal
) -> PurchaseOrderLine | None:
    """The PO line an invoice line bills: same product, else same description; among several,
    the first with enough left, else the first with anything left, else the first."""
    candidates = [p for p in po_lines if line.product_id and p.product_id == line.product_id]
    if not candidates:
        wanted = _norm(line.description)
        candidates = [p for p in po_lines if _norm(p.description) == wanted]
    if not candidates:
        return None
    for candidate in candidates:
        if candidate.quantity - candidate.consumed_quantity >= quantity:
            return candidate
    for candidate in candidates:
        if candidate.quantity > candidate.consumed_quantity:
            return candidate
    return candidates[0]


def consume_for_invoice(session: Session, actor: Actor, invoice: Invoice) -> PurchaseOrder | None:
    """Record what an invoice being issued uses of the PO its po_number names (same customer,
    same currency), in the issuing transaction. Nothing is refused here: an unknown, expired or
    exceeded PO is for verification to flag."""
    number = (invoice.po_number or "").strip()
    if not number:
        return None
    order = session.scalars(
        select(PurchaseOrder)
        .where(
            PurchaseOrder.organization_id == invoice.organization_id,
            PurchaseOrder.customer_id == invoice.customer_id,
            PurchaseOrder.number == number,
        )
        .with_for_update()
    ).first()
    if order is None or order.currency != invoice.currency:
        return None
    po_lines = _lines_of(session, order.id, lock=True)
    now = utcnow()
    total = 0
    for line in session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    ):
        amount = line.subtotal_minor - line.discount_minor
        if amount == 0:
            continue
        # A negative line (a credit for unused time) gives back; its quantity does too.
        quantity = line.quantity if amount > 0 else -line.quantity
        po_line = _match(line, po_lines, quantity)
        if po_line is not None:
            po_line.consumed_quantity += quantity
            po_line.consumed_minor += amount
        order.consumed_minor += amount
        total += amount
        session.add(
            PurchaseOrderConsumption(
                id=new_id("poc"),
                organization_id=invoice.organization_id,
                purchase_order_id=order.id,
                purchase_order_line_id=po_line.id if po_line else None,
                invoice_id=invoice.id,
                invoice_line_id=line.id,
                credit_note_id=None,
                kind="invoice_issued",
                quantity=quantity,
                amount_minor=amount,
                created_at=now,
            )
        )
    session.flush()
    audit(
        session,
        actor,
        "purchase_order.consumed",
        "purchase_order",
        order.id,
        {"invoice": invoice.number or invoice.id, "amount_minor": total},
        before={"consumed_minor": order.consumed_minor - total},
        after=order,
    )
    return order


def _outstanding(
    session: Session, invoice_id: str
) -> dict[str | None, tuple[str, str | None, Decimal, int]]:
    """Per invoice line: (PO, PO line, quantity, amount) the invoice still uses."""
    result: dict[str | None, tuple[str, str | None, Decimal, int]] = {}
    for row in session.scalars(
        select(PurchaseOrderConsumption)
        .where(PurchaseOrderConsumption.invoice_id == invoice_id)
        .order_by(PurchaseOrderConsumption.created_at, PurchaseOrderConsumption.id)
    ):
        _, _, quantity, amount = result.get(
            row.invoice_line_id, (row.purchase_order_id, None, Decimal(0), 0)
        )
        result[row.invoice_line_id] = (
            row.purchase_order_id,
            row.purchase_order_line_id,
            quantity + row.quantity,
            amount + row.amount_minor,
        )
    return result


def _give_back(
    session: Session,
    invoice: Invoice,
    invoice_line_id: str | None,
    used: tuple[str, str | None, Decimal, int],
    quantity: Decimal,
    amount: int,
    kind: str,
    credit_note_id: str | None,
) -> int:
    order_id, po_line_id, _, _ = used
    order = session.get(PurchaseOrder, order_id, with_for_update=True)
    order.consumed_minor -= amount
    if po_line_id is not None:
        po_line = session.get(PurchaseOrderLine, po_line_id, with_for_update=True)
        po_line.consumed_quantity -= quantity
        po_line.consumed_minor -= amount
    session.add(
        PurchaseOrderConsumption(
            id=new_id("poc"),
            organization_id=invoice.organization_id,
            purchase_order_id=order_id,
            purchase_order_line_id=po_line_id,
            invoice_id=invoice.id,
            invoice_line_id=invoice_line_id,
            credit_note_id=credit_note_id,
            kind=kind,
            quantity=-quantity,
            amount_minor=-amount,
            created_at=utcnow(),
        )
    )
    return amount


def give_back_for_void(session: Session, actor: Actor, invoice: Invoice) -> int:
    """A voided invoice uses nothing any more: give back all it still uses."""
    outstanding = _outstanding(session, invoice.id)
    given = 0
    for line_id, used in outstanding.items():
        _, _, quantity, amount = used
        if quantity or amount:
            given += _give_back(
                session, invoice, line_id, used, quantity, amount, "invoice_voided", None
            )
    if outstanding:
        session.flush()
        _audit_give_back(session, actor, invoice, outstanding, given, "invoice_voided")
    return given


def _audit_give_back(
    session: Session,
    actor: Actor,
    invoice: Invoice,
    outstanding: dict[str | None, tuple[str, str | None, Decimal, int]],
    given: int,
    by: str,
) -> None:
    order = session.get(PurchaseOrder, next(iter(outstanding.values()))[0])
    audit(
        session,
        actor,
        "purchase_order.given_back",
        "purchase_order",
        order.id,
        {"invoice": invoice.number or invoice.id, "amount_minor": given, "by": by},
        before={"consumed_minor": order.consumed_minor + given},
        after=order,
    )


def _toward(value: Decimal | int, limit: Decimal | int) -> Decimal | int:
    """`value`, but no further from zero than `limit` and only on its side of zero."""
    if limit > 0:
        return max(min(value, limit), 0)
    if limit < 0:
        return min(max(value, limit), 0)
    return 0 * value


def give_back_for_credit_note(
    session: Session,
    actor: Actor,
    invoice: Invoice,
    credit_note_id: str,
    credited: list[tuple[str, Decimal, int]],
) -> int:
    """A credit note gives back what it credits: per invoice line (id, quantity, net amount),
    never more than the line still uses of the PO."""
    outstanding = _outstanding(session, invoice.id)
    if not outstanding:
        return 0
    given = 0
    for line_id, quantity, amount in credited:
        used = outstanding.get(line_id)
        if used is None:
            continue
        _, _, used_quantity, used_amount = used
        back_amount = int(_toward(amount, used_amount))
        # Quantities come back in the sign of the amount: a credited negative line re-uses.
        signed_quantity = quantity if amount >= 0 else -quantity
        back_quantity = Decimal(_toward(signed_quantity, used_quantity))
        if back_amount or back_quantity:
            given += _give_back(
                session,
                invoice,
                line_id,
                used,
                back_quantity,
                back_amount,
                "credit_note",
                credit_note_id,
            )
            outstanding[line_id] = (
                used[0],
                used[1],
                used_quantity - back_quantity,
                used_amount - back_amount,
            )
    if given:
        session.flush()
        _audit_give_back(session, actor, invoice, outstanding, given, credit_note_id)
    return given
