"""Customer portal links from the `tallybook` command line: make one (URL printed), list,
revoke one or all; bad input gets one line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from portal_world import TEST_SECRET_KEY
from test_cli import Cli, one_error_line

from tallybook.services import portal
from tallybook.services.base import Database

PUBLIC = "https://billing.northwind.example"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("TALLYBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'tallybook.db'}")
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("TALLYBOOK_PUBLIC_URL", PUBLIC)
    monkeypatch.delenv("TALLYBOOK_API_KEY", raising=False)
    return Cli()


def customer(cli: Cli) -> str:
    made = cli.json(
        "customers", "create", "--name", "Kunde GmbH", "--country", "DE", "--currency", "EUR"
    )
    return made["id"]


def test_make_list_and_revoke_links(cli: Cli, tmp_path: Path) -> None:
    cli.init()
    customer_id = customer(cli)
    out = cli.ok("customers", "portal-link", customer_id, "--days", "10")
    url = next(line for line in out.splitlines() if line.startswith(PUBLIC + "/portal/"))
    token = url.rsplit("/", 1)[1]
    db = Database(f"sqlite:///{tmp_path / 'tallybook.db'}")
    try:
        access = portal.open_portal(db, token)
        assert access.customer_id == customer_id
        made = cli.json("customers", "portal-link", customer_id)  # 30 days
        assert made["url"].startswith(PUBLIC + "/portal/") and made["status"] == "active"

        listed = cli.json("customers", "portal-links", customer_id)
        assert [x["id"] for x in listed] == [made["id"], access.link_id]
        assert all("url" not in x for x in listed)
        table = cli.ok("customers", "portal-links", customer_id)
        assert access.link_id in table and "active" in table

        one = cli.json("customers", "portal-revoke", customer_id, "--link", access.link_id)
        assert one["status"] == "revoked"
        with pytest.raises(portal.PortalRefused):
            portal.open_portal(db, token)
        out = cli.ok("customers", "portal-revoke", customer_id)
        assert "Revoked 1 portal link(s)" in out
        with pytest.raises(portal.PortalRefused):
            portal.open_portal(db, made["url"].rsplit("/", 1)[1])
    finally:
        db.dispose()


def test_bad_input_is_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.init()
    customer_id = customer(cli)
    for args, words in (
        (("customers", "portal-link", customer_id, "--days", "0"), "expires_in_days"),
        (("customers", "portal-link", customer_id, "--days", "400"), "expires_in_days"),
        (("customers", "portal-link", "cus_nobody"), "not found"),
        (("customers", "portal-links", "cus_nobody"), "not found"),
        (("customers", "portal-revoke", customer_id, "--link", "ptl_nothing"), "not found"),
    ):
        result = cli.run(*args)
        assert result.exit_code == 1
        assert words in one_error_line(result)
    monkeypatch.delenv("TALLYBOOK_SECRET_KEY")
    result = cli.run("customers", "portal-link", customer_id)
    assert result.exit_code == 1 and "TALLYBOOK_SECRET_KEY" in one_error_line(result)
    assert cli.json("customers", "portal-links", customer_id) == []
