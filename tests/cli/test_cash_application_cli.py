"""`tallybook cash`: statement import and the review queue from the command line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from test_cli import Cli, one_error_line

from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053

PAYER = "DE44500105175407324931"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def test_import_review_apply_and_ignore(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR",
        "--bank-account", PAYER,
    )
    assert customer["bank_accounts"] == [PAYER]
    invoices = []
    for price in ("100.00", "40.00"):
        draft = cli.json("invoices", "create", "--customer", customer["id"])
        cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", price)
        invoices.append(cli.json("invoices", "issue", draft["id"]))
    statement = tmp_path / "march.xml"
    statement.write_bytes(
        write_camt053(
            [
                Movement(date(2026, 3, 2), 10000, "EUR", "Kunde AG", PAYER,
                         f"Rechnung {invoices[0]['number']}"),
                Movement(date(2026, 3, 3), 7000, "EUR", "Kunde AG Treasury", None, "Sammelzahlung"),
                Movement(date(2026, 3, 3), 250, "EUR", "Bank", None, "Zinsen"),
            ],
            account="DE02120300000000202051", currency="EUR", statement_id="S-3",
            created=date(2026, 3, 4),
        )
    )
    out = cli.ok("cash", "import", str(statement))
    assert "3 new lines" in out and "1 applied (100.00 EUR), 2 for review" in out
    again = cli.ok("cash", "import", str(statement))
    assert "imported before" in again
    queue = cli.json("cash", "lines")
    assert sorted(line["amount"] for line in queue) == ["2.50", "70.00"]
    pooled = next(line for line in queue if line["amount"] == "70.00")
    interest = next(line for line in queue if line["amount"] == "2.50")
    shown = cli.ok("cash", "show", pooled["id"])
    assert "70.00 EUR" in shown and "  - " in shown  # the matcher's reasons are listed
    applied = cli.ok(
        "cash", "apply", pooled["id"], "--customer", customer["id"],
        "--invoice", f"{invoices[1]['number']}=40.00",
    )
    assert "40.00 EUR to" in applied and "30.00 EUR to customer credit" in applied
    assert cli.json("customers", "show", customer["id"])["credit_balance"] == "30.00"
    set_aside = cli.ok("cash", "ignore", interest["id"], "--reason", "bank interest")
    assert "bank interest" in set_aside
    assert cli.json("cash", "lines") == []
    statements = cli.json("cash", "statements")
    assert statements[0]["lines_total"] == 3
    second = cli.json("invoices", "show", invoices[1]["number"])
    assert second["status"] == "paid"

    wrong = cli.run("cash", "apply", pooled["id"], "--customer", customer["id"])
    assert wrong.exit_code == 1
    assert "not waiting for review" in one_error_line(wrong)
    missing = cli.run("cash", "import", str(tmp_path / "nope.xml"))
    assert missing.exit_code == 1 and "no file" in one_error_line(missing)
    broken = tmp_path / "broken.xml"
    broken.write_text("<Document>broken")
    bad = cli.run("cash", "import", str(broken))
    assert bad.exit_code == 1 and one_error_line(bad).startswith("error: file:")
    csv = tmp_path / "bank.csv"
    csv.write_text("Date,Amount\n2026-03-05,1.00\n")
    no_mapping = cli.run("cash", "import", str(csv), "--mapping", "{oops")
    assert no_mapping.exit_code == 1 and "--mapping: not JSON" in one_error_line(no_mapping)
    mapped = cli.ok(
        "cash", "import", str(csv), "--mapping",
        '{"date": "Date", "amount": "Amount", "currency": "EUR"}',
    )
    assert "1 new lines" in mapped
