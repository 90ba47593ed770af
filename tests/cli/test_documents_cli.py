"""PDF documents from the `tallybook` command line: invoices (and drafts), Factur-X, credit and
debit notes, statements, dunning letters and the branding they are printed with; bad input is
one line on stderr and a non-zero exit."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    return Cli()


def text_of(path: Path) -> str:
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    text = " ".join(page.extract_text() for page in reader.pages)
    return " ".join(re.sub(r"[\u00a0\u202f]", " ", text).split())


def issued(cli: Cli) -> tuple[dict, dict]:
    cli.init()
    cli.ok(
        "einvoice",
        "seller",
        "--country",
        "DE",
        "--address",
        "Friedrichstraße 10",
        "--city",
        "Berlin",
        "--postal-code",
        "10117",
        "--iban",
        "DE44500105175407324931",
    )
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )
    draft = cli.json("invoices", "create", "--customer", customer["id"])
    cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", "400.00")
    return customer, cli.json("invoices", "issue", draft["id"])


def test_invoice_credit_and_debit_note_pdfs(cli: Cli, tmp_path: Path) -> None:
    customer, invoice = issued(cli)
    out = cli.ok("invoices", "pdf", invoice["number"])
    default = tmp_path / f"{invoice['number']}.pdf"
    assert out.startswith(f"wrote {default.name}") and default.is_file()
    assert f"Invoice {invoice['number']}" in text_of(default)
    german = tmp_path / "rechnung.pdf"
    cli.ok("invoices", "pdf", invoice["number"], "-o", str(german), "--language", "de")
    assert "Gesamtbetrag 400,00 €" in text_of(german)
    explained = tmp_path / "explained.pdf"
    cli.ok("invoices", "pdf", invoice["id"], "-o", str(explained), "--explain")
    assert "How this was calculated" in text_of(explained)

    facturx = tmp_path / "facturx.pdf"
    cli.ok("invoices", "facturx", invoice["number"], "-o", str(facturx))
    import facturx as library

    name, xml = library.get_xml_from_pdf(facturx.read_bytes(), check_xsd=True)
    assert name == "factur-x.xml" and invoice["number"].encode() in xml

    note = cli.json(
        "credit-notes", "create", invoice["id"], "--reason", "Goodwill", "--line", "1:amount=40.00"
    )
    cli.ok("credit-notes", "pdf", note["number"], "-o", str(tmp_path / "cn.pdf"))
    assert f"Credit note {note['number']}" in text_of(tmp_path / "cn.pdf")
    debit = cli.json(
        "debit-notes",
        "create",
        invoice["id"],
        "--reason",
        "Travel",
        "--description",
        "Train",
        "--unit-price",
        "89.00",
    )
    cli.ok("debit-notes", "pdf", debit["number"], "-o", str(tmp_path / "dn.pdf"))
    assert f"Debit note {debit['number']}" in text_of(tmp_path / "dn.pdf")

    statement = tmp_path / "statement.pdf"
    out = cli.ok("customers", "statement", customer["id"], "--format", "pdf", "-o", str(statement))
    assert out.startswith(f"wrote {statement}")
    assert "Statement of account" in text_of(statement)


def test_a_draft_prints_as_pro_forma_and_is_refused_as_factur_x(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )
    draft = cli.json("invoices", "create", "--customer", customer["id"])
    cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", "1.00")
    cli.ok("invoices", "pdf", draft["id"], "-o", str(tmp_path / "draft.pdf"))
    assert "Pro-forma invoice" in text_of(tmp_path / "draft.pdf")
    result = cli.run("invoices", "facturx", draft["id"], "-o", str(tmp_path / "x.pdf"))
    assert result.exit_code != 0 and "draft" in one_error_line(result)


def test_a_dunning_letter(cli: Cli, tmp_path: Path) -> None:
    _, invoice = issued(cli)
    cli.ok("dunning", "policies", "create", "standard", "--step", "3:first reminder")
    as_of = date.fromisoformat(invoice["due_date"]) + timedelta(days=3)
    run = cli.json("dunning", "run", "--as-of", as_of.isoformat())
    (reminder,) = run["reminders"]
    letter = tmp_path / "letter.pdf"
    cli.ok("dunning", "letter", reminder["reminder_id"], "-o", str(letter), "--language", "fr")
    text = text_of(letter)
    assert "Rappel de paiement" in text and invoice["number"] in text


def test_branding_and_bad_input(cli: Cli, tmp_path: Path) -> None:
    _, invoice = issued(cli)
    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><rect/></svg>')
    shown = cli.json("branding", "set", "--color", "#0A5FFF", "--logo", str(svg))
    assert (shown["brand_color"], shown["logo_media_type"]) == ("#0a5fff", "image/svg+xml")
    assert cli.json("branding", "show")["logo_bytes"] == svg.stat().st_size
    cli.ok("invoices", "pdf", invoice["number"], "-o", str(tmp_path / "branded.pdf"))
    assert cli.json("branding", "set", "--clear-logo")["logo_bytes"] == 0

    for args, words in (
        (("branding", "set", "--color", "blue"), "brand_color"),
        (("branding", "set", "--logo", str(tmp_path / "missing.png")), "--logo"),
        (("branding", "set"), "--color"),
        (("invoices", "pdf", invoice["number"], "--language", "xx"), "language"),
        (("invoices", "pdf", "INV-NOPE"), "not found"),
        (("dunning", "letter", "drem_nope"), "not found"),
    ):
        result = cli.run(*args)
        assert result.exit_code != 0, args
        assert words in one_error_line(result), (args, result.stderr)
