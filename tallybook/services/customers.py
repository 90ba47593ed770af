"""Customers: who is billed, where, in which currency, on which terms and tax status."""

from __future__ import annotations

import re
from typing import Any

import pycountry
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from stdnum import iban

from tallybook.core.payments import contains_card_number
from tallybook.core.tax_ids import TaxIdError, validate_tax_id
from tallybook.db.models import Customer, Invoice, new_id
from tallybook.services.base import (
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    audit,
    get_owned,
    keyset_page,
    snapshot,
    utcnow,
)
from tallybook.services.organizations import (
    check_currency,
    check_electronic_address_pair,
    check_timezone,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FIELDS = (
    "external_id",
    "legal_name",
    "emails",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "region",
    "country",
    "currency",
    "timezone",
    "language",
    "payment_terms_days",
    "tax_ids",
    "tax_exempt",
    "reverse_charge",
    "po_required",
    "bank_accounts",
    # Where e-invoices reach the customer (Peppol participant id: scheme and identifier).
    "electronic_address",
    "electronic_address_scheme",
    # How documents reach the customer: e-mail or the portal only; which e-invoice goes along.
    "delivery_channel",
    "einvoice_attachment",
)


def _clean(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    unknown = set(values) - set(FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{name}: not a customer field", field=name)
    clean = dict(values)
    if creating:
        for required in ("legal_name", "country", "currency"):
            if not clean.get(required):
                raise InvalidInput(f"{required}: is required", field=required)
    if "legal_name" in clean and not str(clean["legal_name"]).strip():
        raise InvalidInput("legal_name: must not be empty", field="legal_name")
    if "country" in clean:
        country = str(clean["country"]).upper()
        if pycountry.countries.get(alpha_2=country) is None:
            raise InvalidInput(
                f"country: {clean['country']!r} is not an ISO 3166 alpha-2 code", field="country"
            )
        clean["country"] = country
    if "currency" in clean:
        clean["currency"] = check_currency(clean["currency"])
    if "timezone" in clean:
        clean["timezone"] = check_timezone(clean["timezone"])
    if "emails" in clean:
        emails = clean["emails"] or []
        if not isinstance(emails, list):
            raise InvalidInput("emails: must be a list of addresses", field="emails")
        for index, email in enumerate(emails):
            if not isinstance(email, str) or not _EMAIL.match(email):
                raise InvalidInput(
                    f"emails[{index}]: {email!r} is not an e-mail address", field="emails"
                )
    if "payment_terms_days" in clean:
        days = clean["payment_terms_days"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
            raise InvalidInput(
                "payment_terms_days: must be a whole number from 0 to 365",
                field="payment_terms_days",
            )
    if "language" in clean:
        language = str(clean["language"])
        if pycountry.languages.get(alpha_2=language.split("-")[0].lower()) is None:
            raise InvalidInput(f"language: {language!r} is not an ISO 639-1 code", field="language")
    if "bank_accounts" in clean:
        clean["bank_accounts"] = _bank_accounts(clean["bank_accounts"])
    for flag in ("tax_exempt", "reverse_charge", "po_required"):
        if flag in clean and not isinstance(clean[flag], bool):
            raise InvalidInput(f"{flag}: must be true or false", field=flag)
    for name in ("electronic_address", "electronic_address_scheme"):
        if name in clean:
            value = clean[name]
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"{name}: must be text", field=name)
            # Blank clears it; the pair is checked together once both are known.
            clean[name] = (value or "").strip() or None
    if "delivery_channel" in clean and clean["delivery_channel"] not in ("email", "portal"):
        raise InvalidInput(
            "delivery_channel: must be email or portal (portal: never e-mailed)",
            field="delivery_channel",
        )
    if "einvoice_attachment" in clean:
        choice = clean["einvoice_attachment"]
        choice = None if choice in (None, "", "none") else choice
        if choice not in (None, "ubl", "cii", "facturx"):
            raise InvalidInput(
                "einvoice_attachment: must be none, ubl, cii or facturx",
                field="einvoice_attachment",
            )
        clean["einvoice_attachment"] = choice
    return clean


def _bank_accounts(values: Any) -> list[str]:
    """Accounts the customer pays from, compact: an IBAN must pass its check digits; other
    account numbers (US routing and account, say) are kept as given, letters and digits only."""
    if not isinstance(values, list):
        raise InvalidInput(
            "bank_accounts: must be a list of account numbers", field="bank_accounts"
        )
    found: list[str] = []
    for index, value in enumerate(values):
        text = "".join(str(value).split()).upper() if isinstance(value, str) else ""
        if not text or not all(c.isascii() and (c.isalnum() or c in "-/") for c in text):
            raise InvalidInput(
                f"bank_accounts[{index}]: {value!r} is not an account number", field="bank_accounts"
            )
        if text[:2].isalpha():
            if not iban.is_valid(text):
                raise InvalidInput(
                    f"bank_accounts[{index}]: {value!r} is not a valid IBAN (check digits)",
                    field="bank_accounts",
                )
            text = iban.compact(text)
        if contains_card_number(text):
            raise InvalidInput(
                f"bank_accounts[{index}]: looks like a card number; cards are never stored",
                field="bank_accounts",
            )
        if text not in found:
            found.append(text)
    return found


def _check_tax_ids(clean: dict[str, Any], country: str) -> None:
    if "tax_ids" not in clean:
        return
    result = []
    for index, entry in enumerate(clean["tax_ids"] or []):
        if isinstance(entry, str):
            entry = {"country": country, "value": entry}
        if not isinstance(entry, dict) or "value" not in entry:
            raise InvalidInput(
                f"tax_ids[{index}]: give {{country, value}} or a string", field="tax_ids"
            )
        entry_country = str(entry.get("country") or country).upper()
        try:
            value = validate_tax_id(entry_country, str(entry["value"]), f"tax_ids[{index}]")
        except TaxIdError as error:
            raise InvalidInput(str(error), field="tax_ids") from None
        result.append({"country": entry_country, "value": value})
    clean["tax_ids"] = result


def create_customer(db: Database, actor: Actor, values: dict[str, Any]) -> Customer:
    actor.require(*WRITERS, action="create customers")
    clean = _clean(values, creating=True)
    _check_tax_ids(clean, clean["country"])
    if clean.get("tax_exempt") and clean.get("reverse_charge"):
        raise InvalidInput(
            "reverse_charge: a customer is either tax exempt or reverse charge",
            field="reverse_charge",
        )
    try:
        with db.transaction() as session:
            customer = Customer(
                id=new_id("cus"),
                organization_id=actor.organization_id,
                created_at=utcnow(),
                **{"emails": [], "tax_ids": [], **clean},
            )
            check_electronic_address_pair(customer)
            session.add(customer)
            session.flush()
            audit(
                session,
                actor,
                "customer.created",
                "customer",
                customer.id,
                {"after": _snapshot(customer)},
            )
            if customer.external_id:
                # Usage that arrived before the customer did is billed from now on.
                from tallybook.services.events import release_quarantine

                release_quarantine(
                    session, actor.organization_id, customer_external_id=customer.external_id
                )
    except IntegrityError:
        raise Conflict(
            f"external_id: a customer with external id {clean.get('external_id')!r} already exists",
            field="external_id",
        ) from None
    return customer


def update_customer(
    db: Database, actor: Actor, customer_id: str, values: dict[str, Any]
) -> Customer:
    actor.require(*WRITERS, action="edit customers")
    clean = _clean(values, creating=False)
    with db.transaction() as session:
        if "external_id" in clean:
            # Before the customer row is locked: a usage batch in flight holds the claim lock
            # and may be waiting to share-lock this customer.
            from tallybook.services.events import hold_ingestion

            hold_ingestion(session, actor.organization_id)
        customer = get_owned(session, Customer, customer_id, actor, lock=True)
        if "currency" in clean and clean["currency"] != customer.currency:
            from tallybook.db.models import Charge, Contract, Subscription

            has_invoices = any(
                session.scalar(select(exists().where(model.customer_id == customer.id)))
                for model in (Invoice, Subscription, Charge, Contract)
            )
            if has_invoices:
                raise Conflict(
                    "currency: a customer bills in one currency; it has invoices, "
                    f"subscriptions or charges in {customer.currency}",
                    field="currency",
                )
        _check_tax_ids(clean, clean.get("country", customer.country))
        before = _snapshot(customer)
        old_external_id = customer.external_id
        for key, value in clean.items():
            setattr(customer, key, value)
        check_electronic_address_pair(customer)
        if customer.tax_exempt and customer.reverse_charge:
            raise InvalidInput(
                "reverse_charge: a customer is either tax exempt or reverse charge",
                field="reverse_charge",
            )
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(
                "external_id: another customer has this external id", field="external_id"
            ) from None
        audit(
            session,
            actor,
            "customer.updated",
            "customer",
            customer.id,
            before=before,
            after=customer,
        )
        if customer.external_id and customer.external_id != old_external_id:
            from tallybook.services.events import release_quarantine

            release_quarantine(
                session, actor.organization_id, customer_external_id=customer.external_id
            )
    return customer


def get_customer(db: Database, actor: Actor, customer_id: str) -> Customer:
    with db.reading() as session:
        return get_owned(session, Customer, customer_id, actor)


def list_customers(
    db: Database,
    actor: Actor,
    *,
    limit: int = 50,
    after: str | None = None,
    include_archived: bool = False,
) -> tuple[list[Customer], str | None]:
    with db.reading() as session:
        query = select(Customer).where(Customer.organization_id == actor.organization_id)
        if not include_archived:
            query = query.where(Customer.archived_at.is_(None))
        return keyset_page(session, query, Customer, limit, after)


def delete_customer(db: Database, actor: Actor, customer_id: str) -> str:
    """Delete a customer without history; one with invoices is archived instead.

    Returns "deleted" or "archived" so the caller can tell the user which happened.
    """
    actor.require(*WRITERS, action="delete customers")
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, lock=True)
        from tallybook.db.models import Subscription

        live = session.scalar(
            select(
                exists().where(
                    Subscription.customer_id == customer.id,
                    Subscription.status.not_in(("ended", "canceled")),
                )
            )
        )
        if live:
            raise Conflict(
                "customer has live subscriptions; cancel them before archiving the customer"
            )
        has_history = session.scalar(select(exists().where(Invoice.customer_id == customer.id)))
        if has_history:
            was = snapshot(customer, "archived_at")
            customer.archived_at = customer.archived_at or utcnow()
            audit(
                session,
                actor,
                "customer.archived",
                "customer",
                customer.id,
                before=was,
                after=customer,
            )
            return "archived"
        from tallybook.db.models import Charge, Contract, CouponRedemption, Subscription

        for model in (Subscription, Charge, Contract, CouponRedemption):
            if session.scalar(select(exists().where(model.customer_id == customer.id))):
                was = snapshot(customer, "archived_at")
                customer.archived_at = customer.archived_at or utcnow()
                audit(
                    session,
                    actor,
                    "customer.archived",
                    "customer",
                    customer.id,
                    before=was,
                    after=customer,
                )
                return "archived"
        audit(
            session,
            actor,
            "customer.deleted",
            "customer",
            customer.id,
            {"before": _snapshot(customer)},
        )
        session.delete(customer)
        return "deleted"


def _snapshot(customer: Customer) -> dict[str, Any]:
    return {field: getattr(customer, field) for field in FIELDS}


def billing_snapshot(customer: Customer) -> dict[str, Any]:
    """What an issued invoice freezes about its customer."""
    return {
        "id": customer.id,
        "legal_name": customer.legal_name,
        "emails": list(customer.emails or []),
        "address": {
            "line1": customer.address_line1,
            "line2": customer.address_line2,
            "city": customer.city,
            "postal_code": customer.postal_code,
            "region": customer.region,
            "country": customer.country,
        },
        "tax_ids": list(customer.tax_ids or []),
        "tax_exempt": customer.tax_exempt,
        "reverse_charge": customer.reverse_charge,
        "language": customer.language,
        "electronic_address": (
            {"scheme": customer.electronic_address_scheme, "value": customer.electronic_address}
            if customer.electronic_address
            else None
        ),
        "external_id": customer.external_id,
    }
