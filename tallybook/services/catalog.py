"""The catalog: products, versioned prices, plans, tax rates and coupons."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core.metering import MeteringError, clean_filters
from tallybook.core.money import MoneyError, parse_decimal
from tallybook.core.periods import Interval, IntervalUnit
from tallybook.core.pricing import PriceTerms, PricingError
from tallybook.db.models import (
    Coupon,
    CouponRedemption,
    Customer,
    Plan,
    Price,
    Product,
    TaxRate,
    new_id,
)
from tallybook.services.base import (
    MANAGERS,
    WRITERS,
    Actor,
    Conflict,
    Database,
    InvalidInput,
    NotFound,
    audit,
    get_owned,
    utcnow,
)
from tallybook.services.metering import load_metrics
from tallybook.services.organizations import check_currency

# Bounds on user-entered numbers keep every rounded amount inside a 64-bit integer of minor
# units (even with three decimals) and stop a typo like 1e20 from poisoning a billing run.
MAX_MAGNITUDE = Decimal(10) ** 15
MAX_PLACES = 12


def _decimal(value: Any, field: str) -> Decimal:
    try:
        result = parse_decimal(value, field)
    except MoneyError as error:
        raise InvalidInput(str(error), field=field.split("[")[0].split(".")[0]) from None
    if abs(result) >= MAX_MAGNITUDE:
        raise InvalidInput(
            f"{field}: {value} is too large (at most 15 digits before the decimal point)",
            field=field.split("[")[0].split(".")[0],
        )
    if -int(result.as_tuple().exponent) > MAX_PLACES:
        raise InvalidInput(
            f"{field}: {value} has more than {MAX_PLACES} decimal places",
            field=field.split("[")[0].split(".")[0],
        )
    return result


def _check_numbers(data: Any, path: str) -> None:
    """Apply the same bounds to every number inside a price's terms."""
    if isinstance(data, dict):
        for key, item in data.items():
            _check_numbers(item, f"{path}.{key}")
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_numbers(item, f"{path}[{index}]")
    elif isinstance(data, str | int) and not isinstance(data, bool):
        try:
            parse_decimal(data, path)
        except MoneyError:
            return  # not a number (e.g. the model name): from_dict judges it
        _decimal(data, path)


def _instant(value: Any, field: str) -> datetime | None:
    """An aware date-time from an ISO string or a datetime; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"{field}: {value!r} is not an ISO 8601 date-time", field=field
            ) from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{field}: give a date-time with a time zone offset", field=field)
    return value


def _required(values: dict[str, Any], *names: str) -> None:
    for name in names:
        if values.get(name) in (None, ""):
            raise InvalidInput(f"{name}: is required", field=name)


def _interval(unit: str, count: int, field: str = "interval") -> Interval:
    try:
        return Interval(IntervalUnit(unit), int(count))
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{field}: must be day, week, month, quarter or year with a count of at least 1",
            field=field,
        ) from None


# -- tax rates ---------------------------------------------------------------------------------


def create_tax_rate(db: Database, actor: Actor, values: dict[str, Any]) -> TaxRate:
    actor.require(*MANAGERS, action="manage tax rates")
    _required(values, "code", "name", "jurisdiction", "percent")
    percent = _decimal(values["percent"], "percent")
    if not Decimal(0) <= percent <= Decimal(100):
        raise InvalidInput("percent: must be between 0 and 100", field="percent")
    try:
        with db.transaction() as session:
            row = TaxRate(
                id=new_id("txr"),
                organization_id=actor.organization_id,
                code=values["code"],
                name=values["name"],
                jurisdiction=str(values["jurisdiction"]).upper(),
                tax_category=values.get("tax_category", "standard"),
                percent=percent,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit(
                session,
                actor,
                "tax_rate.created",
                "tax_rate",
                row.id,
                {"code": row.code, "percent": str(percent)},
                after=row,
            )
    except IntegrityError:
        raise Conflict(f"code: tax rate {values['code']!r} already exists", field="code") from None
    return row


def list_tax_rates(db: Database, actor: Actor) -> list[TaxRate]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(TaxRate)
                .where(TaxRate.organization_id == actor.organization_id)
                .order_by(TaxRate.code)
            )
        )


def jurisdictions_of(country: str, region: str | None, city: str | None) -> list[str]:
    """The tax jurisdictions an address falls in: country, state, city."""
    result = [country.upper()]
    if region:
        result.append(f"{country}-{region}".upper())
        if city:
            result.append(f"{country}-{region}-{city}".upper())
    return result


# -- products and prices -----------------------------------------------------------------------


def create_product(db: Database, actor: Actor, values: dict[str, Any]) -> Product:
    actor.require(*MANAGERS, action="manage the catalog")
    _required(values, "code", "name")
    try:
        with db.transaction() as session:
            row = Product(
                id=new_id("prod"),
                organization_id=actor.organization_id,
                code=values["code"],
                name=values["name"],
                description=values.get("description"),
                tax_category=values.get("tax_category", "standard"),
                unit_label=values.get("unit_label"),
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit(
                session, actor, "product.created", "product", row.id, {"code": row.code}, after=row
            )
    except IntegrityError:
        raise Conflict(f"code: product {values['code']!r} already exists", field="code") from None
    return row


def list_products(db: Database, actor: Actor) -> list[Product]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(Product)
                .where(Product.organization_id == actor.organization_id)
                .order_by(Product.code)
            )
        )


def _terms(values: dict[str, Any]) -> PriceTerms:
    raw = values.get("terms")
    if not isinstance(raw, dict):
        raise InvalidInput("terms: give the pricing model and its parameters", field="terms")
    _check_numbers(raw, "terms")
    try:
        return PriceTerms.from_dict(raw)
    except PricingError as error:
        raise InvalidInput(f"terms.{error}", field="terms") from None
    except (MoneyError, ValueError) as error:
        raise InvalidInput(f"terms: {error}", field="terms") from None


def _usage_metering(values: dict[str, Any], kind: str) -> dict[str, Any]:
    """A usage price's metric, extra filters and group-by properties, checked."""
    code = values.get("metric_code")
    filters = values.get("usage_filters")
    group_by = values.get("group_by")
    if kind != "usage":
        for name, value in (
            ("metric_code", code),
            ("usage_filters", filters),
            ("group_by", group_by),
        ):
            if value:
                raise InvalidInput(f"{name}: only usage prices read a metric", field=name)
        return {"metric_code": None, "usage_filters": {}, "group_by": []}
    if not isinstance(code, str) or not code:
        raise InvalidInput(
            "metric_code: a usage price bills a metric; name it", field="metric_code"
        )
    try:
        clean = clean_filters(filters, "usage_filters")
    except MeteringError as error:
        raise InvalidInput(str(error), field="usage_filters") from None
    if group_by is None:
        group_by = []
    if isinstance(group_by, str):
        group_by = [group_by]
    if not isinstance(group_by, list) or not all(isinstance(g, str) and g for g in group_by):
        raise InvalidInput("group_by: give property names", field="group_by")
    if len(set(group_by)) != len(group_by):
        raise InvalidInput("group_by: a property is named twice", field="group_by")
    return {
        "metric_code": code,
        "usage_filters": {k: list(v) for k, v in clean.items()},
        "group_by": group_by,
    }


def create_price(db: Database, actor: Actor, values: dict[str, Any]) -> Price:
    """A new price (version 1) for a product."""
    actor.require(*MANAGERS, action="manage the catalog")
    _required(values, "code", "product_id", "currency", "terms")
    kind = values.get("kind", "recurring")
    if kind not in ("recurring", "usage"):
        raise InvalidInput("kind: must be recurring or usage", field="kind")
    timing = values.get("timing", "in_advance" if kind == "recurring" else "in_arrears")
    if timing not in ("in_advance", "in_arrears"):
        raise InvalidInput("timing: must be in_advance or in_arrears", field="timing")
    if kind == "usage" and timing != "in_arrears":
        raise InvalidInput("timing: usage is billed in arrears", field="timing")
    interval = _interval(values.get("interval", "month"), values.get("interval_count", 1))
    terms = _terms(values)
    currency = check_currency(values["currency"])
    now = utcnow()
    effective_from = _instant(values.get("effective_from"), "effective_from") or now
    metering = _usage_metering(values, kind)
    try:
        with db.transaction() as session:
            product = get_owned(session, Product, values["product_id"], actor)
            if metering["metric_code"] is not None and not load_metrics(
                session, actor.organization_id, [metering["metric_code"]]
            ):
                raise InvalidInput(
                    f"metric_code: no metric {metering['metric_code']!r}; create it first",
                    field="metric_code",
                )
            row = Price(
                id=new_id("price"),
                organization_id=actor.organization_id,
                product_id=product.id,
                code=values["code"],
                version=1,
                currency=currency,
                kind=kind,
                interval_unit=interval.unit.value,
                interval_count=interval.count,
                timing=timing,
                terms=terms.to_dict(),
                **metering,
                effective_from=effective_from,
                created_at=now,
            )
            session.add(row)
            session.flush()
            audit(
                session,
                actor,
                "price.created",
                "price",
                row.id,
                {"code": row.code, "version": 1, "terms": row.terms},
                after=row,
            )
    except IntegrityError:
        raise Conflict(
            f"code: price {values['code']!r} already exists; post a new version to change it",
            field="code",
        ) from None
    return row


def new_price_version(
    db: Database,
    actor: Actor,
    code: str,
    terms: dict[str, Any],
    effective_from: datetime | None = None,
) -> Price:
    """Change a price: a new version, in force from `effective_from` (default now)."""
    actor.require(*MANAGERS, action="manage the catalog")
    parsed = _terms({"terms": terms})
    effective_from = _instant(effective_from, "effective_from")
    with db.transaction() as session:
        latest = _latest_price(session, actor, code, lock=True)
        row = Price(
            id=new_id("price"),
            organization_id=actor.organization_id,
            product_id=latest.product_id,
            code=code,
            version=latest.version + 1,
            currency=latest.currency,
            kind=latest.kind,
            interval_unit=latest.interval_unit,
            interval_count=latest.interval_count,
            timing=latest.timing,
            terms=parsed.to_dict(),
            metric_code=latest.metric_code,
            usage_filters=latest.usage_filters,
            group_by=latest.group_by,
            effective_from=effective_from or utcnow(),
            created_at=utcnow(),
        )
        if row.effective_from < latest.effective_from:
            raise InvalidInput(
                "effective_from: a new version cannot take effect before the previous one",
                field="effective_from",
            )
        session.add(row)
        session.flush()
        audit(
            session,
            actor,
            "price.versioned",
            "price",
            row.id,
            {"code": code, "version": row.version, "before": latest.terms, "after": row.terms},
        )
    return row


def _latest_price(session: Session, actor: Actor, code: str, *, lock: bool = False) -> Price:
    query = (
        select(Price)
        .where(Price.organization_id == actor.organization_id, Price.code == code)
        .order_by(Price.version.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"price {code} not found")
    return row


def get_price(db: Database, actor: Actor, price_id: str) -> Price:
    with db.reading() as session:
        return get_owned(session, Price, price_id, actor)


def list_prices(db: Database, actor: Actor, code: str | None = None) -> list[Price]:
    with db.reading() as session:
        query = select(Price).where(Price.organization_id == actor.organization_id)
        if code:
            query = query.where(Price.code == code)
        return list(session.scalars(query.order_by(Price.code, Price.version)))


# -- plans -------------------------------------------------------------------------------------


def create_plan(db: Database, actor: Actor, values: dict[str, Any]) -> Plan:
    actor.require(*MANAGERS, action="manage the catalog")
    _required(values, "code", "name", "currency", "price_codes")
    currency = check_currency(values["currency"])
    interval = _interval(values.get("interval", "month"), values.get("interval_count", 1))
    codes = values["price_codes"]
    if not isinstance(codes, list) or not codes:
        raise InvalidInput("price_codes: give at least one price code", field="price_codes")
    trial_days = values.get("trial_days", 0)
    if not isinstance(trial_days, int) or trial_days < 0:
        raise InvalidInput(
            "trial_days: must be a whole number of days, 0 or more", field="trial_days"
        )
    try:
        with db.transaction() as session:
            for index, code in enumerate(codes):
                price = session.scalars(
                    select(Price)
                    .where(Price.organization_id == actor.organization_id, Price.code == code)
                    .limit(1)
                ).first()
                if price is None:
                    raise InvalidInput(
                        f"price_codes[{index}]: no price {code!r}", field="price_codes"
                    )
                if price.currency != currency:
                    raise InvalidInput(
                        f"price_codes[{index}]: price {code} is in {price.currency}"
                        f", the plan in {currency}",
                        field="price_codes",
                    )
                if (price.interval_unit, price.interval_count) != (
                    interval.unit.value,
                    interval.count,
                ):
                    raise InvalidInput(
                        f"price_codes[{index}]: price {code} bills every "
                        f"{price.interval_count} {price.interval_unit}, the plan "
                        f"{interval.label()}",
                        field="price_codes",
                    )
            row = Plan(
                id=new_id("plan"),
                organization_id=actor.organization_id,
                code=values["code"],
                name=values["name"],
                currency=currency,
                interval_unit=interval.unit.value,
                interval_count=interval.count,
                price_codes=list(codes),
                trial_days=trial_days,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit(
                session,
                actor,
                "plan.created",
                "plan",
                row.id,
                {"code": row.code, "price_codes": codes},
                after=row,
            )
    except IntegrityError:
        raise Conflict(f"code: plan {values['code']!r} already exists", field="code") from None
    return row


def get_plan(db: Database, actor: Actor, plan_id: str) -> Plan:
    with db.reading() as session:
        return get_owned(session, Plan, plan_id, actor)


def list_plans(db: Database, actor: Actor) -> list[Plan]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(Plan)
                .where(Plan.organization_id == actor.organization_id)
                .order_by(Plan.code)
            )
        )


# -- coupons -----------------------------------------------------------------------------------


def create_coupon(db: Database, actor: Actor, values: dict[str, Any]) -> Coupon:
    actor.require(*MANAGERS, action="manage coupons")
    _required(values, "code", "name", "kind", "value", "duration")
    kind = values["kind"]
    if kind not in ("percent", "fixed"):
        raise InvalidInput("kind: must be percent or fixed", field="kind")
    value = _decimal(values["value"], "value")
    if value <= 0 or (kind == "percent" and value > 100):
        raise InvalidInput(
            "value: a percentage is above 0 and at most 100; an amount above 0", field="value"
        )
    currency = values.get("currency")
    if kind == "fixed":
        if not currency:
            raise InvalidInput("currency: a fixed-amount coupon needs a currency", field="currency")
        currency = check_currency(currency)
    duration = values["duration"]
    periods = values.get("duration_periods")
    if duration not in ("once", "repeating", "forever"):
        raise InvalidInput("duration: must be once, repeating or forever", field="duration")
    if duration == "repeating" and (not isinstance(periods, int) or periods < 1):
        raise InvalidInput(
            "duration_periods: a repeating coupon needs a number of invoices",
            field="duration_periods",
        )
    try:
        with db.transaction() as session:
            row = Coupon(
                id=new_id("coup"),
                organization_id=actor.organization_id,
                code=values["code"],
                name=values["name"],
                kind=kind,
                value=value,
                currency=currency,
                duration=duration,
                duration_periods=periods if duration == "repeating" else None,
                product_codes=values.get("product_codes"),
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit(session, actor, "coupon.created", "coupon", row.id, {"code": row.code}, after=row)
    except IntegrityError:
        raise Conflict(f"code: coupon {values['code']!r} already exists", field="code") from None
    return row


def list_coupons(db: Database, actor: Actor) -> list[Coupon]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(Coupon)
                .where(Coupon.organization_id == actor.organization_id)
                .order_by(Coupon.code)
            )
        )


def apply_coupon(
    db: Database, actor: Actor, customer_id: str, coupon_code: str
) -> CouponRedemption:
    """Attach a coupon to a customer; it discounts the customer's next invoices."""
    actor.require(*WRITERS, action="apply coupons")
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor)
        coupon = session.scalars(
            select(Coupon).where(
                Coupon.organization_id == actor.organization_id, Coupon.code == coupon_code
            )
        ).first()
        if coupon is None:
            raise NotFound(f"coupon {coupon_code} not found")
        if coupon.kind == "fixed" and coupon.currency != customer.currency:
            raise InvalidInput(
                f"coupon: {coupon.code} is in {coupon.currency}, the customer "
                f"bills in {customer.currency}",
                field="coupon",
            )
        active = session.scalar(
            select(func.count())
            .select_from(CouponRedemption)
            .where(
                CouponRedemption.customer_id == customer.id,
                CouponRedemption.coupon_id == coupon.id,
                CouponRedemption.active.is_(True),
            )
        )
        if active:
            raise Conflict(
                f"coupon: {coupon.code} is already applied to this customer", field="coupon"
            )
        row = CouponRedemption(
            id=new_id("red"),
            organization_id=actor.organization_id,
            coupon_id=coupon.id,
            customer_id=customer.id,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        audit(
            session,
            actor,
            "coupon.applied",
            "customer",
            customer.id,
            {"coupon": coupon.code},
            after=row,
        )
    return row
