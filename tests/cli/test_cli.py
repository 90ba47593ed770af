"""The `tallybook` command line end to end, on a temporary SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tallybook.cli.main import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()
        self.key: str | None = None

    def run(self, *args: str, key: str | None = None) -> Result:
        env = {"TALLYBOOK_API_KEY": key or self.key or ""}
        return self.runner.invoke(app, list(args), env=env)

    def ok(self, *args: str, key: str | None = None) -> str:
        result = self.run(*args, key=key)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str, key: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", key=key))

    def init(self) -> str:
        data = self.json(
            "init",
            "--name",
            "Acme Billing GmbH",
            "--currency",
            "EUR",
            "--timezone",
            "Europe/Berlin",
        )
        self.key = data["api_key"]
        return data["organization_id"]


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_init_prints_the_admin_key_once(cli: Cli) -> None:
    output = cli.ok("init", "--name", "Acme", "--currency", "EUR", "--timezone", "Europe/Berlin")
    assert "only once" in output
    key = next(word for word in output.split() if word.startswith("tb_"))
    assert output.count(key) == 1
    assert cli.json("customers", "list", key=key) == []

    data = cli.json("init", "--name", "Other", "--currency", "USD")
    assert set(data) == {"organization_id", "api_key"}
    assert data["organization_id"].startswith("org_") and data["api_key"].startswith("tb_")


def test_customers_create_and_list_round_trip(cli: Cli) -> None:
    cli.init()
    created = cli.json(
        "customers",
        "create",
        "--name",
        "Müller Maschinenbau GmbH",
        "--country",
        "de",
        "--currency",
        "EUR",
        "--email",
        "ap@mueller.example",
        "--email",
        "cfo@mueller.example",
        "--tax-id",
        "DE136695976",
        "--payment-terms",
        "14",
        "--po-required",
        "--city",
        "Stuttgart",
    )
    assert created["country"] == "DE"
    assert created["emails"] == ["ap@mueller.example", "cfo@mueller.example"]
    assert created["payment_terms_days"] == 14 and created["po_required"] is True
    assert created["credit_balance_minor"] == 0 and created["credit_balance"] == "0.00"
    listed = cli.json("customers", "list")
    assert listed == [created]
    assert cli.json("customers", "show", created["id"]) == created

    archived = cli.json("customers", "archive", created["id"])
    assert archived == {"id": created["id"], "result": "deleted"}
    assert cli.json("customers", "list") == []


def test_bad_country_is_one_line_and_exit_1(cli: Cli) -> None:
    cli.init()
    result = cli.run("customers", "create", "--name", "X", "--country", "XX", "--currency", "EUR")
    assert result.exit_code == 1
    assert one_error_line(result) == "error: country: 'XX' is not an ISO 3166 alpha-2 code"
    assert result.stdout == ""


def test_missing_or_unknown_api_key(cli: Cli) -> None:
    cli.init()
    missing = cli.runner.invoke(app, ["customers", "list"], env={"TALLYBOOK_API_KEY": ""})
    assert missing.exit_code == 2
    assert "API key" in one_error_line(missing)
    unknown = cli.run("customers", "list", key="tb_000000000000_nope")
    assert unknown.exit_code == 1
    assert one_error_line(unknown) == "error: the API key is unknown or revoked"


def test_bad_arguments_are_one_line(cli: Cli) -> None:
    cli.init()
    product = cli.json("products", "create", "--code", "seat", "--name", "Seat")
    bad_json = cli.run(
        "prices",
        "create",
        "--code",
        "p",
        "--product",
        product["id"],
        "--currency",
        "EUR",
        "--terms",
        "{model",
    )
    assert bad_json.exit_code == 1 and "--terms" in one_error_line(bad_json)
    naive = cli.run("bill-run", "--as-of", "2026-01-01T00:00:00")
    assert naive.exit_code == 1 and "time zone" in one_error_line(naive)
    missing = cli.run("invoices", "show", "INV-1999-000001")
    assert missing.exit_code == 1
    assert one_error_line(missing) == "error: invoice INV-1999-000001 not found"


def test_no_database_yet(cli: Cli) -> None:
    result = cli.run("customers", "list", key="tb_000000000000_x")
    assert result.exit_code == 1 and "tallybook init" in one_error_line(result)


def test_viewer_cannot_create_a_customer(cli: Cli) -> None:
    cli.init()
    viewer = cli.json("keys", "create", "--name", "auditor", "--role", "viewer")
    assert viewer["role"] == "viewer"
    result = cli.run(
        "customers",
        "create",
        "--name",
        "X",
        "--country",
        "DE",
        "--currency",
        "EUR",
        key=viewer["api_key"],
    )
    assert result.exit_code == 1
    assert "role viewer may not create customers" in one_error_line(result)
    # Reading is fine.
    assert cli.json("customers", "list", key=viewer["api_key"]) == []


def test_subscription_billed_issued_explained_and_credited(cli: Cli) -> None:
    cli.init()
    cli.ok(
        "tax-rates",
        "create",
        "--code",
        "DE-VAT-19",
        "--name",
        "VAT 19%",
        "--jurisdiction",
        "DE",
        "--percent",
        "19",
    )
    product = cli.json(
        "products", "create", "--code", "seat", "--name", "Team seat", "--unit-label", "seat"
    )
    price = cli.json(
        "prices",
        "create",
        "--code",
        "seat-monthly",
        "--product",
        product["id"],
        "--currency",
        "EUR",
        "--terms",
        '{"model": "per_unit", "amount": 10.00}',
        "--effective-from",
        "2020-01-01T00:00:00+00:00",
    )
    assert price["terms"]["amount"] == "10.00"
    plan = cli.json(
        "plans",
        "create",
        "--code",
        "team",
        "--name",
        "Team",
        "--currency",
        "EUR",
        "--price",
        "seat-monthly",
    )
    customer = cli.json(
        "customers",
        "create",
        "--name",
        "Müller Maschinenbau GmbH",
        "--country",
        "DE",
        "--currency",
        "EUR",
        "--timezone",
        "UTC",
    )
    subscription = cli.json(
        "subscriptions",
        "create",
        "--customer",
        customer["id"],
        "--plan",
        plan["code"],
        "--quantity",
        "5",
        "--start",
        "2026-01-01T00:00:00+00:00",
        "--anchor",
        "calendar",
    )
    assert subscription["plan_id"] == plan["id"]

    preview = cli.json("bill-run", "--as-of", "2026-01-01T00:00:01+00:00", "--dry-run")
    assert preview["invoices_created"] == 0 and len(preview["previews"]) == 1
    assert cli.json("invoices", "list") == []

    run = cli.ok("bill-run", "--as-of", "2026-01-01T00:00:01+00:00")
    assert "Invoices created: 1" in run and "59.50 EUR" in run

    # 5 seats x 10.00 = 50.00 net; VAT 19 % = 9.50; total 59.50 EUR.
    [draft] = cli.json("invoices", "list")
    assert draft["status"] == "draft" and draft["number"] is None
    assert (draft["subtotal_minor"], draft["tax_minor"], draft["total_minor"]) == (5000, 950, 5950)
    assert draft["total"] == "59.50"

    issued = cli.json("invoices", "issue", draft["id"])
    number = issued["number"]
    assert issued["status"] == "issued" and number.startswith("INV-")
    shown = cli.ok("invoices", "show", number)
    assert number in shown and "Amount due" in shown and "59.50 EUR" in shown

    explained = cli.ok("invoices", "explain", number)
    assert explained.startswith("line 1: Team seat")
    assert "Price seat-monthly version 1" in explained and "59.50 EUR" in explained

    note = cli.json("credit-notes", "create", number, "--reason", "Cancelled before use")
    assert note["total_minor"] == 5950 and note["total"] == "59.50"
    assert note["number"].startswith("CN-") and len(note["lines"]) == 1
    assert cli.json("credit-notes", "show", note["number"])["id"] == note["id"]
    after = cli.json("invoices", "show", number)
    assert after["credited_minor"] == 5950 and after["amount_due_minor"] == 0


def test_partial_credit_by_line_spec(cli: Cli) -> None:
    cli.init()
    customer = cli.json(
        "customers", "create", "--name", "Acme Ltd", "--country", "GB", "--currency", "GBP"
    )
    cli.ok(
        "charges",
        "create",
        "--customer",
        customer["id"],
        "--description",
        "Consulting",
        "--unit-price",
        "150.00",
        "--quantity",
        "4",
        "--kind",
        "time_and_materials",
        "--reference",
        "timesheet 2026-W03",
    )
    run = cli.json("bill-run")
    [invoice_id] = run["invoice_ids"]
    issued = cli.json("invoices", "issue", invoice_id)
    assert issued["total_minor"] == 60000
    bad = cli.run("credit-notes", "create", invoice_id, "--reason", "x", "--line", "1:hours=1")
    assert bad.exit_code == 1 and "--line" in one_error_line(bad)
    note = cli.json(
        "credit-notes",
        "create",
        issued["number"],
        "--reason",
        "One hour too many",
        "--line",
        "1:quantity=1",
    )
    assert note["total_minor"] == 15000
    [listed] = cli.json("credit-notes", "list", "--invoice", issued["number"])
    assert listed["id"] == note["id"]
