"""`tallybook approvals list|show|request|approve|reject|rules`: the four-eyes rules from a
terminal. A billing manager approves what someone else asked for, always with a reason."""

from __future__ import annotations

from typing import Annotated

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fail,
    _fields,
    _group,
    _invoice_id,
    _pages,
    _session,
    _table,
    command,
)
from tallybook.core.money import format_minor
from tallybook.services import approvals

approvals_app = _group(
    "approvals", "Approvals: what needs a second billing manager, and the rules that say so."
)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (required).")]


def _amount(row: approvals.ApprovalRequest) -> str:
    if row.amount_minor is None or not row.currency:
        return ""
    return format_minor(row.amount_minor, row.currency)


def _show(row: approvals.ApprovalRequest, as_json: bool, message: str) -> None:
    if as_json:
        _emit_json(render.approval(row))
        return
    typer.echo(message)


@command(approvals_app, "list")
def approvals_list(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, approved, rejected or withdrawn.")
    ] = None,
    subject_type: Annotated[
        str | None,
        typer.Option("--subject", help="invoice, credit_note, write_off or finding_override."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approval requests (`--status pending`: what waits for a billing manager)."""
    with _session(api_key) as (db, actor):
        rows = _pages(
            lambda after: approvals.list_approvals(
                db, actor, status=status, subject_type=subject_type, limit=200, after=after
            ),
            limit,
        )
    if as_json:
        _emit_json([render.approval(r) for r in rows])
        return
    _table(
        ["Id", "Subject", "Of", "Amount", "Status", "Asked by", "Reason", "Decided by"],
        [
            [
                r.id,
                r.subject_type,
                r.subject_id,
                _amount(r),
                r.status,
                r.requested_by,
                r.request_reason,
                r.decided_by,
            ]
            for r in rows
        ],
        right=("Amount",),
    )


@command(approvals_app, "show")
def approvals_show(approval: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """One approval request."""
    with _session(api_key) as (db, actor):
        row = approvals.get_approval(db, actor, approval)
    if as_json:
        _emit_json(render.approval(row))
        return
    _fields(
        [
            ("Id", row.id),
            ("Subject", f"{row.subject_type} {row.subject_id}"),
            ("Rule", row.rule),
            ("Amount", _amount(row)),
            ("Status", row.status),
            ("Asked by", row.requested_by),
            ("Why", row.request_reason),
            ("Decided by", row.decided_by),
            ("Decision", row.decision_reason),
            ("Result", f"{row.result_type} {row.result_id}" if row.result_id else None),
        ]
    )


@command(approvals_app, "request")
def approvals_request(
    invoice: Annotated[
        str | None, typer.Option("--invoice", help="A draft invoice (id or number).")
    ] = None,
    finding: Annotated[
        str | None, typer.Option("--finding", help="A blocking finding to override (its id).")
    ] = None,
    reason: ReasonOpt = "",
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a billing manager to approve a draft invoice or overriding a blocking finding."""
    if (invoice is None) == (finding is None):
        _fail("give one of --invoice or --finding")
    with _session(api_key) as (db, actor):
        if invoice is not None:
            row = approvals.ask_for_approval(
                db, actor, approvals.INVOICE, _invoice_id(db, actor, invoice), reason
            )
        else:
            row = approvals.ask_for_approval(
                db, actor, approvals.FINDING_OVERRIDE, finding or "", reason
            )
    _show(row, as_json, f"Approval request {row.id} waits for a billing manager other than you")


def _decide(ref: str, decision: str, reason: str, api_key: str | None, as_json: bool) -> None:
    with _session(api_key) as (db, actor):
        if ref.startswith("apr_"):
            row = approvals.decide_approval(db, actor, ref, decision, reason)
        elif decision == "approved":
            # A draft invoice by id or number: approved in one step.
            if not reason.strip():
                _fail("--reason: say why you approve")
            invoice = approvals.approve_draft(db, actor, _invoice_id(db, actor, ref), reason)
            rows, _ = approvals.list_approvals(
                db, actor, subject_type=approvals.INVOICE, subject_id=invoice.id, limit=500
            )
            row = rows[-1]
        else:
            _fail("reject an approval request by its id (apr_...); see `tallybook approvals list`")
    word = "approved" if decision == "approved" else "rejected"
    result = f": {row.result_type} {row.result_id} carried out" if row.result_id else ""
    _show(row, as_json, f"Approval request {row.id} {word}{result}")


@command(approvals_app, "approve")
def approvals_approve(
    approval: Annotated[str, typer.Argument(help="apr_... or a draft invoice (id or number).")],
    reason: ReasonOpt = "",
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve, with a reason; a held credit note or write-off is carried out now."""
    _decide(approval, "approved", reason, api_key, as_json)


@command(approvals_app, "reject")
def approvals_reject(
    approval: str, reason: ReasonOpt = "", api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Reject, with a reason."""
    _decide(approval, "rejected", reason, api_key, as_json)


@command(approvals_app, "rules")
def approvals_rules(
    invoice: Annotated[
        list[str] | None, typer.Option("--invoice", help="CUR=AMOUNT: invoices above it.")
    ] = None,
    credit_note: Annotated[
        list[str] | None, typer.Option("--credit-note", help="CUR=AMOUNT: credit notes above it.")
    ] = None,
    write_off: Annotated[
        list[str] | None, typer.Option("--write-off", help="CUR=AMOUNT (0: every write-off).")
    ] = None,
    clear: Annotated[
        list[str] | None, typer.Option("--clear", help="Remove a rule: invoice, credit_note...")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the approval rules, or change them (admins): --credit-note EUR=500.00."""
    changes: dict[str, dict[str, str]] = {}
    for name, pairs in (
        ("invoice", invoice),
        ("credit_note", credit_note),
        ("write_off", write_off),
    ):
        for pair in pairs or []:
            currency, sep, amount = pair.partition("=")
            if not sep or not currency.strip() or not amount.strip():
                _fail(f"--{name.replace('_', '-')}: give CURRENCY=AMOUNT, e.g. EUR=500.00")
            changes.setdefault(name, {})[currency.strip().upper()] = amount.strip()
    for name in clear or []:
        changes[name.replace("-", "_")] = {}
    with _session(api_key) as (db, actor):
        if changes:
            rules = approvals.set_approval_rules(db, actor, changes)
        else:
            rules = approvals.approval_rules(db, actor)
    if as_json:
        _emit_json(rules)
        return
    _table(
        ["Rule", "Needs approval above"],
        [
            ["invoice", _amounts(rules["invoice"])],
            ["credit note", _amounts(rules["credit_note"])],
            ["write-off", _amounts(rules["write_off"])],
            ["override of a blocking finding", "always"],
        ],
    )


def _amounts(table: dict[str, str]) -> str:
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(table.items())) or "-"
