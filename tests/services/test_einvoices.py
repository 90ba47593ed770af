"""E-invoices built from issued documents in the database (SQLite and PostgreSQL): amounts to
the cent, the VAT breakdown per rate, yen, credit and debit notes, drafts refused, tenancy;
the seller and customer details they need, validated."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import pytest

from tallybook.core.einvoice import DocumentKind, VatCategory
from tallybook.formats.einvoice_validation import ReferenceMissing, Validator, validator
from tallybook.formats.ubl import to_ubl
from tallybook.services import (
    catalog,
    credit_notes,
    customers,
    einvoices,
    invoices,
    organizations,
    payments,
)
from tallybook.services.base import Actor, Conflict, Database, InvalidInput, NotFound, Role

D = Decimal
SELLER = {
    "country": "GB",
    "address_line1": "1 King William Street",
    "city": "London",
    "postal_code": "EC4N 7AR",
    "vat_id": "GB 980 780 684",
    "legal_registration_id": "07228130",
    "electronic_address_scheme": "0088",
    "electronic_address": "5012345000008",
    "iban": "GB33 BUKB 2020 1555 5555 55",
    "bic": "BUKBGB22",
    "contact_email": "billing@northwind.example",
}


@pytest.fixture(scope="module")
def checker() -> Validator:
    try:
        return validator()
    except ReferenceMissing as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{error} (CI=true makes this a failure)")
        pytest.skip(f"E-INVOICE REFERENCE FILES MISSING, VALIDATION TESTS SKIPPED: {error}")


def seller_org(db: Database, currency: str = "EUR") -> Actor:
    org, key = organizations.create_organization(
        db, "Northwind Cloud Ltd", currency, timezone="Europe/London", settings=SELLER
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    for values in (
        {"code": "DE-VAT-19", "name": "DE VAT", "jurisdiction": "DE", "percent": "19"},
        {
            "code": "DE-VAT-7",
            "name": "DE VAT reduced",
            "jurisdiction": "DE",
            "percent": "7",
            "tax_category": "reduced",
        },
    ):
        catalog.create_tax_rate(db, actor, values)
    return actor


def german_customer(db: Database, actor: Actor, **extra: object):
    return customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Kunde GmbH",
            "country": "DE",
            "currency": "EUR",
            "city": "Berlin",
            "postal_code": "10115",
            "address_line1": "Hauptstr. 1",
            "tax_ids": ["DE136695976"],
            "external_id": "crm-77",
            "emails": ["ap@kunde.example"],
            "electronic_address_scheme": "9930",
            "electronic_address": "de136695976",
            **extra,
        },
    )


def issued_invoice(db: Database, actor: Actor, customer, discount: str | None = "20"):
    book = catalog.create_product(
        db, actor, {"code": "handbook", "name": "Handbook", "tax_category": "reduced"}
    )
    days = catalog.create_product(
        db, actor, {"code": "services", "name": "Services", "unit_label": "days"}
    )
    draft = invoices.create_draft(db, actor, customer.id, {"po_number": "PO-7781"})
    invoices.add_line(
        db,
        actor,
        draft.id,
        {
            "description": "Workshop",
            "quantity": "14.5",
            "unit_price": "135",
            "product_id": days.id,
        },
    )
    invoices.add_line(
        db,
        actor,
        draft.id,
        {"description": "Developer handbook", "unit_price": "4.90", "product_id": book.id},
    )
    if discount:
        invoices.update_draft(
            db, actor, draft.id, {"discounts": [{"kind": "percent", "value": discount}]}
        )
    return invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 2))


def test_an_issued_invoice_with_two_rates_and_a_discount(db: Database, checker) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    invoice = issued_invoice(db, actor, customer)
    doc = einvoices.einvoice_for(db, actor, invoice.id, "invoice")

    # 14.5 days at 135 = 1957.50 at 19 %, an e-book at 4.90 at 7 %; 20 % off both.
    assert [(x.name, x.quantity, x.unit_code, x.price, x.net_minor) for x in doc.lines] == [
        ("Workshop", D("14.5"), "DAY", D(135), 195750),
        ("Developer handbook", D(1), "C62", D("4.90"), 490),
    ]
    assert [(a.category.percent, a.amount_minor) for a in doc.allowances] == [
        (D(19), 39150),
        (D(7), 98),
    ]
    assert [
        (r.category.code, r.category.percent, r.taxable_minor, r.tax_minor)
        for r in doc.vat_breakdown
    ] == [
        (VatCategory.STANDARD, D(19), 156600, 29754),
        (VatCategory.STANDARD, D(7), 392, 27),
    ]
    assert (doc.tax_exclusive_minor, doc.tax_minor, doc.tax_inclusive_minor) == (
        156992,
        29781,
        186773,
    )
    assert doc.tax_inclusive_minor == invoice.total_minor
    assert doc.payable_minor == invoice.amount_due_minor == 186773
    assert (doc.number, doc.issue_date, doc.due_date) == (
        invoice.number,
        date(2026, 3, 2),
        date(2026, 4, 1),
    )
    assert doc.payment_reference == invoice.payment_reference
    assert (doc.buyer_reference, doc.order_reference) == ("PO-7781", "PO-7781")
    assert (
        doc.seller.vat_id == "GB980780684" and doc.payment_account.iban == "GB33BUKB20201555555555"
    )
    assert doc.buyer.vat_id == "DE136695976" and doc.buyer.identifier == "crm-77"
    assert (doc.buyer.electronic_address.scheme, doc.buyer.electronic_address.value) == (
        "9930",
        "DE136695976",
    )
    assert checker.validate(to_ubl(doc)).valid


def test_the_buyer_is_the_snapshot_frozen_at_issue(db: Database) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    invoice = issued_invoice(db, actor, customer, discount=None)
    assert invoice.customer_snapshot["electronic_address"] == {
        "scheme": "9930",
        "value": "DE136695976",
    }
    customers.update_customer(
        db,
        actor,
        customer.id,
        {
            "legal_name": "Kunde Neu GmbH",
            "electronic_address": None,
            "electronic_address_scheme": None,
        },
    )
    doc = einvoices.einvoice_for(db, actor, invoice.number, "invoice")
    assert doc.buyer.name == "Kunde GmbH"
    assert doc.buyer.electronic_address.value == "DE136695976"


def test_payments_and_credit_are_prepaid(db: Database) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    invoice = issued_invoice(db, actor, customer, discount=None)
    payments.record_payment(
        db,
        actor,
        {
            "customer_id": customer.id,
            "amount": "1000.00",
            "currency": "EUR",
            "received_on": "2026-03-10",
            "method": "bank_transfer",
        },
    )
    doc = einvoices.einvoice_for(db, actor, invoice.id, "invoice")
    assert (doc.tax_inclusive_minor, doc.prepaid_minor) == (invoice.total_minor, 100000)
    assert doc.payable_minor == invoice.total_minor - 100000


def test_yen_invoices_have_whole_amounts(db: Database, checker) -> None:
    actor = seller_org(db, "JPY")
    customer = customers.create_customer(
        db,
        actor,
        {
            "legal_name": "Alder Media K.K.",
            "country": "JP",
            "currency": "JPY",
            "city": "Tokyo",
            "electronic_address_scheme": "0088",
            "electronic_address": "4512345100001",
        },
    )
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(
        db, actor, draft.id, {"description": "Seats", "quantity": "20", "unit_price": "1200"}
    )
    invoice = invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 1))
    doc = einvoices.einvoice_for(db, actor, invoice.id, "invoice")
    assert (doc.currency, doc.amount(doc.payable_minor)) == ("JPY", "24000")
    assert doc.vat_breakdown[0].category.code is VatCategory.OUTSIDE_SCOPE
    assert doc.seller.vat_id is None  # BR-O-02
    assert checker.validate(to_ubl(doc)).valid


def test_credit_and_debit_notes_reference_the_invoice(db: Database, checker) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    invoice = issued_invoice(db, actor, customer)
    note = credit_notes.create_credit_note(
        db,
        actor,
        invoice.id,
        {"reason": "Two days not worked", "lines": [{"line": "1", "quantity": "2"}]},
    )
    doc = einvoices.einvoice_for(db, actor, note.number, "credit_note")
    assert doc.kind is DocumentKind.CREDIT_NOTE and doc.type_code == "381"
    assert (doc.preceding_invoice.number, doc.preceding_invoice.issue_date) == (
        invoice.number,
        invoice.issue_date,
    )
    [line] = doc.lines
    # 2 of 14.5 days of a line discounted 20 %: 2/14.5 x 1566.00 = 216.00, VAT 41.04.
    assert (line.quantity, line.net_minor, line.tax_minor) == (D(2), 21600, 4104)
    assert doc.tax_inclusive_minor == note.total_minor == 25704
    assert doc.note == "Two days not worked"
    assert checker.validate(to_ubl(doc)).valid

    debit = credit_notes.create_debit_note(
        db,
        actor,
        invoice.id,
        {
            "reason": "Extra onsite day",
            "lines": [{"description": "Onsite day", "quantity": "1", "unit_price": "800.00"}],
        },
    )
    doc = einvoices.einvoice_for(db, actor, debit.id, "debit_note")
    assert doc.type_code == "383" and doc.preceding_invoice.number == invoice.number
    assert [(r.category.percent, r.taxable_minor, r.tax_minor) for r in doc.vat_breakdown] == [
        (D(19), 80000, 15200)
    ]
    assert doc.payable_minor == 95200
    assert checker.validate(to_ubl(doc)).valid


def test_drafts_are_refused_and_other_organisations_see_nothing(db: Database) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Setup", "unit_price": "10.00"})
    with pytest.raises(Conflict, match="draft"):
        einvoices.einvoice_for(db, actor, draft.id, "invoice")
    issued = invoices.issue_invoice(db, actor, draft.id)
    stranger = seller_org(db)
    for kind in ("invoice", "credit_note", "debit_note"):
        with pytest.raises(NotFound):
            einvoices.einvoice_for(db, stranger, issued.id, kind)
    with pytest.raises(NotFound):
        einvoices.einvoice_file(db, stranger, issued.number, "invoice", "cii")
    with pytest.raises(InvalidInput, match="kind"):
        einvoices.einvoice_for(db, actor, issued.id, "receipt")
    with pytest.raises(InvalidInput, match="syntax"):
        einvoices.einvoice_file(db, actor, issued.id, "invoice", "edifact")
    file = einvoices.einvoice_file(db, actor, issued.id, "invoice", "cii")
    assert file.file_name == f"{issued.number}-cii.xml" and file.content.startswith(b"<?xml")


def test_an_organisation_without_a_country_cannot_send_e_invoices(db: Database) -> None:
    org, key = organizations.create_organization(db, "No Country Ltd", "EUR")
    actor = Actor(org.id, key.id, Role.ADMIN)
    customer = german_customer(db, actor)
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Setup", "unit_price": "10.00"})
    issued = invoices.issue_invoice(db, actor, draft.id)
    with pytest.raises(Conflict, match="country") as raised:
        einvoices.einvoice_for(db, actor, issued.id, "invoice")
    assert raised.value.field == "country"


def test_seller_details_are_validated_and_stored_compact(db: Database) -> None:
    actor = seller_org(db)
    org = organizations.get_organization(db, actor)
    assert (org.vat_id, org.iban, org.bic) == ("GB980780684", "GB33BUKB20201555555555", "BUKBGB22")
    for field, value, reason in (
        ("vat_id", "DE136695977", "not a valid VAT number for DE"),
        ("vat_id", "136695976", "start with the country code"),
        ("iban", "GB34BUKB20201555555555", "not a valid IBAN"),
        ("bic", "BUK", "not a BIC"),
        ("contact_email", "billing", "not an e-mail address"),
        ("electronic_address", "5012345000005", "GLN"),
        ("electronic_address_scheme", "XX", "not an EAS code"),
    ):
        with pytest.raises(InvalidInput, match=reason) as raised:
            organizations.update_settings(db, actor, {field: value})
        assert raised.value.field == field
    # Nothing was half-written.
    assert organizations.get_organization(db, actor).electronic_address == "5012345000008"
    cleared = organizations.update_settings(
        db, actor, {"electronic_address": None, "electronic_address_scheme": None, "iban": ""}
    )
    assert (cleared.electronic_address, cleared.iban) == (None, None)
    with pytest.raises(InvalidInput, match="together"):
        organizations.update_settings(db, actor, {"electronic_address": "5012345000008"})


def test_customer_electronic_addresses_are_validated(db: Database) -> None:
    actor = seller_org(db)
    with pytest.raises(InvalidInput, match="not a valid VAT number for DE") as raised:
        german_customer(db, actor, electronic_address="DE136695977")
    assert raised.value.field == "electronic_address"
    with pytest.raises(InvalidInput, match="together"):
        german_customer(db, actor, electronic_address_scheme=None)
    customer = german_customer(db, actor)
    with pytest.raises(InvalidInput, match="GLN"):
        customers.update_customer(db, actor, customer.id, {"electronic_address_scheme": "0088"})
    assert customers.get_customer(db, actor, customer.id).electronic_address_scheme == "9930"
