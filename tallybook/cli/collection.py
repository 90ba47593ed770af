"""`tallybook payment-methods` and `tallybook collect`: customers' cards and mandates (as
provider tokens), automatic collection runs, their attempts and the retry schedule; and
`tallybook customers collection` for one customer's failing charges and next retry."""

from __future__ import annotations

from typing import Annotated

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _day_option,
    _emit_json,
    _fields,
    _group,
    _session,
    _table,
    command,
    customers_app,
)
from tallybook.core.money import format_minor
from tallybook.services import collection, organizations, payment_methods

methods_app = _group(
    "payment-methods", "Customers' cards and bank mandates, kept as the provider's token."
)
collect_app = _group("collect", "Automatic collection: charge due invoices, retry declines.")


def _method_rows(rows: list) -> list[list]:
    return [[m.id, m.label, m.kind, m.provider, m.is_default, m.detached_at or ""] for m in rows]


METHOD_COLUMNS = ["ID", "Label", "Kind", "Provider", "Default", "Removed"]


@command(methods_app, "add")
def methods_add(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    token: Annotated[
        str, typer.Option("--token", help="The payment provider's token; never a card number.")
    ],
    provider: Annotated[
        str, typer.Option("--provider", help="Payment provider holding it, e.g. simulated.")
    ],
    kind: Annotated[str, typer.Option("--kind", help="card, sepa_debit or ach_debit.")] = "card",
    label: Annotated[
        str | None, typer.Option("--label", help='Shown to clerks: "Visa ending 4242".')
    ] = None,
    default: Annotated[
        bool | None,
        typer.Option(
            "--default/--not-default",
            help="Charge this one (default: yes if the customer has none).",
            show_default=False,
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach a payment method to a customer."""
    values = {"provider": provider, "token": token, "kind": kind, "label": label}
    if default is not None:
        values["default"] = default
    with _session(api_key) as (db, actor):
        method = payment_methods.attach_payment_method(db, actor, customer, values)
    if as_json:
        _emit_json(render.payment_method(method))
        return
    marker = " (default)" if method.is_default else ""
    typer.echo(f"Attached {method.label}{marker}: {method.id}")


@command(methods_app, "list")
def methods_list(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    all_: Annotated[bool, typer.Option("--all", help="Include removed methods.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A customer's payment methods."""
    with _session(api_key) as (db, actor):
        rows = payment_methods.list_payment_methods(db, actor, customer, include_detached=all_)
    if as_json:
        _emit_json([render.payment_method(m) for m in rows])
        return
    _table(METHOD_COLUMNS, _method_rows(rows))


@command(methods_app, "default")
def methods_default(
    method_id: Annotated[str, typer.Argument(metavar="PAYMENT_METHOD_ID")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a payment method the one automatic collection charges."""
    with _session(api_key) as (db, actor):
        method = payment_methods.set_default_payment_method(db, actor, method_id)
    if as_json:
        _emit_json(render.payment_method(method))
        return
    typer.echo(f"{method.label} ({method.id}) is now the default")


@command(methods_app, "remove")
def methods_remove(
    method_id: Annotated[str, typer.Argument(metavar="PAYMENT_METHOD_ID")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop using a payment method (a removed default leaves the customer without one)."""
    with _session(api_key) as (db, actor):
        method = payment_methods.detach_payment_method(db, actor, method_id)
    if as_json:
        _emit_json(render.payment_method(method))
        return
    typer.echo(f"Removed {method.label} ({method.id})")


@command(collect_app, "run")
def collect_run(
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="YYYY-MM-DD; default today in the organisation's zone."),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Charge every invoice due for automatic collection; retry declines that are due."""
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        run = collection.collect_due_invoices(db, actor, day)
    if as_json:
        _emit_json(render.collection_run(run))
        return
    typer.echo(
        f"Collection on {run.as_of}: {run.attempted} attempted, {run.count('approved')} "
        f"approved, {run.count('declined')} declined, {run.count('failed')} failed, "
        f"{run.count('pending')} without an answer"
    )
    for currency, amounts in run.amounts().items():
        typer.echo(
            f"  {currency}: collected {format_minor(amounts['approved_minor'], currency)} of "
            f"{format_minor(amounts['attempted_minor'], currency)}"
        )
    if run.outcomes:
        _table(
            ["Invoice", "Attempt", "Status", "Amount", "Failure", "Next try", "Payment"],
            [
                [
                    o.invoice_number,
                    o.attempt,
                    o.status,
                    format_minor(o.amount_minor, o.currency),
                    o.failure_code or "",
                    o.next_attempt_on or "",
                    o.payment_number or "",
                ]
                for o in run.outcomes
            ],
            right=("Amount",),
        )
    for skipped in run.skipped:
        typer.echo(f"  skipped {skipped['invoice_number']}: {skipped['reason']}")


def _attempt_table(views: list, title: str | None = None) -> None:
    _table(
        ["Invoice", "Customer", "Attempt", "On", "Status", "Amount", "Failure", "Next try"],
        [
            [
                v.invoice_number or v.attempt.invoice_id,
                v.customer_name,
                v.attempt.attempt,
                v.attempt.attempted_on,
                v.attempt.status,
                format_minor(v.attempt.amount_minor, v.attempt.currency),
                v.attempt.failure_code or "",
                v.attempt.next_attempt_on
                or ("never" if v.attempt.status in collection.UNSUCCESSFUL else ""),
            ]
            for v in views
        ],
        title=title,
        right=("Amount",),
    )


@command(collect_app, "attempts")
def collect_attempts(
    failed: Annotated[
        bool, typer.Option("--failed", help="Only declined and failed attempts.")
    ] = False,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, approved, declined or failed.")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    invoice: Annotated[str | None, typer.Option("--invoice", help="Invoice id or number.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Automatic charges made, with their outcome and the next try."""
    wanted = ",".join(collection.UNSUCCESSFUL) if failed else status
    with _session(api_key) as (db, actor):
        views, _ = collection.list_attempts(
            db, actor, status=wanted, customer_id=customer, invoice_id=invoice, limit=limit
        )
    views.sort(key=lambda v: (v.attempt.attempted_on, v.invoice_number or "", v.attempt.attempt))
    if as_json:
        _emit_json([render.payment_attempt(v) for v in views])
        return
    _attempt_table(views)


@command(collect_app, "retry-days")
def collect_retry_days(
    days: Annotated[
        list[int] | None,
        typer.Argument(
            help="Days after the first attempt to retry a failed charge, e.g. 1 3 7; "
            "none: show the schedule."
        ),
    ] = None,
    never: Annotated[
        bool, typer.Option("--never", help="Never retry: one attempt per invoice.")
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the organisation's retry schedule (admin)."""
    with _session(api_key) as (db, actor):
        if days or never:
            org = organizations.update_settings(
                db, actor, {"collection_retry_days": [] if never else list(days or [])}
            )
        else:
            org = organizations.get_organization(db, actor)
    schedule = list(org.collection_retry_days or [])
    if as_json:
        _emit_json({"collection_retry_days": schedule})
        return
    if not schedule:
        typer.echo("A failed charge is not retried.")
        return
    typer.echo(
        "A failed charge is retried "
        + ", ".join(f"+{d}" for d in schedule)
        + " days after the first attempt."
    )


@command(customers_app, "collection")
def customers_collection(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A customer's payment methods, failing automatic charges and the next retry."""
    with _session(api_key) as (db, actor):
        view = collection.customer_collection(db, actor, customer)
    if as_json:
        _emit_json(render.customer_collection(view))
        return
    default = view.default_method
    _fields(
        [
            ("Customer", f"{view.customer.legal_name} ({view.customer.id})"),
            ("Charged to", f"{default.label} ({default.id})" if default else "no default method"),
            ("Failing invoices", len(view.failing)),
            ("Next retry", view.next_retry_on or ("none" if view.failing else "")),
        ]
    )
    if view.payment_methods:
        _table(METHOD_COLUMNS, _method_rows(view.payment_methods), title="Payment methods")
    if view.failing:
        _attempt_table(view.failing, title="Failing automatic charges")
    if view.recent:
        _attempt_table(view.recent, title="Recent attempts")
