"""Usage billing from the command line: metrics, events sent and imported, current usage."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from tallybook.cli.main import app


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()
        self.key: str | None = None

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env={"TALLYBOOK_API_KEY": self.key or ""})

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def init(self) -> None:
        data = self.json("init", "--name", "Acme Billing GmbH", "--currency", "EUR")
        self.key = data["api_key"]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    runner = Cli()
    runner.init()
    return runner


@pytest.fixture(params=["sqlite", "postgres"])
def any_cli(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI on a fresh SQLite file, or on the test PostgreSQL database (own organisation)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tallybook.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        if url is None:
            pytest.skip("PostgreSQL unavailable")
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", url)
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    runner = Cli()
    runner.init()
    return runner


def error_line(result: Result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


def metered_customer(cli: Cli) -> str:
    """api_calls (sum of calls) at 0.01 EUR per call; customer 'acme' from 2026-01-01."""
    cli.ok("metrics", "create", "--code", "api_calls", "--aggregation", "sum", "--field", "calls")
    cli.ok("products", "create", "--code", "api", "--name", "API")
    cli.ok(
        "prices",
        "create",
        "--code",
        "api-calls",
        "--product",
        "api",
        "--currency",
        "EUR",
        "--metric",
        "api_calls",
        "--terms",
        '{"model": "per_unit", "amount": "0.01"}',
        "--effective-from",
        "2020-01-01T00:00:00+00:00",
    )
    cli.ok(
        "plans", "create", "--code", "metered", "--name", "M", "--currency", "EUR", "--price",
        "api-calls",
    )  # fmt: skip
    customer = cli.json(
        "customers", "create", "--name", "Acme", "--country", "DE", "--currency", "EUR",
        "--timezone", "UTC", "--external-id", "acme",
    )["id"]  # fmt: skip
    cli.ok(
        "subscriptions", "create", "--customer", customer, "--plan", "metered", "--start",
        "2026-01-01T00:00:00+00:00", "--anchor", "calendar",
    )  # fmt: skip
    return customer


def test_metrics_create_and_list(cli: Cli) -> None:
    output = cli.ok(
        "metrics", "create", "--code", "storage", "--aggregation", "max", "--field", "gb",
        "--filter", "region=eu", "--filter", "region=us", "--filter", "tier=hot",
    )  # fmt: skip
    assert re.fullmatch(
        r"Metric storage \(max of gb where region in \(eu, us\) and tier = hot\) created: "
        r"bm_\w+\n",
        output,
    ), output
    created = cli.json(
        "metrics", "create", "--code", "hours", "--name", "Compute hours", "--aggregation",
        "weighted_sum", "--field", "vcpu", "--weighted-unit", "minute",
    )  # fmt: skip
    assert (created["name"], created["weighted_unit"], created["filters"]) == (
        "Compute hours",
        "minute",
        {},
    )
    listed = cli.json("metrics", "list")
    assert [m["code"] for m in listed] == ["hours", "storage"]
    assert listed[1]["filters"] == {"region": ["eu", "us"], "tier": ["hot"]}
    table = cli.ok("metrics", "list")
    assert "max of gb where region in (eu, us) and tier = hot" in table
    assert "time-weighted sum of vcpu (vcpu-minutes)" in table

    median = error_line(cli.run("metrics", "create", "--code", "m", "--aggregation", "median"))
    assert median == (
        "error: aggregation: must be one of count, sum, max, unique_count, latest, weighted_sum"
    )
    no_field = error_line(cli.run("metrics", "create", "--code", "s", "--aggregation", "sum"))
    assert no_field == "error: field: sum needs the property it reads"
    bad_filter = cli.run(
        "metrics", "create", "--code", "c", "--aggregation", "count", "--filter", "region"
    )
    assert error_line(bad_filter) == "error: --filter 'region': expected KEY=VALUE"
    assert len(cli.json("metrics", "list")) == 2


def test_usage_price_from_the_cli(cli: Cli) -> None:
    cli.ok("metrics", "create", "--code", "gb", "--aggregation", "sum", "--field", "gb")
    cli.ok("products", "create", "--code", "st", "--name", "Storage")
    price = cli.json(
        "prices", "create", "--code", "gb-eu", "--product", "st", "--currency", "EUR",
        "--metric", "gb", "--usage-filter", "region=eu", "--group-by", "tier",
        "--group-by", "zone", "--terms", '{"model": "per_unit", "amount": "0.02"}',
    )  # fmt: skip
    assert (price["kind"], price["timing"], price["metric_code"]) == ("usage", "in_arrears", "gb")
    assert price["usage_filters"] == {"region": ["eu"]}
    assert price["group_by"] == ["tier", "zone"]
    assert "usage of gb" in cli.ok("prices", "list")
    unknown = cli.run(
        "prices", "create", "--code", "x", "--product", "st", "--currency", "EUR",
        "--metric", "nope", "--terms", '{"model": "per_unit", "amount": "1"}',
    )  # fmt: skip
    assert error_line(unknown) == "error: metric_code: no metric 'nope'; create it first"


def test_events_send_quarantine_and_reprocess(cli: Cli) -> None:
    customer = metered_customer(cli)
    send = (
        "events", "send", "--customer", "acme", "--metric", "api_calls", "--transaction-id",
        "e-1", "--timestamp", "2026-01-05T10:00:00+00:00", "--property", "calls=12",
    )  # fmt: skip
    assert cli.ok(*send) == "accepted: event e-1\n"
    assert cli.ok(*send) == "duplicate: event e-1 was already received; nothing changed\n"
    changed = cli.run(*send[:-1], "calls=13")
    assert error_line(changed) == (
        "error: rejected: event e-1: transaction_id: already used for an event with "
        "different content"
    )
    not_a_number = cli.run(*send[:7], "e-2", "--property", "calls=lots")
    assert error_line(not_a_number) == (
        "error: rejected: event e-2: properties.calls: metric api_calls needs a number here"
    )
    as_json = cli.run(
        *send[:7], "e-3", "--timestamp", "1767225600", "--property", "calls=1", "--json"
    )
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {"transaction_id": "e-3", "status": "accepted"}
    bad_json = cli.run(*send[:7], "e-4", "--timestamp", "2026-01-05", "--json")
    assert bad_json.exit_code == 1
    assert json.loads(bad_json.stdout)["reason"] == (
        "timestamp: give a time zone offset (Z for UTC)"
    )
    ghost = cli.ok(
        "events", "send", "--customer", "ghost", "--metric", "api_calls", "--transaction-id",
        "g-1", "--property", "calls=1",
    )  # fmt: skip
    assert ghost == "accepted: event g-1 (quarantined: customer ghost does not exist yet)\n"
    held = cli.json("events", "quarantine")
    assert [(q["transaction_id"], q["reason"]) for q in held] == [
        ("g-1", "customer ghost does not exist yet")
    ]
    assert "customer ghost does not exist yet" in cli.ok("events", "quarantine")
    assert cli.json("events", "reprocess") == {"released": 0}
    # Creating the customer releases its events.
    cli.ok(
        "customers", "create", "--name", "Ghost", "--country", "DE", "--currency", "EUR",
        "--external-id", "ghost",
    )  # fmt: skip
    assert cli.ok("events", "quarantine") == "No events in quarantine.\n"
    assert cli.ok("events", "reprocess") == "Released 0 quarantined events into billing.\n"

    usage = cli.json("customers", "usage", customer, "--at", "2026-01-20T00:00:00+00:00")
    # e-1 (12 calls) and e-3 (1 call on 1 January): 13 calls at 0.01 EUR.
    assert usage["amount_minor"] == 13 and usage["currency"] == "EUR"


def _ndjson_file(path: Path) -> tuple[Path, int]:
    """25,000 lines: 23,998 events (10 for a customer not created yet), 1,000 repeated lines
    (every 25th but the bad ones, and lines 5,001 and 20,001) and 2 bad ones (line 5,000 is
    not JSON, line 20,000 has no time zone offset). Returns the calls billed to acme."""
    calls = 0
    lines: list[bytes] = []
    unique = 0
    for number in range(1, 25_001):
        if number == 5_000:
            lines.append(b'{"transaction_id": "broken"')
            continue
        if number == 20_000:
            event = {
                "transaction_id": "no-offset",
                "customer": "acme",
                "metric": "api_calls",
                "timestamp": "2026-01-02T00:00:00",
                "properties": {"calls": 1},
            }
            lines.append(orjson.dumps(event))
            continue
        if number % 25 == 0 or number in (5_001, 20_001):
            # A line sent before: in the same chunk of 10,000 or an earlier one.
            lines.append(lines[number // 2])
            continue
        unique += 1
        customer = "later" if unique <= 10 else "acme"
        value = unique % 5
        if customer == "acme":
            calls += value
        event = {
            "transaction_id": f"t-{unique}",
            "customer": customer,
            "metric": "api_calls",
            "timestamp": 1767225600 + unique,  # from 2026-01-01T00:00:00Z, a second apart
            "properties": {"calls": value, "region": "eu"},
        }
        lines.append(orjson.dumps(event))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, calls


def test_events_import_ndjson_and_csv(any_cli: Cli, tmp_path: Path) -> None:
    cli = any_cli
    customer = metered_customer(cli)
    path, calls = _ndjson_file(tmp_path / "events.ndjson")
    assert sum(1 for _ in path.open("rb")) == 25_000
    result = cli.run("events", "import", str(path))
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    summary = re.fullmatch(
        r"Imported events\.ndjson: 23998 accepted \(10 quarantined\), 1000 duplicates, "
        r"2 rejected in (\d+\.\d) s \(([\d,]+) events/s\)",
        lines[0],
    )
    assert summary, lines[0]
    assert lines[1:] == [
        "  line 5000: event: not valid JSON (unexpected end of data at column 28)",
        "  line 20000 (no-offset): timestamp: give a time zone offset (Z for UTC)",
    ]
    assert result.stderr == ""

    again = cli.run("events", "import", str(path), "--format", "ndjson", "--json")
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert {k: report[k] for k in ("events", "accepted", "duplicates", "rejected")} == {
        "events": 25_000,
        "accepted": 0,
        "duplicates": 24_998,
        "rejected": 2,
    }
    assert report["format"] == "ndjson" and report["events_per_second"] > 0
    assert [r["line"] for r in report["rejected_events"]] == [5000, 20000]

    csv_path = tmp_path / "more.csv"
    csv_path.write_text(
        "transaction_id,customer,metric,timestamp,calls,region\n"
        "csv-1,acme,api_calls,2026-01-15T08:00:00+00:00,100,us\n"
        "csv-2,acme,api_calls,1768464000,200,\n"
        "csv-3,acme,api_calls,2026-01-16T08:00:00Z,3,eu\n",
        encoding="utf-8",
    )
    imported = cli.run("events", "import", str(csv_path))
    assert imported.exit_code == 0, (imported.stdout, imported.stderr)
    assert re.fullmatch(
        r"Imported more\.csv: 3 accepted, 0 duplicates, 0 rejected in \d+\.\d s "
        r"\([\d,]+ events/s\)\n",
        imported.stdout,
    ), imported.stdout
    calls += 303

    # The usage: every attributed call at 0.01 EUR.
    expected = int(Decimal(calls) * Decimal("0.01") * 100)
    usage = cli.json("customers", "usage", customer, "--at", "2026-01-31T00:00:00+00:00")
    assert usage["amount_minor"] == expected
    [charge] = usage["subscriptions"][0]["charges"]
    assert charge["quantity"] == str(calls)
    assert charge["events"] == 23_988 + 3
    table = cli.ok("customers", "usage", customer, "--at", "2026-01-31T00:00:00+00:00")
    total = f"{Decimal(expected) / 100:.2f} EUR"
    row = table.splitlines()[-3]
    assert "2026-01-01 to 2026-01-31" in row and f"{calls}" in row and total in row
    assert f"Total: {total} (before tax" in table


def test_import_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("events", "import", str(tmp_path / "nope.csv"))
    assert error_line(missing).startswith("error: ")
    unknown = tmp_path / "events.txt"
    unknown.write_text("x\n")
    assert error_line(cli.run("events", "import", str(unknown))) == (
        "error: format: cannot tell the format of events.txt from its name; give ndjson or csv"
    )
    header = tmp_path / "events.csv"
    header.write_text("customer,metric\n")
    assert error_line(cli.run("events", "import", str(header))) == (
        "error: header: the file needs a transaction_id column"
    )
    assert cli.ok("usage", "late") == "No late usage waiting.\n"
    assert cli.json("usage", "late") == []
