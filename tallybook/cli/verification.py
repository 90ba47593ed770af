"""`tallybook invoices verify|override`, `tallybook verify drafts`, `tallybook discrepancies
...` and `tallybook health`: catching mistakes before customers do, from the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _credit_requests,
    _day_option,
    _emit_json,
    _fields,
    _group,
    _invoice_id,
    _product_id,
    _session,
    _table,
    app,
    command,
    invoices_app,
)
from tallybook.core.money import format_minor
from tallybook.services import billing_health, discrepancies, verification

verify_app = _group("verify", "Pre-flight verification of drafts (POs, contracts, time sheets).")
discrepancies_app = _group(
    "discrepancies", "Discrepancies: verification findings and customers' disputes, worked."
)

AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Count what fell due by the end of this day (YYYY-MM-DD)."),
]
FailOpt = Annotated[
    bool,
    typer.Option("--fail-on-blocking", help="Exit with 1 when a blocking finding is found."),
]


def _finding_rows(findings: Any, ids: dict[str, str]) -> list[list[Any]]:
    return [
        [
            f.severity.value,
            f.check,
            f.what,
            f.expected or "",
            f.actual or "",
            ids.get(f.key, ""),
        ]
        for f in findings
    ]


def _show_verification(result: Any) -> None:
    label = result.invoice_number or result.invoice_id
    typer.echo(
        f"{label}: {result.status} ({len(result.blocking)} blocking, "
        f"{len(result.findings) - len(result.blocking)} warnings)"
    )
    if result.findings:
        _table(
            ["Severity", "Check", "What", "Expected", "Actual", "Discrepancy"],
            _finding_rows(result.findings, result.discrepancies),
        )


@command(invoices_app, "verify")
def invoices_verify(
    invoice: str,
    as_of: AsOfOpt = None,
    fail_on_blocking: FailOpt = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an invoice against its PO, contract, time sheets, service reports and the
    customer's other invoices; findings are kept as discrepancies."""
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        result = verification.verify_invoice(db, actor, _invoice_id(db, actor, invoice), as_of=day)
    if as_json:
        _emit_json(render.invoice_verification(result))
    else:
        _show_verification(result)
    if fail_on_blocking and result.blocking:
        raise typer.Exit(1)


@command(invoices_app, "override")
def invoices_override(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="Why it should go out as it is.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a billing manager to approve issuing a draft despite its blocking findings."""
    with _session(api_key) as (db, actor):
        asked = verification.request_override(db, actor, _invoice_id(db, actor, invoice), reason)
    if as_json:
        _emit_json(
            [
                {
                    "approval_id": r["approval_id"],
                    "discrepancy_id": r["discrepancy_id"],
                    "finding": render.finding(r["finding"], r["discrepancy_id"]),
                }
                for r in asked["requests"]
            ]
        )
        return
    typer.echo(
        f"{len(asked['requests'])} override request(s) wait for a billing manager: "
        "tallybook approvals approve ID --reason ..."
    )
    _table(
        ["Approval", "Discrepancy", "Check", "What"],
        [
            [r["approval_id"], r["discrepancy_id"], r["finding"].check, r["finding"].what]
            for r in asked["requests"]
        ],
    )


@command(verify_app, "drafts")
def verify_drafts(
    invoice: Annotated[
        list[str] | None,
        typer.Option("--invoice", help="Only these invoices (id or number); repeatable."),
    ] = None,
    as_of: AsOfOpt = None,
    show_passed: Annotated[
        bool, typer.Option("--passed", help="List passed invoices too.")
    ] = False,
    fail_on_blocking: FailOpt = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify every draft (or the ones given) and the organisation's unbilled due items."""
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        ids = [_invoice_id(db, actor, ref) for ref in invoice] if invoice else None
        run = verification.verify_run(db, actor, ids, as_of=day)
    if as_json:
        _emit_json(render.verification_run(run, passed=show_passed))
    else:
        typer.echo(
            f"Verified {len(run.invoices)} invoices in {run.seconds:.2f} s: "
            f"{len(run.failing)} failing, {run.blocking} blocking findings, "
            f"{run.warnings} warnings"
        )
        rows = []
        for result in run.invoices:
            if result.status == "passed" and not show_passed:
                continue
            label = result.invoice_number or result.invoice_id
            if not result.findings:
                rows.append([label, "passed", "", "", ""])
            for f in result.findings:
                rows.append(
                    [label, f.severity.value, f.check, f.what, result.discrepancies.get(f.key, "")]
                )
        for f in run.unattached:
            rows.append(["", f.severity.value, f.check, f.what, run.discrepancies.get(f.key, "")])
        if rows:
            _table(["Invoice", "Severity", "Check", "What", "Discrepancy"], rows)
    if fail_on_blocking and run.blocking:
        raise typer.Exit(1)


# -- discrepancies -------------------------------------------------------------------------------


def _show(view: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(render.discrepancy_view(view))
        return
    d = view.discrepancy
    _fields(
        [
            ("ID", d.id),
            ("Status", d.status),
            ("Severity", d.severity),
            ("Check", d.check),
            ("Invoice", view.invoice_number or d.invoice_id or ""),
            ("What", d.what),
            ("Why", d.why),
            ("Expected", d.expected or ""),
            ("Actual", d.actual or ""),
            ("Assignee", d.assignee_key_id or ""),
            ("Resolution", d.resolution or ""),
            ("Note", d.resolution_note or ""),
            ("Customer message", d.customer_message or ""),
            ("Credit note", d.credit_note_id or ""),
            ("Debit note", d.debit_note_id or ""),
        ]
    )
    for c in view.comments:
        typer.echo(f"- {c.created_at.isoformat(timespec='minutes')} {c.author_key_id}: {c.body}")


@command(discrepancies_app, "list")
def discrepancies_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help="open, investigating, resolved, waived or active."),
    ] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="Key id, or none.")] = None,
    invoice: Annotated[str | None, typer.Option("--invoice", help="Invoice id or number.")] = None,
    check: Annotated[str | None, typer.Option("--check")] = None,
    severity: Annotated[str | None, typer.Option("--severity", help="blocking or warning.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="verification or dispute.")] = None,
    older_than: Annotated[
        int | None, typer.Option("--older-than", help="Open for at least this many days.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit")] = 200,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Discrepancies, oldest id first."""
    with _session(api_key) as (db, actor):
        rows, _ = discrepancies.list_discrepancies(
            db,
            actor,
            status=status,
            assignee=assignee,
            invoice_id=invoice,
            check=check,
            severity=severity,
            source=source,
            older_than_days=older_than,
            limit=limit,
        )
    if as_json:
        _emit_json([render.discrepancy(r) for r in rows])
        return
    now = datetime.now(UTC)
    _table(
        ["ID", "Status", "Severity", "Check", "Days", "Assignee", "What"],
        [
            [
                r.id,
                r.status,
                r.severity,
                r.check,
                max((now - r.first_seen_at).days, 0),
                r.assignee_key_id or "",
                r.what,
            ]
            for r in rows
        ],
        right=("Days",),
    )


@command(discrepancies_app, "show")
def discrepancies_show(
    discrepancy: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    with _session(api_key) as (db, actor):
        view = discrepancies.get_discrepancy(db, actor, discrepancy)
    _show(view, as_json)


@command(discrepancies_app, "assign")
def discrepancies_assign(
    discrepancy: str,
    to: Annotated[str | None, typer.Option("--to", help="API key id or name.")] = None,
    nobody: Annotated[bool, typer.Option("--nobody", help="Take it off everyone.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    if (to is None) == (not nobody):
        raise ValueError("--to: give --to KEY or --nobody")
    with _session(api_key) as (db, actor):
        view = discrepancies.assign(db, actor, discrepancy, None if nobody else to)
    _show(view, as_json)


@command(discrepancies_app, "comment")
def discrepancies_comment(
    discrepancy: str, text: str, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    with _session(api_key) as (db, actor):
        view = discrepancies.comment(db, actor, discrepancy, text)
    _show(view, as_json)


@command(discrepancies_app, "investigate")
def discrepancies_investigate(
    discrepancy: str,
    note: Annotated[str | None, typer.Option("--note")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take it on: open -> investigating."""
    with _session(api_key) as (db, actor):
        view = discrepancies.investigate(db, actor, discrepancy, note)
    _show(view, as_json)


def _debit_lines(specs: list[str], db: Any, actor: Any) -> list[dict[str, Any]]:
    """--charge DESCRIPTION:QUANTITY:UNIT_PRICE[:PRODUCT]."""
    lines = []
    for spec in specs:
        parts = [p.strip() for p in spec.split(":")]
        if len(parts) not in (3, 4) or not all(parts[:3]):
            raise ValueError(
                f"--charge {spec!r}: expected DESCRIPTION:QUANTITY:UNIT_PRICE[:PRODUCT]"
            )
        line = {"description": parts[0], "quantity": parts[1], "unit_price": parts[2]}
        if len(parts) == 4 and parts[3]:
            line["product_id"] = _product_id(db, actor, parts[3])
        lines.append(line)
    return lines


@command(discrepancies_app, "resolve")
def discrepancies_resolve(
    discrepancy: str,
    resolution: Annotated[
        str, typer.Option("--resolution", help="adjust_draft, credit_note or debit_note.")
    ],
    note: Annotated[str, typer.Option("--note", help="What was corrected and why.")],
    line: Annotated[
        list[str] | None,
        typer.Option("--line", help="Credit note: LINE[:quantity=Q|:amount=A]; repeatable."),
    ] = None,
    charge: Annotated[
        list[str] | None,
        typer.Option("--charge", help="Debit note: DESCRIPTION:QUANTITY:UNIT_PRICE[:PRODUCT]."),
    ] = None,
    credit_note: Annotated[
        str | None, typer.Option("--credit-note", help="Link a credit note already issued.")
    ] = None,
    debit_note: Annotated[
        str | None, typer.Option("--debit-note", help="Link a debit note already issued.")
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", help="What the customer is told.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve by correcting: the draft adjusted, or a credit or debit note on the invoice."""
    values: dict[str, Any] = {"resolution": resolution, "note": note}
    if line:
        values["lines"] = _credit_requests(line)
    if message:
        values["customer_message"] = message
    if credit_note:
        values["credit_note_id"] = credit_note
    if debit_note:
        values["debit_note_id"] = debit_note
    with _session(api_key) as (db, actor):
        if charge:
            values["lines"] = _debit_lines(charge, db, actor)
        view = discrepancies.resolve(db, actor, discrepancy, values)
    _show(view, as_json)


@command(discrepancies_app, "waive")
def discrepancies_waive(
    discrepancy: str,
    reason: Annotated[str, typer.Option("--reason")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Close as not a mistake, with the reason (a blocking finding needs an approved override)."""
    with _session(api_key) as (db, actor):
        view = discrepancies.waive(db, actor, discrepancy, reason)
    _show(view, as_json)


@command(discrepancies_app, "dispute")
def discrepancies_dispute(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="What the customer disputes.")],
    line: Annotated[
        str | None, typer.Option("--line", help="The disputed line: position or id.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a customer's dispute of an issued invoice or one of its lines; dunning pauses."""
    with _session(api_key) as (db, actor):
        view = discrepancies.open_dispute(db, actor, _invoice_id(db, actor, invoice), reason, line)
    _show(view, as_json)


# -- billing health ------------------------------------------------------------------------------


@command(app, "health")
def health_show(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Unbilled due items, drafts waiting for approval, open discrepancies by age, invoices
    failing verification."""
    with _session(api_key) as (db, actor):
        health = billing_health.billing_health(db, actor)
    if as_json:
        _emit_json(render.billing_health(health))
        return
    kinds = ", ".join(f"{n} {k}" for k, n in health.unbilled_by_kind.items()) or "none"
    typer.echo(f"Billing health as of {health.as_of.isoformat()}")
    typer.echo(f"Unbilled due items: {len(health.unbilled)} ({kinds})")
    if health.unbilled:
        _table(
            ["Due", "Kind", "Customer", "What", "Amount"],
            [
                [
                    i.due_on,
                    i.kind,
                    i.customer_name,
                    i.description,
                    f"{render.due_item(i)['amount']} {i.currency}" if i.amount is not None else "",
                ]
                for i in health.unbilled
            ],
            right=("Amount",),
        )
    typer.echo(f"Drafts waiting for approval: {len(health.waiting)}")
    if health.waiting:
        _table(
            ["Draft", "Customer", "Total", "Waiting for", "Approvals"],
            [
                [
                    w.invoice_id,
                    w.customer_name,
                    format_minor(w.total_minor, w.currency),
                    w.waiting_for,
                    ", ".join(w.approval_ids),
                ]
                for w in health.waiting
            ],
            right=("Total",),
        )
    _table(
        ["Open discrepancies", "Blocking", "Warning"],
        [
            [bucket, c["blocking"], c["warning"]]
            for bucket, c in health.discrepancies_by_age.items()
        ],
        right=("Blocking", "Warning"),
    )
    typer.echo(f"Invoices failing verification: {len(health.failing)}")
    if health.failing:
        _table(
            ["Invoice", "Customer", "Total", "Blocking", "Checks"],
            [
                [
                    f.number or f.invoice_id,
                    f.customer_name,
                    format_minor(f.total_minor, f.currency),
                    f.blocking,
                    ", ".join(f.checks),
                ]
                for f in health.failing
            ],
            right=("Total", "Blocking"),
        )
