"""`tallybook audit verify|export|events`: check the hash-chained audit trail, hand it to an
auditor as CSV or JSON, look up who changed what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fail,
    _group,
    _open_database,
    _session,
    _table,
    command,
)
from tallybook.services import audit_trail

audit_app = _group("audit", "The audit trail: verify its hash chain, export it for auditors.")


@command(audit_app, "verify")
def audit_verify(
    all_organizations: Annotated[
        bool,
        typer.Option(
            "--all-organizations",
            help="Every organisation in the database (for its operator; no API key needed).",
        ),
    ] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the audit trail's hash chain; exit 1 naming the first broken link."""
    if all_organizations:
        db = _open_database()
        try:
            results = audit_trail.verify_every_chain(db)
        finally:
            db.dispose()
    else:
        with _session(api_key) as (db, actor):
            results = [audit_trail.verify_audit_chain(db, actor)]
    if as_json:
        data = [render.audit_verification(r) for r in results]
        _emit_json(data if all_organizations else data[0])
    else:
        for result in results:
            report = result.report
            if report.ok:
                typer.echo(
                    f"{result.organization_id}: audit trail intact, {report.events_checked} "
                    f"events, last hash {report.last_hash}"
                )
    broken = [r for r in results if not r.report.ok]
    if broken:
        first = broken[0].report.first_break
        assert first is not None
        where = f"event {first.event_id}" if first.event_id else "the chain head"
        if first.sequence is not None:
            where += f" (sequence {first.sequence})"
        _fail(
            f"audit trail of {broken[0].organization_id} broken at {where}: "
            f"{first.kind.replace('_', ' ')}: {first.detail}"
        )


FROM_HELP = "First day (2026-03-01, the organisation's time zone) or date-time with offset."
TO_HELP = "Last day, included (2026-03-31), or date-time with offset (excluded)."


@command(audit_app, "export")
def audit_export(
    start: Annotated[str | None, typer.Option("--from", help=FROM_HELP)] = None,
    end: Annotated[str | None, typer.Option("--to", help=TO_HELP)] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv (default) or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")
    ] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="invoice, payment...")] = None,
    entity_id: Annotated[str | None, typer.Option("--entity-id")] = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Write the audit events, with their hashes, for auditors (CSV or JSON)."""
    chosen = output_format.strip().lower()
    if chosen not in audit_trail.EXPORT_FORMATS:
        _fail(f"--format: {output_format!r} is not one of csv, json")
    with _session(api_key) as (db, actor):
        where = audit_trail.event_filter(
            db, actor, start=start, end=end, entity=entity, entity_id=entity_id
        )
        chunks = audit_trail.export_audit_events(db, actor, where, chosen)
        if output is None:
            for chunk in chunks:
                typer.echo(chunk, nl=False)
            return
        written = 0
        with output.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
    typer.echo(f"Wrote {output} ({written} characters)")


@command(audit_app, "events")
def audit_events(
    entity: Annotated[str | None, typer.Option("--entity", help="invoice, payment...")] = None,
    entity_id: Annotated[str | None, typer.Option("--entity-id")] = None,
    start: Annotated[str | None, typer.Option("--from", help=FROM_HELP)] = None,
    end: Annotated[str | None, typer.Option("--to", help=TO_HELP)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who did what and when: the audit events, oldest first, with what changed."""
    with _session(api_key) as (db, actor):
        where = audit_trail.event_filter(
            db, actor, start=start, end=end, entity=entity, entity_id=entity_id
        )
        records, _ = audit_trail.list_audit_events(db, actor, where, limit=limit)
    if as_json:
        _emit_json(records)
        return
    _table(
        ["#", "When (UTC)", "Who", "Action", "Entity", "Changes"],
        [
            [
                r["sequence"],
                r["created_at"][:19].replace("T", " "),
                r["actor_name"] or r["actor"],
                r["action"],
                r["entity_id"],
                _changes(r["data"]),
            ]
            for r in records
        ],
        right=("#",),
    )


def _changes(data: dict[str, Any]) -> str:
    before, after = data.get("before") or {}, data.get("after") or {}
    if before:
        return "; ".join(
            f"{name}: {json.dumps(before.get(name))} -> {json.dumps(after.get(name))}"
            for name in before
        )[:120]
    return json.dumps({k: v for k, v in data.items() if k != "after"}, ensure_ascii=False)[:120]
