"""Purchase orders over HTTP: record, import (CSV, XLSX, UBL 2.1 Order), list, show what is
left, close or cancel."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.render import row, with_amounts
from tallybook.core.money import round_to_minor
from tallybook.services import purchase_orders as po

router = APIRouter(prefix="/v1", tags=["purchase orders"])

ORDER = (
    "id",
    "customer_id",
    "contract_id",
    "number",
    "currency",
    "issue_date",
    "valid_from",
    "valid_to",
    "ceiling_minor",
    "consumed_minor",
    "status",
    "buyer_reference",
    "notes",
    "source",
    "closed_at",
    "close_reason",
    "created_at",
)
LINE = (
    "id",
    "position",
    "product_id",
    "description",
    "quantity",
    "unit_price",
    "unit_code",
    "consumed_quantity",
    "consumed_minor",
)
CONSUMPTION = (
    "id",
    "kind",
    "invoice_id",
    "invoice_line_id",
    "credit_note_id",
    "purchase_order_line_id",
    "quantity",
    "amount_minor",
    "created_at",
)


def order_json(order: Any) -> dict[str, Any]:
    """A PO with what is left under its ceiling (null: no ceiling)."""
    data = row(order, ORDER)
    data["remaining_minor"] = po.remaining_minor(order)
    return with_amounts(data, order.currency)


def line_json(line: Any, currency: str) -> dict[str, Any]:
    data = row(line, LINE)
    ordered = round_to_minor(line.quantity * line.unit_price, currency)
    data["ordered_minor"] = ordered
    data["remaining_quantity"] = format(line.quantity - line.consumed_quantity, "f")
    data["remaining_minor"] = ordered - line.consumed_minor
    return with_amounts(data, currency)


def view_json(view: po.PurchaseOrderView) -> dict[str, Any]:
    currency = view.order.currency
    data = order_json(view.order)
    data["lines"] = [line_json(line, currency) for line in view.lines]
    data["consumptions"] = [with_amounts(row(c, CONSUMPTION), currency) for c in view.consumptions]
    return data


def import_json(result: po.PurchaseOrderImport) -> dict[str, Any]:
    return {
        "format": result.format,
        "created": [view_json(v) for v in result.created],
        "unchanged": [view_json(v) for v in result.unchanged],
    }


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderLineIn(Body):
    product: str | None = Field(default=None, description="product id or code")
    description: str | None = Field(default=None, description="default: the product's name")
    quantity: str | int = Field(description='exact decimal: "80"')
    unit_price: str | int = Field(description='net, exact, may be sub-cent: "95.005"')
    unit_code: str | None = Field(default=None, description="UN/ECE rec 20 code, e.g. HUR")
    position: int | None = Field(default=None, ge=1, description="the buyer's line number")


class PurchaseOrderIn(Body):
    customer_id: str
    number: str = Field(description="the customer's PO number, unique per customer")
    currency: str | None = Field(default=None, description="default: the customer's")
    issue_date: date | None = None
    valid_from: date | None = Field(default=None, description="default: issue_date, else today")
    valid_to: date | None = None
    ceiling: str | int | None = Field(default=None, description='the most, net: "10000.00"')
    contract: str | None = Field(default=None, description="contract id or reference")
    buyer_reference: str | None = None
    notes: str | None = None
    lines: list[OrderLineIn] = []


class ReasonIn(Body):
    reason: str | None = None


@router.post("/purchase-orders", status_code=201)
def post_purchase_order(body: PurchaseOrderIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Record a customer's purchase order with its lines and ceiling."""
    values = body.model_dump(exclude_none=True)
    values["lines"] = [
        {k: v for k, v in line.items() if v is not None} for line in values.get("lines", [])
    ]
    return view_json(po.create_purchase_order(db, who, values))


@router.post(
    "/purchase-orders/import",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def post_purchase_order_import(
    request: Request,
    db: Db,
    who: Who,
    file_name: Annotated[str, Query(description="the file's name, for the record")] = "orders",
    format: Annotated[
        str | None, Query(description="csv, xlsx or ubl; default: read from the content")
    ] = None,
    customer_id: Annotated[
        str | None, Query(description="the customer; default: from the file")
    ] = None,
    idem: Idem = None,
) -> dict:
    """Import the file sent as the body: every PO in it, or none. A PO the customer already
    has is left alone when the file says the same, else the import answers 409."""
    from fastapi.concurrency import run_in_threadpool

    data = await request.body()
    result = await run_in_threadpool(
        po.import_purchase_orders,
        db,
        who,
        data,
        file_name=file_name,
        format=format,
        customer_id=customer_id,
    )
    return import_json(result)


@router.get("/purchase-orders")
def get_purchase_orders(
    db: Db,
    who: Who,
    customer_id: str | None = None,
    status: Annotated[str | None, Query(description="open, closed or cancelled")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = po.list_purchase_orders(
        db, who, customer_id=customer_id, status=status, limit=limit, after=cursor
    )
    return {"data": [order_json(o) for o in rows], "next_cursor": next_cursor}


@router.get("/purchase-orders/{purchase_order_id}")
def get_purchase_order(purchase_order_id: str, db: Db, who: Who) -> dict:
    """A PO (by id, or by its number) with each line's remaining quantity and amount and every
    movement of its balance."""
    return view_json(po.get_purchase_order(db, who, purchase_order_id))


@router.post("/purchase-orders/{purchase_order_id}/close")
def post_close(
    purchase_order_id: str, db: Db, who: Who, body: ReasonIn | None = None, idem: Idem = None
) -> dict:
    """No more invoices against it; what is left stays unused."""
    reason = body.reason if body else None
    return order_json(po.close_purchase_order(db, who, purchase_order_id, reason))


@router.post("/purchase-orders/{purchase_order_id}/cancel")
def post_cancel(
    purchase_order_id: str, body: ReasonIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """Withdrawn before anything was invoiced against it (else close it)."""
    return order_json(po.cancel_purchase_order(db, who, purchase_order_id, body.reason or ""))
