"""Purchase orders, contracts, time sheets and service reports from the `tallybook` command
line, on a temporary SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli import Cli, one_error_line

SAMPLES = Path(__file__).resolve().parents[1] / "formats" / "samples" / "purchase_orders"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def world(cli: Cli) -> dict[str, str]:
    cli.init()
    cli.ok(
        "tax-rates", "create", "--code", "DE19", "--name", "VAT", "--jurisdiction", "DE",
        "--percent", "19",
    )  # fmt: skip
    cli.ok("products", "create", "--code", "consulting", "--name", "Consulting hour")
    customer = cli.json(
        "customers", "create", "--name", "Kunde AG", "--country", "DE", "--currency", "EUR",
        "--tax-id", "DE136695976",
    )  # fmt: skip
    manager = cli.json("keys", "create", "--name", "lead", "--role", "billing_manager")
    return {"customer": customer["id"], "manager": manager["api_key"]}


def test_purchase_orders_from_create_to_close(cli: Cli) -> None:
    ids = world(cli)
    created = cli.json(
        "purchase-orders", "create", "--customer", ids["customer"], "--number", "4500012345",
        "--ceiling", "10000.00", "--valid-from", "2026-01-01",
        "--line", "product=consulting,quantity=80,unit_price=95.00",
        "--line", "description=Travel, hotel and train,quantity=1,unit_price=500",
    )  # fmt: skip
    assert [x["description"] for x in created["lines"]] == [
        "Consulting hour",
        "Travel, hotel and train",
    ]
    draft = cli.json(
        "invoices", "create", "--customer", ids["customer"], "--po-number", "4500012345"
    )
    cli.ok(
        "invoices", "add-line", draft["id"], "--description", "Consulting", "--product",
        "consulting", "--quantity", "8", "--unit-price", "95.00",
    )  # fmt: skip
    cli.ok("invoices", "issue", draft["id"])
    shown = cli.json("purchase-orders", "show", "4500012345")
    assert (shown["consumed"], shown["remaining"]) == ("760.00", "9240.00")
    assert shown["lines"][0]["remaining_quantity"] == "72"
    table = cli.ok("purchase-orders", "show", "4500012345")
    assert "9240.00 EUR" in table and "invoice_issued" in table
    listed = cli.ok("purchase-orders", "list", "--status", "open")
    assert "4500012345" in listed and "9240.00 EUR" in listed
    refused = cli.run("purchase-orders", "cancel", "4500012345", "--reason", "withdrawn")
    assert refused.exit_code == 1 and "close it instead" in one_error_line(refused)
    assert "closed" in cli.ok("purchase-orders", "close", "4500012345")


def test_purchase_order_imports_and_mistakes(cli: Cli, tmp_path: Path) -> None:
    ids = world(cli)
    csv = tmp_path / "orders.csv"
    csv.write_bytes(
        b"po_number,customer,currency,valid_from,ceiling,product,quantity,unit_price\n"
        + f"PO-7,{ids['customer']},EUR,2026-02-01,2000,consulting,20,95.00\n".encode()
    )
    assert "1 new (PO-7)" in cli.ok("purchase-orders", "import", str(csv))
    assert "1 already recorded as they are (PO-7)" in cli.ok("purchase-orders", "import", str(csv))
    csv.write_bytes(csv.read_bytes().replace(b",20,", b",25,"))
    changed = cli.run("purchase-orders", "import", str(csv))
    assert changed.exit_code == 1 and "another line 1" in one_error_line(changed)
    ubl = cli.json(
        "purchase-orders", "import", str(SAMPLES / "ubl-order-consulting.xml")
    )  # the buyer's VAT id finds the customer
    assert [o["number"] for o in ubl["created"]] == ["PO-2026-0042"]
    assert ubl["created"][0]["customer_id"] == ids["customer"]
    for args, message in (
        (("purchase-orders", "import", str(tmp_path / "missing.csv")), "no file"),
        (
            ("purchase-orders", "create", "--customer", ids["customer"], "--number", "X",
             "--line", "quantity=1"),
            "give a product or a description",
        ),
        (
            ("purchase-orders", "create", "--customer", ids["customer"], "--number", "X",
             "--line", "qty=1"),
            "expected KEY=VALUE pairs",
        ),
        (("purchase-orders", "show", "NOPE"), "purchase order NOPE not found"),
    ):  # fmt: skip
        result = cli.run(*args)
        assert result.exit_code != 0 and message in one_error_line(result), result.stderr


def test_contracts_time_and_service_reports(cli: Cli, tmp_path: Path) -> None:
    ids = world(cli)
    cli.ok("products", "create", "--code", "repair", "--name", "Repair visit")
    contract = cli.json(
        "contracts", "create", "--customer", ids["customer"], "--reference", "SOW-1",
        "--name", "Rollout", "--start", "2026-01-01", "--discount-max", "5",
        "--price", "product=consulting,unit_price=95.00",
        "--price", "product=repair,unit_price=180.00",
    )  # fmt: skip
    assert sorted(p["unit_price"] for p in contract["prices"]) == ["180.00", "95.00"]
    cli.ok(
        "contracts", "add-price", "SOW-1", "--product", "consulting", "--unit-price", "99.50",
        "--from", "2026-07-01",
    )  # fmt: skip
    shown = cli.ok("contracts", "show", "SOW-1")
    assert "2026-06-30" in shown and "99.50" in shown and "5%" in shown
    assert (
        cli.json("contracts", "discounts", "SOW-1", "--no-percent")["discount_percent_max"] is None
    )

    entry = cli.json(
        "time", "add", "--customer", ids["customer"], "--contract", "SOW-1", "--worker",
        "Jana Novak", "--date", "2026-01-05", "--hours", "4", "--product", "consulting",
    )  # fmt: skip
    own = cli.run("time", "approve", entry["id"])
    assert own.exit_code == 1 and "another manager" in one_error_line(own)
    cli.ok("time", "approve", entry["id"], key=ids["manager"])
    sheet = tmp_path / "jan.csv"
    sheet.write_text(
        "worker,date,hours,customer,contract,product,approved\n"
        f"Jana Novak,2026-01-06,3.5,{ids['customer']},SOW-1,consulting,no\n"
    )
    assert "1 time entries, 3.5 h, 0 approved" in cli.ok("time", "import", str(sheet))
    [draft] = cli.json("time", "list", "--status", "draft", "--contract", "SOW-1")
    cli.ok("time", "approve", draft["id"], key=ids["manager"])
    report = cli.json(
        "service-reports", "add", "--customer", ids["customer"], "--product", "repair",
        "--date", "2026-01-09", "--contract", "SOW-1", "--reference", "SR-1",
    )  # fmt: skip
    cli.ok("service-reports", "approve", report["id"], key=ids["manager"])

    out = cli.ok("time", "bill", "--customer", ids["customer"], "--through", "2026-01-31")
    assert "7.5 x 95.00 EUR" in out and "1 charges" in out
    assert "1 x 180.00 EUR" in cli.ok("service-reports", "bill", "--customer", ids["customer"])
    as_of = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    run = cli.json("bill-run", "--as-of", as_of)
    [invoice_id] = run["invoice_ids"]
    issued = cli.json("invoices", "issue", invoice_id, key=ids["manager"])
    assert issued["total"] == "1062.08"  # (712.50 + 180.00) x 1.19 = 1062.075 -> per line
    billed = cli.json("time", "list", "--billed")
    assert {e["billed_invoice_id"] for e in billed} == {invoice_id} and len(billed) == 2
    assert cli.json("service-reports", "show", report["id"])["billed_invoice_id"] == invoice_id
    nothing = cli.run("time", "bill", "--customer", ids["customer"])
    assert nothing.exit_code == 1 and "no approved, unbilled" in one_error_line(nothing)
    bad = tmp_path / "bad.csv"
    bad.write_text("worker,date,hours,customer\nAna,2026-01-05,7;5,x\n")
    result = cli.run("time", "import", str(bad))
    assert result.exit_code == 1 and "row 2" in one_error_line(result)
