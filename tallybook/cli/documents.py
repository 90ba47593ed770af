"""PDF documents from the command line: `tallybook invoices pdf|facturx`, `credit-notes pdf`,
`debit-notes pdf`, `dunning letter`, `customers statement --format pdf` (through
receivables.py), and `tallybook branding` for the colour and logo they are printed with."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tallybook.cli.dunning import dunning_app
from tallybook.cli.main import (
    ApiKeyOpt,
    JsonOpt,
    _emit_json,
    _fail,
    _fields,
    _group,
    _session,
    command,
    credit_notes_app,
    debit_notes_app,
    invoices_app,
)
from tallybook.services import documents

branding_app = _group("branding", "The colour and logo PDF documents are printed with.")

OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write the PDF here (default: its own name in this folder)."
    ),
]
LanguageOpt = Annotated[
    str | None,
    typer.Option("--language", help="en, de or fr (default: the customer's language)."),
]


def _write(rendered: documents.RenderedDocument, output: Path | None) -> None:
    target = output if output is not None else Path(rendered.file_name)
    if target.is_dir():
        target = target / rendered.file_name
    try:
        target.write_bytes(rendered.content)
    except OSError as error:
        _fail(f"--output: cannot write {target}: {error.strerror}")
    typer.echo(f"wrote {target} ({len(rendered.content)} bytes)")


def _pdf(
    kind: str,
    reference: str,
    output: Path | None,
    api_key: str | None,
    **options: object,
) -> None:
    with _session(api_key) as (db, actor):
        rendered = documents.document_pdf(db, actor, kind, reference, **options)  # type: ignore[arg-type]
    _write(rendered, output)


@command(invoices_app, "pdf")
def invoices_pdf(
    invoice: Annotated[str, typer.Argument(help="Invoice number or id (a draft: its id).")],
    output: OutputOpt = None,
    language: LanguageOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add how each line was computed.")
    ] = False,
    api_key: ApiKeyOpt = None,
) -> None:
    """The invoice as PDF; a draft comes out as a pro-forma marked DRAFT."""
    _pdf("invoice", invoice, output, api_key, language=language, explain=explain)


@command(invoices_app, "facturx")
def invoices_facturx(
    invoice: Annotated[str, typer.Argument(help="Invoice number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The issued invoice as Factur-X / ZUGFeRD (EN 16931): PDF/A-3 with its CII XML."""
    with _session(api_key) as (db, actor):
        rendered = documents.document_facturx(db, actor, invoice)
    _write(rendered, output)


@command(credit_notes_app, "pdf")
def credit_notes_pdf(
    credit_note: Annotated[str, typer.Argument(help="Credit note number or id.")],
    output: OutputOpt = None,
    language: LanguageOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The credit note as PDF, naming the invoice it corrects."""
    _pdf("credit_note", credit_note, output, api_key, language=language)


@command(debit_notes_app, "pdf")
def debit_notes_pdf(
    debit_note: Annotated[str, typer.Argument(help="Debit note number or id.")],
    output: OutputOpt = None,
    language: LanguageOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The debit note as PDF, naming the invoice it adds to."""
    _pdf("debit_note", debit_note, output, api_key, language=language)


@command(dunning_app, "letter")
def dunning_letter(
    reminder: Annotated[str, typer.Argument(help="Reminder id (tallybook dunning reminders).")],
    output: OutputOpt = None,
    language: LanguageOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The letter of a dunning reminder: level, overdue invoices, late fee, what to do."""
    _pdf("dunning_letter", reminder, output, api_key, language=language)


def statement_pdf(
    customer_id: str,
    date_from: date | None,
    date_to: date | None,
    currency: str | None,
    output: Path | None,
    api_key: str | None,
    language: str | None = None,
) -> None:
    """`tallybook customers statement --format pdf` (see cli/receivables.py)."""
    _pdf(
        "statement",
        customer_id,
        output,
        api_key,
        date_from=date_from,
        date_to=date_to,
        currency=currency,
        language=language,
    )


# -- branding ------------------------------------------------------------------------------------


def _show(view: documents.BrandingView, as_json: bool) -> None:
    data = {
        "brand_color": view.brand_color,
        "logo_media_type": view.logo_media_type,
        "logo_bytes": view.logo_bytes,
        "logo_sha256": view.logo_sha256,
    }
    if as_json:
        _emit_json(data)
        return
    _fields(list(data.items()))


@command(branding_app, "show")
def branding_show(api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """The colour and the logo (type, size, digest) documents are printed with."""
    with _session(api_key) as (db, actor):
        view = documents.get_branding(db, actor)
    _show(view, as_json)


@command(branding_app, "set")
def branding_set(
    color: Annotated[
        str | None, typer.Option("--color", help="Primary colour, #rrggbb ('' for the default).")
    ] = None,
    logo: Annotated[
        Path | None, typer.Option("--logo", help="A PNG, JPEG or SVG file of at most 256 KB.")
    ] = None,
    clear_logo: Annotated[bool, typer.Option("--clear-logo", help="Remove the logo.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the colour and/or the logo (admin)."""
    options: dict[str, object] = {}
    if color is not None:
        options["brand_color"] = color
    if logo is not None and clear_logo:
        _fail("give --logo or --clear-logo, not both")
    if logo is not None:
        if not logo.is_file():
            _fail(f"--logo: no file {logo}")
        options["logo"] = logo.read_bytes()
    elif clear_logo:
        options["logo"] = None
    if not options:
        _fail("give --color, --logo or --clear-logo")
    with _session(api_key) as (db, actor):
        view = documents.update_branding(db, actor, **options)  # type: ignore[arg-type]
    _show(view, as_json)
