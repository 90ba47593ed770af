"""`tallybook purchase-orders`: record, import (CSV, XLSX, UBL 2.1 Order), list, show what is
left, close or cancel customers' purchase orders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from tallybook.api.routes.purchase_orders import import_json, order_json, view_json
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _compact,
    _emit_json,
    _fail,
    _fields,
    _group,
    _session,
    _table,
    command,
)
from tallybook.core.money import format_minor, round_to_minor
from tallybook.services import purchase_orders as po

purchase_orders_app = _group(
    "purchase-orders", "Customers' purchase orders and what invoices have used of them."
)

LINE_KEYS = ("product", "description", "quantity", "unit_price", "unit_code", "position")
_LINE_SPLIT = re.compile(r",(?=\s*(?:" + "|".join(LINE_KEYS) + r")=)")


def _line(spec: str) -> dict[str, Any]:
    """'product=consulting,quantity=80,unit_price=95.00' (a description may hold commas)."""
    line: dict[str, Any] = {}
    for part in _LINE_SPLIT.split(spec):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in LINE_KEYS:
            _fail(
                f"--line {spec!r}: expected KEY=VALUE pairs of {', '.join(LINE_KEYS)}, e.g. "
                "product=consulting,quantity=80,unit_price=95.00"
            )
        line[key] = value.strip()
    return line


def _money(minor: int | None, currency: str) -> str:
    return "" if minor is None else format_minor(minor, currency)


@command(purchase_orders_app, "create")
def po_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    number: Annotated[str, typer.Option("--number", help="The customer's PO number.")],
    line: Annotated[
        list[str] | None,
        typer.Option(
            "--line",
            help="product=CODE|description=TEXT,quantity=Q,unit_price=P[,unit_code=HUR]; repeat.",
        ),
    ] = None,
    ceiling: Annotated[
        str | None, typer.Option("--ceiling", help="The most, net of tax: 10000.00.")
    ] = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="Default: the customer's.")
    ] = None,
    issue_date: Annotated[str | None, typer.Option("--issue-date", help="YYYY-MM-DD.")] = None,
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="YYYY-MM-DD (default: issue date, today).")
    ] = None,
    valid_to: Annotated[str | None, typer.Option("--valid-to", help="YYYY-MM-DD.")] = None,
    contract: Annotated[
        str | None, typer.Option("--contract", help="Contract id or reference.")
    ] = None,
    buyer_reference: Annotated[str | None, typer.Option("--buyer-reference")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a customer's purchase order."""
    values = _compact(
        {
            "customer_id": customer,
            "number": number,
            "ceiling": ceiling,
            "currency": currency,
            "issue_date": issue_date,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "contract": contract,
            "buyer_reference": buyer_reference,
        }
    )
    values["lines"] = [_line(spec) for spec in line or []]
    with _session(api_key) as (db, actor):
        view = po.create_purchase_order(db, actor, values)
    if as_json:
        _emit_json(view_json(view))
        return
    order = view.order
    typer.echo(
        f"Purchase order {order.number} recorded as {order.id}: {len(view.lines)} lines, "
        f"ceiling {_money(order.ceiling_minor, order.currency) or 'none'}"
    )


@command(purchase_orders_app, "import")
def po_import(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX or UBL 2.1 Order (XML).")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv, xlsx or ubl (default: detected).")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer id (default: from the file).")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import every PO of a file, or none. Columns of CSV/XLSX: po_number, customer, currency,
    issue_date, valid_from, valid_to, ceiling, contract, buyer_reference, line, product,
    description, quantity, unit_price, unit (one row per PO line)."""
    if not file.is_file():
        _fail(f"no file {file}")
    with _session(api_key) as (db, actor):
        result = po.import_purchase_orders(
            db, actor, file.read_bytes(), file_name=file.name, format=format, customer_id=customer
        )
    if as_json:
        _emit_json(import_json(result))
        return
    created = ", ".join(v.order.number for v in result.created) or "none"
    unchanged = ", ".join(v.order.number for v in result.unchanged) or "none"
    typer.echo(
        f"Imported {file.name} ({result.format}): {len(result.created)} new ({created}); "
        f"{len(result.unchanged)} already recorded as they are ({unchanged})"
    )


@command(purchase_orders_app, "list")
def po_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="open, closed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 100,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Purchase orders with what is left under their ceilings."""
    with _session(api_key) as (db, actor):
        rows, _ = po.list_purchase_orders(
            db, actor, customer_id=customer, status=status, limit=limit
        )
    if as_json:
        _emit_json([order_json(o) for o in rows])
        return
    _table(
        ["ID", "Number", "Customer", "Valid", "Ceiling", "Consumed", "Remaining", "Status"],
        [
            [
                o.id,
                o.number,
                o.customer_id,
                f"{o.valid_from} to {o.valid_to or 'open end'}",
                _money(o.ceiling_minor, o.currency),
                format_minor(o.consumed_minor, o.currency),
                _money(po.remaining_minor(o), o.currency),
                o.status,
            ]
            for o in rows
        ],
        right=("Ceiling", "Consumed", "Remaining"),
    )


@command(purchase_orders_app, "show")
def po_show(
    ref: Annotated[str, typer.Argument(help="PO id or number.")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer id, when numbers repeat.")
    ] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A PO, the remaining amount and quantity of each line, and what each invoice used."""
    with _session(api_key) as (db, actor):
        view = po.get_purchase_order(db, actor, ref, customer_id=customer)
    if as_json:
        _emit_json(view_json(view))
        return
    order, currency = view.order, view.order.currency
    _fields(
        [
            ("Purchase order", order.number),
            ("ID", order.id),
            ("Customer", order.customer_id),
            ("Contract", order.contract_id),
            ("Status", order.status),
            ("Valid", f"{order.valid_from} to {order.valid_to or 'open end'}"),
            ("Ceiling", _money(order.ceiling_minor, currency) or "none"),
            ("Consumed", format_minor(order.consumed_minor, currency)),
            ("Remaining", _money(po.remaining_minor(order), currency) or "-"),
        ]
    )
    _table(
        ["#", "Item", "Quantity", "Unit price", "Ordered", "Used qty", "Left qty", "Left"],
        [_line_row(line, currency) for line in view.lines],
        title="Lines",
        right=("Quantity", "Unit price", "Ordered", "Used qty", "Left qty", "Left"),
    )
    if view.consumptions:
        _table(
            ["When", "What", "Invoice", "Credit note", "Quantity", "Amount"],
            [
                [
                    c.created_at,
                    c.kind,
                    c.invoice_id,
                    c.credit_note_id,
                    c.quantity,
                    format_minor(c.amount_minor, currency),
                ]
                for c in view.consumptions
            ],
            title="Used by invoices",
            right=("Quantity", "Amount"),
        )


def _line_row(line: Any, currency: str) -> list[Any]:
    ordered = round_to_minor(line.quantity * line.unit_price, currency)
    return [
        line.position,
        line.description,
        line.quantity,
        line.unit_price,
        format_minor(ordered, currency),
        line.consumed_quantity,
        line.quantity - line.consumed_quantity,
        format_minor(ordered - line.consumed_minor, currency),
    ]


@command(purchase_orders_app, "close")
def po_close(
    ref: Annotated[str, typer.Argument(help="PO id or number.")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """No more invoices against this PO."""
    with _session(api_key) as (db, actor):
        order = po.close_purchase_order(db, actor, ref, reason)
    if as_json:
        _emit_json(order_json(order))
        return
    typer.echo(f"Purchase order {order.number} closed")


@command(purchase_orders_app, "cancel")
def po_cancel(
    ref: Annotated[str, typer.Argument(help="PO id or number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is withdrawn.")],
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a PO nothing was invoiced against."""
    with _session(api_key) as (db, actor):
        order = po.cancel_purchase_order(db, actor, ref, reason)
    if as_json:
        _emit_json(order_json(order))
        return
    typer.echo(f"Purchase order {order.number} cancelled")
