"""`tallybook worker` (the job worker), `tallybook deliveries` (the outbox: list, show, retry,
the sender address) and sending documents: `tallybook invoices|credit-notes|debit-notes send`,
`tallybook dunning send-reminder`, `tallybook customers send-statement|delivery`."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.dunning import dunning_app
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _database_url,
    _day_option,
    _emit_json,
    _fields,
    _group,
    _open_database,
    _session,
    _table,
    app,
    command,
    credit_notes_app,
    customers_app,
    debit_notes_app,
    invoices_app,
)
from tallybook.services import customers, organizations, outbox

deliveries_app = _group("deliveries", "The outbox: e-mails and webhooks, their state and retries.")

EmailOpt = Annotated[
    list[str] | None,
    typer.Option("--email", help="Send to this address instead of the customer's (repeatable)."),
]
EInvoiceOpt = Annotated[
    str | None,
    typer.Option(
        "--einvoice",
        help="E-invoice to go along: none, ubl, cii (XML attached) or facturx (Factur-X PDF); "
        "default: the customer's preference.",
    ),
]


# -- the worker ----------------------------------------------------------------------------------


@command(app, "worker")
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=32, help="Jobs run at once.")
    ] = 1,
    once: Annotated[
        bool,
        typer.Option("--once", help="Send what is due now, in this process, and exit."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the job worker: sends the outbox's e-mails and webhooks (retrying with backoff) and
    starts the organisations' scheduled runs. PostgreSQL: start as many as you like, on any
    machine. SQLite: one worker, jobs kept in its memory (the outbox itself is in the
    database). Stops on Ctrl+C or SIGTERM, finishing what it is sending."""
    from tallybook import jobs

    _open_database().dispose()  # a clear error when there is no database yet
    url = _database_url()
    if once:
        report = jobs.send_now(url)
        summary = {
            "sent": report.sent,
            "retried": report.retried,
            "failed": report.failed,
            "unknown": report.unknown,
            "recovered": report.recovered,
        }
        if as_json:
            _emit_json(summary)
        else:
            typer.echo(
                f"{report.sent} sent, {report.retried} to retry, {report.failed} failed, "
                f"{report.unknown} unknown, {report.recovered} recovered from a stopped worker"
            )
        return
    # What the worker did goes to stderr: a line per sweep that sent something, and warnings.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("tallybook.jobs").setLevel(logging.INFO)
    queue = "PostgreSQL" if jobs.uses_postgres(url) else "in memory (SQLite)"
    typer.echo(f"worker: queue {queue}, concurrency {concurrency}; Ctrl+C stops it", err=True)
    jobs.run_worker(url, concurrency=concurrency)


# -- the delivery log ---------------------------------------------------------------------------


def _delivery_rows(rows: list[Any]) -> list[list[Any]]:
    return [
        [
            d.id,
            d.channel,
            d.status,
            d.document_number or d.event_type or d.document_type or "",
            ", ".join(d.recipients or []),
            d.attempts,
            d.sent_at or (d.next_attempt_at if d.status == "queued" else ""),
            (d.last_error or "")[:80],
        ]
        for d in rows
    ]


@command(deliveries_app, "list")
def deliveries_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help="queued, sending, sent, failed, unknown (comma-separated)."),
    ] = None,
    document: Annotated[
        str | None, typer.Option("--document", help="A document's id or number.")
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="email or webhook.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="A customer id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """E-mails and webhooks in the outbox, with their state."""
    with _session(api_key) as (db, actor):
        rows, _ = outbox.list_deliveries(
            db,
            actor,
            channel=channel,
            status=status,
            document=document,
            customer_id=customer,
            limit=limit,
        )
    if as_json:
        _emit_json([render.delivery(d) for d in rows])
        return
    _table(
        ["Id", "Channel", "Status", "Document / event", "To", "Attempts", "Sent / next", "Error"],
        _delivery_rows(rows),
        right=("Attempts",),
    )


def _show(view: outbox.DeliveryView) -> None:
    d = view.delivery
    _fields(
        [
            ("Delivery", d.id),
            ("Channel", d.channel),
            ("Status", d.status),
            ("Document", f"{d.document_type} {d.document_number or d.document_id}")
            if d.document_type
            else ("Event", d.event_type),
            ("To", ", ".join(d.recipients or [])),
            ("Subject", d.subject),
            ("E-invoice", (d.details or {}).get("einvoice")),
            ("Message id", d.message_id),
            ("Replay of", d.replay_of),
            ("Attempts", d.attempts),
            ("Next attempt", d.next_attempt_at if d.status == "queued" else None),
            ("Sent", d.sent_at),
            ("Last error", d.last_error),
        ]
    )
    if view.attempts:
        _table(
            ["#", "Outcome", "Code", "Answer", "Error", "At"],
            [
                [
                    a.attempt,
                    a.outcome,
                    a.status_code,
                    (a.response_excerpt or "")[:60],
                    (a.error or "")[:60],
                    a.finished_at,
                ]
                for a in view.attempts
            ],
        )


@command(deliveries_app, "show")
def deliveries_show(delivery_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One delivery and each of its attempts."""
    with _session(api_key) as (db, actor):
        view = outbox.get_delivery(db, actor, delivery_id)
    if as_json:
        _emit_json(render.delivery_view(view))
        return
    _show(view)


@command(deliveries_app, "retry")
def deliveries_retry(delivery_id: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Queue a failed delivery again, or one whose fate is unknown once you checked that it did
    not arrive."""
    with _session(api_key) as (db, actor):
        delivery = outbox.retry_delivery(db, actor, delivery_id)
    if as_json:
        _emit_json(render.delivery(delivery))
        return
    typer.echo(f"Delivery {delivery.id} queued again; the worker sends it.")


@command(deliveries_app, "settings")
def deliveries_settings(
    email_from: Annotated[
        str | None,
        typer.Option("--email-from", help='Sender of e-mails: "Billing <billing@example.com>".'),
    ] = None,
    scheduled: Annotated[
        list[str] | None,
        typer.Option(
            "--scheduled-run",
            help="A daily run the worker starts: collection or dunning (repeatable); "
            "'none' turns them off.",
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set who e-mails come from and the daily runs of the worker."""
    values: dict[str, Any] = {}
    if email_from is not None:
        values["email_from"] = email_from
    if scheduled is not None:
        values["scheduled_runs"] = [run for run in scheduled if run != "none"]
    with _session(api_key) as (db, actor):
        if values:
            org = organizations.update_settings(db, actor, values)
        else:
            org = organizations.get_organization(db, actor)
    data = {"email_from": org.email_from, "scheduled_runs": list(org.scheduled_runs or [])}
    if as_json:
        _emit_json(data)
        return
    _fields(
        [
            ("E-mails from", data["email_from"] or "(TALLYBOOK_SMTP_FROM)"),
            ("Daily runs", ", ".join(data["scheduled_runs"]) or "none"),
        ]
    )


# -- sending documents ---------------------------------------------------------------------------


def _sent(delivery: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(render.delivery(delivery))
        return
    extra = (
        f" with {delivery.details['einvoice']}" if (delivery.details or {}).get("einvoice") else ""
    )
    typer.echo(
        f"{delivery.subject}: queued for {', '.join(delivery.recipients)}{extra} "
        f"({delivery.id}); the worker sends it"
    )


def _send(
    api_key: str | None,
    kind: str,
    reference: str,
    emails: list[str] | None,
    einvoice: str | None,
    as_json: bool,
) -> None:
    extra: dict[str, Any] = {} if einvoice is None else {"einvoice": einvoice}
    with _session(api_key) as (db, actor):
        delivery = outbox.send_document(db, actor, kind, reference, to=emails or None, **extra)
    _sent(delivery, as_json)


@command(invoices_app, "send")
def invoices_send(
    invoice: str,
    email: EmailOpt = None,
    einvoice: EInvoiceOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """E-mail an issued invoice (by id or number): its PDF and the e-invoice wanted."""
    _send(api_key, "invoice", invoice, email, einvoice, as_json)


@command(credit_notes_app, "send")
def credit_notes_send(
    credit_note: str,
    email: EmailOpt = None,
    einvoice: EInvoiceOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """E-mail a credit note (by id or number)."""
    _send(api_key, "credit_note", credit_note, email, einvoice, as_json)


@command(debit_notes_app, "send")
def debit_notes_send(
    debit_note: str,
    email: EmailOpt = None,
    einvoice: EInvoiceOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """E-mail a debit note (by id or number)."""
    _send(api_key, "debit_note", debit_note, email, einvoice, as_json)


@command(dunning_app, "send-reminder")
def dunning_send_reminder(
    reminder_id: str, email: EmailOpt = None, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """E-mail a recorded dunning reminder (again), with the invoice and any late fee."""
    _send(api_key, "dunning_reminder", reminder_id, email, None, as_json)


@command(customers_app, "send-statement")
def customers_send_statement(
    customer: str,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (default: the 1st of the month).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--until", help="Last day (default: today).")
    ] = None,
    email: EmailOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """E-mail a customer's statement of account for a period."""
    start = _day_option(date_from, "--from")
    end = _day_option(date_to, "--until")
    with _session(api_key) as (db, actor):
        delivery = outbox.send_document(
            db, actor, "statement", customer, to=email or None, date_from=start, date_to=end
        )
    _sent(delivery, as_json)


@command(customers_app, "delivery")
def customers_delivery(
    customer: str,
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="email (documents are e-mailed) or portal (never)."),
    ] = None,
    einvoice: EInvoiceOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set how documents reach a customer."""
    values: dict[str, Any] = {}
    if channel is not None:
        values["delivery_channel"] = channel
    if einvoice is not None:
        values["einvoice_attachment"] = einvoice
    with _session(api_key) as (db, actor):
        if values:
            row = customers.update_customer(db, actor, customer, values)
        else:
            row = customers.get_customer(db, actor, customer)
    data = render.delivery_preferences(row)
    if as_json:
        _emit_json(data)
        return
    if not data["emails"] and data["delivery_channel"] == "email":
        typer.echo("note: the customer has no e-mail address; nothing is e-mailed", err=True)
    _fields(
        [
            ("Customer", row.legal_name),
            ("Documents by", data["delivery_channel"]),
            ("E-invoice", data["einvoice_attachment"] or "none"),
            ("E-mails", ", ".join(data["emails"])),
        ]
    )
