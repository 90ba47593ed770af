"""Verification, overrides, discrepancies, disputes and billing health from the `tallybook`
command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def world(cli: Cli) -> dict[str, str]:
    cli.init()
    keys = {
        role: cli.json("keys", "create", "--name", role, "--role", role)["api_key"]
        for role in ("billing_manager", "billing_clerk")
    }
    cli.ok("products", "create", "--code", "licence", "--name", "Licence")
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR"
    )
    cli.ok(
        "purchase-orders",
        "create",
        "--customer",
        customer["id"],
        "--number",
        "4711",
        "--valid-from",
        "2020-01-01",
        "--line",
        "product=licence,quantity=10,unit_price=250.00",
    )
    return {"customer": customer["id"], **keys}


def draft(cli: Cli, ids: dict[str, str], price: str, quantity: str = "2") -> str:
    clerk = ids["billing_clerk"]
    created = cli.json(
        "invoices", "create", "--customer", ids["customer"], "--po-number", "4711", key=clerk
    )
    cli.ok(
        "invoices",
        "add-line",
        created["id"],
        "--description",
        "Licence",
        "--product",
        "licence",
        "--quantity",
        quantity,
        "--unit-price",
        price,
        key=clerk,
    )
    return created["id"]


def test_verify_refuse_override_and_issue(cli: Cli) -> None:
    ids = world(cli)
    clerk, manager = ids["billing_clerk"], ids["billing_manager"]
    invoice = draft(cli, ids, "260.00")
    out = cli.ok("invoices", "verify", invoice, key=clerk)
    assert f"{invoice}: blocked (1 blocking, 0 warnings)" in out
    assert "po_price" in out and "line 1 (Licence) is priced 260.00 but PO 4711" in out
    strict = cli.run("invoices", "verify", invoice, "--fail-on-blocking", key=clerk)
    assert strict.exit_code == 1
    refused = cli.run("invoices", "issue", invoice, key=clerk)
    assert refused.exit_code != 0
    assert "[po_price] line 1 (Licence) is priced 260.00" in one_error_line(refused)
    [request] = cli.json("invoices", "override", invoice, "--reason", "agreed by mail", key=clerk)
    assert request["finding"]["check"] == "po_price"
    cli.ok("approvals", "approve", request["approval_id"], "--reason", "mail on file", key=manager)
    issued = cli.json("invoices", "issue", invoice, key=clerk)
    assert issued["status"] == "issued"
    shown = cli.json("discrepancies", "show", request["discrepancy_id"], key=clerk)
    assert (shown["status"], shown["resolution"]) == ("waived", "waive")


def test_verify_drafts_and_health(cli: Cli) -> None:
    ids = world(cli)
    clerk = ids["billing_clerk"]
    draft(cli, ids, "250.00")
    bad = draft(cli, ids, "250.00", quantity="11")
    out = cli.ok("verify", "drafts", key=clerk)
    assert "Verified 2 invoices" in out and "1 failing, 1 blocking findings" in out
    assert "po_quantity" in out
    run = cli.json("verify", "drafts", "--invoice", bad, key=clerk)
    assert [r["invoice_id"] for r in run["results"]] == [bad]
    assert cli.run("verify", "drafts", "--fail-on-blocking", key=clerk).exit_code == 1
    health = cli.json("health", key=clerk)
    assert [f["invoice_id"] for f in health["failing_verification"]] == [bad]
    text = cli.ok("health", key=clerk)
    assert "Invoices failing verification: 1" in text and "po_quantity" in text
    listed = cli.json("discrepancies", "list", "--status", "open", key=clerk)
    assert [d["check"] for d in listed] == ["po_quantity"]
    bad_day = cli.run("verify", "drafts", "--as-of", "31.12.2026", key=clerk)
    assert bad_day.exit_code != 0 and "--as-of" in one_error_line(bad_day)


def test_a_line_dispute_resolved_with_a_credit_note(cli: Cli) -> None:
    ids = world(cli)
    clerk, manager = ids["billing_clerk"], ids["billing_manager"]
    invoice = draft(cli, ids, "250.00")
    number = cli.json("invoices", "issue", invoice, key=clerk)["number"]
    dispute = cli.json(
        "discrepancies",
        "dispute",
        number,
        "--reason",
        "one licence missing",
        "--line",
        "1",
        key=clerk,
    )
    assert dispute["status"] == "open" and dispute["location"]["line_position"] == 1
    d = dispute["id"]
    cli.ok("discrepancies", "assign", d, "--to", "billing_manager", key=clerk)
    cli.ok("discrepancies", "comment", d, "delivery note says 1", key=clerk)
    assert cli.json("discrepancies", "investigate", d, key=manager)["status"] == "investigating"
    wrong = cli.run(
        "discrepancies", "resolve", d, "--resolution", "refund", "--note", "x", key=manager
    )
    assert wrong.exit_code != 0 and "resolution" in one_error_line(wrong)
    done = cli.json(
        "discrepancies",
        "resolve",
        d,
        "--resolution",
        "credit_note",
        "--note",
        "one licence was not delivered",
        "--line",
        "1:quantity=1",
        key=manager,
    )
    assert done["status"] == "resolved" and done["credit_note_id"]
    assert (
        f"about invoice {number} (line 1). One licence was not delivered."
        in (done["customer_message"])
    )
    assert cli.json("invoices", "show", number, key=clerk)["amount_due"] == "250.00"
    again = cli.run("discrepancies", "waive", d, "--reason", "x", key=manager)
    assert again.exit_code != 0 and "already resolved" in one_error_line(again)
    missing = cli.run("discrepancies", "show", "dsc_nope", key=clerk)
    assert missing.exit_code != 0 and "not found" in one_error_line(missing)
