"""A small world for the customer portal's tests: a German seller, a customer with an issued
invoice of two lines at two VAT rates, and a second customer of the same seller with an invoice
of its own (which the first customer's portal must never show)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from tallybook.services import catalog, customers, invoices, organizations
from tallybook.services.base import Actor, Database, Role

SELLER = {
    "country": "DE",
    "address_line1": "Friedrichstraße 10",
    "city": "Berlin",
    "postal_code": "10117",
    "vat_id": "DE136695976",
    "legal_registration_id": "HRB 12345",
    "electronic_address_scheme": "9930",
    "electronic_address": "de136695976",
    "iban": "DE44 5001 0517 5407 3249 31",
    "bic": "INGDDEFFXXX",
    "contact_email": "billing@northwind.example",
}
# A Fernet key (as TALLYBOOK_SECRET_KEY holds them), for tests only.
TEST_SECRET_KEY = "cG9ydGFsLXRlc3Qta2V5LWZvci10YWxseWJvb2stMDE="
OTHER_SECRET_KEY = "b3RoZXItcG9ydGFsLWtleS1mb3ItdGFsbHlib29rLTI="


@dataclass(frozen=True)
class PortalWorld:
    actor: Actor
    secret: str  # the admin key's secret, for the API and the CLI
    customer: Any
    invoice: Any
    other_customer: Any
    other_invoice: Any


def _customer(db: Database, actor: Actor, name: str, language: str) -> Any:
    return customers.create_customer(
        db,
        actor,
        {
            "legal_name": name,
            "country": "DE",
            "currency": "EUR",
            "city": "Berlin",
            "postal_code": "10115",
            "address_line1": "Hauptstr. 1",
            "tax_ids": ["DE136695976"],
            "emails": ["ap@kunde.example"],
            "timezone": "Europe/Berlin",
            "language": language,
        },
    )


def _issued(db: Database, actor: Actor, customer: Any, products: dict[str, Any]) -> Any:
    draft = invoices.create_draft(db, actor, customer.id, {"po_number": "PO-7781"})
    invoices.add_line(
        db,
        actor,
        draft.id,
        {
            "description": "Consulting",
            "quantity": "10",
            "unit_price": "120.00",
            "product_id": products["consulting"].id,
        },
    )
    invoices.add_line(
        db,
        actor,
        draft.id,
        {"description": "Handbook", "unit_price": "49.90", "product_id": products["book"].id},
    )
    return invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 2))


def portal_world(db: Database, *, language: str = "de") -> PortalWorld:
    org, key = organizations.create_organization(
        db, "Northwind Cloud GmbH", "EUR", timezone="Europe/Berlin", settings=SELLER
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    catalog.create_tax_rate(
        db, actor, {"code": "DE-19", "name": "DE VAT", "jurisdiction": "DE", "percent": "19"}
    )
    catalog.create_tax_rate(
        db,
        actor,
        {
            "code": "DE-7",
            "name": "DE VAT reduced",
            "jurisdiction": "DE",
            "percent": "7",
            "tax_category": "reduced",
        },
    )
    products = {
        "consulting": catalog.create_product(
            db, actor, {"code": "consulting", "name": "Consulting", "unit_label": "hours"}
        ),
        "book": catalog.create_product(
            db, actor, {"code": "handbook", "name": "Handbook", "tax_category": "reduced"}
        ),
    }
    customer = _customer(db, actor, "Kunde GmbH", language)
    invoice = _issued(db, actor, customer, products)
    other = _customer(db, actor, "Andere AG", "en")
    other_invoice = _issued(db, actor, other, products)
    return PortalWorld(actor, key.secret, customer, invoice, other, other_invoice)
