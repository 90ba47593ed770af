"""Dunning: reminder policies, the dunning run (reminders and late-fee debit notes), invoice
disputes that pause it, and the collections worklist.

A run records each reminder it sends (there is no e-mail channel yet: the reminder keeps its
text for the one to come). The unique (invoice, step) constraint is the last guard against a
reminder or a late fee going out twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.core import dunning as core
from tallybook.core.money import (
    MoneyError,
    RoundingMode,
    currency_exponent,
    from_minor,
    parse_decimal,
    to_minor_exact,
)
from tallybook.db.models import (
    Customer,
    DebitNote,
    DunningPolicy,
    DunningReminder,
    Invoice,
    Organization,
    PaymentAttempt,
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
    snapshot,
    utcnow,
)
from tallybook.services.credit_notes import issue_debit_note
from tallybook.services.receivables import organization_today

__all__ = [
    "DunningRun",
    "PausedOutcome",
    "ReminderOutcome",
    "ReminderView",
    "WorklistCustomer",
    "WorklistInvoice",
    "assign_policy",
    "collections_worklist",
    "create_policy",
    "delete_policy",
    "dispute_invoice",
    "get_policy",
    "list_policies",
    "list_reminders",
    "policy_of",
    "resolve_dispute",
    "run_dunning",
    "update_policy",
]

OPEN_STATES = tuple(sorted(core.OPEN_STATUSES))
# An invoice the customer can dispute: issued and not void.
DISPUTABLE_STATES = ("issued", "partially_paid", "paid", "uncollectible")
FAILED_ATTEMPTS = ("declined", "failed")
_MAX_STEPS = 20


# -- policies ------------------------------------------------------------------------------------


def _field_of(message: str) -> str:
    """'steps[2].level: ...' -> 'steps'."""
    return message.split(":", 1)[0].split("[")[0].split(".")[0].strip() or "policy"


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        raise InvalidInput(f"{field}: give a whole number, not {value!r}", field=_field_of(field))
    return value


def _clean_steps(steps: Any) -> list[dict[str, Any]]:
    if not isinstance(steps, list | tuple) or not steps:
        raise InvalidInput("steps: give at least one reminder step", field="steps")
    if len(steps) > _MAX_STEPS:
        raise InvalidInput(f"steps: at most {_MAX_STEPS} steps", field="steps")
    cleaned = []
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, dict):
            raise InvalidInput(f"{where}: give an object with offset_days and name", field="steps")
        unknown = set(step) - {"offset_days", "level", "name", "late_fee"}
        if unknown:
            raise InvalidInput(f"{where}: unknown field {sorted(unknown)[0]!r}", field="steps")
        if step.get("offset_days") is None:
            raise InvalidInput(f"{where}.offset_days: is required", field="steps")
        offset = _int(step["offset_days"], f"{where}.offset_days")
        if abs(offset) > 3650:
            raise InvalidInput(f"{where}.offset_days: at most 3650 days", field="steps")
        level = step.get("level")
        level = index + 1 if level is None else _int(level, f"{where}.level")
        name = str(step.get("name") or "").strip()
        if not name or len(name) > 200:
            raise InvalidInput(f"{where}.name: 1 to 200 characters", field="steps")
        late_fee = step.get("late_fee", False)
        if not isinstance(late_fee, bool):
            raise InvalidInput(f"{where}.late_fee: true or false", field="steps")
        cleaned.append({"offset_days": offset, "level": level, "name": name, "late_fee": late_fee})
    return cleaned


def _amounts(values: Any, field: str) -> dict[str, str]:
    """{"EUR": "40.00"}: exact amounts per currency, stored as decimal strings."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidInput(
            f'{field}: give amounts per currency, e.g. {{"EUR": "40.00"}}', field="late_fee"
        )
    cleaned = {}
    for code, amount in values.items():
        try:
            currency_exponent(str(code))
            minor = to_minor_exact(
                parse_decimal(amount, f"{field}.{code}"), str(code), f"{field}.{code}"
            )
        except MoneyError as error:
            raise InvalidInput(f"{field}: {error}", field="late_fee") from None
        if minor < 0:
            raise InvalidInput(f"{field}.{code}: must be zero or more", field="late_fee")
        cleaned[str(code).upper()] = format(from_minor(minor, str(code)), "f")
    return dict(sorted(cleaned.items()))


def _clean_late_fee(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("late_fee: give an object with kind and amounts", field="late_fee")
    unknown = set(value) - {"kind", "percent", "fixed", "cap"}
    if unknown:
        raise InvalidInput(f"late_fee: unknown field {sorted(unknown)[0]!r}", field="late_fee")
    kind = value.get("kind")
    if kind not in core.LATE_FEE_KINDS:
        raise InvalidInput(
            f"late_fee.kind: one of {', '.join(core.LATE_FEE_KINDS)}", field="late_fee"
        )
    cleaned: dict[str, Any] = {"kind": kind}
    if kind == "percent":
        if value.get("fixed"):
            raise InvalidInput(
                "late_fee.fixed: a percent late fee takes a percent, not fixed amounts",
                field="late_fee",
            )
        try:
            percent = parse_decimal(value.get("percent"), "late_fee.percent")
        except MoneyError as error:
            raise InvalidInput(str(error), field="late_fee") from None
        if not 0 < percent <= 100:
            raise InvalidInput(
                f"late_fee.percent: more than 0 and at most 100, not {percent}", field="late_fee"
            )
        cleaned["percent"] = format(percent.normalize(), "f")
    else:
        if value.get("percent") not in (None, "", 0, "0"):
            raise InvalidInput(
                "late_fee.percent: a fixed late fee takes amounts per currency, not a percent",
                field="late_fee",
            )
        cleaned["fixed"] = _amounts(value.get("fixed"), "late_fee.fixed")
        if not cleaned["fixed"]:
            raise InvalidInput(
                'late_fee.fixed: give the fee per currency, e.g. {"EUR": "10.00"}',
                field="late_fee",
            )
    cleaned["cap"] = _amounts(value.get("cap"), "late_fee.cap")
    return cleaned


def policy_of(
    row: DunningPolicy, rounding: RoundingMode = RoundingMode.HALF_UP
) -> core.DunningPolicy:
    """The core policy of a stored one."""
    fee = None
    if row.late_fee:
        data = row.late_fee
        fee = core.LateFee(
            kind=data["kind"],
            amount_minor={
                code: to_minor_exact(parse_decimal(amount), code)
                for code, amount in (data.get("fixed") or {}).items()
            },
            percent=parse_decimal(data.get("percent") or "0"),
            cap_minor={
                code: to_minor_exact(parse_decimal(amount), code)
                for code, amount in (data.get("cap") or {}).items()
            },
            rounding=rounding,
        )
    steps = tuple(
        core.DunningStep(s["offset_days"], s["level"], s["name"], bool(s.get("late_fee")))
        for s in row.steps
    )
    return core.DunningPolicy(steps, fee)


def _check(steps: list[dict[str, Any]], late_fee: dict[str, Any] | None) -> None:
    """The core's own checks (increasing offsets, levels never going down)."""
    row = DunningPolicy(steps=steps, late_fee=late_fee)
    try:
        policy_of(row)
    except core.DunningError as error:
        raise InvalidInput(str(error), field=_field_of(str(error))) from None
    if late_fee is None:
        for index, step in enumerate(steps):
            if step["late_fee"]:
                raise InvalidInput(
                    f"steps[{index}].late_fee: the policy has no late fee to charge",
                    field="steps",
                )


def _clean_name(value: Any) -> str:
    name = str(value or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("name: 1 to 200 characters", field="name")
    return name


def _find_policy(session: Session, actor: Actor, ref: str, *, lock: bool = False) -> DunningPolicy:
    """A policy by id or by name."""
    query = select(DunningPolicy).where(
        DunningPolicy.organization_id == actor.organization_id,
        (DunningPolicy.id == ref) | (DunningPolicy.name == ref),
    )
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"dunning policy {ref} not found")
    return row


def _name_taken(session: Session, actor: Actor, name: str, but: str | None = None) -> None:
    query = select(DunningPolicy.id).where(
        DunningPolicy.organization_id == actor.organization_id, DunningPolicy.name == name
    )
    if but is not None:
        query = query.where(DunningPolicy.id != but)
    if session.scalar(query) is not None:
        raise Conflict(f"name: a dunning policy named {name!r} exists", field="name")


def _make_default(session: Session, actor: Actor, policy: DunningPolicy) -> None:
    for other in session.scalars(
        select(DunningPolicy).where(
            DunningPolicy.organization_id == actor.organization_id,
            DunningPolicy.is_default.is_(True),
            DunningPolicy.id != policy.id,
        )
    ):
        other.is_default = False
    policy.is_default = True


def create_policy(db: Database, actor: Actor, values: dict[str, Any]) -> DunningPolicy:
    """A reminder schedule with an optional late fee. The organisation's first policy, or one
    created with is_default, is the default for customers without a policy of their own."""
    actor.require(*MANAGERS, action="manage dunning policies")
    name = _clean_name(values.get("name"))
    steps = _clean_steps(values.get("steps"))
    late_fee = _clean_late_fee(values.get("late_fee"))
    _check(steps, late_fee)
    with db.transaction() as session:
        _name_taken(session, actor, name)
        first = not session.scalar(
            select(func.count())
            .select_from(DunningPolicy)
            .where(DunningPolicy.organization_id == actor.organization_id)
        )
        policy = DunningPolicy(
            id=new_id("dpol"),
            organization_id=actor.organization_id,
            name=name,
            steps=steps,
            late_fee=late_fee,
            is_default=False,
            created_at=utcnow(),
        )
        session.add(policy)
        session.flush()
        if first or values.get("is_default"):
            _make_default(session, actor, policy)
        audit(
            session,
            actor,
            "dunning_policy.created",
            "dunning_policy",
            policy.id,
            {"name": name, "steps": steps, "late_fee": late_fee, "is_default": policy.is_default},
            after=policy,
        )
    return policy


def update_policy(
    db: Database, actor: Actor, policy_ref: str, values: dict[str, Any]
) -> DunningPolicy:
    """Change a policy's name, steps, late fee (None removes it) or make it the default.

    Reminders already sent keep their step numbers: a changed schedule carries on from the
    step the invoice had reached.
    """
    actor.require(*MANAGERS, action="manage dunning policies")
    with db.transaction() as session:
        policy = _find_policy(session, actor, policy_ref, lock=True)
        before = snapshot(policy, "name", "steps", "late_fee", "is_default")
        changes: dict[str, Any] = {}
        if "name" in values and values["name"] is not None:
            name = _clean_name(values["name"])
            _name_taken(session, actor, name, but=policy.id)
            changes["name"] = name
        steps = policy.steps
        if values.get("steps") is not None:
            steps = _clean_steps(values["steps"])
            changes["steps"] = steps
        late_fee = policy.late_fee
        if "late_fee" in values:
            late_fee = _clean_late_fee(values["late_fee"])
            changes["late_fee"] = late_fee
        _check(list(steps), late_fee)
        for key, value in changes.items():
            setattr(policy, key, value)
        if values.get("is_default") is True:
            _make_default(session, actor, policy)
            changes["is_default"] = True
        elif values.get("is_default") is False and policy.is_default:
            policy.is_default = False
            changes["is_default"] = False
        audit(
            session,
            actor,
            "dunning_policy.updated",
            "dunning_policy",
            policy.id,
            {"changed": sorted(changes)},
            before=before,
            after=policy,
        )
    return policy


def delete_policy(db: Database, actor: Actor, policy_ref: str) -> str:
    """Remove a policy no customer uses; its reminders stay in the history."""
    actor.require(*MANAGERS, action="manage dunning policies")
    with db.transaction() as session:
        policy = _find_policy(session, actor, policy_ref, lock=True)
        gone = snapshot(policy)
        users = session.scalar(
            select(func.count())
            .select_from(Customer)
            .where(
                Customer.organization_id == actor.organization_id,
                Customer.dunning_policy_id == policy.id,
            )
        )
        if users:
            raise Conflict(
                f"dunning policy {policy.name!r} is assigned to {users} customer(s); "
                "assign them another policy first"
            )
        audit(
            session,
            actor,
            "dunning_policy.deleted",
            "dunning_policy",
            policy.id,
            {"name": policy.name, "was_default": policy.is_default},
            before=gone,
        )
        session.delete(policy)
        return policy.id


def list_policies(db: Database, actor: Actor) -> list[DunningPolicy]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(DunningPolicy)
                .where(DunningPolicy.organization_id == actor.organization_id)
                .order_by(DunningPolicy.name)
            )
        )


def get_policy(db: Database, actor: Actor, policy_ref: str) -> DunningPolicy:
    with db.reading() as session:
        return _find_policy(session, actor, policy_ref)


def assign_policy(db: Database, actor: Actor, customer_id: str, policy_ref: str | None) -> Customer:
    """Give a customer its own dunning policy; None puts it back on the default policy."""
    actor.require(*MANAGERS, action="assign dunning policies")
    with db.transaction() as session:
        customer = get_owned(session, Customer, customer_id, actor, lock=True, label="customer")
        before = customer.dunning_policy_id
        policy = None if policy_ref is None else _find_policy(session, actor, policy_ref)
        customer.dunning_policy_id = None if policy is None else policy.id
        audit(
            session,
            actor,
            "customer.dunning_policy_assigned",
            "customer",
            customer.id,
            {"from": before, "to": customer.dunning_policy_id},
            before={"dunning_policy_id": before},
            after=customer,
        )
    return customer


# -- disputes ------------------------------------------------------------------------------------


def dispute_invoice(db: Database, actor: Actor, invoice_id: str, reason: str) -> Invoice:
    """Mark an issued invoice disputed by the customer: dunning pauses until it is resolved."""
    actor.require(*WRITERS, action="record disputes")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say what the customer disputes", field="reason")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.status not in DISPUTABLE_STATES:
            raise Conflict(
                f"invoice {invoice.number or invoice.id} is {invoice.status}; only an issued "
                "invoice can be disputed"
            )
        if invoice.disputed_at is not None:
            raise Conflict(
                f"invoice {invoice.number} is already disputed since "
                f"{invoice.disputed_at.date().isoformat()}: {invoice.dispute_reason}"
            )
        undisputed = snapshot(invoice, "disputed_at", "dispute_reason")
        invoice.disputed_at = utcnow()
        invoice.dispute_reason = reason
        audit(
            session,
            actor,
            "invoice.disputed",
            "invoice",
            invoice.id,
            {"number": invoice.number, "reason": reason},
            before=undisputed,
            after=invoice,
        )
        # The dispute is worked as a discrepancy (services.discrepancies).
        from tallybook.services.discrepancies import open_dispute_in

        open_dispute_in(session, actor, invoice, reason)
    return invoice


def resolve_dispute(
    db: Database, actor: Actor, invoice_id: str, resolution: str | None = None
) -> Invoice:
    """Lift a dispute: dunning resumes with the next step that falls due."""
    actor.require(*WRITERS, action="resolve disputes")
    with db.transaction() as session:
        invoice = get_owned(session, Invoice, invoice_id, actor, lock=True)
        if invoice.disputed_at is None:
            raise Conflict(f"invoice {invoice.number or invoice.id} is not disputed")
        data = {
            "number": invoice.number,
            "reason": invoice.dispute_reason,
            "disputed_at": invoice.disputed_at.isoformat(),
            "resolution": (resolution or "").strip() or None,
        }
        from tallybook.services.discrepancies import close_disputes_in

        close_disputes_in(session, actor, invoice, data["resolution"])
        disputed = snapshot(invoice, "disputed_at", "dispute_reason")
        invoice.disputed_at = None
        invoice.dispute_reason = None
        audit(
            session,
            actor,
            "invoice.dispute_resolved",
            "invoice",
            invoice.id,
            data,
            before=disputed,
            after=invoice,
        )
    return invoice


# -- the dunning run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderOutcome:
    """A reminder the run sent (recorded), with the late fee it charged."""

    reminder_id: str
    invoice_id: str
    invoice_number: str
    customer_id: str
    customer_name: str
    currency: str
    policy_id: str
    policy_name: str
    step: int
    level: int
    name: str
    due_on: date
    days_overdue: int
    open_minor: int
    fee_minor: int
    debit_note_id: str | None
    debit_note_number: str | None
    skipped_steps: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class PausedOutcome:
    """A reminder held back because the invoice is disputed."""

    invoice_id: str
    invoice_number: str
    customer_id: str
    customer_name: str
    step: int
    name: str
    due_on: date
    dispute_reason: str | None
    summary: str


@dataclass(frozen=True)
class DunningRun:
    as_of: date
    dry_run: bool
    invoices_checked: int
    reminders: tuple[ReminderOutcome, ...]
    paused: tuple[PausedOutcome, ...]
    fees_minor: dict[str, int]  # late fees charged per currency


class _Rollback(Exception):
    """Raised inside a dry run's transaction, after its answer is built, to undo it."""


def _steps_done(policy: core.DunningPolicy, indexes: set[int]) -> frozenset[int]:
    """Step positions already reached. A step number beyond a (changed) schedule means the
    invoice went through all of it."""
    last = len(policy.steps) - 1
    return frozenset(min(index, last) for index in indexes)


def run_dunning(
    db: Database, actor: Actor, as_of: date | None = None, *, dry_run: bool = False
) -> DunningRun:
    """Send the reminder each open invoice is due on `as_of` (default today) under its
    customer's policy (or the default policy), charging late fees as debit notes.

    Re-running on the same or a later day repeats nothing; after days without a run only the
    latest step that fell due goes out (the ones passed over are recorded as skipped).
    Disputed invoices get nothing and are reported as paused. A dry run answers the same and
    writes nothing.
    """
    if not dry_run:
        actor.require(*MANAGERS, action="run dunning (it charges late fees)")
    try:
        with db.transaction() as session:
            run = _run(session, actor, as_of, dry_run)
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    except IntegrityError:
        raise Conflict(
            "another dunning run recorded the same reminders at the same time; run again: "
            "nothing is sent twice"
        ) from None
    return run


def _run(session: Session, actor: Actor, as_of: date | None, dry_run: bool) -> DunningRun:
    org = session.get(Organization, actor.organization_id)
    day = as_of or organization_today(session, org.id)
    rounding = RoundingMode(org.rounding_mode)
    rows = {
        p.id: p
        for p in session.scalars(
            select(DunningPolicy).where(DunningPolicy.organization_id == org.id)
        )
    }
    if not rows:
        return DunningRun(day, dry_run, 0, (), (), {})
    policies = {pid: policy_of(row, rounding) for pid, row in rows.items()}
    default = next((pid for pid, row in rows.items() if row.is_default), None)
    # Locked in id order, as payments lock them: a concurrent run waits here and then sees
    # the reminders this one recorded.
    invoices = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.organization_id == org.id,
                Invoice.status.in_(OPEN_STATES),
                Invoice.amount_due_minor > 0,
                Invoice.due_date.is_not(None),
                Invoice.issue_date <= day,
            )
            .order_by(Invoice.id)
            .with_for_update()
        )
    )
    if not invoices:
        return DunningRun(day, dry_run, 0, (), (), {})
    customers = {
        c.id: c
        for c in session.scalars(
            select(Customer).where(Customer.id.in_({i.customer_id for i in invoices}))
        )
    }
    done: dict[str, set[int]] = defaultdict(set)
    fees: dict[str, int] = defaultdict(int)
    open_ids = select(Invoice.id).where(
        Invoice.organization_id == org.id, Invoice.status.in_(OPEN_STATES)
    )
    for invoice_id, step, fee in session.execute(
        select(DunningReminder.invoice_id, DunningReminder.step, DunningReminder.fee_minor).where(
            DunningReminder.organization_id == org.id,
            DunningReminder.invoice_id.in_(open_ids),
        )
    ).all():
        done[invoice_id].add(step)
        fees[invoice_id] += fee

    by_policy: dict[str, list[core.DunningInvoice]] = defaultdict(list)
    for invoice in invoices:
        policy_id = customers[invoice.customer_id].dunning_policy_id or default
        if policy_id is None or policy_id not in policies:
            continue
        by_policy[policy_id].append(
            core.DunningInvoice(
                invoice_id=invoice.id,
                number=invoice.number or invoice.id,
                customer_id=invoice.customer_id,
                currency=invoice.currency,
                due_date=invoice.due_date,
                open_minor=invoice.amount_due_minor,
                disputed=invoice.disputed_at is not None,
                status=invoice.status,
                steps_done=_steps_done(policies[policy_id], done[invoice.id]),
                late_fees_charged_minor=fees[invoice.id],
            )
        )
    by_id = {i.id: i for i in invoices}
    sent: list[ReminderOutcome] = []
    paused: list[PausedOutcome] = []
    charged: dict[str, int] = defaultdict(int)
    checked = 0
    for policy_id in sorted(by_policy):
        policy, row, group = policies[policy_id], rows[policy_id], by_policy[policy_id]
        checked += len(group)
        for action in core.reminders_due(group, policy, day):
            invoice = by_id[action.invoice_id]
            sent.append(
                _send(
                    session,
                    actor,
                    invoice,
                    customers[invoice.customer_id],
                    row,
                    policy,
                    action,
                    day,
                )
            )
            charged[invoice.currency] += action.fee_minor
        for hold in core.paused_reminders(group, policy, day):
            invoice = by_id[hold.invoice_id]
            paused.append(
                PausedOutcome(
                    invoice_id=invoice.id,
                    invoice_number=invoice.number or invoice.id,
                    customer_id=invoice.customer_id,
                    customer_name=customers[invoice.customer_id].legal_name,
                    step=hold.step_index,
                    name=hold.step_name,
                    due_on=hold.step_date,
                    dispute_reason=invoice.dispute_reason,
                    summary=hold.summary,
                )
            )
    audit(
        session,
        actor,
        "dunning.run",
        "organization",
        org.id,
        {
            "as_of": day.isoformat(),
            "reminders": len(sent),
            "paused": len(paused),
            "fees_minor": dict(charged),
        },
    )
    return DunningRun(
        day,
        dry_run,
        checked,
        tuple(sent),
        tuple(paused),
        {k: v for k, v in sorted(charged.items()) if v},
    )


def _send(
    session: Session,
    actor: Actor,
    invoice: Invoice,
    customer: Customer,
    row: DunningPolicy,
    policy: core.DunningPolicy,
    action: core.ReminderAction,
    day: date,
) -> ReminderOutcome:
    """Record one reminder, the steps it passed over and its late fee, in the run's
    transaction."""
    now = utcnow()
    open_before = invoice.amount_due_minor
    for index in action.skipped_steps:
        step = policy.steps[index]
        session.add(
            DunningReminder(
                id=new_id("drem"),
                organization_id=invoice.organization_id,
                invoice_id=invoice.id,
                customer_id=invoice.customer_id,
                policy_id=row.id,
                step=index,
                level=step.level,
                name=step.name,
                status="skipped",
                due_on=invoice.due_date + timedelta(days=step.offset_days),
                recorded_on=day,
                fee_minor=0,
                currency=invoice.currency,
                open_minor=open_before,
                summary=f"{invoice.number}: {step.name} passed over; {action.step_name} "
                f"went out on {day.isoformat()} instead.",
                created_at=now,
            )
        )
    note: DebitNote | None = None
    if action.fee_minor > 0:
        amount = format(from_minor(action.fee_minor, invoice.currency), "f")
        note = issue_debit_note(
            session,
            actor,
            invoice,
            {
                "reason": f"Late fee: {action.step_name} for invoice {invoice.number}",
                "lines": [
                    {
                        "description": f"Late fee on invoice {invoice.number}, overdue since "
                        f"{invoice.due_date.isoformat()}",
                        "quantity": "1",
                        "unit_price": amount,
                    }
                ],
            },
            late_fee=True,
            day=day,
        )
        if note.total_minor != action.fee_minor:  # no tax, one line: it cannot differ
            raise Conflict(f"late fee debit note {note.number} does not match the fee")
    reminder = DunningReminder(
        id=new_id("drem"),
        organization_id=invoice.organization_id,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        policy_id=row.id,
        step=action.step_index,
        level=action.level,
        name=action.step_name,
        status="recorded",
        due_on=action.step_date,
        recorded_on=day,
        fee_minor=action.fee_minor,
        debit_note_id=note.id if note else None,
        currency=invoice.currency,
        open_minor=open_before,
        summary=action.summary,
        created_at=now,
    )
    session.add(reminder)
    session.flush()
    audit(
        session,
        actor,
        "dunning.reminder_recorded",
        "invoice",
        invoice.id,
        {
            "number": invoice.number,
            "policy": row.name,
            "step": action.step_index,
            "level": action.level,
            "name": action.step_name,
            "fee_minor": action.fee_minor,
            "debit_note": note.number if note else None,
            "skipped": list(action.skipped_steps),
        },
        after=reminder,
    )
    # The reminder's e-mail (with the late fee's debit note) and webhooks, after the commit.
    from tallybook.services.outbox import reminder_recorded

    reminder_recorded(session, reminder, invoice, customer)
    return ReminderOutcome(
        reminder_id=reminder.id,
        invoice_id=invoice.id,
        invoice_number=invoice.number or invoice.id,
        customer_id=customer.id,
        customer_name=customer.legal_name,
        currency=invoice.currency,
        policy_id=row.id,
        policy_name=row.name,
        step=action.step_index,
        level=action.level,
        name=action.step_name,
        due_on=action.step_date,
        days_overdue=action.days_overdue,
        open_minor=open_before,
        fee_minor=action.fee_minor,
        debit_note_id=note.id if note else None,
        debit_note_number=note.number if note else None,
        skipped_steps=tuple(policy.steps[i].name for i in action.skipped_steps),
        summary=action.summary,
    )


# -- reminders -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderView:
    reminder: DunningReminder
    invoice_number: str
    debit_note_number: str | None


def list_reminders(
    db: Database,
    actor: Actor,
    *,
    invoice_id: str | None = None,
    customer_id: str | None = None,
    include_skipped: bool = False,
    limit: int = 200,
) -> list[ReminderView]:
    """Reminders recorded, newest first; for one invoice or customer (404 if not ours)."""
    with db.reading() as session:
        query = (
            select(DunningReminder, Invoice.number, DebitNote.number)
            .join(Invoice, Invoice.id == DunningReminder.invoice_id)
            .outerjoin(DebitNote, DebitNote.id == DunningReminder.debit_note_id)
            .where(DunningReminder.organization_id == actor.organization_id)
        )
        if invoice_id is not None:
            get_owned(session, Invoice, invoice_id, actor)
            query = query.where(DunningReminder.invoice_id == invoice_id)
        if customer_id is not None:
            get_owned(session, Customer, customer_id, actor, label="customer")
            query = query.where(DunningReminder.customer_id == customer_id)
        if not include_skipped:
            query = query.where(DunningReminder.status == "recorded")
        rows = session.execute(
            query.order_by(
                DunningReminder.recorded_on.desc(),
                DunningReminder.created_at.desc(),
                DunningReminder.step.desc(),
            ).limit(limit)
        ).all()
        return [ReminderView(r, number or r.invoice_id, note) for r, number, note in rows]


# -- the collections worklist --------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistInvoice:
    invoice_id: str
    number: str
    due_date: date
    open_minor: int
    days_overdue: int
    risk_score: int
    disputed: bool
    last_reminder_level: int | None
    last_reminder_on: date | None
    failed_attempts: int


@dataclass(frozen=True)
class WorklistCustomer:
    """A customer to chase: its overdue invoices, riskiest first."""

    customer_id: str
    customer_name: str
    currency: str
    overdue_minor: int
    oldest_days_overdue: int
    risk_score: int  # the sum of its invoices' open amount x days overdue
    disputed: bool  # one of its invoices is disputed
    last_reminder_level: int | None
    last_reminder_on: date | None
    failed_attempts: int  # declined or failed automatic payment attempts
    invoices: tuple[WorklistInvoice, ...]


def collections_worklist(
    db: Database, actor: Actor, as_of: date | None = None
) -> list[WorklistCustomer]:
    """Customers with overdue invoices, riskiest first within each currency (risk: amount due
    x days overdue), with their last reminder, disputes and failed automatic charges.

    Amounts are what is owed now; `as_of` (default today) sets the days overdue.
    """
    with db.reading() as session:
        day = as_of or organization_today(session, actor.organization_id)
        invoices = list(
            session.scalars(
                select(Invoice).where(
                    Invoice.organization_id == actor.organization_id,
                    Invoice.status.in_(OPEN_STATES),
                    Invoice.amount_due_minor > 0,
                    Invoice.due_date < day,
                )
            )
        )
        if not invoices:
            return []
        ids = [i.id for i in invoices]
        names = dict(
            session.execute(
                select(Customer.id, Customer.legal_name).where(
                    Customer.id.in_({i.customer_id for i in invoices})
                )
            ).all()
        )
        last: dict[str, tuple[date, int, int]] = {}
        for invoice_id, recorded_on, step, level in session.execute(
            select(
                DunningReminder.invoice_id,
                DunningReminder.recorded_on,
                DunningReminder.step,
                DunningReminder.level,
            ).where(
                DunningReminder.organization_id == actor.organization_id,
                DunningReminder.invoice_id.in_(ids),
                DunningReminder.status == "recorded",
                DunningReminder.recorded_on <= day,
            )
        ).all():
            if invoice_id not in last or (recorded_on, step) > last[invoice_id][:2]:
                last[invoice_id] = (recorded_on, step, level)
        failed = dict(
            session.execute(
                select(PaymentAttempt.invoice_id, func.count())
                .where(
                    PaymentAttempt.organization_id == actor.organization_id,
                    PaymentAttempt.invoice_id.in_(ids),
                    PaymentAttempt.status.in_(FAILED_ATTEMPTS),
                    PaymentAttempt.attempted_on <= day,
                )
                .group_by(PaymentAttempt.invoice_id)
            ).all()
        )
    rows = core.worklist(
        [
            core.DunningInvoice(
                invoice_id=i.id,
                number=i.number or i.id,
                customer_id=i.customer_id,
                currency=i.currency,
                due_date=i.due_date,
                open_minor=i.amount_due_minor,
                disputed=i.disputed_at is not None,
                status=i.status,
            )
            for i in invoices
        ],
        day,
    )
    grouped: dict[tuple[str, str], list[WorklistInvoice]] = defaultdict(list)
    for row in rows:
        reminder = last.get(row.invoice_id)
        grouped[(row.customer_id, row.currency)].append(
            WorklistInvoice(
                invoice_id=row.invoice_id,
                number=row.number,
                due_date=row.due_date,
                open_minor=row.open_minor,
                days_overdue=row.days_overdue,
                risk_score=row.risk_score,
                disputed=row.disputed,
                last_reminder_level=reminder[2] if reminder else None,
                last_reminder_on=reminder[0] if reminder else None,
                failed_attempts=int(failed.get(row.invoice_id, 0)),
            )
        )
    customers = [
        _worklist_customer(cid, cur, names.get(cid, cid), items)
        for (cid, cur), items in grouped.items()
    ]
    customers.sort(
        key=lambda c: (
            c.currency,
            -c.risk_score,
            -c.oldest_days_overdue,
            c.customer_name.casefold(),
            c.customer_id,
        )
    )
    return customers


def _worklist_customer(
    customer_id: str, currency: str, name: str, items: Sequence[WorklistInvoice]
) -> WorklistCustomer:
    reminded = [i for i in items if i.last_reminder_on is not None]
    latest = max(
        reminded, key=lambda i: (i.last_reminder_on, i.last_reminder_level or 0), default=None
    )
    return WorklistCustomer(
        customer_id=customer_id,
        customer_name=name,
        currency=currency,
        overdue_minor=sum(i.open_minor for i in items),
        oldest_days_overdue=max(i.days_overdue for i in items),
        risk_score=sum(i.risk_score for i in items),
        disputed=any(i.disputed for i in items),
        last_reminder_level=latest.last_reminder_level if latest else None,
        last_reminder_on=latest.last_reminder_on if latest else None,
        failed_attempts=sum(i.failed_attempts for i in items),
        invoices=tuple(items),
    )
