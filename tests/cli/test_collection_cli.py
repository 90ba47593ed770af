"""Automatic collection from the `tallybook` command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def customer_with_invoice(cli: Cli, price: str = "119.00") -> tuple[dict, dict]:
    customer = cli.json(
        "customers",
        "create",
        "--name",
        "Kunde AG",
        "--country",
        "DE",
        "--currency",
        "EUR",
        "--payment-terms",
        "0",
    )
    draft = cli.json("invoices", "create", "--customer", customer["id"])
    cli.ok("invoices", "add-line", draft["id"], "--description", "Seats", "--unit-price", price)
    return customer, cli.json("invoices", "issue", draft["id"], "--issue-date", "2026-03-02")


def add_method(cli: Cli, customer: dict, token: str, *more: str) -> dict:
    return cli.json(
        "payment-methods", "add", customer["id"], "--provider", "simulated", "--token", token, *more
    )


def test_declined_then_paid_with_another_card(cli: Cli) -> None:
    cli.init()
    customer, invoice = customer_with_invoice(cli)
    declining = add_method(cli, customer, "sim_card_declined", "--label", "Visa ending 0002")
    assert declining["is_default"] is True
    good = add_method(cli, customer, "sim_card_ok", "--label", "Visa ending 4242")
    assert good["is_default"] is False

    out = cli.ok("collect", "run", "--as-of", "2026-03-02")
    assert "1 attempted, 0 approved, 1 declined" in out
    assert invoice["number"] in out and "card_declined" in out and "2026-03-03" in out

    status = cli.ok("customers", "collection", customer["id"])
    assert "Visa ending 0002" in status and "card_declined" in status
    assert "Next retry" in status and "2026-03-03" in status
    assert cli.json("customers", "collection", customer["id"])["next_retry_on"] == "2026-03-03"

    assert "now the default" in cli.ok("payment-methods", "default", good["id"])
    run = cli.json("collect", "run", "--as-of", "2026-03-03")
    assert (run["approved"], run["amounts"]["EUR"]["approved"]) == (1, "119.00")
    shown = cli.json("invoices", "show", invoice["number"])
    assert (shown["status"], shown["amount_due"]) == ("paid", "0.00")
    [payment] = cli.json("payments", "list")
    assert (payment["source"], payment["method"], payment["amount"]) == (
        "collection",
        "card",
        "119.00",
    )
    failed = cli.json("collect", "attempts", "--failed")
    assert [(a["attempt"], a["failure_code"]) for a in failed] == [(1, "card_declined")]
    every = cli.json("collect", "attempts", "--invoice", invoice["number"])
    assert [a["status"] for a in every] == ["declined", "approved"]
    table = cli.ok("collect", "attempts", "--customer", customer["id"])
    assert "declined" in table and "approved" in table
    assert "0 attempted" in cli.ok("collect", "run", "--as-of", "2026-03-03")
    assert cli.json("collect", "run", "--as-of", "2026-03-03")["attempted"] == 0

    assert "Removed" in cli.ok("payment-methods", "remove", declining["id"])
    listed = cli.json("payment-methods", "list", customer["id"])
    assert [m["id"] for m in listed] == [good["id"]]
    assert len(cli.json("payment-methods", "list", customer["id"], "--all")) == 2


def test_the_retry_schedule_from_the_command_line(cli: Cli) -> None:
    cli.init()
    assert "+1, +3, +7 days" in cli.ok("collect", "retry-days")
    assert cli.json("collect", "retry-days", "2", "5")["collection_retry_days"] == [2, 5]
    assert "not retried" in cli.ok("collect", "retry-days", "--never")
    wrong = cli.run("collect", "retry-days", "5", "2")
    assert wrong.exit_code != 0 and "collection_retry_days" in one_error_line(wrong)
    assert cli.json("collect", "retry-days")["collection_retry_days"] == []


def test_mistakes_and_card_numbers_are_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    customer, _ = customer_with_invoice(cli)
    pan = cli.run(
        "payment-methods",
        "add",
        customer["id"],
        "--provider",
        "simulated",
        "--token",
        "4242 4242 4242 4242",
    )
    assert pan.exit_code != 0
    line = one_error_line(pan)
    assert "token" in line and "card number" in line and "4242" not in line
    in_label = cli.run(
        "payment-methods",
        "add",
        customer["id"],
        "--provider",
        "simulated",
        "--token",
        "sim_card_ok",
        "--label",
        "Visa 4111111111111111",
    )
    assert in_label.exit_code != 0 and "label" in one_error_line(in_label)
    unknown = cli.run(
        "payment-methods", "add", customer["id"], "--provider", "acme", "--token", "tok_1"
    )
    assert unknown.exit_code != 0 and "provider" in one_error_line(unknown)
    bad_kind = cli.run(
        "payment-methods",
        "add",
        customer["id"],
        "--provider",
        "simulated",
        "--token",
        "t",
        "--kind",
        "paypal",
    )
    assert bad_kind.exit_code != 0 and "kind" in one_error_line(bad_kind)
    bad_day = cli.run("collect", "run", "--as-of", "02.03.2026")
    assert bad_day.exit_code != 0 and "--as-of" in one_error_line(bad_day)
    bad_status = cli.run("collect", "attempts", "--status", "bounced")
    assert bad_status.exit_code != 0 and "status" in one_error_line(bad_status)
    missing = cli.run("payment-methods", "remove", "pm_nope")
    assert missing.exit_code != 0 and "not found" in one_error_line(missing)
    assert cli.json("payment-methods", "list", customer["id"]) == []
    # Nothing that looks like the card reached the database file.
    engine = create_engine(f"sqlite:///{tmp_path / 'tallybook.db'}")
    with engine.connect() as connection:
        stored = [
            str(row)
            for table in ("payment_methods", "audit_events", "payment_attempts")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        ]
    engine.dispose()
    for digits in ("4242424242424242", "4111111111111111"):
        assert all(digits not in s.replace(" ", "") for s in stored)


def test_another_organisations_key_finds_nothing(cli: Cli) -> None:
    cli.init()
    customer, invoice = customer_with_invoice(cli)
    method = add_method(cli, customer, "sim_card_declined")
    cli.ok("collect", "run", "--as-of", "2026-03-02")
    owner = cli.key
    cli.init()
    for args in (
        ("payment-methods", "list", customer["id"]),
        ("payment-methods", "default", method["id"]),
        ("payment-methods", "remove", method["id"]),
        ("customers", "collection", customer["id"]),
        ("collect", "attempts", "--invoice", invoice["id"]),
        ("collect", "attempts", "--customer", customer["id"]),
    ):
        result = cli.run(*args)
        assert result.exit_code != 0 and "not found" in one_error_line(result), args
    assert cli.json("collect", "attempts") == []
    assert cli.json("collect", "run", "--as-of", "2026-03-05")["attempted"] == 0
    assert len(cli.json("collect", "attempts", key=owner)) == 1
