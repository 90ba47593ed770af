"""Automatic collection over HTTP: customers' payment methods, collection runs, the payment
attempts they made and a customer's collection status (failures and the next retry)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import Field

from tallybook.api import render
from tallybook.api.deps import Cursor, Db, Idem, Limit, Who
from tallybook.api.schemas import Body
from tallybook.services import collection, payment_methods

router = APIRouter(prefix="/v1")


class PaymentMethodIn(Body):
    provider: str = Field(description='the payment provider holding it, e.g. "simulated"')
    token: str = Field(description="the provider's token for the card or mandate; never a card")
    kind: Literal["card", "sepa_debit", "ach_debit"] = "card"
    label: str | None = Field(default=None, description='shown to clerks: "Visa ending 4242"')
    default: bool | None = Field(
        default=None, description="charge this one; default: yes if the customer has none"
    )


class CollectionRunIn(Body):
    as_of: date | None = Field(
        default=None, description="the run's day; default: today in the organisation's zone"
    )


@router.post("/customers/{customer_id}/payment-methods", status_code=201, tags=["collection"])
def post_payment_method(
    customer_id: str, body: PaymentMethodIn, db: Db, who: Who, idem: Idem = None
) -> dict:
    """Keep a customer's card or bank mandate as the payment provider's token."""
    method = payment_methods.attach_payment_method(db, who, customer_id, body.values())
    return render.payment_method(method)


@router.get("/customers/{customer_id}/payment-methods", tags=["collection"])
def get_payment_methods(customer_id: str, db: Db, who: Who, include_detached: bool = False) -> dict:
    rows = payment_methods.list_payment_methods(
        db, who, customer_id, include_detached=include_detached
    )
    return {"data": [render.payment_method(m) for m in rows]}


@router.post("/customers/{customer_id}/payment-methods/{method_id}/default", tags=["collection"])
def post_default_payment_method(
    customer_id: str, method_id: str, db: Db, who: Who, idem: Idem = None
) -> dict:
    """Make this the method automatic collection charges."""
    method = payment_methods.set_default_payment_method(db, who, method_id, customer_id=customer_id)
    return render.payment_method(method)


@router.delete("/customers/{customer_id}/payment-methods/{method_id}", tags=["collection"])
def delete_payment_method(customer_id: str, method_id: str, db: Db, who: Who) -> dict:
    method = payment_methods.detach_payment_method(db, who, method_id, customer_id=customer_id)
    return render.payment_method(method)


@router.get("/customers/{customer_id}/collection", tags=["collection"])
def get_customer_collection(customer_id: str, db: Db, who: Who) -> dict:
    """Payment methods, invoices whose automatic charge is failing (with the failure and the
    next retry; none when the schedule is used up) and recent attempts."""
    return render.customer_collection(collection.customer_collection(db, who, customer_id))


@router.post("/collection-runs", tags=["collection"])
def post_collection_run(body: CollectionRunIn, db: Db, who: Who, idem: Idem = None) -> dict:
    """Charge every invoice due for automatic collection (and complete attempts a stopped run
    left pending). Send an Idempotency-Key to make a retried request safe to repeat."""
    return render.collection_run(collection.collect_due_invoices(db, who, body.as_of))


@router.get("/payment-attempts", tags=["collection"])
def get_payment_attempts(
    db: Db,
    who: Who,
    status: str | None = Query(
        default=None, description="pending, approved, declined or failed; several: declined,failed"
    ),
    customer_id: str | None = None,
    invoice_id: str | None = Query(default=None, description="an invoice id or number"),
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict:
    rows, next_cursor = collection.list_attempts(
        db,
        who,
        status=status,
        customer_id=customer_id,
        invoice_id=invoice_id,
        limit=limit,
        after=cursor,
    )
    return {"data": [render.payment_attempt(v) for v in rows], "next_cursor": next_cursor}


@router.get("/payment-attempts/{attempt_id}", tags=["collection"])
def get_payment_attempt(attempt_id: str, db: Db, who: Who) -> dict:
    return render.payment_attempt(collection.get_attempt(db, who, attempt_id))
