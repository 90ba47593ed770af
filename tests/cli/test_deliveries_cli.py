"""Sending from the `tallybook` command line: invoices, credit notes and statements e-mailed,
`tallybook worker --once` handing them to a real SMTP server, the delivery log and retry,
customers' delivery preferences, the sender address, webhook endpoints and replay; mistakes
are one line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from local_servers import SmtpServer, WebhookReceiver
from test_cli import Cli, one_error_line


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("TALLYBOOK_DELIVERY_BACKOFF_SECONDS", "0")
    monkeypatch.delenv("TALLYBOOK_SMTP_HOST", raising=False)
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def customer_with_invoice(cli: Cli, *extra: str) -> tuple[dict, dict]:
    customer = cli.json(
        "customers",
        "create",
        "--name",
        "Kunde AG",
        "--country",
        "DE",
        "--currency",
        "EUR",
        "--email",
        "ap@kunde.example",
        *extra,
    )
    draft = cli.json("invoices", "create", "--customer", customer["id"])
    cli.ok("invoices", "add-line", draft["id"], "--description", "Audit", "--unit-price", "250")
    return customer, cli.json("invoices", "issue", draft["id"])


def test_send_and_the_worker_once(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.init()
    settings = cli.json("deliveries", "settings", "--email-from", "Acme <billing@acme.example>")
    assert settings["email_from"] == "Acme <billing@acme.example>"
    customer, invoice = customer_with_invoice(cli)
    [automatic] = cli.json("deliveries", "list", "--document", invoice["number"])
    assert (automatic["status"], automatic["recipients"]) == ("queued", ["ap@kunde.example"])

    prefs = cli.json("customers", "delivery", customer["id"], "--channel", "portal")
    assert prefs["delivery_channel"] == "portal"
    again = cli.json(
        "invoices", "send", invoice["number"], "--email", "cfo@kunde.example", "--einvoice", "none"
    )
    assert again["recipients"] == ["cfo@kunde.example"]
    statement = cli.json(
        "customers",
        "send-statement",
        customer["id"],
        "--from",
        "2026-01-01",
        "--until",
        "2026-01-31",
    )
    assert statement["subject"].startswith("Statement of account 2026-01-01 to 2026-01-31")

    # No SMTP server configured: nothing is sent, nothing is lost.
    assert cli.json("worker", "--once")["sent"] == 0
    with SmtpServer() as smtp:
        monkeypatch.setenv("TALLYBOOK_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("TALLYBOOK_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("TALLYBOOK_SMTP_SECURITY", "none")
        smtp.inbox.refuse = ["550 5.1.1 No such mailbox"]
        done = cli.json("worker", "--once")
        assert (done["sent"], done["failed"]) == (2, 1)
        [failed] = cli.json("deliveries", "list", "--status", "failed")
        assert failed["id"] == automatic["id"]
        shown = cli.ok("deliveries", "show", failed["id"])
        assert "550" in shown and "failed" in shown
        assert "queued again" in cli.ok("deliveries", "retry", failed["id"])
        assert cli.json("worker", "--once")["sent"] == 1
        assert len(smtp.inbox.per_message_id()) == 3
        senders = {r.message["From"] for r in smtp.inbox.received}
        assert senders == {"Acme <billing@acme.example>"}
    listed = cli.ok("deliveries", "list")
    assert listed.count("sent") >= 3

    mistake = cli.run("invoices", "send", invoice["number"], "--einvoice", "pdf")
    assert mistake.exit_code != 0 and "einvoice" in one_error_line(mistake)
    wrong = cli.run("customers", "delivery", customer["id"], "--channel", "fax")
    assert wrong.exit_code != 0 and "delivery_channel" in one_error_line(wrong)
    unknown = cli.run("deliveries", "retry", "dlv_nope")
    assert unknown.exit_code != 0 and "not found" in one_error_line(unknown)
    again_sent = cli.run("deliveries", "retry", failed["id"])
    assert again_sent.exit_code != 0 and "sent already" in one_error_line(again_sent)


def test_webhooks_from_the_command_line(cli: Cli) -> None:
    cli.init()
    with WebhookReceiver(answers=[503]) as receiver:
        created = cli.ok("webhooks", "create", receiver.url, "--event", "invoice.issued")
        secret = next(word for word in created.split() if word.startswith("whsec_"))
        assert created.count(secret) == 1 and "only once" in created
        receiver.secret = secret
        [endpoint] = cli.json("webhooks", "list")
        assert "secret" not in endpoint
        customer_with_invoice(cli)
        done = cli.json("worker", "--once")
        assert (done["sent"], done["retried"]) == (1, 1)  # 503, then 200
        [hook] = cli.json("webhooks", "deliveries")
        assert (hook["event_type"], hook["status"], hook["attempts"]) == (
            "invoice.issued",
            "sent",
            2,
        )
        detail = cli.json("webhooks", "show", hook["id"])
        assert [a["status_code"] for a in detail["attempt_log"]] == [503, 200]
        replay = cli.json("webhooks", "replay", hook["id"])
        assert replay["replay_of"] == hook["id"]
        assert cli.json("worker", "--once")["sent"] == 1
        assert [h.verified for h in receiver.hooks] == [True, True, True]
        off = cli.json("webhooks", "update", endpoint["id"], "--disable")
        assert off["enabled"] is False
        rotated = cli.json("webhooks", "rotate-secret", endpoint["id"])
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
        assert "deleted" in cli.ok("webhooks", "delete", endpoint["id"])
    bad = cli.run("webhooks", "create", "ftp://example.com", "--event", "*")
    assert bad.exit_code != 0 and "url" in one_error_line(bad)
