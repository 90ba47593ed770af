"""Payments, refunds and the ledger from the `tallybook` command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def issued_invoice(cli: Cli, price: str) -> dict:
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )
    draft = cli.json("invoices", "create", "--customer", customer["id"])
    cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", price)
    return cli.json("invoices", "issue", draft["id"])


def test_record_refund_reverse_and_trial_balance(cli: Cli) -> None:
    cli.init()
    invoice = issued_invoice(cli, "100.00")
    assert invoice["payment_reference"].startswith("RF")
    out = cli.ok(
        "payments",
        "record",
        "--amount",
        "150.00",
        "--currency",
        "EUR",
        "--invoice",
        invoice["number"],
        "--method",
        "check",
        "--reference",
        "CHK 1042",
    )
    assert "150.00 EUR" in out and "left as customer credit: 50.00 EUR" in out
    [payment] = cli.json("payments", "list")
    assert (payment["amount"], payment["unapplied"], payment["status"]) == (
        "150.00",
        "50.00",
        "completed",
    )
    refund = cli.json("payments", "refund", payment["number"], "--amount", "60.00", "--reason", "x")
    assert (refund["from_credit"], refund["from_invoices"]) == ("50.00", "10.00")
    shown = cli.json("invoices", "show", invoice["number"])
    assert (shown["status"], shown["amount_due"]) == ("partially_paid", "10.00")
    trial = cli.json("ledger", "trial-balance", "--as-of", "2100-01-01")
    balance = {row["code"]: row["balance"] for row in trial["accounts"]}
    assert (balance["1000"], balance["1100"], balance["4000"]) == ("90.00", "10.00", "-100.00")
    assert trial["totals"]["EUR"]["debit"] == trial["totals"]["EUR"]["credit"]
    reversed_payment = cli.json("payments", "reverse", payment["number"], "--reason", "bounced")
    assert reversed_payment["status"] == "reversed"
    assert cli.json("invoices", "show", invoice["number"])["amount_due"] == "100.00"
    journal = cli.ok("ledger", "journal")
    assert "payment_reversed" in journal and "invoice_issued" in journal


def test_cash_mistakes_are_one_line_errors(cli: Cli) -> None:
    cli.init()
    invoice = issued_invoice(cli, "10.00")
    wrong = cli.run(
        "payments", "record", "--amount", "5", "--currency", "USD", "--invoice", invoice["number"]
    )
    assert wrong.exit_code != 0 and "currency" in one_error_line(wrong)
    both = cli.run("payments", "refund", "PAY-1", "--credit-of", "cus_x", "--reason", "x")
    assert both.exit_code != 0 and "one of the two" in one_error_line(both)
    bad_day = cli.run("ledger", "trial-balance", "--as-of", "31.12.2026")
    assert bad_day.exit_code != 0 and "--as-of" in one_error_line(bad_day)
    assert cli.json("payments", "list") == []


def test_journal_exports_from_the_command_line(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    invoice = issued_invoice(cli, "100.00")
    cli.ok(
        "payments", "record", "--amount", "119.00", "--currency", "EUR", "--invoice", invoice["id"]
    )
    target = tmp_path / "books.beancount"
    assert "Wrote" in cli.ok("ledger", "export", "--format", "beancount", "-o", str(target))
    text = target.read_text()
    assert invoice["number"] in text and "119.00 EUR" in text
    rows = cli.ok("ledger", "export", "--format", "csv").splitlines()
    assert len(rows) == 1 + 3 + 2  # header, invoice (AR, revenue, tax), payment (bank, AR)
    iif = cli.ok("ledger", "export", "--format", "iif")
    assert iif.startswith("!TRNS") and "GENERAL JOURNAL" in iif
    wrong = cli.run("ledger", "export", "--format", "pdf")
    assert wrong.exit_code != 0 and "format" in one_error_line(wrong)


def test_write_off_from_the_command_line(cli: Cli) -> None:
    cli.init()
    invoice = issued_invoice(cli, "100.00")
    out = cli.ok("invoices", "uncollectible", invoice["number"], "--reason", "insolvent")
    assert "written off: 100.00 EUR" in out
    trial = cli.json("ledger", "trial-balance", "--as-of", "2100-01-01")
    balance = {row["code"]: row["balance"] for row in trial["accounts"]}
    assert (balance["1100"], balance["6100"]) == ("0.00", "100.00")
