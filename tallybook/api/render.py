"""Rows to JSON for the API and the CLI's --json output. Money as minor units and as text."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tallybook.core.money import from_minor


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def money(minor: int, currency: str) -> str:
    return format(from_minor(minor, currency), "f")


def row(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: _value(getattr(obj, name)) for name in fields}


def with_amounts(data: dict[str, Any], currency: str) -> dict[str, Any]:
    """Add 'total': '12.34' next to every 'total_minor': 1234."""
    for key in list(data):
        if key.endswith("_minor") and isinstance(data[key], int):
            data[key[: -len("_minor")]] = money(data[key], currency)
    return data


CUSTOMER = (
    "id",
    "external_id",
    "legal_name",
    "emails",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "region",
    "country",
    "currency",
    "timezone",
    "language",
    "payment_terms_days",
    "tax_ids",
    "tax_exempt",
    "reverse_charge",
    "po_required",
    "bank_accounts",
    "electronic_address",
    "electronic_address_scheme",
    "credit_balance_minor",
    "archived_at",
    "created_at",
)
PRODUCT = ("id", "code", "name", "description", "tax_category", "unit_label", "created_at")
PRICE = (
    "id",
    "code",
    "version",
    "product_id",
    "currency",
    "kind",
    "interval_unit",
    "interval_count",
    "timing",
    "terms",
    "metric_code",
    "usage_filters",
    "group_by",
    "effective_from",
    "created_at",
)
METRIC = (
    "id",
    "code",
    "name",
    "description",
    "aggregation",
    "field",
    "filters",
    "weighted_unit",
    "created_at",
)
QUARANTINED_EVENT = (
    "id",
    "transaction_id",
    "reason",
    "customer_external_id",
    "subscription_id",
    "metric_code",
    "occurred_at",
    "properties",
    "received_at",
)
PLAN = (
    "id",
    "code",
    "name",
    "currency",
    "interval_unit",
    "interval_count",
    "price_codes",
    "trial_days",
    "created_at",
)
TAX_RATE = ("id", "code", "name", "jurisdiction", "tax_category", "percent", "active")
COUPON = (
    "id",
    "code",
    "name",
    "kind",
    "value",
    "currency",
    "duration",
    "duration_periods",
    "product_codes",
)
SUBSCRIPTION = (
    "id",
    "customer_id",
    "plan_id",
    "quantity",
    "status",
    "start_at",
    "end_at",
    "trial_end_at",
    "anchor",
    "anchor_date",
    "cancel_at_period_end",
    "canceled_at",
    "auto_renew",
    "renewal_term_months",
    "next_billing_at",
    "created_at",
)
CHANGE = (
    "id",
    "subscription_id",
    "kind",
    "effective_at",
    "plan_id",
    "quantity",
    "note",
    "created_at",
)
INVOICE = (
    "id",
    "number",
    "customer_id",
    "status",
    "approval_status",
    "approved_by",
    "currency",
    "billing_date",
    "issue_date",
    "due_date",
    "po_number",
    "notes",
    "discounts",
    "customer_snapshot",
    "tax_treatment",
    "legal_note",
    "subtotal_minor",
    "discount_minor",
    "tax_minor",
    "total_minor",
    "credit_applied_minor",
    "credited_minor",
    "debited_minor",
    "paid_minor",
    "written_off_minor",
    "amount_due_minor",
    "payment_reference",
    "disputed_at",
    "created_at",
    "issued_at",
    "voided_at",
    "void_reason",
)
LINE = (
    "id",
    "position",
    "kind",
    "description",
    "product_id",
    "price_id",
    "subscription_id",
    "charge_id",
    "period_start",
    "period_end",
    "service_from",
    "service_to",
    "quantity",
    "unit_price",
    "amount",
    "subtotal_minor",
    "discount_minor",
    "tax_minor",
    "total_minor",
    "taxes",
)
CREDIT_NOTE = (
    "id",
    "number",
    "invoice_id",
    "customer_id",
    "currency",
    "reason",
    "settlement",
    "issue_date",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "created_at",
)
CREDIT_NOTE_LINE = (
    "id",
    "invoice_line_id",
    "description",
    "quantity",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "taxes",
)
DEBIT_NOTE = (
    "id",
    "number",
    "invoice_id",
    "customer_id",
    "currency",
    "reason",
    "issue_date",
    "due_date",
    "lines",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "created_at",
)
CONTRACT = ("id", "customer_id", "reference", "name", "currency", "start_date", "end_date")
MILESTONE = ("id", "contract_id", "name", "product_id", "amount", "completed_at", "charge_id")
CHARGE = (
    "id",
    "customer_id",
    "contract_id",
    "kind",
    "description",
    "product_id",
    "currency",
    "quantity",
    "unit_price",
    "service_date",
    "billable_at",
    "invoice_id",
)
ORGANIZATION = (
    "id",
    "name",
    "default_currency",
    "timezone",
    "country",
    "proration_policy",
    "downgrade_credit",
    "rounding_mode",
    "tax_rounding",
    "prices_include_tax",
    "approval_thresholds",
    "invoice_number_pattern",
    "credit_note_number_pattern",
    "debit_note_number_pattern",
    "usage_grace_days",
    "collection_retry_days",
    "anomaly_percent",
    "near_duplicate_days",
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
    "created_at",
)


def customer(c: Any) -> dict[str, Any]:
    return with_amounts(row(c, CUSTOMER), c.currency)


def invoice(i: Any, lines: list[Any] | None = None) -> dict[str, Any]:
    data = with_amounts(row(i, INVOICE), i.currency)
    data["tax_summary"] = [with_amounts(dict(t), i.currency) for t in i.tax_summary]
    if lines is not None:
        data["lines"] = [line(x, i.currency) for x in lines]
    return data


def line(x: Any, currency: str) -> dict[str, Any]:
    return with_amounts(row(x, LINE), currency)


def credit_note(n: Any, lines: list[Any] | None = None) -> dict[str, Any]:
    data = with_amounts(row(n, CREDIT_NOTE), n.currency)
    if lines is not None:
        data["lines"] = [with_amounts(row(x, CREDIT_NOTE_LINE), n.currency) for x in lines]
    return data


def debit_note(n: Any) -> dict[str, Any]:
    data = with_amounts(row(n, DEBIT_NOTE), n.currency)
    data["lines"] = [with_amounts(dict(x), n.currency) for x in n.lines]
    return data


def charge(c: Any) -> dict[str, Any]:
    return row(c, CHARGE)


PAYMENT = (
    "id",
    "number",
    "customer_id",
    "currency",
    "amount_minor",
    "received_on",
    "method",
    "reference",
    "source",
    "unapplied_minor",
    "refunded_minor",
    "status",
    "reversed_at",
    "reversal_reason",
    "created_at",
)
REFUND = (
    "id",
    "customer_id",
    "payment_id",
    "currency",
    "amount_minor",
    "from_invoices_minor",
    "from_credit_minor",
    "refunded_on",
    "reason",
    "method",
    "provider_reference",
    "created_at",
)


def payment(p: Any, allocations: list[Any] | None = None) -> dict[str, Any]:
    data = with_amounts(row(p, PAYMENT), p.currency)
    if allocations is not None:
        data["allocations"] = [
            with_amounts(
                {
                    "invoice_id": a.invoice_id,
                    "amount_minor": a.amount_minor,
                    "undone_minor": a.undone_minor,
                },
                p.currency,
            )
            for a in allocations
        ]
    return data


def refund(r: Any) -> dict[str, Any]:
    return with_amounts(row(r, REFUND), r.currency)


def ledger_account(a: Any) -> dict[str, Any]:
    return {"code": a.code, "name": a.name, "type": a.type, "role": a.role}


def journal_entry(view: Any) -> dict[str, Any]:
    e = view.entry
    return {
        "id": e.id,
        "number": e.number,
        "entry_date": e.entry_date.isoformat(),
        "kind": e.kind,
        "memo": e.memo,
        "currency": e.currency,
        "source_type": e.source_type,
        "source_id": e.source_id,
        "customer_id": e.customer_id,
        "lines": [
            with_amounts(
                {
                    "account": x.account_code,
                    "debit_minor": x.debit_minor,
                    "credit_minor": x.credit_minor,
                    "description": x.description,
                    "document": x.document,
                },
                e.currency,
            )
            for x in view.lines
        ],
    }


def trial_balance_row(r: Any) -> dict[str, Any]:
    return with_amounts(
        {
            "code": r.code,
            "name": r.name,
            "type": r.type,
            "currency": r.currency,
            "debit_minor": r.debit_minor,
            "credit_minor": r.credit_minor,
            "balance_minor": r.balance_minor,
        },
        r.currency,
    )


# -- automatic collection ----------------------------------------------------------------------

PAYMENT_METHOD = (
    "id",
    "customer_id",
    "provider",
    "token",
    "kind",
    "label",
    "is_default",
    "created_at",
    "detached_at",
)
PAYMENT_ATTEMPT = (
    "id",
    "invoice_id",
    "customer_id",
    "payment_method_id",
    "attempt",
    "status",
    "currency",
    "amount_minor",
    "provider_reference",
    "failure_code",
    "failure_message",
    "attempted_on",
    "next_attempt_on",
    "payment_id",
    "created_at",
    "completed_at",
)


def payment_method(m: Any) -> dict[str, Any]:
    return row(m, PAYMENT_METHOD)


def payment_attempt(view: Any) -> dict[str, Any]:
    """An attempt with its invoice number and customer name (a services.collection view)."""
    data = with_amounts(row(view.attempt, PAYMENT_ATTEMPT), view.attempt.currency)
    data["invoice_number"] = view.invoice_number
    data["customer_name"] = view.customer_name
    return data


def collection_run(run: Any) -> dict[str, Any]:
    return {
        "as_of": run.as_of.isoformat(),
        "attempted": run.attempted,
        "approved": run.count("approved"),
        "declined": run.count("declined"),
        "failed": run.count("failed"),
        "pending": run.count("pending"),
        "amounts": {cur: with_amounts(dict(a), cur) for cur, a in run.amounts().items()},
        "attempts": [
            with_amounts(
                {
                    "attempt_id": o.attempt_id,
                    "invoice_id": o.invoice_id,
                    "invoice_number": o.invoice_number,
                    "customer_id": o.customer_id,
                    "attempt": o.attempt,
                    "status": o.status,
                    "currency": o.currency,
                    "amount_minor": o.amount_minor,
                    "failure_code": o.failure_code,
                    "failure_message": o.failure_message,
                    "next_attempt_on": _value(o.next_attempt_on),
                    "payment_id": o.payment_id,
                    "payment_number": o.payment_number,
                    "resent": o.resent,
                },
                o.currency,
            )
            for o in run.outcomes
        ],
        "skipped": run.skipped,
    }


def customer_collection(view: Any) -> dict[str, Any]:
    default = view.default_method
    return {
        "customer_id": view.customer.id,
        "legal_name": view.customer.legal_name,
        "default_payment_method": payment_method(default) if default else None,
        "payment_methods": [payment_method(m) for m in view.payment_methods],
        "next_retry_on": _value(view.next_retry_on),
        "failing": [payment_attempt(v) for v in view.failing],
        "recent_attempts": [payment_attempt(v) for v in view.recent],
    }


# -- dunning, disputes and collections --------------------------------------------------------


def disputed_invoice(i: Any) -> dict[str, Any]:
    """An invoice with its dispute (disputed_at and the customer's reason)."""
    data = invoice(i)
    data["dispute_reason"] = i.dispute_reason
    return data


def dunning_policy(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "is_default": p.is_default,
        "steps": [dict(s) for s in p.steps],
        "late_fee": p.late_fee,
        "created_at": _value(p.created_at),
    }


def dunning_reminder(view: Any) -> dict[str, Any]:
    r = view.reminder
    return with_amounts(
        {
            "id": r.id,
            "invoice_id": r.invoice_id,
            "invoice_number": view.invoice_number,
            "customer_id": r.customer_id,
            "policy_id": r.policy_id,
            "step": r.step,
            "level": r.level,
            "name": r.name,
            "status": r.status,
            "due_on": _value(r.due_on),
            "recorded_on": _value(r.recorded_on),
            "currency": r.currency,
            "open_minor": r.open_minor,
            "fee_minor": r.fee_minor,
            "debit_note_id": r.debit_note_id,
            "debit_note_number": view.debit_note_number,
            "summary": r.summary,
            "created_at": _value(r.created_at),
        },
        r.currency,
    )


def dunning_run(run: Any) -> dict[str, Any]:
    return {
        "as_of": _value(run.as_of),
        "dry_run": run.dry_run,
        "invoices_checked": run.invoices_checked,
        "reminders": [
            with_amounts(
                {
                    "reminder_id": None if run.dry_run else o.reminder_id,
                    "invoice_id": o.invoice_id,
                    "invoice_number": o.invoice_number,
                    "customer_id": o.customer_id,
                    "customer_name": o.customer_name,
                    "policy_id": o.policy_id,
                    "policy_name": o.policy_name,
                    "step": o.step,
                    "level": o.level,
                    "name": o.name,
                    "due_on": _value(o.due_on),
                    "days_overdue": o.days_overdue,
                    "currency": o.currency,
                    "open_minor": o.open_minor,
                    "fee_minor": o.fee_minor,
                    "debit_note_id": None if run.dry_run else o.debit_note_id,
                    "debit_note_number": None if run.dry_run else o.debit_note_number,
                    "skipped_steps": list(o.skipped_steps),
                    "summary": o.summary,
                },
                o.currency,
            )
            for o in run.reminders
        ],
        "paused": [
            {
                "invoice_id": p.invoice_id,
                "invoice_number": p.invoice_number,
                "customer_id": p.customer_id,
                "customer_name": p.customer_name,
                "step": p.step,
                "name": p.name,
                "due_on": _value(p.due_on),
                "dispute_reason": p.dispute_reason,
                "summary": p.summary,
            }
            for p in run.paused
        ],
        "fees": {cur: with_amounts({"fee_minor": m}, cur) for cur, m in run.fees_minor.items()},
    }


def worklist_customer(c: Any) -> dict[str, Any]:
    data = with_amounts(
        {
            "customer_id": c.customer_id,
            "customer_name": c.customer_name,
            "currency": c.currency,
            "overdue_minor": c.overdue_minor,
            "oldest_days_overdue": c.oldest_days_overdue,
            "risk_score": c.risk_score,
            "disputed": c.disputed,
            "last_reminder_level": c.last_reminder_level,
            "last_reminder_on": _value(c.last_reminder_on),
            "failed_attempts": c.failed_attempts,
        },
        c.currency,
    )
    data["invoices"] = [
        with_amounts(
            {
                "invoice_id": i.invoice_id,
                "number": i.number,
                "due_date": _value(i.due_date),
                "open_minor": i.open_minor,
                "days_overdue": i.days_overdue,
                "risk_score": i.risk_score,
                "disputed": i.disputed,
                "last_reminder_level": i.last_reminder_level,
                "last_reminder_on": _value(i.last_reminder_on),
                "failed_attempts": i.failed_attempts,
            },
            c.currency,
        )
        for i in c.invoices
    ]
    return data


def dso_figure(f: Any) -> dict[str, Any]:
    return with_amounts(
        {
            "currency": f.currency,
            "receivables_minor": f.receivables_minor,
            "credit_sales_minor": f.credit_sales_minor,
            "days": f.days,
            "dso": None if f.dso is None else format(f.dso, "f"),
        },
        f.currency,
    )


def audit_verification(result: Any) -> dict[str, Any]:
    """An audit chain verification (services.audit_trail.ChainVerification)."""
    report = result.report
    broken = report.first_break
    head = result.head
    return {
        "organization_id": result.organization_id,
        "ok": report.ok,
        "events_checked": report.events_checked,
        "last_sequence": report.last_sequence,
        "last_hash": report.last_hash,
        "head": None
        if head is None
        else {
            "last_sequence": head.last_sequence,
            "last_hash": head.last_hash,
            "last_event_id": head.last_event_id,
        },
        "first_break": None
        if broken is None
        else {
            "kind": broken.kind,
            "event_id": broken.event_id,
            "sequence": broken.sequence,
            "detail": broken.detail,
        },
    }


APPROVAL = (
    "id",
    "subject_type",
    "subject_id",
    "rule",
    "amount_minor",
    "currency",
    "action",
    "status",
    "requested_by",
    "request_reason",
    "requested_at",
    "decided_by",
    "decision_reason",
    "decided_at",
    "result_type",
    "result_id",
)


def approval(a: Any) -> dict[str, Any]:
    """An approval request; `amount` next to `amount_minor` when it has one."""
    data = row(a, APPROVAL)
    if a.amount_minor is not None and a.currency:
        data["amount"] = money(a.amount_minor, a.currency)
    return data


# -- verification, discrepancies, billing health ----------------------------------------------


def finding(f: Any, discrepancy_id: str | None = None) -> dict[str, Any]:
    """A verification finding: what, where, why, expected against actual."""
    data = {
        "check": f.check,
        "title": f.title,
        "family": f.family,
        "severity": f.severity.value,
        "what": f.what,
        "where": f.where.as_dict(),
        "why": f.why,
        "expected": f.expected,
        "actual": f.actual,
        "key": f.key,
    }
    if discrepancy_id is not None:
        data["discrepancy_id"] = discrepancy_id
    return data


def invoice_verification(v: Any) -> dict[str, Any]:
    return {
        "invoice_id": v.invoice_id,
        "invoice_number": v.invoice_number,
        "customer_id": v.customer_id,
        "status": v.status,
        "blocking": len(v.blocking),
        "warnings": len(v.findings) - len(v.blocking),
        "findings": [finding(f, v.discrepancies.get(f.key)) for f in v.findings],
    }


def verification_run(run: Any, *, passed: bool = False) -> dict[str, Any]:
    """A verification run; invoices that passed are left out unless asked for."""
    return {
        "id": run.id,
        "as_of": run.as_of.isoformat(),
        "invoices": len(run.invoices),
        "failing_invoices": len(run.failing),
        "blocking": run.blocking,
        "warnings": run.warnings,
        "seconds": round(run.seconds, 3),
        "results": [
            invoice_verification(v) for v in run.invoices if passed or v.status != "passed"
        ],
        "unattached": [finding(f, run.discrepancies.get(f.key)) for f in run.unattached],
    }


DISCREPANCY = (
    "id",
    "source",
    "check",
    "severity",
    "status",
    "what",
    "why",
    "expected",
    "actual",
    "location",
    "customer_id",
    "invoice_id",
    "invoice_line_id",
    "purchase_order_id",
    "time_entry_id",
    "subject_type",
    "subject_id",
    "assignee_key_id",
    "resolution",
    "resolution_note",
    "customer_message",
    "credit_note_id",
    "debit_note_id",
    "override_approval_id",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "resolved_by",
    "updated_at",
)


def discrepancy(
    d: Any, comments: list[Any] | None = None, invoice_number: str | None = None
) -> dict[str, Any]:
    data = row(d, DISCREPANCY)
    if invoice_number is not None:
        data["invoice_number"] = invoice_number
    if comments is not None:
        data["comments"] = [
            {
                "id": c.id,
                "author_key_id": c.author_key_id,
                "body": c.body,
                "created_at": _value(c.created_at),
            }
            for c in comments
        ]
    return data


def discrepancy_view(view: Any) -> dict[str, Any]:
    return discrepancy(view.discrepancy, view.comments, view.invoice_number)


def due_item(item: Any) -> dict[str, Any]:
    data = {
        "kind": item.kind,
        "id": item.id,
        "customer_id": item.customer_id,
        "customer_name": item.customer_name,
        "description": item.description,
        "due_on": item.due_on.isoformat(),
        "currency": item.currency,
        "amount": _value(item.amount),
    }
    if item.contract_reference:
        data["contract_reference"] = item.contract_reference
    if item.time_entry_ids:
        data["time_entry_ids"] = list(item.time_entry_ids)
    return data


def billing_health(h: Any) -> dict[str, Any]:
    return {
        "as_of": h.as_of.isoformat(),
        "unbilled": {
            "count": len(h.unbilled),
            "by_kind": h.unbilled_by_kind,
            "known_amounts": {c: _value(a) for c, a in h.unbilled_amounts.items()},
            "items": [due_item(i) for i in h.unbilled],
        },
        "waiting_for_approval": [
            {
                "invoice_id": w.invoice_id,
                "customer_id": w.customer_id,
                "customer_name": w.customer_name,
                "currency": w.currency,
                "total_minor": w.total_minor,
                "total": money(w.total_minor, w.currency),
                "waiting_for": w.waiting_for,
                "approval_ids": list(w.approval_ids),
                "since": _value(w.since),
            }
            for w in h.waiting
        ],
        "open_discrepancies_by_age": h.discrepancies_by_age,
        "failing_verification": [
            {
                "invoice_id": f.invoice_id,
                "number": f.number,
                "status": f.status,
                "customer_id": f.customer_id,
                "customer_name": f.customer_name,
                "currency": f.currency,
                "total_minor": f.total_minor,
                "total": money(f.total_minor, f.currency),
                "blocking": f.blocking,
                "checks": list(f.checks),
                "discrepancy_ids": list(f.discrepancy_ids),
            }
            for f in h.failing
        ],
    }


# -- distribution: deliveries (the outbox), webhook endpoints, delivery preferences ------------

DELIVERY = (
    "id",
    "channel",
    "status",
    "document_type",
    "document_id",
    "document_number",
    "customer_id",
    "recipients",
    "subject",
    "endpoint_id",
    "event_type",
    "message_id",
    "replay_of",
    "attempts",
    "next_attempt_at",
    "last_error",
    "last_status_code",
    "last_response",
    "sent_at",
    "created_at",
)
DELIVERY_ATTEMPT = (
    "attempt",
    "outcome",
    "status_code",
    "response_excerpt",
    "error",
    "started_at",
    "finished_at",
)
WEBHOOK_ENDPOINT = ("id", "url", "description", "events", "enabled", "created_at", "updated_at")


def delivery(d: Any) -> dict[str, Any]:
    data = row(d, DELIVERY)
    data["einvoice"] = (d.details or {}).get("einvoice")
    if d.channel == "webhook":
        data["payload"] = d.payload
    # The time of the next try only means something while it waits.
    if d.status != "queued":
        data["next_attempt_at"] = None
    return data


def delivery_view(view: Any) -> dict[str, Any]:
    data = delivery(view.delivery)
    data["attempt_log"] = [row(a, DELIVERY_ATTEMPT) for a in view.attempts]
    return data


def webhook_endpoint(e: Any, secret: str | None = None) -> dict[str, Any]:
    data = row(e, WEBHOOK_ENDPOINT)
    if secret is not None:
        data["secret"] = secret  # shown once, at creation or rotation
    return data


def delivery_preferences(c: Any) -> dict[str, Any]:
    return {
        "customer_id": c.id,
        "delivery_channel": c.delivery_channel,
        "einvoice_attachment": c.einvoice_attachment,
        "emails": list(c.emails or []),
    }


PORTAL_LINK = (
    "id",
    "customer_id",
    "expires_at",
    "created_at",
    "created_by",
    "revoked_at",
    "revoked_by",
)


def portal_link(link: Any, url: str | None = None) -> dict[str, Any]:
    from tallybook.services.portal import link_status

    data = row(link, PORTAL_LINK)
    data["status"] = link_status(link)
    if url is not None:
        data["url"] = url  # shown when the link is made; stored nowhere
    return data
