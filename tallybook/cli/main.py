"""The `tallybook` command line: set up an organisation, keep the catalog and customers, run
billing and work with invoices, credit and debit notes from a terminal or a script (--json).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError, ProgrammingError

from tallybook.api import render
from tallybook.config import Settings, sqlite_path
from tallybook.core.money import format_minor
from tallybook.db.engine import upgrade_database
from tallybook.services import (
    billing,
    catalog,
    contracts,
    credit_notes,
    current_usage,
    customers,
    event_import,
    events,
    invoices,
    late_usage,
    ledger,
    metering,
    organizations,
    payments,
    subscriptions,
)
from tallybook.services.base import Actor, Database, NotFound, ServiceError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="tallybook",
    help="Tallybook: subscription and usage billing, invoices, credit and debit notes.",
    no_args_is_help=True,
    add_completion=False,
    # A crash must never print the locals: they hold API keys.
    pretty_exceptions_show_locals=False,
)


def _group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


keys_app = _group("keys", "API keys of the organisation (admin only).")
customers_app = _group("customers", "Customers: who is billed, where and on which terms.")
products_app = _group("products", "Products of the catalog.")
prices_app = _group("prices", "Versioned prices of products.")
plans_app = _group("plans", "Plans: bundles of prices a subscription follows.")
tax_rates_app = _group("tax-rates", "Tax rates by jurisdiction and tax category.")
coupons_app = _group("coupons", "Coupons and their application to customers.")
subscriptions_app = _group("subscriptions", "Subscriptions, their changes and metered usage.")
charges_app = _group("charges", "One-off and time-and-materials charges for the next invoice.")
invoices_app = _group("invoices", "Drafts and issued invoices.")
credit_notes_app = _group("credit-notes", "Credit notes against issued invoices.")
debit_notes_app = _group("debit-notes", "Debit notes: further charges on issued invoices.")
metrics_app = _group("metrics", "Billable metrics: what usage events add up to.")
events_app = _group("events", "Usage events: send one, import a file, the quarantine.")
usage_app = _group("usage", "Usage billing: late usage waiting to be re-rated or billed.")
payments_app = _group("payments", "Payments received, their reversal and refunds.")
ledger_app = _group("ledger", "The general ledger: chart of accounts, journal, trial balance.")

# -- shared options ----------------------------------------------------------------------------

ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TALLYBOOK_API_KEY",
        show_envvar=True,
        show_default=False,
        help="API key to act with.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


# -- plumbing ----------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: how every user mistake ends."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _database_message(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return "the database has no Tallybook schema; run `tallybook init` first"
    return f"database: {text}"


def _guarded(func: F) -> F:
    """Turn refusals and bad arguments into `error: <detail>` and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ServiceError as error:
            _fail(error.detail)
        except (OperationalError, ProgrammingError) as error:
            _fail(_database_message(error))
        except ValueError as error:
            _fail(str(error) or error.__class__.__name__)

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer, name: str, **options: Any) -> Callable[[F], F]:
    """Register a command whose service errors end as one line on stderr."""

    def decorate(func: F) -> F:
        group.command(name, **options)(_guarded(func))
        return func

    return decorate


def _database_url() -> str:
    return Settings.from_env().database_url


def _open_database() -> Database:
    url = _database_url()
    path = sqlite_path(url)
    if path is not None and not path.exists():
        _fail(f"no database at {path}; run `tallybook init` first or set TALLYBOOK_DATABASE_URL")
    return Database(url)


@contextmanager
def _session(api_key: str | None) -> Iterator[tuple[Database, Actor]]:
    """The database and the actor behind the API key, for one command."""
    if not api_key:
        _fail("no API key: pass --api-key or set TALLYBOOK_API_KEY", code=2)
    db = _open_database()
    try:
        actor = organizations.authenticate(db, api_key.strip())
        yield db, actor
    finally:
        db.dispose()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def _console() -> Console:
    # Off a terminal (pipes, tests) a wide fixed width keeps ids on one line.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, width=width)


def _cell(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, Text):
        return value
    if isinstance(value, Decimal):
        return Text(format(value, "f"))
    if isinstance(value, datetime | date):
        return Text(value.isoformat())
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(str(value))


def _table(
    columns: list[str],
    rows: list[list[Any]],
    *,
    title: str | None = None,
    right: tuple[str, ...] = (),
) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    _console().print(table)


def _fields(pairs: list[tuple[str, Any]]) -> None:
    """A two-column key/value listing."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in pairs:
        table.add_row(Text(label), _cell(value))
    _console().print(table)


def _dec(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _instant(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date-time with an offset, e.g. 2026-01-01T00:00:00+00:00 (or ...Z)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{option}: {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"{option}: {value!r} needs a time zone offset, e.g. {parsed.isoformat()}+00:00"
        )
    return parsed


def _json_object(value: str, option: str) -> dict[str, Any]:
    """JSON from the argument (or from a file given as @path); numbers stay exact decimals."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"{option}: cannot read {value[1:]}: {error.strerror}") from None
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{option}: not valid JSON ({error.msg} at column {error.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f'{option}: give a JSON object such as {{"model": "per_unit", "amount": "10.00"}}'
        )
    return data


def _pages(
    fetch: Callable[[str | None], tuple[list[Any], str | None]], limit: int | None
) -> list[Any]:
    """Follow a service's cursor until the end or until `limit` rows."""
    rows: list[Any] = []
    after: str | None = None
    while True:
        batch, after = fetch(after)
        rows.extend(batch)
        if after is None or (limit is not None and len(rows) >= limit):
            break
    return rows if limit is None else rows[:limit]


def _product_id(db: Database, actor: Actor, ref: str | None) -> str | None:
    """A product by id or by code."""
    if ref is None:
        return None
    for product in catalog.list_products(db, actor):
        if ref in (product.id, product.code):
            return product.id
    raise NotFound(f"product {ref} not found")


def _plan_id(db: Database, actor: Actor, ref: str | None) -> str | None:
    """A plan by id or by code."""
    if ref is None:
        return None
    for plan in catalog.list_plans(db, actor):
        if ref in (plan.id, plan.code):
            return plan.id
    raise NotFound(f"plan {ref} not found")


def _invoice_id(db: Database, actor: Actor, ref: str) -> str:
    """An invoice by id or by number."""
    invoice, _ = invoices.get_invoice(db, actor, ref)
    return invoice.id


def _invoice_label(invoice: Any) -> str:
    return invoice.number or invoice.id


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Only the options the user gave, so the services' defaults apply to the rest."""
    return {key: value for key, value in values.items() if value is not None}


def _pairs(specs: list[str] | None, option: str) -> list[tuple[str, str]]:
    """KEY=VALUE options, in the order given."""
    pairs = []
    for spec in specs or []:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{option} {spec!r}: expected KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _filters(specs: list[str] | None, option: str) -> dict[str, list[str]] | None:
    """--filter region=eu --filter region=us: {"region": ["eu", "us"]}."""
    result: dict[str, list[str]] = {}
    for key, value in _pairs(specs, option):
        if not value:
            raise ValueError(f"{option} {key}=: give the value to keep")
        result.setdefault(key, []).append(value)
    return result or None


# -- organisation set-up -----------------------------------------------------------------------


@command(app, "init")
def init(
    name: Annotated[str, typer.Option("--name", help="Legal name of the organisation.")],
    currency: Annotated[str, typer.Option("--currency", help="Default currency (ISO 4217).")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone.")] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Create or upgrade the database schema and create an organisation with an admin key."""
    organizations.check_currency(currency)
    organizations.check_timezone(timezone)
    url = _database_url()
    upgrade_database(url)
    db = Database(url)
    try:
        org, key = organizations.create_organization(db, name, currency, timezone=timezone)
    finally:
        db.dispose()
    if as_json:
        _emit_json({"organization_id": org.id, "api_key": key.secret})
        return
    typer.echo(f"Organisation {org.name} created: {org.id}")
    typer.echo("Admin API key (shown only once; it cannot be recovered, store it now):")
    typer.echo(f"  {key.secret}")
    typer.echo("Use it with --api-key or: export TALLYBOOK_API_KEY=<key>")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (one per CPU core).")
    ] = 1,
) -> None:
    """Run the HTTP API (uvicorn) on the database of TALLYBOOK_DATABASE_URL."""
    import uvicorn

    # A worker answers the supervisor's health check only once it has imported this CLI and
    # the app (seconds on a busy machine); uvicorn's default 5 s kills and restarts it forever.
    uvicorn.run(
        "tallybook.api.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=60,
    )


@command(app, "demo")
def demo(
    database: Annotated[
        str | None,
        typer.Option("--database", help="SQLite file to (re)build (default ./tallybook-demo.db)."),
    ] = None,
) -> None:
    """Build a demo organisation in a fresh SQLite file, bill a few months and report."""
    try:
        from tallybook.demo import main as demo_main
    except ImportError as error:
        _fail(f"the demo is not available: {error}")
    code = demo_main(database)
    raise typer.Exit(code or 0)


# -- API keys ----------------------------------------------------------------------------------

KEY_FIELDS = ("id", "name", "role", "prefix", "created_at", "revoked_at")


@command(keys_app, "create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    role: Annotated[
        str, typer.Option("--role", help="admin, billing_manager, billing_clerk or viewer.")
    ],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is shown only once."""
    with _session(api_key) as (db, actor):
        key = organizations.create_api_key(db, actor, name, role)
    if as_json:
        _emit_json({"id": key.id, "name": name, "role": key.role.value, "api_key": key.secret})
        return
    typer.echo(f"API key {key.id} ({key.role.value}) created. The secret is shown only once:")
    typer.echo(f"  {key.secret}")


@command(keys_app, "list")
def keys_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List the organisation's API keys (never their secrets)."""
    with _session(api_key) as (db, actor):
        rows = organizations.list_api_keys(db, actor)
    if as_json:
        _emit_json([render.row(k, KEY_FIELDS) for k in rows])
        return
    _table(
        ["ID", "Name", "Role", "Prefix", "Created", "Revoked"],
        [[k.id, k.name, k.role, k.prefix, k.created_at, k.revoked_at] for k in rows],
    )


# -- customers ---------------------------------------------------------------------------------


@command(customers_app, "create")
def customers_create(
    name: Annotated[str, typer.Option("--name", help="Legal name.")],
    country: Annotated[str, typer.Option("--country", help="ISO 3166 alpha-2 code, e.g. DE.")],
    currency: Annotated[str, typer.Option("--currency", help="Billing currency (ISO 4217).")],
    email: Annotated[
        list[str] | None, typer.Option("--email", help="Billing e-mail address (repeatable).")
    ] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA time zone.")] = None,
    tax_id: Annotated[
        list[str] | None, typer.Option("--tax-id", help="Tax id such as a VAT number (repeatable).")
    ] = None,
    external_id: Annotated[
        str | None, typer.Option("--external-id", help="Your own id for the customer.")
    ] = None,
    payment_terms: Annotated[
        int | None, typer.Option("--payment-terms", help="Days until an invoice is due.")
    ] = None,
    tax_exempt: Annotated[bool, typer.Option("--tax-exempt", help="Charge no tax.")] = False,
    reverse_charge: Annotated[
        bool, typer.Option("--reverse-charge", help="The customer accounts for the tax.")
    ] = False,
    po_required: Annotated[
        bool, typer.Option("--po-required", help="Invoices need a purchase order number.")
    ] = False,
    region: Annotated[str | None, typer.Option("--region", help="State or region code.")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Street address.")] = None,
    address2: Annotated[str | None, typer.Option("--address2", help="Second line.")] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="Invoice language (ISO 639-1).")
    ] = None,
    bank_account: Annotated[
        list[str] | None,
        typer.Option("--bank-account", help="IBAN the customer pays from (repeatable)."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a customer."""
    values = _compact(
        {
            "legal_name": name,
            "country": country,
            "currency": currency,
            "emails": email or None,
            "timezone": timezone,
            "tax_ids": tax_id or None,
            "external_id": external_id,
            "payment_terms_days": payment_terms,
            "tax_exempt": tax_exempt or None,
            "reverse_charge": reverse_charge or None,
            "po_required": po_required or None,
            "region": region,
            "city": city,
            "postal_code": postal_code,
            "address_line1": address,
            "address_line2": address2,
            "language": language,
            "bank_accounts": bank_account or None,
        }
    )
    with _session(api_key) as (db, actor):
        customer = customers.create_customer(db, actor, values)
    if as_json:
        _emit_json(render.customer(customer))
        return
    typer.echo(f"Customer {customer.legal_name} created: {customer.id}")


@command(customers_app, "list")
def customers_list(
    include_archived: Annotated[bool, typer.Option("--all", help="Include archived.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List customers."""
    with _session(api_key) as (db, actor):
        rows = _pages(
            lambda after: customers.list_customers(
                db, actor, limit=100, after=after, include_archived=include_archived
            ),
            limit,
        )
    if as_json:
        _emit_json([render.customer(c) for c in rows])
        return
    _table(
        ["ID", "Name", "Country", "Currency", "Credit balance", "Archived"],
        [
            [
                c.id,
                c.legal_name,
                c.country,
                c.currency,
                format_minor(c.credit_balance_minor, c.currency),
                c.archived_at,
            ]
            for c in rows
        ],
        right=("Credit balance",),
    )


@command(customers_app, "show")
def customers_show(customer_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Show one customer."""
    with _session(api_key) as (db, actor):
        c = customers.get_customer(db, actor, customer_id)
    if as_json:
        _emit_json(render.customer(c))
        return
    address = ", ".join(
        part
        for part in (c.address_line1, c.address_line2, c.postal_code, c.city, c.region, c.country)
        if part
    )
    treatment = (
        "tax exempt" if c.tax_exempt else "reverse charge" if c.reverse_charge else "standard"
    )
    _fields(
        [
            ("ID", c.id),
            ("Legal name", c.legal_name),
            ("External id", c.external_id),
            ("E-mails", ", ".join(c.emails or [])),
            ("Address", address),
            ("Currency", c.currency),
            ("Time zone", c.timezone),
            ("Language", c.language),
            ("Payment terms", f"{c.payment_terms_days} days"),
            ("Tax ids", ", ".join(f"{t['country']} {t['value']}" for t in c.tax_ids or [])),
            ("Tax treatment", treatment),
            ("PO required", c.po_required),
            ("Credit balance", format_minor(c.credit_balance_minor, c.currency)),
            ("Archived", c.archived_at),
            ("Created", c.created_at),
        ]
    )


@command(customers_app, "archive")
def customers_archive(
    customer_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a customer without history, or archive one that has some."""
    with _session(api_key) as (db, actor):
        outcome = customers.delete_customer(db, actor, customer_id)
    if as_json:
        _emit_json({"id": customer_id, "result": outcome})
        return
    if outcome == "deleted":
        typer.echo(f"Customer {customer_id} deleted (it had no billing history).")
    else:
        typer.echo(f"Customer {customer_id} archived (it has billing history, so it is kept).")


# -- catalog -----------------------------------------------------------------------------------


@command(products_app, "create")
def products_create(
    code: Annotated[str, typer.Option("--code")],
    name: Annotated[str, typer.Option("--name")],
    tax_category: Annotated[
        str | None, typer.Option("--tax-category", help="Tax category (default standard).")
    ] = None,
    unit_label: Annotated[
        str | None, typer.Option("--unit-label", help="What a unit is called, e.g. seat.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a product."""
    values = _compact(
        {
            "code": code,
            "name": name,
            "tax_category": tax_category,
            "unit_label": unit_label,
            "description": description,
        }
    )
    with _session(api_key) as (db, actor):
        product = catalog.create_product(db, actor, values)
    if as_json:
        _emit_json(render.row(product, render.PRODUCT))
        return
    typer.echo(f"Product {product.code} created: {product.id}")


@command(products_app, "list")
def products_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List products."""
    with _session(api_key) as (db, actor):
        rows = catalog.list_products(db, actor)
    if as_json:
        _emit_json([render.row(p, render.PRODUCT) for p in rows])
        return
    _table(
        ["ID", "Code", "Name", "Tax category", "Unit"],
        [[p.id, p.code, p.name, p.tax_category, p.unit_label] for p in rows],
    )


def _terms_text(terms: dict[str, Any]) -> str:
    return json.dumps(terms, ensure_ascii=False, default=_json_default, separators=(", ", ": "))


@command(prices_app, "create")
def prices_create(
    code: Annotated[str, typer.Option("--code")],
    product: Annotated[str, typer.Option("--product", help="Product id or code.")],
    currency: Annotated[str, typer.Option("--currency")],
    terms: Annotated[
        str,
        typer.Option(
            "--terms",
            help="Pricing terms as JSON (or @file), e.g. "
            '\'{"model": "per_unit", "amount": "10.00"}\'.',
        ),
    ],
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="recurring or usage (default: usage with --metric)."),
    ] = None,
    timing: Annotated[
        str | None, typer.Option("--timing", help="in_advance or in_arrears (usage: in_arrears).")
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="day, week, month, quarter or year.")
    ] = "month",
    interval_count: Annotated[int, typer.Option("--interval-count", min=1)] = 1,
    effective_from: Annotated[
        str | None,
        typer.Option(
            "--effective-from", help="ISO date-time the price applies from (default now)."
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Usage prices: code of the metric billed.")
    ] = None,
    usage_filter: Annotated[
        list[str] | None,
        typer.Option(
            "--usage-filter",
            help="Usage prices: only events with this property, KEY=VALUE (repeatable).",
        ),
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by", help="Usage prices: one line per value of this property (repeatable)."
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a price (version 1) for a product."""
    values = _compact(
        {
            "code": code,
            "currency": currency,
            "terms": _json_object(terms, "--terms"),
            "kind": kind or ("usage" if metric else "recurring"),
            "timing": timing,
            "interval": interval,
            "interval_count": interval_count,
            "effective_from": _instant(effective_from, "--effective-from"),
            "metric_code": metric,
            "usage_filters": _filters(usage_filter, "--usage-filter"),
            "group_by": list(group_by) if group_by else None,
        }
    )
    with _session(api_key) as (db, actor):
        values["product_id"] = _product_id(db, actor, product)
        price = catalog.create_price(db, actor, values)
    if as_json:
        _emit_json(render.row(price, render.PRICE))
        return
    typer.echo(f"Price {price.code} version {price.version} created: {price.id}")


@command(prices_app, "list")
def prices_list(
    code: Annotated[str | None, typer.Option("--code", help="Only this price's versions.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List prices and their versions."""
    with _session(api_key) as (db, actor):
        rows = catalog.list_prices(db, actor, code)
    if as_json:
        _emit_json([render.row(p, render.PRICE) for p in rows])
        return
    _table(
        ["Code", "Version", "Currency", "Kind", "Every", "Timing", "Terms", "Effective from"],
        [
            [
                p.code,
                p.version,
                p.currency,
                f"{p.kind} of {p.metric_code}" if p.metric_code else p.kind,
                f"{p.interval_count} {p.interval_unit}",
                p.timing,
                _terms_text(p.terms),
                p.effective_from,
            ]
            for p in rows
        ],
    )


@command(prices_app, "version")
def prices_version(
    code: str,
    terms: Annotated[str, typer.Option("--terms", help="New pricing terms as JSON (or @file).")],
    effective_from: Annotated[
        str | None,
        typer.Option(
            "--effective-from", help="ISO date-time the version applies from (default now)."
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a price: a new version in force from --effective-from."""
    parsed_terms = _json_object(terms, "--terms")
    at = _instant(effective_from, "--effective-from")
    with _session(api_key) as (db, actor):
        price = catalog.new_price_version(db, actor, code, parsed_terms, at)
    if as_json:
        _emit_json(render.row(price, render.PRICE))
        return
    typer.echo(
        f"Price {price.code} version {price.version} in force from "
        f"{price.effective_from.isoformat()}: {price.id}"
    )


@command(plans_app, "create")
def plans_create(
    code: Annotated[str, typer.Option("--code")],
    name: Annotated[str, typer.Option("--name")],
    currency: Annotated[str, typer.Option("--currency")],
    price: Annotated[list[str], typer.Option("--price", help="Price code (repeatable).")],
    interval: Annotated[str, typer.Option("--interval")] = "month",
    interval_count: Annotated[int, typer.Option("--interval-count", min=1)] = 1,
    trial_days: Annotated[int, typer.Option("--trial-days", min=0)] = 0,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a plan from price codes."""
    values = {
        "code": code,
        "name": name,
        "currency": currency,
        "price_codes": list(price),
        "interval": interval,
        "interval_count": interval_count,
        "trial_days": trial_days,
    }
    with _session(api_key) as (db, actor):
        plan = catalog.create_plan(db, actor, values)
    if as_json:
        _emit_json(render.row(plan, render.PLAN))
        return
    typer.echo(f"Plan {plan.code} created: {plan.id}")


@command(plans_app, "list")
def plans_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List plans."""
    with _session(api_key) as (db, actor):
        rows = catalog.list_plans(db, actor)
    if as_json:
        _emit_json([render.row(p, render.PLAN) for p in rows])
        return
    _table(
        ["ID", "Code", "Name", "Currency", "Every", "Prices", "Trial days"],
        [
            [
                p.id,
                p.code,
                p.name,
                p.currency,
                f"{p.interval_count} {p.interval_unit}",
                ", ".join(p.price_codes),
                p.trial_days,
            ]
            for p in rows
        ],
    )


@command(tax_rates_app, "create")
def tax_rates_create(
    code: Annotated[str, typer.Option("--code")],
    name: Annotated[str, typer.Option("--name", help="Name printed on invoices, e.g. VAT 19%.")],
    jurisdiction: Annotated[
        str, typer.Option("--jurisdiction", help="Country (DE), state (US-CA) or city (US-CA-SF).")
    ],
    percent: Annotated[str, typer.Option("--percent", help="Rate in percent, e.g. 19.")],
    category: Annotated[
        str | None, typer.Option("--category", help="Tax category (default standard).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tax rate."""
    values = _compact(
        {
            "code": code,
            "name": name,
            "jurisdiction": jurisdiction,
            "percent": percent,
            "tax_category": category,
        }
    )
    with _session(api_key) as (db, actor):
        rate = catalog.create_tax_rate(db, actor, values)
    if as_json:
        _emit_json(render.row(rate, render.TAX_RATE))
        return
    typer.echo(
        f"Tax rate {rate.code} ({_dec(rate.percent)}% in {rate.jurisdiction}) created: {rate.id}"
    )


@command(tax_rates_app, "list")
def tax_rates_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List tax rates."""
    with _session(api_key) as (db, actor):
        rows = catalog.list_tax_rates(db, actor)
    if as_json:
        _emit_json([render.row(r, render.TAX_RATE) for r in rows])
        return
    _table(
        ["Code", "Name", "Jurisdiction", "Category", "Percent", "Active"],
        [[r.code, r.name, r.jurisdiction, r.tax_category, _dec(r.percent), r.active] for r in rows],
        right=("Percent",),
    )


REDEMPTION_FIELDS = ("id", "coupon_id", "customer_id", "invoices_applied", "active", "created_at")


@command(coupons_app, "create")
def coupons_create(
    code: Annotated[str, typer.Option("--code")],
    name: Annotated[str, typer.Option("--name")],
    kind: Annotated[str, typer.Option("--kind", help="percent or fixed.")],
    value: Annotated[str, typer.Option("--value", help="Percent, or amount for fixed.")],
    duration: Annotated[
        str, typer.Option("--duration", help="once, repeating or forever.")
    ] = "once",
    periods: Annotated[
        int | None, typer.Option("--periods", help="Invoices a repeating coupon applies to.")
    ] = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="Currency of a fixed coupon.")
    ] = None,
    product: Annotated[
        list[str] | None, typer.Option("--product", help="Limit to this product code (repeatable).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a coupon."""
    values = _compact(
        {
            "code": code,
            "name": name,
            "kind": kind,
            "value": value,
            "duration": duration,
            "duration_periods": periods,
            "currency": currency,
            "product_codes": list(product) if product else None,
        }
    )
    with _session(api_key) as (db, actor):
        coupon = catalog.create_coupon(db, actor, values)
    if as_json:
        _emit_json(render.row(coupon, render.COUPON))
        return
    typer.echo(f"Coupon {coupon.code} created: {coupon.id}")


@command(coupons_app, "list")
def coupons_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List coupons."""
    with _session(api_key) as (db, actor):
        rows = catalog.list_coupons(db, actor)
    if as_json:
        _emit_json([render.row(c, render.COUPON) for c in rows])
        return
    _table(
        ["Code", "Name", "Kind", "Value", "Currency", "Duration", "Products"],
        [
            [
                c.code,
                c.name,
                c.kind,
                _dec(c.value),
                c.currency,
                c.duration + (f" ({c.duration_periods})" if c.duration_periods else ""),
                ", ".join(c.product_codes or []),
            ]
            for c in rows
        ],
    )


@command(coupons_app, "apply")
def coupons_apply(
    customer_id: str, code: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Apply a coupon to a customer's next invoices."""
    with _session(api_key) as (db, actor):
        redemption = catalog.apply_coupon(db, actor, customer_id, code)
    if as_json:
        _emit_json(render.row(redemption, REDEMPTION_FIELDS))
        return
    typer.echo(f"Coupon {code} applied to customer {customer_id}: {redemption.id}")


# -- subscriptions -----------------------------------------------------------------------------


@command(subscriptions_app, "create")
def subscriptions_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    plan: Annotated[str, typer.Option("--plan", help="Plan id or code.")],
    quantity: Annotated[str | None, typer.Option("--quantity", help="Default 1.")] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="ISO date-time with offset (default now).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="ISO date-time it ends.")] = None,
    trial_days: Annotated[
        int | None, typer.Option("--trial-days", min=0, help="Default: the plan's.")
    ] = None,
    anchor: Annotated[
        str | None, typer.Option("--anchor", help="calendar or anniversary (default anniversary).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a subscription."""
    values = _compact(
        {
            "customer_id": customer,
            "quantity": quantity,
            "start_at": _instant(start, "--start"),
            "end_at": _instant(end, "--end"),
            "trial_days": trial_days,
            "anchor": anchor,
        }
    )
    with _session(api_key) as (db, actor):
        values["plan_id"] = _plan_id(db, actor, plan)
        subscription = subscriptions.create_subscription(db, actor, values)
    if as_json:
        _emit_json(render.row(subscription, render.SUBSCRIPTION))
        return
    typer.echo(
        f"Subscription {subscription.id} created ({subscription.status}); first billing "
        f"at {subscription.next_billing_at.isoformat()}"
    )


@command(subscriptions_app, "list")
def subscriptions_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List subscriptions."""
    with _session(api_key) as (db, actor):
        rows = _pages(
            lambda after: subscriptions.list_subscriptions(
                db, actor, customer_id=customer, limit=100, after=after
            ),
            limit,
        )
        plans = {p.id: p.code for p in catalog.list_plans(db, actor)}
    if as_json:
        _emit_json([render.row(s, render.SUBSCRIPTION) for s in rows])
        return
    _table(
        ["ID", "Customer", "Plan", "Quantity", "Status", "Started", "Next billing", "Ends"],
        [
            [
                s.id,
                s.customer_id,
                plans.get(s.plan_id, s.plan_id),
                _dec(s.quantity),
                s.status,
                s.start_at,
                s.next_billing_at,
                s.end_at,
            ]
            for s in rows
        ],
    )


@command(subscriptions_app, "change")
def subscriptions_change(
    subscription_id: str,
    plan: Annotated[str | None, typer.Option("--plan", help="New plan id or code.")] = None,
    quantity: Annotated[str | None, typer.Option("--quantity", help="New quantity.")] = None,
    effective_at: Annotated[
        str | None,
        typer.Option("--effective-at", help="ISO date-time (default now; may be backdated)."),
    ] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upgrade, downgrade or change the quantity, now, later or backdated."""
    values = _compact(
        {
            "quantity": quantity,
            "note": note,
            "effective_at": _instant(effective_at, "--effective-at"),
        }
    )
    with _session(api_key) as (db, actor):
        if plan is not None:
            values["plan_id"] = _plan_id(db, actor, plan)
        change = subscriptions.change_subscription(db, actor, subscription_id, values)
        plan_code = catalog.get_plan(db, actor, change.plan_id).code if change.plan_id else ""
    if as_json:
        _emit_json(render.row(change, render.CHANGE))
        return
    typer.echo(
        f"Subscription {subscription_id}: plan {plan_code}, quantity "
        f"{_dec(change.quantity)}, effective {change.effective_at.isoformat()} "
        f"({change.note or change.kind}; {change.id})"
    )


@command(subscriptions_app, "cancel")
def subscriptions_cancel(
    subscription_id: str,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="End when the current period ends.")
    ] = False,
    effective_at: Annotated[
        str | None, typer.Option("--effective-at", help="ISO date-time (default now).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a subscription."""
    at = _instant(effective_at, "--effective-at")
    with _session(api_key) as (db, actor):
        subscription = subscriptions.cancel_subscription(
            db, actor, subscription_id, at_period_end=at_period_end, effective_at=at
        )
    if as_json:
        _emit_json(render.row(subscription, render.SUBSCRIPTION))
        return
    end = subscription.end_at.isoformat() if subscription.end_at else "now"
    typer.echo(f"Subscription {subscription.id} cancelled, effective {end} ({subscription.status})")


@command(subscriptions_app, "pause")
def subscriptions_pause(
    subscription_id: str,
    effective_at: Annotated[
        str | None, typer.Option("--effective-at", help="ISO date-time (default now).")
    ] = None,
    resume_at: Annotated[
        str | None, typer.Option("--resume-at", help="ISO date-time to resume automatically.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause a subscription."""
    at = _instant(effective_at, "--effective-at")
    resume = _instant(resume_at, "--resume-at")
    with _session(api_key) as (db, actor):
        subscription = subscriptions.pause_subscription(
            db, actor, subscription_id, effective_at=at, resume_at=resume
        )
    if as_json:
        _emit_json(render.row(subscription, render.SUBSCRIPTION))
        return
    typer.echo(f"Subscription {subscription.id} paused ({subscription.status})")


@command(subscriptions_app, "resume")
def subscriptions_resume(
    subscription_id: str,
    effective_at: Annotated[
        str | None, typer.Option("--effective-at", help="ISO date-time (default now).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resume a paused subscription."""
    at = _instant(effective_at, "--effective-at")
    with _session(api_key) as (db, actor):
        subscription = subscriptions.resume_subscription(
            db, actor, subscription_id, effective_at=at
        )
    if as_json:
        _emit_json(render.row(subscription, render.SUBSCRIPTION))
        return
    typer.echo(f"Subscription {subscription.id} resumed ({subscription.status})")


# -- charges ---------------------------------------------------------------------------------


@command(charges_app, "create")
def charges_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    description: Annotated[str, typer.Option("--description")],
    unit_price: Annotated[str, typer.Option("--unit-price")],
    quantity: Annotated[str | None, typer.Option("--quantity", help="Default 1.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="one_off (default) or time_and_materials.")
    ] = None,
    product: Annotated[str | None, typer.Option("--product", help="Product id or code.")] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="E.g. the time sheet the hours come from.")
    ] = None,
    service_date: Annotated[
        str | None, typer.Option("--service-date", help="ISO date of the service.")
    ] = None,
    billable_at: Annotated[
        str | None,
        typer.Option("--billable-at", help="ISO date-time from which it is billed (default now)."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a pending charge for the customer's next invoice."""
    values = _compact(
        {
            "customer_id": customer,
            "description": description,
            "unit_price": unit_price,
            "quantity": quantity,
            "kind": kind,
            "reference": reference,
            "service_date": service_date,
            "billable_at": _instant(billable_at, "--billable-at"),
        }
    )
    with _session(api_key) as (db, actor):
        if product is not None:
            values["product_id"] = _product_id(db, actor, product)
        charge = contracts.create_charge(db, actor, values)
    if as_json:
        _emit_json(render.charge(charge))
        return
    typer.echo(
        f"Charge {charge.id} created: {_dec(charge.quantity)} x "
        f"{_dec(charge.unit_price)} {charge.currency} ({charge.description})"
    )


@command(charges_app, "list")
def charges_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only not yet invoiced.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List charges."""
    with _session(api_key) as (db, actor):
        rows = contracts.list_charges(db, actor, customer, pending_only=pending)
    if as_json:
        _emit_json([render.charge(c) for c in rows])
        return
    _table(
        [
            "ID",
            "Customer",
            "Kind",
            "Description",
            "Quantity",
            "Unit price",
            "Billable at",
            "Invoice",
        ],
        [
            [
                c.id,
                c.customer_id,
                c.kind,
                c.description,
                _dec(c.quantity),
                f"{_dec(c.unit_price)} {c.currency}",
                c.billable_at,
                c.invoice_id,
            ]
            for c in rows
        ],
        right=("Quantity", "Unit price"),
    )


# -- billing run -------------------------------------------------------------------------------


def _preview(preview: billing.DraftPreview) -> dict[str, Any]:
    data = {
        "customer_id": preview.customer_id,
        "customer_name": preview.customer_name,
        "billing_date": preview.billing_date.isoformat(),
        "currency": preview.currency,
        "subtotal_minor": preview.subtotal_minor,
        "discount_minor": preview.discount_minor,
        "tax_minor": preview.tax_minor,
        "total_minor": preview.total_minor,
        "lines": [
            {
                key: value
                for key, value in line.items()
                if key not in ("organization_id", "invoice_id")
            }
            for line in preview.lines
        ],
    }
    return render.with_amounts(data, preview.currency)


@command(app, "bill-run")
def bill_run(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Bill everything due up to this ISO date-time (default now)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be billed; write nothing.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 2000,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bill everything due: one draft invoice per customer and billing date."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    instant = _instant(as_of, "--as-of") or datetime.now(UTC)
    with _session(api_key) as (db, actor):
        with Progress(
            SpinnerColumn(),
            TextColumn("Billing"),
            TextColumn("{task.completed:.0f} customers processed"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=as_json,
        ) as progress:
            task = progress.add_task("billing", total=None)
            result = billing.run_billing(
                db,
                actor,
                instant,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=lambda count: progress.advance(task, count),
            )
    totals = {
        currency: render.with_amounts({"total_minor": minor}, currency)
        for currency, minor in sorted(result.totals_by_currency.items())
    }
    if as_json:
        _emit_json(
            {
                "as_of": instant.isoformat(),
                "dry_run": dry_run,
                "customers_seen": result.customers_seen,
                "invoices_created": result.invoices_created,
                "invoices_updated": result.invoices_updated,
                "lines_created": result.lines_created,
                "conflicts": result.conflicts,
                "totals_by_currency": totals,
                "invoice_ids": [] if dry_run else list(result.invoice_ids or []),
                "previews": [_preview(p) for p in result.previews],
            }
        )
        return
    typer.echo(
        f"Billing run as of {instant.isoformat()}"
        + (" (dry run: nothing written)" if dry_run else "")
    )
    typer.echo(f"Customers processed: {result.customers_seen}")
    if dry_run:
        if result.previews:
            _table(
                ["Customer", "Billing date", "Lines", "Total"],
                [
                    [
                        f"{p.customer_name} ({p.customer_id})",
                        p.billing_date,
                        len(p.lines),
                        format_minor(p.total_minor, p.currency),
                    ]
                    for p in result.previews
                ],
                right=("Lines", "Total"),
                title="Drafts that would be written",
            )
        else:
            typer.echo("Nothing is due.")
    else:
        typer.echo(f"Invoices created: {result.invoices_created}")
        typer.echo(f"Invoices updated: {result.invoices_updated}")
        typer.echo(f"Lines created: {result.lines_created}")
        if result.conflicts:
            typer.echo(f"Conflicts with a concurrent run (retried): {result.conflicts}")
    for currency, minor in sorted(result.totals_by_currency.items()):
        typer.echo(f"Total {currency}: {format_minor(minor, currency)}")


# -- invoices ----------------------------------------------------------------------------------


@command(invoices_app, "list")
def invoices_list(
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="draft, issued, partially_paid, paid, uncollectible or void."
        ),
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List invoices."""
    with _session(api_key) as (db, actor):
        rows = _pages(
            lambda after: invoices.list_invoices(
                db, actor, status=status, customer_id=customer, limit=100, after=after
            ),
            limit,
        )
    if as_json:
        _emit_json([render.invoice(i) for i in rows])
        return
    _table(
        [
            "Number",
            "ID",
            "Customer",
            "Status",
            "Approval",
            "Billing date",
            "Due",
            "Total",
            "Amount due",
        ],
        [
            [
                i.number or "(draft)",
                i.id,
                i.customer_id,
                i.status,
                i.approval_status,
                i.billing_date,
                i.due_date,
                format_minor(i.total_minor, i.currency),
                format_minor(i.amount_due_minor, i.currency),
            ]
            for i in rows
        ],
        right=("Total", "Amount due"),
    )


@command(invoices_app, "show")
def invoices_show(invoice: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Show an invoice (by id or number): lines, tax summary, totals and amount due."""
    with _session(api_key) as (db, actor):
        row, lines = invoices.get_invoice(db, actor, invoice)
        if row.customer_snapshot:
            customer_name = row.customer_snapshot.get("legal_name")
        else:
            customer_name = customers.get_customer(db, actor, row.customer_id).legal_name
    if as_json:
        _emit_json(render.invoice(row, lines))
        return
    currency = row.currency

    def money(minor: int) -> str:
        return format_minor(minor, currency)

    title = f"Invoice {row.number}" if row.number else f"Draft invoice {row.id}"
    typer.echo(f"{title} ({row.status})")
    _fields(
        [
            ("ID", row.id),
            ("Customer", f"{customer_name} ({row.customer_id})"),
            ("Currency", currency),
            ("Billing date", row.billing_date),
            ("Issue date", row.issue_date),
            ("Due date", row.due_date),
            ("Approval", row.approval_status),
            ("PO number", row.po_number),
            ("Void reason", row.void_reason),
        ]
    )
    _table(
        ["#", "Description", "Quantity", "Unit price", "Subtotal", "Discount", "Tax", "Total"],
        [
            [
                index,
                line.description,
                _dec(line.quantity),
                _dec(line.unit_price),
                money(line.subtotal_minor),
                money(line.discount_minor) if line.discount_minor else "",
                money(line.tax_minor),
                money(line.total_minor),
            ]
            for index, line in enumerate(lines, start=1)
        ],
        right=("#", "Quantity", "Unit price", "Subtotal", "Discount", "Tax", "Total"),
        title="Lines",
    )
    if row.tax_summary:
        _table(
            ["Tax", "Rate", "Taxable", "Tax amount"],
            [
                [t["name"], f"{t['percent']}%", money(t["taxable_minor"]), money(t["tax_minor"])]
                for t in row.tax_summary
            ],
            right=("Rate", "Taxable", "Tax amount"),
            title="Tax summary",
        )
    totals: list[tuple[str, Any]] = [("Subtotal", money(row.subtotal_minor))]
    if row.discount_minor:
        totals.append(("Discount", money(-row.discount_minor)))
    totals += [("Tax", money(row.tax_minor)), ("Total", money(row.total_minor))]
    for label, minor in (
        ("Credit applied", row.credit_applied_minor),
        ("Credited", row.credited_minor),
        ("Debited", row.debited_minor),
        ("Paid", row.paid_minor),
    ):
        if minor:
            totals.append((label, money(minor)))
    totals.append(("Amount due", money(row.amount_due_minor)))
    _fields(totals)
    if row.legal_note:
        typer.echo(row.legal_note)


@command(invoices_app, "create")
def invoices_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    po_number: Annotated[str | None, typer.Option("--po-number")] = None,
    notes: Annotated[str | None, typer.Option("--notes")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an empty manual draft; add lines with `invoices add-line`."""
    with _session(api_key) as (db, actor):
        row = invoices.create_draft(
            db, actor, customer, _compact({"po_number": po_number, "notes": notes})
        )
    if as_json:
        _emit_json(render.invoice(row, []))
        return
    typer.echo(f"Draft invoice {row.id} created")


@command(invoices_app, "approve")
def invoices_approve(invoice: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Approve a draft above the approval threshold."""
    with _session(api_key) as (db, actor):
        row = invoices.approve_invoice(db, actor, _invoice_id(db, actor, invoice))
    if as_json:
        _emit_json(render.invoice(row))
        return
    typer.echo(f"Invoice {_invoice_label(row)} approved")


@command(invoices_app, "issue")
def invoices_issue(
    invoice: str,
    issue_date: Annotated[
        str | None,
        typer.Option("--issue-date", help="ISO date (default today in the customer's time zone)."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a draft: it gets its number and can no longer change."""
    day = None
    if issue_date is not None:
        try:
            day = date.fromisoformat(issue_date)
        except ValueError:
            raise ValueError(f"--issue-date: {issue_date!r} is not an ISO date") from None
    with _session(api_key) as (db, actor):
        row = invoices.issue_invoice(db, actor, _invoice_id(db, actor, invoice), issue_date=day)
    if as_json:
        _emit_json(render.invoice(row))
        return
    typer.echo(
        f"Invoice {row.number} issued ({row.id}); total "
        f"{format_minor(row.total_minor, row.currency)}, amount due "
        f"{format_minor(row.amount_due_minor, row.currency)}, due {row.due_date}"
    )


@command(invoices_app, "void")
def invoices_void(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the invoice is voided.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Void an issued invoice without payments, or discard a draft."""
    with _session(api_key) as (db, actor):
        row = invoices.void_invoice(db, actor, _invoice_id(db, actor, invoice), reason)
    if as_json:
        _emit_json(render.invoice(row))
        return
    typer.echo(f"Invoice {_invoice_label(row)} voided")


@command(invoices_app, "uncollectible")
def invoices_uncollectible(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="Why it will not be collected.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write off what is still owed on an invoice (Dr bad debt / Cr receivable)."""
    with _session(api_key) as (db, actor):
        row = invoices.mark_uncollectible(db, actor, _invoice_id(db, actor, invoice), reason)
    if as_json:
        _emit_json(render.invoice(row))
        return
    typer.echo(
        f"Invoice {_invoice_label(row)} written off: "
        f"{format_minor(row.written_off_minor, row.currency)}"
    )


@command(invoices_app, "explain")
def invoices_explain(
    invoice: str,
    line: Annotated[
        str | None,
        typer.Option("--line", help="Line position (1-based) or id; default every line."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain how each amount on an invoice came about."""
    with _session(api_key) as (db, actor):
        row, lines = invoices.get_invoice(db, actor, invoice)
        refs = [line] if line is not None else [str(n) for n in range(1, len(lines) + 1)]
        explained = []
        for ref in refs:
            found, sentence, currency = invoices.explain_invoice_line(db, actor, row.id, ref)
            position = next(n for n, x in enumerate(lines, start=1) if x.id == found.id)
            explained.append((position, found, sentence, currency))
    if as_json:
        _emit_json(
            [
                render.with_amounts(
                    {
                        "line": position,
                        "id": found.id,
                        "description": found.description,
                        "total_minor": found.total_minor,
                        "explanation": sentence,
                    },
                    currency,
                )
                for position, found, sentence, currency in explained
            ]
        )
        return
    for position, found, sentence, _ in explained:
        typer.echo(f"line {position}: {found.description}")
        typer.echo(f"  {sentence}")
    if line is None:
        typer.echo(f"Invoice total: {format_minor(row.total_minor, row.currency)}")


@command(invoices_app, "add-line")
def invoices_add_line(
    invoice: str,
    description: Annotated[str, typer.Option("--description")],
    unit_price: Annotated[str, typer.Option("--unit-price")],
    quantity: Annotated[str | None, typer.Option("--quantity", help="Default 1.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Product id or code.")] = None,
    reference: Annotated[str | None, typer.Option("--reference")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a manual line to a draft."""
    values = _compact(
        {
            "description": description,
            "unit_price": unit_price,
            "quantity": quantity,
            "reference": reference,
        }
    )
    with _session(api_key) as (db, actor):
        if product is not None:
            values["product_id"] = _product_id(db, actor, product)
        new_line = invoices.add_line(db, actor, _invoice_id(db, actor, invoice), values)
        row, _ = invoices.get_invoice(db, actor, new_line.invoice_id)
    if as_json:
        _emit_json(render.line(new_line, row.currency))
        return
    typer.echo(
        f"Line {new_line.position + 1} added to {_invoice_label(row)}: "
        f"{format_minor(new_line.total_minor, row.currency)}; invoice total now "
        f"{format_minor(row.total_minor, row.currency)}"
    )


# -- credit and debit notes --------------------------------------------------------------------


def _credit_requests(specs: list[str]) -> list[dict[str, Any]]:
    """--line REF[:quantity=Q|:amount=A] to the service's line requests."""
    requests = []
    for spec in specs:
        ref, *options = spec.split(":")
        if not ref.strip():
            raise ValueError(f"--line {spec!r}: give a line id or position")
        request: dict[str, Any] = {"line_id": ref.strip()}
        for option in options:
            key, sep, value = option.partition("=")
            key = key.strip()
            if not sep or key not in ("quantity", "amount") or not value.strip():
                raise ValueError(f"--line {spec!r}: expected LINE[:quantity=Q] or LINE[:amount=A]")
            request[key] = value.strip()
        if "quantity" in request and "amount" in request:
            raise ValueError(f"--line {spec!r}: give a quantity or an amount, not both")
        requests.append(request)
    return requests


@command(credit_notes_app, "create")
def credit_notes_create(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the invoice is credited.")],
    line: Annotated[
        list[str] | None,
        typer.Option(
            "--line",
            help="LINE_ID_OR_POSITION[:quantity=Q|:amount=A] (repeatable); default: "
            "the whole invoice.",
        ),
    ] = None,
    to_credit: Annotated[
        bool,
        typer.Option(
            "--to-credit",
            help="Put the credit on the customer's balance instead of reducing the amount due.",
        ),
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Credit an issued invoice, whole or per line."""
    values: dict[str, Any] = {
        "reason": reason,
        "settlement": "customer_credit" if to_credit else "reduce_amount_due",
    }
    if line:
        values["lines"] = _credit_requests(line)
    with _session(api_key) as (db, actor):
        note = credit_notes.create_credit_note(db, actor, _invoice_id(db, actor, invoice), values)
        note, lines = credit_notes.get_credit_note(db, actor, note.id)
    if as_json:
        _emit_json(render.credit_note(note, lines))
        return
    typer.echo(
        f"Credit note {note.number} issued ({note.id}): total "
        f"{format_minor(note.total_minor, note.currency)}"
    )


@command(credit_notes_app, "list")
def credit_notes_list(
    invoice: Annotated[str | None, typer.Option("--invoice", help="Invoice id or number.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List credit notes."""
    with _session(api_key) as (db, actor):
        invoice_id = _invoice_id(db, actor, invoice) if invoice else None
        rows = credit_notes.list_credit_notes(db, actor, invoice_id)
    if as_json:
        _emit_json([render.credit_note(n) for n in rows])
        return
    _table(
        ["Number", "ID", "Invoice", "Customer", "Issue date", "Reason", "Settlement", "Total"],
        [
            [
                n.number,
                n.id,
                n.invoice_id,
                n.customer_id,
                n.issue_date,
                n.reason,
                n.settlement,
                format_minor(n.total_minor, n.currency),
            ]
            for n in rows
        ],
        right=("Total",),
    )


@command(credit_notes_app, "show")
def credit_notes_show(
    note_ref: Annotated[str, typer.Argument(metavar="ID_OR_NUMBER")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a credit note (by id or number)."""
    with _session(api_key) as (db, actor):
        note, lines = credit_notes.get_credit_note(db, actor, note_ref)
        invoice_row, _ = invoices.get_invoice(db, actor, note.invoice_id)
    if as_json:
        _emit_json(render.credit_note(note, lines))
        return

    def money(minor: int) -> str:
        return format_minor(minor, note.currency)

    typer.echo(f"Credit note {note.number}")
    _fields(
        [
            ("ID", note.id),
            ("Invoice", _invoice_label(invoice_row)),
            ("Customer", note.customer_id),
            ("Issue date", note.issue_date),
            ("Reason", note.reason),
            ("Settlement", note.settlement.replace("_", " ")),
        ]
    )
    _table(
        ["Description", "Quantity", "Subtotal", "Tax", "Total"],
        [
            [
                x.description,
                _dec(x.quantity),
                money(x.subtotal_minor),
                money(x.tax_minor),
                money(x.total_minor),
            ]
            for x in lines
        ],
        right=("Quantity", "Subtotal", "Tax", "Total"),
        title="Lines",
    )
    _fields(
        [
            ("Subtotal", money(note.subtotal_minor)),
            ("Tax", money(note.tax_minor)),
            ("Total", money(note.total_minor)),
        ]
    )


@command(debit_notes_app, "create")
def debit_notes_create(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the customer is charged more.")],
    description: Annotated[str, typer.Option("--description")],
    unit_price: Annotated[str, typer.Option("--unit-price")],
    quantity: Annotated[str, typer.Option("--quantity")] = "1",
    product: Annotated[str | None, typer.Option("--product", help="Product id or code.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Charge more on an issued invoice with a debit note of its own number."""
    entry: dict[str, Any] = {
        "description": description,
        "unit_price": unit_price,
        "quantity": quantity,
    }
    with _session(api_key) as (db, actor):
        if product is not None:
            entry["product_id"] = _product_id(db, actor, product)
        note = credit_notes.create_debit_note(
            db, actor, _invoice_id(db, actor, invoice), {"reason": reason, "lines": [entry]}
        )
    if as_json:
        _emit_json(render.debit_note(note))
        return
    typer.echo(
        f"Debit note {note.number} issued ({note.id}): total "
        f"{format_minor(note.total_minor, note.currency)}, due {note.due_date}"
    )


# -- usage: metrics, events, current usage -----------------------------------------------------


def _metric_text(metric: Any) -> str:
    return metering.to_metric(metric).describe()


@command(metrics_app, "create")
def metrics_create(
    code: Annotated[str, typer.Option("--code", help="What events name in their metric field.")],
    aggregation: Annotated[
        str,
        typer.Option(
            "--aggregation",
            help="count, sum, max, unique_count, latest or weighted_sum.",
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", help="Default: the code.")] = None,
    field: Annotated[
        str | None,
        typer.Option("--field", help="The property it reads (every aggregation but count)."),
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Only events with this property, KEY=VALUE (repeatable; a key given again "
            "adds an allowed value).",
        ),
    ] = None,
    weighted_unit: Annotated[
        str | None,
        typer.Option("--weighted-unit", help="weighted_sum: second, minute, hour or day."),
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a billable metric; events already received for it are released."""
    values = _compact(
        {
            "code": code,
            "name": name,
            "aggregation": aggregation,
            "field": field,
            "filters": _filters(filter_, "--filter"),
            "weighted_unit": weighted_unit,
            "description": description,
        }
    )
    with _session(api_key) as (db, actor):
        metric = metering.create_metric(db, actor, values)
    if as_json:
        _emit_json(render.row(metric, render.METRIC))
        return
    typer.echo(f"Metric {metric.code} ({_metric_text(metric)}) created: {metric.id}")


@command(metrics_app, "list")
def metrics_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List billable metrics."""
    with _session(api_key) as (db, actor):
        rows = metering.list_metrics(db, actor)
    if as_json:
        _emit_json([render.row(m, render.METRIC) for m in rows])
        return
    _table(
        ["ID", "Code", "Name", "Measures"],
        [[m.id, m.code, m.name, _metric_text(m)] for m in rows],
    )


@command(events_app, "send")
def events_send(
    metric: Annotated[str, typer.Option("--metric", help="Metric code.")],
    transaction_id: Annotated[
        str,
        typer.Option(
            "--transaction-id",
            help="Unique per organisation: sending the same event again is a harmless duplicate.",
        ),
    ],
    customer: Annotated[
        str | None, typer.Option("--customer", help="The customer's external id.")
    ] = None,
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Subscription id (instead of, or with).")
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp", help="ISO 8601 date-time with offset, or Unix seconds (default now)."
        ),
    ] = None,
    prop: Annotated[
        list[str] | None,
        typer.Option("--property", help="KEY=VALUE (repeatable); values are sent as text."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send one usage event: accepted, duplicate or rejected (exit code 1) with the reason."""
    properties: dict[str, str] = {}
    for key, value in _pairs(prop, "--property"):
        if key in properties:
            raise ValueError(f"--property {key}: given twice")
        properties[key] = value
    stamp: str | int = timestamp.strip() if timestamp else datetime.now(UTC).isoformat()
    if isinstance(stamp, str) and stamp.isascii() and stamp.isdigit():
        stamp = int(stamp)
    event = _compact(
        {
            "transaction_id": transaction_id,
            "customer": customer,
            "subscription_id": subscription,
            "metric": metric,
            "timestamp": stamp,
        }
    )
    event["properties"] = properties
    with _session(api_key) as (db, actor):
        outcome = events.ingest_events(db, actor, [event]).outcomes[0]
    if as_json:
        _emit_json({key: value for key, value in outcome.to_dict().items() if key != "index"})
        if outcome.status == events.REJECTED:
            raise typer.Exit(1)
        return
    if outcome.status == events.REJECTED:
        _fail(f"rejected: event {transaction_id}: {outcome.reason}")
    if outcome.status == events.DUPLICATE:
        typer.echo(f"duplicate: event {transaction_id} was already received; nothing changed")
    elif outcome.quarantined:
        typer.echo(f"accepted: event {transaction_id} (quarantined: {outcome.quarantined})")
    else:
        typer.echo(f"accepted: event {transaction_id}")


SHOWN_REJECTIONS = 20


@command(
    events_app,
    "import",
    help="Import a file of usage events of any size; exit code 1 if any event was rejected. "
    "NDJSON: one event object per line. CSV: a header row; the columns transaction_id, "
    "customer, subscription_id, metric and timestamp are the event's fields, every other "
    "column is a property (empty cells are left out). Importing a file again is safe: events "
    "already received count as duplicates.",
)
def events_import(
    file: Annotated[Path, typer.Argument(help="NDJSON (one event per line) or CSV file.")],
    format_: Annotated[
        str | None,
        typer.Option("--format", help="ndjson or csv (default: from the file name)."),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, max=events.MAX_BATCH, hidden=True)
    ] = events.MAX_BATCH,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a file of usage events (NDJSON or CSV) of any size."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    kind = event_import.detect_format(file, format_)
    label = event_import.position_label(kind)
    try:
        size = file.stat().st_size
    except OSError as error:
        raise ValueError(f"{file}: {error.strerror or error}") from None
    console = Console(stderr=True)
    with _session(api_key) as (db, actor):
        with Progress(
            TextColumn(f"Importing {file.name}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            # Only on a terminal: in a pipe or a log it would be noise.
            disable=as_json or not console.is_terminal,
        ) as progress:
            task = progress.add_task("import", total=size)
            started = time.perf_counter()
            result = event_import.import_events_file(
                db,
                actor,
                file,
                format=kind,
                chunk_size=chunk_size,
                progress=lambda done: progress.update(task, completed=done),
            )
            seconds = time.perf_counter() - started
    total = result.accepted + result.duplicates + result.rejected
    rate = total / seconds if seconds > 0 else 0.0
    rejected = [
        _compact({label: o.index, "transaction_id": o.transaction_id, "reason": o.reason})
        for o in result.outcomes
    ]
    if as_json:
        _emit_json(
            {
                "file": str(file),
                "format": kind,
                "events": total,
                **result.summary(),
                "seconds": round(seconds, 3),
                "events_per_second": round(rate),
                "rejected_events": rejected,
            }
        )
    else:
        quarantined = f" ({result.quarantined} quarantined)" if result.quarantined else ""
        typer.echo(
            f"Imported {file.name}: {result.accepted} accepted{quarantined}, "
            f"{result.duplicates} duplicates, {result.rejected} rejected in {seconds:.1f} s "
            f"({rate:,.0f} events/s)"
        )
        if result.late_periods:
            typer.echo(
                f"Late usage: {result.late_periods} rated periods received events; "
                "their drafts are re-rated (see `tallybook usage late`)"
            )
        for outcome in result.outcomes[:SHOWN_REJECTIONS]:
            tid = f" ({outcome.transaction_id})" if outcome.transaction_id else ""
            typer.echo(f"  {label} {outcome.index}{tid}: {outcome.reason}")
        if result.rejected > SHOWN_REJECTIONS:
            typer.echo(f"  ... and {result.rejected - SHOWN_REJECTIONS} more rejected")
    if result.rejected:
        raise typer.Exit(1)


@command(events_app, "quarantine")
def events_quarantine(
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List accepted events waiting for their customer or metric, with the reason."""
    with _session(api_key) as (db, actor):
        rows, more = events.list_quarantine(db, actor, limit=limit)
    if as_json:
        _emit_json([render.row(q, render.QUARANTINED_EVENT) for q in rows])
        return
    if not rows:
        typer.echo("No events in quarantine.")
        return
    _table(
        ["Transaction", "Customer", "Subscription", "Metric", "Occurred at", "Reason"],
        [
            [
                q.transaction_id,
                q.customer_external_id,
                q.subscription_id,
                q.metric_code,
                q.occurred_at,
                q.reason,
            ]
            for q in rows
        ],
    )
    if more:
        typer.echo(f"(the first {limit}; more with --limit)")


@command(events_app, "reprocess")
def events_reprocess(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Release quarantined events whose customer and metric now exist."""
    with _session(api_key) as (db, actor):
        released = events.reprocess_quarantine(db, actor)
    if as_json:
        _emit_json({"released": released})
        return
    typer.echo(f"Released {released} quarantined events into billing.")


@command(customers_app, "usage")
def customers_usage(
    customer_id: str,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO date-time with offset (default now).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Usage to date in each open period and what it would bill now (before tax)."""
    instant = _instant(at, "--at")
    with _session(api_key) as (db, actor):
        usage = current_usage.current_usage(db, actor, customer_id, instant)
    if as_json:
        _emit_json(usage)
        return
    currency = usage["currency"]
    rows: list[list[Any]] = []
    for sub in usage["subscriptions"]:
        period = sub["period"]["label"]
        if not sub["charges"]:
            rows.append([sub["subscription_id"], period, "(no usage charges)", "", "", ""])
        for charge in sub["charges"]:
            rows.append(
                [
                    sub["subscription_id"],
                    period,
                    charge["description"],
                    charge["quantity"],
                    charge["events"],
                    format_minor(charge["amount_minor"], currency),
                ]
            )
    typer.echo(f"Current usage of {usage['customer_id']} as of {usage['as_of']}")
    _table(
        ["Subscription", "Period", "Charge", "Quantity", "Events", "Amount"],
        rows,
        right=("Quantity", "Events", "Amount"),
    )
    typer.echo(f"Total: {format_minor(usage['amount_minor'], currency)} ({usage['note']})")


@command(usage_app, "late")
def usage_late(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Rated periods that received late events, waiting to be re-rated or billed."""
    with _session(api_key) as (db, actor):
        periods = late_usage.late_periods(db, actor)
    if as_json:
        _emit_json(
            [
                {"subscription_id": sub, "period_start": start, "period_end": end}
                for sub, start, end in periods
            ]
        )
        return
    if not periods:
        typer.echo("No late usage waiting.")
        return
    _table(["Subscription", "Period start", "Period end"], [list(p) for p in periods])


if __name__ == "__main__":  # pragma: no cover
    app()


# -- payments --------------------------------------------------------------------------------


def _payment_lines(view: payments.PaymentView) -> None:
    p = view.payment
    typer.echo(
        f"Payment {p.number} ({p.id}): {format_minor(p.amount_minor, p.currency)} "
        f"from {p.customer_id} on {p.received_on}, {p.status}"
    )
    for a in view.allocations:
        undone = f" ({format_minor(a.undone_minor, p.currency)} undone)" if a.undone_minor else ""
        typer.echo(
            f"  applied to {a.invoice_id}: {format_minor(a.amount_minor, p.currency)}{undone}"
        )
    if p.unapplied_minor:
        typer.echo(f"  left as customer credit: {format_minor(p.unapplied_minor, p.currency)}")
    if p.refunded_minor:
        typer.echo(f"  refunded: {format_minor(p.refunded_minor, p.currency)}")


@command(payments_app, "record")
def payments_record(
    amount: Annotated[str, typer.Option("--amount", help="Amount received, e.g. 119.00.")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code.")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer id (or name invoices).")
    ] = None,
    invoice: Annotated[
        list[str] | None,
        typer.Option(
            "--invoice",
            help="INVOICE (settle it, oldest first among those given) or INVOICE=AMOUNT "
            "(apply exactly). Repeatable; default: all open invoices, oldest first.",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="bank_transfer, check, card, direct_debit, cash.")
    ] = "bank_transfer",
    reference: Annotated[
        str | None, typer.Option("--reference", help="Check number, bank reference.")
    ] = None,
    received_on: Annotated[
        str | None, typer.Option("--received-on", help="YYYY-MM-DD; default today.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record money received and apply it to the customer's open invoices."""
    values: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "customer_id": customer,
        "method": method,
        "reference": reference,
        "received_on": received_on,
    }
    with _session(api_key) as (db, actor):
        if invoice:
            exact = [spec for spec in invoice if "=" in spec]
            if exact and len(exact) != len(invoice):
                _fail("--invoice: give every invoice with =AMOUNT, or none")
            if exact:
                values["allocations"] = [
                    {
                        "invoice_id": _invoice_id(db, actor, spec.split("=", 1)[0].strip()),
                        "amount": spec.split("=", 1)[1].strip(),
                    }
                    for spec in exact
                ]
            else:
                values["invoice_ids"] = [_invoice_id(db, actor, ref) for ref in invoice]
        view = payments.record_payment(db, actor, values)
    if as_json:
        _emit_json(render.payment(view.payment, view.allocations))
        return
    _payment_lines(view)


@command(payments_app, "list")
def payments_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List payments, newest first."""
    with _session(api_key) as (db, actor):
        rows = payments.list_payments(db, actor, customer_id=customer)
    if as_json:
        _emit_json([render.payment(p) for p in rows])
        return
    _table(
        ["Number", "ID", "Customer", "Received", "Method", "Status", "Amount", "Unapplied"],
        [
            [
                p.number,
                p.id,
                p.customer_id,
                p.received_on,
                p.method,
                p.status,
                format_minor(p.amount_minor, p.currency),
                format_minor(p.unapplied_minor, p.currency),
            ]
            for p in rows
        ],
        right=("Amount", "Unapplied"),
    )


@command(payments_app, "show")
def payments_show(
    payment: Annotated[str, typer.Argument(metavar="ID_OR_NUMBER")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a payment and where it was applied."""
    with _session(api_key) as (db, actor):
        view = payments.get_payment(db, actor, payment)
    if as_json:
        _emit_json(render.payment(view.payment, view.allocations))
        return
    _payment_lines(view)


@command(payments_app, "reverse")
def payments_reverse(
    payment: Annotated[str, typer.Argument(metavar="ID_OR_NUMBER")],
    reason: Annotated[str, typer.Option("--reason", help="Why: bounced check, wrong customer.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reverse a payment that did not happen: its invoices are owed again."""
    with _session(api_key) as (db, actor):
        view = payments.reverse_payment(db, actor, payment, reason)
    if as_json:
        _emit_json(render.payment(view.payment, view.allocations))
        return
    _payment_lines(view)


@command(payments_app, "refund")
def payments_refund(
    payment: Annotated[
        str | None, typer.Argument(metavar="ID_OR_NUMBER", help="Payment to refund.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why the money goes back.")] = "",
    amount: Annotated[
        str | None, typer.Option("--amount", help="Default: all that is left.")
    ] = None,
    credit_of: Annotated[
        str | None,
        typer.Option("--credit-of", help="Refund this customer's credit balance instead."),
    ] = None,
    method: Annotated[str | None, typer.Option("--method", help="How it is paid back.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refund a payment (its credit first, then its invoices) or a customer's credit balance."""
    if (payment is None) == (credit_of is None):
        _fail("give a payment to refund, or --credit-of CUSTOMER (one of the two)")
    values = {"reason": reason, "amount": amount, "method": method}
    with _session(api_key) as (db, actor):
        if credit_of:
            refund = payments.refund_credit(db, actor, credit_of, values)
        else:
            refund = payments.refund_payment(db, actor, payment or "", values)
    if as_json:
        _emit_json(render.refund(refund))
        return
    typer.echo(
        f"Refunded {format_minor(refund.amount_minor, refund.currency)} ({refund.id}): "
        f"{format_minor(refund.from_credit_minor, refund.currency)} from customer credit, "
        f"{format_minor(refund.from_invoices_minor, refund.currency)} reopened on invoices"
    )


# -- ledger ----------------------------------------------------------------------------------


def _day_option(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: {value!r} is not a date (YYYY-MM-DD)")


@command(ledger_app, "accounts")
def ledger_accounts(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """The chart of accounts."""
    with _session(api_key) as (db, actor):
        rows = ledger.list_accounts(db, actor)
    if as_json:
        _emit_json([render.ledger_account(a) for a in rows])
        return
    _table(["Code", "Name", "Type", "Role"], [[a.code, a.name, a.type, a.role or ""] for a in rows])


@command(ledger_app, "set-account")
def ledger_set_account(
    code: str,
    name: Annotated[str, typer.Option("--name")],
    type_: Annotated[
        str, typer.Option("--type", help="asset, liability, equity, revenue or expense.")
    ],
    role: Annotated[
        str | None, typer.Option("--role", help="Move a posting role to this account.")
    ] = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Add or change an account of the chart."""
    with _session(api_key) as (db, actor):
        account = ledger.save_account(db, actor, code=code, name=name, type=type_, role=role)
    typer.echo(f"Account {account.code} {account.name} ({account.type}, role {account.role})")


@command(ledger_app, "journal")
def ledger_journal(
    date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Journal entries with their lines."""
    start, end = _day_option(date_from, "--from"), _day_option(date_to, "--to")
    with _session(api_key) as (db, actor):
        views = ledger.list_journal(db, actor, date_from=start, date_to=end)
    if as_json:
        _emit_json([render.journal_entry(v) for v in views])
        return
    rows = []
    for v in views:
        for x in v.lines:
            rows.append(
                [
                    v.entry.number,
                    v.entry.entry_date,
                    v.entry.kind,
                    x.account_code,
                    format_minor(x.debit_minor, v.entry.currency) if x.debit_minor else "",
                    format_minor(x.credit_minor, v.entry.currency) if x.credit_minor else "",
                    x.document or "",
                ]
            )
    _table(
        ["Entry", "Date", "Kind", "Account", "Debit", "Credit", "Document"],
        rows,
        right=("Debit", "Credit"),
    )


@command(ledger_app, "trial-balance")
def ledger_trial_balance(
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD; default today.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Debits, credits and balance per account and currency as of a date."""
    day = _day_option(as_of, "--as-of") or date.today()
    with _session(api_key) as (db, actor):
        rows = ledger.trial_balance(db, actor, day)
    totals = ledger.summarise(rows)
    if as_json:
        _emit_json(
            {
                "as_of": day.isoformat(),
                "accounts": [render.trial_balance_row(r) for r in rows],
                "totals": {c: render.with_amounts(dict(t), c) for c, t in totals.items()},
            }
        )
        return
    _table(
        ["Code", "Account", "Type", "Currency", "Debit", "Credit", "Balance"],
        [
            [
                r.code,
                r.name,
                r.type,
                r.currency,
                format_minor(r.debit_minor, r.currency),
                format_minor(r.credit_minor, r.currency),
                format_minor(r.balance_minor, r.currency),
            ]
            for r in rows
        ]
        + [
            [
                "",
                "Total",
                "",
                c,
                format_minor(t["debit_minor"], c),
                format_minor(t["credit_minor"], c),
                "",
            ]
            for c, t in totals.items()
        ],
        right=("Debit", "Credit", "Balance"),
    )


@command(ledger_app, "export")
def ledger_export(
    format: Annotated[
        str, typer.Option("--format", help="beancount, iif, quickbooks-csv, xero-csv or csv.")
    ] = "csv",
    date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD")] = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="Only this currency's entries.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")
    ] = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Export the journal of a period for an accounting system."""
    start, end = _day_option(date_from, "--from"), _day_option(date_to, "--to")
    with _session(api_key) as (db, actor):
        text = ledger.export_journal(
            db, actor, format, date_from=start, date_to=end, currency=currency
        )
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"Wrote {output} ({len(text.splitlines())} lines)")


# Command groups that live in their own modules register themselves on import; they use the
# plumbing above (command, _group, _session, _table, ...), so they are imported last.
from tallybook.cli import extra_commands  # noqa: E402,F401
