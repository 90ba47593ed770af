"""`tallybook dunning` (policies, runs, reminders), `tallybook invoices dispute|resolve-dispute`
and `tallybook collections worklist`: chasing overdue invoices from the command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _day_option,
    _emit_json,
    _fail,
    _fields,
    _group,
    _invoice_id,
    _pairs,
    _session,
    _table,
    command,
    invoices_app,
)
from tallybook.core.money import format_minor
from tallybook.services import dunning

dunning_app = _group("dunning", "Dunning: reminder policies, dunning runs and reminders sent.")
policies_app = typer.Typer(
    help="Reminder schedules with late fees; one is the default.", no_args_is_help=True
)
dunning_app.add_typer(policies_app, name="policies")
collections_app = _group("collections", "Collections: who to chase first.")

StepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--step",
        help="OFFSET:NAME[:LEVEL][:fee], days from the due date, e.g. -3:friendly reminder, "
        "14:second reminder:2:fee. Repeatable, in order.",
    ),
]
FeePercentOpt = Annotated[
    str | None, typer.Option("--late-fee-percent", help="Late fee as a percent of what is open.")
]
FeeFixedOpt = Annotated[
    list[str] | None,
    typer.Option("--late-fee", help="Fixed late fee per currency, CUR=AMOUNT. Repeatable."),
]
FeeCapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--late-fee-cap", help="Most late fees charged on one invoice, CUR=AMOUNT. Repeatable."
    ),
]


def _steps(specs: list[str]) -> list[dict[str, Any]]:
    steps = []
    for spec in specs:
        offset, sep, rest = spec.partition(":")
        if not sep or not rest.strip():
            raise ValueError(f"--step {spec!r}: expected OFFSET:NAME[:LEVEL][:fee]")
        parts = rest.split(":")
        late_fee = parts[-1].strip().lower() == "fee"
        if late_fee:
            parts.pop()
        level = None
        if len(parts) > 1 and parts[-1].strip().isdigit():
            level = int(parts.pop().strip())
        step: dict[str, Any] = {
            "offset_days": offset.strip(),
            "name": ":".join(parts).strip(),
            "late_fee": late_fee,
        }
        if level is not None:
            step["level"] = level
        steps.append(step)
    return steps


def _late_fee(
    percent: str | None, fixed: list[str] | None, cap: list[str] | None
) -> dict[str, Any] | None:
    if percent is None and not fixed:
        if cap:
            raise ValueError("--late-fee-cap: give --late-fee-percent or --late-fee as well")
        return None
    if percent is not None and fixed:
        raise ValueError("--late-fee: a late fee is a percent or fixed amounts, not both")
    fee: dict[str, Any] = {"cap": dict(_pairs(cap, "--late-fee-cap"))}
    if percent is not None:
        fee.update(kind="percent", percent=percent)
    else:
        fee.update(kind="fixed", fixed=dict(_pairs(fixed, "--late-fee")))
    return fee


def _when(offset: int) -> str:
    return "due date" if offset == 0 else f"{offset:+d}d"


def _steps_text(steps: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{_when(s['offset_days'])} {s['name']} (level {s['level']}"
        + (", fee)" if s.get("late_fee") else ")")
        for s in steps
    )


def _fee_text(fee: dict[str, Any] | None) -> str:
    if not fee:
        return "none"
    if fee["kind"] == "percent":
        text = f"{fee['percent']} %"
    else:
        text = ", ".join(f"{amount} {code}" for code, amount in fee["fixed"].items())
    if fee.get("cap"):
        text += " capped at " + ", ".join(f"{a} {c}" for c, a in fee["cap"].items())
    return text


def _show_policy(policy: Any) -> None:
    _fields(
        [
            ("ID", policy.id),
            ("Name", policy.name),
            ("Default", policy.is_default),
            ("Late fee", _fee_text(policy.late_fee)),
        ]
    )
    _table(
        ["Step", "When", "Name", "Level", "Late fee"],
        [
            [index, _when(s["offset_days"]), s["name"], s["level"], bool(s.get("late_fee"))]
            for index, s in enumerate(policy.steps)
        ],
    )


# -- policies ------------------------------------------------------------------------------------


@command(policies_app, "create")
def policies_create(
    name: Annotated[str, typer.Argument(help="The policy's name, e.g. standard.")],
    step: StepOpt = None,
    late_fee_percent: FeePercentOpt = None,
    late_fee: FeeFixedOpt = None,
    late_fee_cap: FeeCapOpt = None,
    default: Annotated[
        bool, typer.Option("--default", help="Make it the organisation's default.")
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a reminder schedule (the organisation's first policy is its default)."""
    values = {
        "name": name,
        "steps": _steps(step or []),
        "late_fee": _late_fee(late_fee_percent, late_fee, late_fee_cap),
        "is_default": default,
    }
    with _session(api_key) as (db, actor):
        policy = dunning.create_policy(db, actor, values)
    if as_json:
        _emit_json(render.dunning_policy(policy))
        return
    marker = " (default)" if policy.is_default else ""
    typer.echo(f"Dunning policy {policy.name}{marker}: {policy.id}")


@command(policies_app, "list")
def policies_list(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Dunning policies of the organisation."""
    with _session(api_key) as (db, actor):
        rows = dunning.list_policies(db, actor)
    if as_json:
        _emit_json([render.dunning_policy(p) for p in rows])
        return
    _table(
        ["Name", "ID", "Default", "Steps", "Late fee"],
        [[p.name, p.id, p.is_default, _steps_text(p.steps), _fee_text(p.late_fee)] for p in rows],
    )


@command(policies_app, "show")
def policies_show(
    policy: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One policy and its steps."""
    with _session(api_key) as (db, actor):
        row = dunning.get_policy(db, actor, policy)
    if as_json:
        _emit_json(render.dunning_policy(row))
        return
    _show_policy(row)


@command(policies_app, "update")
def policies_update(
    policy: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    step: StepOpt = None,
    late_fee_percent: FeePercentOpt = None,
    late_fee: FeeFixedOpt = None,
    late_fee_cap: FeeCapOpt = None,
    no_late_fee: Annotated[
        bool, typer.Option("--no-late-fee", help="Remove the late fee.")
    ] = False,
    default: Annotated[
        bool, typer.Option("--default", help="Make it the organisation's default.")
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a policy; steps given replace all its steps."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if step:
        values["steps"] = _steps(step)
    fee = _late_fee(late_fee_percent, late_fee, late_fee_cap)
    if fee is not None and no_late_fee:
        _fail("--no-late-fee: not together with a late fee")
    if fee is not None or no_late_fee:
        values["late_fee"] = fee
    if default:
        values["is_default"] = True
    if not values:
        _fail("nothing to change: give --name, --step, a late fee option or --default")
    with _session(api_key) as (db, actor):
        row = dunning.update_policy(db, actor, policy, values)
    if as_json:
        _emit_json(render.dunning_policy(row))
        return
    _show_policy(row)


@command(policies_app, "delete")
def policies_delete(
    policy: Annotated[str, typer.Argument(metavar="ID_OR_NAME")], api_key: ApiKeyOpt = None
) -> None:
    """Delete a policy no customer uses."""
    with _session(api_key) as (db, actor):
        deleted = dunning.delete_policy(db, actor, policy)
    typer.echo(f"Dunning policy {policy} deleted ({deleted})")


@command(policies_app, "assign")
def policies_assign(
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER_ID")],
    policy: Annotated[str, typer.Argument(metavar="POLICY_ID_OR_NAME")],
    api_key: ApiKeyOpt = None,
) -> None:
    """Give a customer its own dunning policy."""
    with _session(api_key) as (db, actor):
        row = dunning.assign_policy(db, actor, customer, policy)
    typer.echo(f"Customer {row.id} follows dunning policy {policy}")


@command(policies_app, "unassign")
def policies_unassign(
    customer: Annotated[str, typer.Argument(metavar="CUSTOMER_ID")], api_key: ApiKeyOpt = None
) -> None:
    """Put a customer back on the organisation's default policy."""
    with _session(api_key) as (db, actor):
        row = dunning.assign_policy(db, actor, customer, None)
    typer.echo(f"Customer {row.id} follows the default dunning policy")


# -- runs and reminders --------------------------------------------------------------------------


@command(dunning_app, "run")
def dunning_run(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The run's day, YYYY-MM-DD; default today.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go out; record nothing.")
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the reminder each open invoice is due and charge late fees (debit notes).
    Re-running repeats nothing; disputed invoices are paused."""
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        run = dunning.run_dunning(db, actor, day, dry_run=dry_run)
    if as_json:
        _emit_json(render.dunning_run(run))
        return
    fees = ", ".join(format_minor(m, c) for c, m in run.fees_minor.items()) or "none"
    verb = "would send" if run.dry_run else "sent"
    typer.echo(
        f"Dunning run {run.as_of.isoformat()}: {run.invoices_checked} open invoices, "
        f"{verb} {len(run.reminders)} reminders, {len(run.paused)} paused; late fees {fees}"
        + (" (dry run: nothing recorded)" if run.dry_run else "")
    )
    if run.reminders:
        _table(
            ["Invoice", "Customer", "Step", "Level", "Days overdue", "Open", "Late fee", "Note"],
            [
                [
                    r.invoice_number,
                    r.customer_name,
                    r.name,
                    r.level,
                    r.days_overdue,
                    format_minor(r.open_minor, r.currency),
                    format_minor(r.fee_minor, r.currency) if r.fee_minor else "",
                    "" if run.dry_run else r.debit_note_number or "",
                ]
                for r in run.reminders
            ],
            right=("Days overdue", "Open", "Late fee"),
        )
    for paused in run.paused:
        typer.echo(f"paused: {paused.summary} ({paused.dispute_reason})")


@command(dunning_app, "reminders")
def dunning_reminders(
    invoice: Annotated[
        str | None, typer.Option("--invoice", help="One invoice (id or number).")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="One customer.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Also the steps passed over after a gap.")
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reminders recorded, newest first."""
    with _session(api_key) as (db, actor):
        invoice_id = _invoice_id(db, actor, invoice) if invoice else None
        views = dunning.list_reminders(
            db, actor, invoice_id=invoice_id, customer_id=customer, include_skipped=all_
        )
    if as_json:
        _emit_json([render.dunning_reminder(v) for v in views])
        return
    _table(
        ["Recorded", "Invoice", "Step", "Level", "Status", "Late fee", "Debit note", "Text"],
        [
            [
                v.reminder.recorded_on,
                v.invoice_number,
                v.reminder.name,
                v.reminder.level,
                v.reminder.status,
                format_minor(v.reminder.fee_minor, v.reminder.currency)
                if v.reminder.fee_minor
                else "",
                v.debit_note_number or "",
                v.reminder.summary,
            ]
            for v in views
        ],
        right=("Late fee",),
    )


# -- disputes ------------------------------------------------------------------------------------


@command(invoices_app, "dispute")
def invoices_dispute(
    invoice: str,
    reason: Annotated[str, typer.Option("--reason", help="What the customer disputes.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark an invoice disputed: dunning pauses until the dispute is resolved."""
    with _session(api_key) as (db, actor):
        row = dunning.dispute_invoice(db, actor, _invoice_id(db, actor, invoice), reason)
    if as_json:
        _emit_json(render.disputed_invoice(row))
        return
    typer.echo(f"Invoice {row.number} disputed: {row.dispute_reason}; dunning paused")


@command(invoices_app, "resolve-dispute")
def invoices_resolve_dispute(
    invoice: str,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="How it was settled.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift an invoice's dispute: dunning resumes."""
    with _session(api_key) as (db, actor):
        row = dunning.resolve_dispute(db, actor, _invoice_id(db, actor, invoice), resolution)
    if as_json:
        _emit_json(render.disputed_invoice(row))
        return
    typer.echo(f"Invoice {row.number}: dispute resolved; dunning resumes")


# -- collections ---------------------------------------------------------------------------------


@command(collections_app, "worklist")
def collections_worklist(
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD; default today.")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Customers with overdue invoices, riskiest first (amount due x days overdue)."""
    day = _day_option(as_of, "--as-of")
    with _session(api_key) as (db, actor):
        rows = dunning.collections_worklist(db, actor, day)
    if as_json:
        _emit_json([render.worklist_customer(c) for c in rows])
        return
    _table(
        [
            "Customer",
            "Overdue",
            "Oldest days",
            "Last level",
            "Last reminder",
            "Disputed",
            "Failed charges",
            "Invoices",
        ],
        [
            [
                c.customer_name,
                format_minor(c.overdue_minor, c.currency),
                c.oldest_days_overdue,
                c.last_reminder_level or "",
                c.last_reminder_on or "",
                c.disputed,
                c.failed_attempts,
                ", ".join(i.number for i in c.invoices),
            ]
            for c in rows
        ],
        right=("Overdue", "Oldest days", "Last level", "Failed charges"),
    )
