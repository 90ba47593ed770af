"""Organisations (tenants), their billing settings and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from stdnum import bic, iban
from stdnum.exceptions import ValidationError

from tallybook.core.collection import RetryScheduleError, check_retry_days
from tallybook.core.einvoice import EInvoiceError, check_electronic_address, vat_identifier
from tallybook.core.money import MoneyError, currency_exponent, parse_decimal
from tallybook.core.numbering import NumberPatternError, validate_pattern
from tallybook.core.proration import ProrationPolicy
from tallybook.core.tax_ids import TaxIdError, validate_tax_id
from tallybook.db.models import ApiKey, Organization, new_id
from tallybook.services.base import (
    Actor,
    Database,
    InvalidInput,
    NotFound,
    Role,
    Unauthorized,
    audit,
    utcnow,
)

SETTINGS_FIELDS = {
    "name",
    "timezone",
    "proration_policy",
    "downgrade_credit",
    "rounding_mode",
    "tax_rounding",
    "prices_include_tax",
    "approval_thresholds",
    "invoice_number_pattern",
    "credit_note_number_pattern",
    "debit_note_number_pattern",
    "country",
    "usage_grace_days",
    "collection_retry_days",
    "anomaly_percent",
    "near_duplicate_days",
    *(
        # The seller on e-invoices.
        "address_line1",
        "address_line2",
        "city",
        "postal_code",
        "vat_id",
        "legal_registration_id",
        "electronic_address",
        "electronic_address_scheme",
        "iban",
        "bic",
        "contact_email",
    ),
    # Distribution: who e-mails come from; the daily runs the job worker starts.
    "email_from",
    "scheduled_runs",
}
SELLER_TEXT_FIELDS = {
    "address_line1": 300,
    "address_line2": 300,
    "city": 200,
    "postal_code": 40,
    "legal_registration_id": 100,
}


@dataclass(frozen=True)
class IssuedKey:
    """A new API key. The secret is shown once; only its hash is stored."""

    id: str
    organization_id: str
    role: Role
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_currency(code: str, field: str = "currency") -> str:
    try:
        currency_exponent(code)
    except MoneyError as error:
        raise InvalidInput(f"{field}: {error}", field=field) from None
    return code.upper()


def check_timezone(name: str, field: str = "timezone") -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{field}: unknown time zone {name!r}", field=field) from None
    return name


def _validate_settings(values: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in SETTINGS_FIELDS:
            raise InvalidInput(f"{key}: not an organisation setting", field=key)
        if key == "timezone":
            value = check_timezone(value)
        elif key == "proration_policy":
            if value not in {p.value for p in ProrationPolicy}:
                raise InvalidInput(
                    "proration_policy: must be one of "
                    + ", ".join(p.value for p in ProrationPolicy),
                    field=key,
                )
        elif key == "downgrade_credit" and value not in ("immediate", "period_end"):
            raise InvalidInput("downgrade_credit: must be immediate or period_end", field=key)
        elif key == "rounding_mode" and value not in ("half_up", "half_even"):
            raise InvalidInput("rounding_mode: must be half_up or half_even", field=key)
        elif key == "usage_grace_days":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 60:
                raise InvalidInput("usage_grace_days: a whole number of days, 0 to 60", field=key)
        elif key == "anomaly_percent":
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000
            ):
                raise InvalidInput(
                    "anomaly_percent: a whole percent, 1 to 1000, or null to turn it off",
                    field=key,
                )
        elif key == "near_duplicate_days":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 90:
                raise InvalidInput(
                    "near_duplicate_days: a whole number of days, 0 to 90", field=key
                )
        elif key == "collection_retry_days":
            try:
                value = check_retry_days(value)
            except RetryScheduleError as error:
                raise InvalidInput(str(error), field=key) from None
        elif key == "tax_rounding" and value not in ("per_line", "per_invoice"):
            raise InvalidInput("tax_rounding: must be per_line or per_invoice", field=key)
        elif key == "prices_include_tax":
            if not isinstance(value, bool):
                raise InvalidInput("prices_include_tax: must be true or false", field=key)
        elif key == "approval_thresholds":
            if not isinstance(value, dict):
                raise InvalidInput(
                    "approval_thresholds: must map currency codes to amounts", field=key
                )
            thresholds = {}
            for currency, amount in value.items():
                code = check_currency(currency, f"approval_thresholds.{currency}")
                try:
                    parsed = parse_decimal(amount, f"approval_thresholds.{currency}")
                except MoneyError as error:
                    raise InvalidInput(str(error), field=key) from None
                if parsed < 0:
                    raise InvalidInput(
                        f"approval_thresholds.{currency}: must not be negative", field=key
                    )
                thresholds[code] = str(parsed)
            value = thresholds
        elif key.endswith("_number_pattern"):
            try:
                validate_pattern(value, key)
            except NumberPatternError as error:
                raise InvalidInput(str(error), field=key) from None
        elif key == "name" and not str(value).strip():
            raise InvalidInput("name: must not be empty", field=key)
        elif key in SELLER_TEXT_FIELDS or key in SELLER_CHECKS:
            value = _seller_detail(key, value)
        elif key in ("email_from", "scheduled_runs"):
            value = _distribution_setting(key, value)
        clean[key] = value
    return clean


def create_organization(
    db: Database,
    name: str,
    default_currency: str,
    *,
    timezone: str = "UTC",
    settings: dict[str, Any] | None = None,
) -> tuple[Organization, IssuedKey]:
    """A new tenant and its first admin key."""
    if not name.strip():
        raise InvalidInput("name: must not be empty", field="name")
    currency = check_currency(default_currency, "default_currency")
    clean = _validate_settings({"timezone": timezone, **(settings or {})})
    now = utcnow()
    with db.transaction() as session:
        org = Organization(
            id=new_id("org"),
            name=name.strip(),
            default_currency=currency,
            created_at=now,
            **{"approval_thresholds": {}, **clean},
        )
        check_electronic_address_pair(org)
        session.add(org)
        session.flush()
        key = _add_key(session, org.id, "initial admin key", Role.ADMIN)
        actor = Actor(org.id, key.id, Role.ADMIN)
        audit(session, actor, "organization.created", "organization", org.id, after=org)
    return org, key


def _add_key(session: Any, organization_id: str, name: str, role: Role) -> IssuedKey:
    prefix = secrets.token_hex(6)
    secret = f"tb_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        name=name,
        role=role.value,
        prefix=prefix,
        secret_hash=_hash(secret),
        created_at=utcnow(),
    )
    session.add(row)
    return IssuedKey(row.id, organization_id, role, secret)


def create_api_key(db: Database, actor: Actor, name: str, role: str) -> IssuedKey:
    actor.require(Role.ADMIN, action="create API keys")
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidInput(
            f"role: must be one of {', '.join(r.value for r in Role)}", field="role"
        ) from None
    with db.transaction() as session:
        key = _add_key(session, actor.organization_id, name, parsed)
        audit(
            session,
            actor,
            "api_key.created",
            "api_key",
            key.id,
            {"role": parsed.value, "name": name},
        )
    return key


def list_api_keys(db: Database, actor: Actor) -> list[ApiKey]:
    actor.require(Role.ADMIN, action="list API keys")
    with db.reading() as session:
        return list(
            session.scalars(
                select(ApiKey)
                .where(ApiKey.organization_id == actor.organization_id)
                .order_by(ApiKey.created_at)
            )
        )


def revoke_api_key(db: Database, actor: Actor, key_id: str) -> ApiKey:
    actor.require(Role.ADMIN, action="revoke API keys")
    with db.transaction() as session:
        row = session.scalars(
            select(ApiKey).where(
                ApiKey.id == key_id, ApiKey.organization_id == actor.organization_id
            )
        ).first()
        if row is None:
            raise NotFound(f"api key {key_id} not found")
        before = {"revoked_at": row.revoked_at}
        row.revoked_at = utcnow()
        audit(
            session,
            actor,
            "api_key.revoked",
            "api_key",
            key_id,
            {"name": row.name, "role": row.role},
            before=before,
            after=row,
        )
    return row


def authenticate(db: Database, secret: str) -> Actor:
    """The actor behind an API key, or Unauthorized. Constant-time comparison of the hash."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "tb":
        raise Unauthorized("the API key is malformed")
    with db.reading() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is unknown or revoked")
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise Unauthorized("the API key is unknown or revoked")
    return Actor(row.organization_id, row.id, Role(row.role))


def get_organization(db: Database, actor: Actor) -> Organization:
    with db.reading() as session:
        org = session.get(Organization, actor.organization_id)
        assert org is not None
        return org


def update_settings(db: Database, actor: Actor, values: dict[str, Any]) -> Organization:
    actor.require(Role.ADMIN, action="change organisation settings")
    clean = _validate_settings(values)
    with db.transaction() as session:
        org = session.get(Organization, actor.organization_id, with_for_update=True)
        assert org is not None
        before = {key: getattr(org, key) for key in clean}
        for key, value in clean.items():
            setattr(org, key, value)
        check_electronic_address_pair(org)
        audit(
            session,
            actor,
            "organization.settings_changed",
            "organization",
            org.id,
            before=before,
            after=org,
        )
    return org


def approval_threshold(org: Organization, currency: str) -> Decimal | None:
    value = (org.approval_thresholds or {}).get(currency)
    return None if value is None else Decimal(value)


# -- the seller on e-invoices ---------------------------------------------------------------------

SELLER_CHECKS = {
    "vat_id",
    "electronic_address",
    "electronic_address_scheme",
    "iban",
    "bic",
    "contact_email",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _seller_detail(key: str, value: Any) -> str | None:
    """A seller detail, checked and compact; None (or blank) clears it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key}: must be text", field=key)
    text = value.strip()
    if not text:
        return None
    if key in SELLER_TEXT_FIELDS:
        if len(text) > SELLER_TEXT_FIELDS[key]:
            raise InvalidInput(f"{key}: at most {SELLER_TEXT_FIELDS[key]} characters", field=key)
        return text
    if key == "vat_id":
        return check_vat_id(text, key)
    if key == "iban":
        try:
            return str(iban.validate(text))
        except ValidationError:
            raise InvalidInput(
                f"iban: {value!r} is not a valid IBAN (check digits)", field=key
            ) from None
    if key == "bic":
        try:
            return str(bic.validate(text))
        except ValidationError:
            raise InvalidInput(
                f"bic: {value!r} is not a BIC (8 or 11 characters)", field=key
            ) from None
    if key == "contact_email":
        if not _EMAIL.match(text):
            raise InvalidInput(f"contact_email: {value!r} is not an e-mail address", field=key)
        return text
    if key == "electronic_address_scheme":
        return text.upper()
    return text  # electronic_address: checked with its scheme, once both are known


def check_vat_id(value: str, field: str = "vat_id") -> str:
    """A VAT number with its country prefix (DE136695976, GB980780684), check digits verified."""
    compact = "".join(value.split()).upper()
    if not compact[:2].isalpha():
        raise InvalidInput(
            f"{field}: start with the country code, e.g. DE136695976 or GB980780684", field=field
        )
    country = "GR" if compact[:2] == "EL" else compact[:2]
    try:
        return vat_identifier(country, validate_tax_id(country, compact, field))
    except TaxIdError as error:
        raise InvalidInput(str(error), field=field) from None


def check_electronic_address_pair(row: Any) -> None:
    """An organisation's or customer's electronic address: scheme and value together, valid for
    the scheme (a GLN's check digit, a VAT number's check digits...), stored compact."""
    scheme, value = row.electronic_address_scheme, row.electronic_address
    if scheme is None and value is None:
        return
    if scheme is None or value is None:
        missing = "electronic_address_scheme" if scheme is None else "electronic_address"
        raise InvalidInput(
            f"{missing}: give the electronic address and its scheme together (e.g. scheme "
            "0088 with a GLN, 9930 with a German VAT number)",
            field=missing,
        )
    try:
        address = check_electronic_address(scheme, value)
    except EInvoiceError as error:
        field = str(error).split(":", 1)[0]
        raise InvalidInput(str(error), field=field) from None
    row.electronic_address_scheme, row.electronic_address = address.scheme, address.value


def _distribution_setting(key: str, value: Any) -> Any:
    """email_from: an address, optionally with a display name ("Billing <billing@x.com>");
    scheduled_runs: which daily runs the job worker starts (collection, dunning)."""
    if key == "email_from":
        from email.utils import parseaddr

        text = str(value or "").strip()
        if not text:
            return None
        address = parseaddr(text)[1]
        if len(text) > 300 or not re.match(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$", address):
            raise InvalidInput(f"email_from: {text!r} is not an e-mail address", field=key)
        return text
    runs = value or []
    if not isinstance(runs, list) or any(run not in ("collection", "dunning") for run in runs):
        raise InvalidInput(
            "scheduled_runs: a list of daily runs, each collection or dunning", field=key
        )
    return sorted(set(runs))
