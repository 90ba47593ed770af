"""E-invoices from the command line: issued documents as UBL (Peppol BIS 3) or CII (Factur-X)
XML, checking an e-invoice file against the official rules, and the seller and customer details
e-invoices need."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tallybook.api import render
from tallybook.api.routes.einvoices import report_json
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
    customers_app,
    debit_notes_app,
    invoices_app,
)
from tallybook.services import customers, einvoices, organizations

einvoice_app = _group(
    "einvoice", "E-invoices: check a UBL or Factur-X file; the seller's e-invoice details."
)

OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the XML to this file (default: standard output)."),
]
SELLER_OPTIONS = (
    ("country", "country"),
    ("address", "address_line1"),
    ("address2", "address_line2"),
    ("city", "city"),
    ("postal_code", "postal_code"),
    ("vat_id", "vat_id"),
    ("legal_id", "legal_registration_id"),
    ("endpoint_scheme", "electronic_address_scheme"),
    ("endpoint", "electronic_address"),
    ("iban", "iban"),
    ("bic", "bic"),
    ("contact_email", "contact_email"),
)


def _export(kind: str, syntax: str, reference: str, output: Path | None, api_key: str | None):
    with _session(api_key) as (db, actor):
        file = einvoices.einvoice_file(db, actor, reference, kind, syntax)
    if output is None:
        typer.echo(file.content.decode("utf-8"), nl=False)
        return
    try:
        output.write_bytes(file.content)
    except OSError as error:
        _fail(f"--output: cannot write {output}: {error.strerror}")
    typer.echo(f"wrote {output} ({len(file.content)} bytes)")


@command(invoices_app, "ubl")
def invoices_ubl(
    invoice: Annotated[str, typer.Argument(help="Invoice number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The issued invoice as UBL 2.1 (Peppol BIS Billing 3.0)."""
    _export("invoice", "ubl", invoice, output, api_key)


@command(invoices_app, "cii")
def invoices_cii(
    invoice: Annotated[str, typer.Argument(help="Invoice number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The issued invoice as CII (Factur-X / ZUGFeRD, EN 16931 profile)."""
    _export("invoice", "cii", invoice, output, api_key)


@command(credit_notes_app, "ubl")
def credit_notes_ubl(
    credit_note: Annotated[str, typer.Argument(help="Credit note number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The credit note as a UBL 2.1 CreditNote (Peppol BIS Billing 3.0)."""
    _export("credit_note", "ubl", credit_note, output, api_key)


@command(credit_notes_app, "cii")
def credit_notes_cii(
    credit_note: Annotated[str, typer.Argument(help="Credit note number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The credit note as CII (Factur-X, type code 381)."""
    _export("credit_note", "cii", credit_note, output, api_key)


@command(debit_notes_app, "ubl")
def debit_notes_ubl(
    debit_note: Annotated[str, typer.Argument(help="Debit note number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The debit note as a UBL 2.1 Invoice with type code 383."""
    _export("debit_note", "ubl", debit_note, output, api_key)


@command(debit_notes_app, "cii")
def debit_notes_cii(
    debit_note: Annotated[str, typer.Argument(help="Debit note number or id.")],
    output: OutputOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The debit note as CII (type code 383)."""
    _export("debit_note", "cii", debit_note, output, api_key)


@command(einvoice_app, "export")
def einvoice_export(
    date_from: Annotated[str, typer.Option("--from", help="First issue date, YYYY-MM-DD.")],
    date_to: Annotated[str, typer.Option("--to", help="Last issue date, YYYY-MM-DD.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ZIP file to write.")],
    syntax: Annotated[str, typer.Option("--syntax", help="ubl or cii.")] = "ubl",
    api_key: ApiKeyOpt = None,
) -> None:
    """Every invoice issued in a period as e-invoices, one XML file each, in a ZIP."""
    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    with _session(api_key) as (db, actor):
        content = einvoices.export_invoices(db, actor, start, end, syntax)
    try:
        output.write_bytes(content)
    except OSError as error:
        _fail(f"--output: cannot write {output}: {error.strerror}")
    import zipfile

    with zipfile.ZipFile(output) as archive:
        count = len(archive.namelist())
    typer.echo(f"wrote {output}: {count} {syntax.upper()} invoices issued {start} to {end}")


def _day(value: str, option: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: {value!r} is not a date (YYYY-MM-DD)")


@command(einvoice_app, "validate")
def einvoice_validate(
    file: Annotated[Path, typer.Argument(help="A UBL Invoice / CreditNote or a CII XML file.")],
    as_json: JsonOpt = False,
) -> None:
    """Check an e-invoice: the UBL 2.1 schema, the EN 16931 rules and (UBL) the Peppol BIS 3
    rules. Exits 1 with one line per schema error and fatal rule when it is invalid."""
    if not file.is_file():
        _fail(f"no file {file}")
    report = einvoices.validate_einvoice(None, file.read_bytes())
    if as_json:
        _emit_json(report_json(report))
        if not report.valid:
            raise typer.Exit(1)
        return
    if report.valid:
        typer.echo(
            f"valid: {report.document_type} ({report.syntax.upper()}), checked against "
            f"{', '.join(filter(None, [report.schema, *report.rule_sets]))}; "
            f"{len(report.warnings)} warning(s)"
        )
        for failure in report.warnings:
            typer.echo(f"  warning {failure.rule_id}: {failure.message}")
        return
    for error in report.schema_errors:
        typer.echo(f"XSD: {error}")
    for failure in report.fatal:
        typer.echo(f"{failure.rule_id} ({failure.rule_set}, fatal): {failure.message}")
    raise typer.Exit(1)


@command(einvoice_app, "seller")
def einvoice_seller(
    country: Annotated[str | None, typer.Option("--country", help="ISO 3166 alpha-2.")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Street address.")] = None,
    address2: Annotated[str | None, typer.Option("--address2", help="Second line.")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code")] = None,
    vat_id: Annotated[
        str | None, typer.Option("--vat-id", help="VAT number with country prefix.")
    ] = None,
    legal_id: Annotated[
        str | None, typer.Option("--legal-id", help="Company register number.")
    ] = None,
    endpoint_scheme: Annotated[
        str | None,
        typer.Option("--endpoint-scheme", help="EAS scheme: 0088 (GLN), 9930 (DE VAT), EM..."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Electronic address (Peppol id).")
    ] = None,
    iban: Annotated[str | None, typer.Option("--iban", help="Account customers pay into.")] = None,
    bic: Annotated[str | None, typer.Option("--bic")] = None,
    contact_email: Annotated[str | None, typer.Option("--contact-email")] = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the seller details e-invoices carry, or set them (admin; '' clears one)."""
    given = locals()
    values: dict[str, Any] = {
        field: given[option] for option, field in SELLER_OPTIONS if given[option] is not None
    }
    with _session(api_key) as (db, actor):
        if values:
            org = organizations.update_settings(db, actor, values)
        else:
            org = organizations.get_organization(db, actor)
    data = render.row(org, render.ORGANIZATION)
    shown = {"name": data["name"], **{field: data[field] for _, field in SELLER_OPTIONS}}
    if as_json:
        _emit_json(shown)
        return
    _fields([(key, value) for key, value in shown.items()])


@command(customers_app, "electronic-address")
def customers_electronic_address(
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    scheme: Annotated[
        str | None,
        typer.Option("--scheme", help="EAS scheme: 0088 (GLN), 9930 (DE VAT), 9957 (FR VAT)..."),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="The identifier, e.g. a GLN.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the electronic address.")] = False,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set where the customer receives e-invoices (its Peppol participant id)."""
    if clear:
        values: dict[str, Any] = {"electronic_address": None, "electronic_address_scheme": None}
    elif scheme is None or address is None:
        _fail("give --scheme and --address together, or --clear")
    else:
        values = {"electronic_address": address, "electronic_address_scheme": scheme}
    with _session(api_key) as (db, actor):
        row = customers.update_customer(db, actor, customer, values)
    data = render.customer(row)
    if as_json:
        _emit_json(data)
        return
    if row.electronic_address:
        typer.echo(
            f"{row.legal_name}: e-invoices to {row.electronic_address_scheme}:"
            f"{row.electronic_address}"
        )
    else:
        typer.echo(f"{row.legal_name}: no electronic address")
