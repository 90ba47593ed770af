"""`tallybook cash`: import bank statements and work the cash-application review queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tallybook.api.render import money
from tallybook.api.routes.cash_application import import_json, line_json, statement_json
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fail,
    _fields,
    _group,
    _invoice_id,
    _session,
    _table,
    command,
)
from tallybook.core.money import format_minor
from tallybook.services import cash_application as cash
from tallybook.services import payments

cash_app = _group("cash", "Cash application: bank statements matched to open invoices.")


def _mapping(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            _fail(f"--mapping: no file {path}")
        text = path.read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        _fail(f"--mapping: not JSON ({error.msg} at position {error.pos})")
    if not isinstance(parsed, dict):
        _fail("--mapping: must be a JSON object such as '{\"date\": \"Date\", \"amount\": ...}'")
    return parsed


@command(cash_app, "import")
def cash_import(
    file: Annotated[Path, typer.Argument(help="camt.053, MT940, BAI2, OFX or CSV statement.")],
    format: Annotated[
        str | None,
        typer.Option("--format", help="camt.053, mt940, bai2, ofx or csv (default: detected)."),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            "--mapping",
            help='CSV column mapping as JSON, or @FILE: {"date": "Date", "amount": "Amount", '
            '"currency": "EUR"}.',
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a statement: sure matches post as payments, the rest wait for review."""
    if not file.is_file():
        _fail(f"no file {file}")
    data = file.read_bytes()
    parsed = _mapping(mapping)
    with _session(api_key) as (db, actor):
        result = cash.import_statement(
            db, actor, data, file_name=file.name, format=format, mapping=parsed
        )
    if as_json:
        _emit_json(import_json(result))
        return
    if result.already_imported:
        typer.echo(
            f"{file.name} was imported before as {result.statement.id}; nothing new "
            f"({result.applied} lines applied, {result.review} waiting for review)"
        )
        return
    applied = (
        ", ".join(format_minor(v, c) for c, v in sorted(result.applied_minor.items()))
        or "nothing"
    )
    typer.echo(
        f"Imported {file.name} as {result.statement.id}: {result.lines_new} new lines "
        f"({result.lines_known} known from earlier statements); {result.applied} applied "
        f"({applied}), {result.review} for review, {result.outgoing} outgoing"
    )


@command(cash_app, "statements")
def cash_statements(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """List imported statements."""
    with _session(api_key) as (db, actor):
        rows, _ = cash.list_statements(db, actor, limit=500)
    if as_json:
        _emit_json([statement_json(s) for s in rows])
        return
    _table(
        ["ID", "File", "Format", "Account", "Lines", "New", "Imported"],
        [
            [s.id, s.file_name, s.format, s.account, s.lines_total, s.lines_new, s.imported_at]
            for s in rows
        ],
        right=("Lines", "New"),
    )


@command(cash_app, "lines")
def cash_lines(
    status: Annotated[
        str | None,
        typer.Option("--status", help="applied, review, ignored or outgoing (default: review)."),
    ] = "review",
    statement: Annotated[str | None, typer.Option("--statement", help="Statement id.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many lines.")] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The review queue (or lines of another status), with each proposal and its confidence."""
    with _session(api_key) as (db, actor):
        rows, _ = cash.list_lines(
            db, actor, status=status or None, statement_id=statement, limit=limit
        )
    if as_json:
        _emit_json([line_json(x) for x in rows])
        return
    _table(
        ["Line", "Booked", "Amount", "Payer", "Remittance", "Status", "Proposal", "Conf."],
        [
            [
                x.id,
                x.booking_date,
                format_minor(x.amount_minor, x.currency),
                x.payer_name,
                (x.remittance_text or x.creditor_reference or "")[:40],
                x.status,
                _proposal_text(x),
                x.confidence,
            ]
            for x in rows
        ],
        right=("Amount", "Conf."),
    )


def _proposal_text(line: Any) -> str:
    proposal = line.proposal or {}
    parts = [
        f"{a.get('invoice_number') or a['invoice_id']} "
        f"{format_minor(a['amount_minor'], line.currency)}"
        for a in proposal.get("allocations", [])
    ]
    if proposal.get("unapplied_minor") and parts:
        parts.append(f"credit {format_minor(proposal['unapplied_minor'], line.currency)}")
    return "; ".join(parts) or "-"


@command(cash_app, "show")
def cash_show(line: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One statement line with the matcher's reasons."""
    with _session(api_key) as (db, actor):
        row = cash.get_line(db, actor, line)
    if as_json:
        _emit_json(line_json(row))
        return
    _fields(
        [
            ("Line", row.id),
            ("Booked", row.booking_date),
            ("Amount", format_minor(row.amount_minor, row.currency)),
            ("Payer", row.payer_name),
            ("Payer account", row.payer_account),
            ("Remittance", row.remittance_text),
            ("Reference", row.creditor_reference),
            ("Status", row.status),
            ("Proposal", _proposal_text(row)),
            ("Confidence", row.confidence),
            ("Method", row.method),
            ("Payment", row.payment_id),
            ("Note", row.resolution_note),
        ]
    )
    for reason in (row.proposal or {}).get("reasons", []):
        typer.echo(f"  - {reason}")


def _applied(db: Any, actor: Any, payment: Any, as_json: bool) -> None:
    view = payments.get_payment(db, actor, payment.id)
    if as_json:
        from tallybook.api.render import payment as render_payment

        _emit_json(render_payment(view.payment, view.allocations))
        return
    typer.echo(
        f"Payment {payment.number} of {format_minor(payment.amount_minor, payment.currency)} "
        "recorded"
        + "".join(
            f"; {format_minor(a.amount_minor, payment.currency)} to {a.invoice_id}"
            for a in view.allocations
        )
        + (
            f"; {format_minor(payment.unapplied_minor, payment.currency)} to customer credit"
            if payment.unapplied_minor
            else ""
        )
    )


@command(cash_app, "confirm")
def cash_confirm(
    line: str,
    note: Annotated[str | None, typer.Option("--note")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Post a line as the matcher proposed it."""
    with _session(api_key) as (db, actor):
        payment = cash.confirm_line(db, actor, line, note)
        _applied(db, actor, payment, as_json)


@command(cash_app, "apply")
def cash_apply(
    line: str,
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    invoice: Annotated[
        list[str] | None,
        typer.Option(
            "--invoice",
            help="INVOICE=AMOUNT (repeatable) to split the line; none: oldest first.",
        ),
    ] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    remember: Annotated[
        bool,
        typer.Option("--remember/--no-remember", help="Remember the payer's account."),
    ] = True,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply a line to a customer: split over invoices, or oldest first; the rest is credit."""
    with _session(api_key) as (db, actor):
        allocations = None
        if invoice:
            allocations = []
            for spec in invoice:
                if "=" not in spec:
                    _fail(f"--invoice: {spec!r} is not INVOICE=AMOUNT")
                ref, amount = spec.split("=", 1)
                allocations.append(
                    {"invoice_id": _invoice_id(db, actor, ref.strip()), "amount": amount.strip()}
                )
        payment = cash.apply_line(
            db, actor, line, customer, allocations, note=note, remember_account=remember
        )
        _applied(db, actor, payment, as_json)


@command(cash_app, "ignore")
def cash_ignore(
    line: str,
    reason: Annotated[str, typer.Option("--reason", help="Why it is not a customer payment.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a line aside."""
    with _session(api_key) as (db, actor):
        row = cash.ignore_line(db, actor, line, reason)
    if as_json:
        _emit_json(line_json(row))
        return
    typer.echo(f"Line {row.id} set aside: {row.resolution_note}")


@command(cash_app, "reopen")
def cash_reopen(line: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Put a line that was set aside back in the review queue."""
    with _session(api_key) as (db, actor):
        row = cash.reopen_line(db, actor, line)
    if as_json:
        _emit_json(line_json(row))
        return
    typer.echo(f"Line {row.id} is back in review")


@command(cash_app, "rematch")
def cash_rematch(
    statement: Annotated[str | None, typer.Option("--statement", help="Statement id.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Match the review queue again and post what is now sure."""
    with _session(api_key) as (db, actor):
        run = cash.rematch(db, actor, statement)
    if as_json:
        _emit_json(
            {
                "examined": run.examined,
                "applied": run.applied,
                "review": run.review,
                "applied_amounts": {c: money(v, c) for c, v in run.applied_minor.items()},
            }
        )
        return
    typer.echo(
        f"{run.examined} lines examined: {run.applied} applied, {run.review} still in review"
    )
