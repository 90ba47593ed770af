"""Receivables reports, dunning, disputes and the worklist from the `tallybook` command line."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def issued(cli: Cli, customer: str, price: str, on: str) -> dict:
    draft = cli.json("invoices", "create", "--customer", customer)
    cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", price)
    return cli.json("invoices", "issue", draft["id"], "--issue-date", on)


def customer(cli: Cli) -> dict:
    return cli.json(
        "customers", "create", "--name", "Kivi Oy", "--country", "FI", "--currency", "EUR",
        "--payment-terms", "30",
    )  # fmt: skip


def test_aging_dso_and_statement_in_every_format(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    kivi = customer(cli)
    first = issued(cli, kivi["id"], "1000.00", "2026-01-05")  # due 2026-02-04
    second = issued(cli, kivi["id"], "500.00", "2026-02-10")  # due 2026-03-12
    cli.ok(
        "payments", "record", "--amount", "1000.00", "--currency", "EUR",
        "--invoice", first["number"], "--received-on", "2026-03-20",
    )  # fmt: skip

    table = cli.ok("receivables", "aging", "--as-of", "2026-03-15")
    assert "Aging as of 2026-03-15" in table and "1500.00 EUR" in table
    before = cli.json("receivables", "aging", "--as-of", "2026-03-15", "--documents")
    assert (before["rows"][0]["days_31_60"], before["rows"][0]["days_1_30"]) == (
        "1000.00",
        "500.00",
    )
    assert {d["number"] for d in before["documents"]} == {first["number"], second["number"]}
    after = cli.json("receivables", "aging", "--as-of", "2026-03-25")
    assert after["totals"][0]["total"] == "500.00"

    as_csv = cli.ok("receivables", "aging", "--as-of", "2026-03-15", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert (rows[0]["31-60"], rows[0]["1-30"], rows[-1]["total"]) == (
        "1000.00",
        "500.00",
        "1500.00",
    )
    target = tmp_path / "aging.xlsx"
    out = cli.ok(
        "receivables", "aging", "--as-of", "2026-03-15", "--format", "xlsx", "-o", str(target)
    )
    assert "Wrote" in out
    sheet = load_workbook(target)["Aging EUR"]
    header = [c.value for c in sheet[1]]
    totals = dict(zip(header, [c.value for c in list(sheet.iter_rows())[-1]], strict=True))
    assert Decimal(str(totals["Total"])) == Decimal("1500.00")
    no_file = cli.run("receivables", "aging", "--format", "xlsx")
    assert no_file.exit_code != 0 and "--output" in one_error_line(no_file)
    bad = cli.run("receivables", "aging", "--format", "pdf")
    assert bad.exit_code != 0 and "--format" in one_error_line(bad)

    statement = cli.json(
        "customers", "statement", kivi["id"], "--from", "2026-02-01", "--to", "2026-03-31"
    )
    assert statement["opening_balance"] == "1000.00"
    assert [(x["kind"], x["balance"]) for x in statement["lines"]] == [
        ("invoice", "1500.00"),
        ("payment", "500.00"),
    ]
    assert statement["closing_balance"] == "500.00"
    text = cli.ok(
        "customers", "statement", kivi["id"], "--from", "2026-02-01", "--to", "2026-03-31"
    )
    assert "opening balance" in text and "closing balance" in text
    target = tmp_path / "statement.csv"
    cli.ok(
        "customers", "statement", kivi["id"], "--from", "2026-02-01", "--to", "2026-03-31",
        "--format", "csv", "--output", str(target),
    )  # fmt: skip
    lines = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [x["balance"] for x in lines] == ["1000.00", "1500.00", "500.00", "500.00"]
    backwards = cli.run(
        "customers", "statement", kivi["id"], "--from", "2026-04-01", "--to", "2026-03-01"
    )
    assert backwards.exit_code != 0 and "from" in one_error_line(backwards)

    dso = cli.json("receivables", "dso", "--from", "2026-01-01", "--to", "2026-03-31")
    assert (dso[0]["receivables"], dso[0]["credit_sales"], dso[0]["dso"]) == (
        "500.00",
        "1500.00",
        "30.0",
    )
    assert "DSO 2026-01-01 to 2026-03-31" in cli.ok(
        "receivables", "dso", "--from", "2026-01-01", "--to", "2026-03-31"
    )


def test_dunning_policies_runs_disputes_and_the_worklist(cli: Cli) -> None:
    cli.init()
    kivi = customer(cli)
    invoice = issued(cli, kivi["id"], "10000.00", "2026-03-01")  # due 2026-03-31
    policy = cli.json(
        "dunning", "policies", "create", "standard",
        "--step", "-3:friendly reminder",
        "--step", "0:due today",
        "--step", "7:first reminder:2",
        "--step", "14:second reminder:2:fee",
        "--step", "30:final notice:3:fee",
        "--late-fee-percent", "1.5", "--late-fee-cap", "EUR=40.00",
    )  # fmt: skip
    assert policy["is_default"] and [s["level"] for s in policy["steps"]] == [1, 2, 2, 2, 3]
    assert "standard" in cli.ok("dunning", "policies", "list")
    shown = cli.ok("dunning", "policies", "show", "standard")
    assert "1.5 % capped at 40.00 EUR" in shown and "final notice" in shown

    dry = cli.ok("dunning", "run", "--as-of", "2026-04-14", "--dry-run")
    assert "would send 1 reminders" in dry and "dry run: nothing recorded" in dry
    assert cli.json("dunning", "reminders") == []
    run = cli.json("dunning", "run", "--as-of", "2026-04-14")
    (sent,) = run["reminders"]
    assert (sent["name"], sent["fee"], sent["skipped_steps"]) == (
        "second reminder",
        "40.00",
        ["friendly reminder", "due today", "first reminder"],
    )
    assert "sent 0 reminders" in cli.ok("dunning", "run", "--as-of", "2026-04-14")
    (reminder,) = cli.json("dunning", "reminders", "--invoice", invoice["number"])
    assert reminder["debit_note_number"] == sent["debit_note_number"]
    assert len(cli.json("dunning", "reminders", "--customer", kivi["id"], "--all")) == 4
    shown = cli.json("invoices", "show", invoice["number"])
    assert (shown["debited"], shown["amount_due"]) == ("40.00", "10040.00")

    disputed = cli.json("invoices", "dispute", invoice["number"], "--reason", "hours not agreed")
    assert disputed["dispute_reason"] == "hours not agreed"
    paused = cli.ok("dunning", "run", "--as-of", "2026-04-30")
    assert "1 paused" in paused and "paused while the invoice is disputed" in paused
    worklist = cli.json("collections", "worklist", "--as-of", "2026-04-30")
    assert (
        worklist[0]["overdue"],
        worklist[0]["disputed"],
        worklist[0]["last_reminder_level"],
    ) == (
        "10040.00",
        True,
        2,
    )
    assert "Kivi Oy" in cli.ok("collections", "worklist", "--as-of", "2026-04-30")
    out = cli.ok("invoices", "resolve-dispute", invoice["number"], "--resolution", "agreed")
    assert "dispute resolved" in out
    again = cli.run("invoices", "resolve-dispute", invoice["number"])
    assert again.exit_code != 0 and "not disputed" in one_error_line(again)
    final = cli.json("dunning", "run", "--as-of", "2026-04-30")
    assert [(r["name"], r["fee"]) for r in final["reminders"]] == [("final notice", "0.00")]

    cli.ok("dunning", "policies", "create", "gentle", "--step", "60:nudge")
    cli.ok("dunning", "policies", "assign", kivi["id"], "gentle")
    busy = cli.run("dunning", "policies", "delete", "gentle")
    assert busy.exit_code != 0 and "assigned to 1 customer" in one_error_line(busy)
    cli.ok("dunning", "policies", "unassign", kivi["id"])
    assert "deleted" in cli.ok("dunning", "policies", "delete", "gentle")
    updated = cli.json("dunning", "policies", "update", "standard", "--no-late-fee",
                       "--step", "5:reminder")  # fmt: skip
    assert updated["late_fee"] is None and len(updated["steps"]) == 1


def test_dunning_mistakes_are_one_line_errors(cli: Cli) -> None:
    cli.init()
    kivi = customer(cli)
    cases = [
        (("dunning", "policies", "create", "p", "--step", "soon"), "--step"),
        (("dunning", "policies", "create", "p", "--step", "x:name"), "offset_days"),
        (("dunning", "policies", "create", "p", "--step", "7:b", "--step", "3:a"), "offset_days"),
        (("dunning", "policies", "create", "p", "--step", "1:a:fee"), "no late fee"),
        (
            ("dunning", "policies", "create", "p", "--step", "1:a", "--late-fee-percent", "1",
             "--late-fee", "EUR=1.00"),
            "not both",
        ),
        (("dunning", "policies", "update", "nope", "--name", "x"), "not found"),
        (("dunning", "policies", "assign", kivi["id"], "nope"), "not found"),
        (("dunning", "run", "--as-of", "31.12.2026"), "--as-of"),
        (("invoices", "dispute", "INV-404", "--reason", "x"), "not found"),
        (("customers", "statement", "cus_404"), "not found"),
    ]  # fmt: skip
    for args, expected in cases:
        result = cli.run(*args)
        assert result.exit_code != 0, args
        assert expected in one_error_line(result), (args, result.stderr)
    assert cli.json("dunning", "policies", "list") == []
