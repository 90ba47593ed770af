"""`tallybook approvals`: nobody approves their own invoice or credit note from the terminal
either; held credit notes are issued by the approve command; rules; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def key(cli: Cli, role: str, name: str) -> str:
    return cli.json("keys", "create", "--name", name, "--role", role)["api_key"]


def draft(cli: Cli, by: str, customer: str, price: str) -> str:
    row = cli.json("invoices", "create", "--customer", customer, key=by)
    cli.ok(
        "invoices",
        "add-line",
        row["id"],
        "--description",
        "Advisory",
        "--unit-price",
        price,
        key=by,
    )
    return row["id"]


def setup(cli: Cli) -> tuple[str, str, str, str]:
    cli.init()
    maria = key(cli, "billing_manager", "Maria")
    jonas = key(cli, "billing_manager", "Jonas")
    lea = key(cli, "billing_clerk", "Lea")
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )["id"]
    rules = cli.json("approvals", "rules", "--invoice", "EUR=1000", "--credit-note", "EUR=50")
    assert rules["invoice"] == {"EUR": "1000"} and rules["credit_note"] == {"EUR": "50"}
    return maria, jonas, lea, customer


def test_a_creator_cannot_approve_their_own_invoice(cli: Cli) -> None:
    maria, jonas, lea, customer = setup(cli)
    invoice = draft(cli, maria, customer, "1800.00")
    own = cli.run("approvals", "approve", invoice, "--reason", "fine", key=maria)
    assert own.exit_code != 0 and "you created invoice" in one_error_line(own)
    legacy = cli.run("invoices", "approve", invoice, key=maria)
    assert legacy.exit_code != 0 and "you created invoice" in one_error_line(legacy)
    held = cli.run("invoices", "issue", invoice, key=maria)
    assert held.exit_code != 0 and "approval request apr_" in one_error_line(held)
    [waiting] = cli.json("approvals", "list", "--status", "pending", key=lea)
    assert (waiting["subject_id"], waiting["amount"]) == (invoice, "1800.00")
    mine = cli.run("approvals", "approve", waiting["id"], "--reason", "ok", key=maria)
    assert mine.exit_code != 0 and "you asked" in one_error_line(mine)
    clerk = cli.run("approvals", "approve", waiting["id"], "--reason", "ok", key=lea)
    assert clerk.exit_code != 0 and "billing_clerk" in one_error_line(clerk)
    no_reason = cli.run("approvals", "approve", waiting["id"], key=jonas)
    assert no_reason.exit_code != 0 and "reason" in one_error_line(no_reason)
    out = cli.ok("approvals", "approve", waiting["id"], "--reason", "SOW checked", key=jonas)
    assert f"Approval request {waiting['id']} approved" in out
    assert cli.json("invoices", "issue", invoice, key=maria)["status"] == "issued"
    shown = cli.ok("approvals", "show", waiting["id"], key=lea)
    assert "SOW checked" in shown


def test_approving_a_draft_by_number_or_id_in_one_step(cli: Cli) -> None:
    maria, jonas, lea, customer = setup(cli)
    invoice = draft(cli, lea, customer, "1200.00")
    approved = cli.json("approvals", "approve", invoice, "--reason", "checked", key=maria)
    assert (approved["status"], approved["decision_reason"]) == ("approved", "checked")
    assert cli.json("invoices", "issue", invoice, key=lea)["status"] == "issued"
    other = draft(cli, lea, customer, "1300.00")
    asked = cli.json("approvals", "request", "--invoice", other, "--reason", "month end", key=lea)
    rejected = cli.json("approvals", "reject", asked["id"], "--reason", "rate wrong", key=jonas)
    assert rejected["status"] == "rejected"
    refused = cli.run("invoices", "issue", other, key=lea)
    assert refused.exit_code != 0 and "rate wrong" in one_error_line(refused)
    both = cli.run("approvals", "request", "--reason", "x", key=lea)
    assert both.exit_code != 0 and "--invoice or --finding" in one_error_line(both)


def test_a_creator_cannot_approve_their_own_credit_note(cli: Cli) -> None:
    maria, jonas, lea, customer = setup(cli)
    invoice = draft(cli, lea, customer, "400.00")
    number = cli.json("invoices", "issue", invoice, key=lea)["number"]
    held = cli.run(
        "credit-notes",
        "create",
        number,
        "--reason",
        "outage",
        "--line",
        "1:amount=80.00",
        key=maria,
    )
    assert held.exit_code != 0 and "credit-note approval limit" in one_error_line(held)
    [waiting] = cli.json("approvals", "list", "--status", "pending", "--subject", "credit_note")
    own = cli.run("approvals", "approve", waiting["id"], "--reason", "mine", key=maria)
    assert own.exit_code != 0 and "you asked" in one_error_line(own)
    out = cli.ok("approvals", "approve", waiting["id"], "--reason", "outage confirmed", key=jonas)
    assert "credit_note cn_" in out and "carried out" in out
    assert cli.json("invoices", "show", number)["amount_due"] == "320.00"
    rules = cli.ok("approvals", "rules")
    assert "50 EUR" in rules and "always" in rules


def test_bad_rules_are_one_line_errors(cli: Cli) -> None:
    cli.init()
    bad = cli.run("approvals", "rules", "--credit-note", "EUR")
    assert bad.exit_code != 0 and "CURRENCY=AMOUNT" in one_error_line(bad)
    negative = cli.run("approvals", "rules", "--write-off", "EUR=-1")
    assert negative.exit_code != 0 and "negative" in one_error_line(negative)
    status = cli.run("approvals", "list", "--status", "maybe")
    assert status.exit_code != 0 and "status" in one_error_line(status)
