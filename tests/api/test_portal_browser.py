"""Acceptance: the customer portal in a real browser. The real server (`tallybook serve`) runs on
a free port over a fresh SQLite file with an issued invoice; Playwright drives Debian's Chromium
(headless, launched from /usr/bin/chromium: Playwright downloads no browser of its own) to open
the customer's link, read why a line costs what it costs, download the invoice as PDF and
dispute one of its lines; the dispute is then in the database. An expired and a forged link
are refused with a plain page that shows nothing of the customer.

"Installed by the test set-up": without /usr/bin/chromium, the `chromium` fixture installs
Debian's package with apt-get when it runs as root (once per session, saying so); otherwise it
skips, and with CI=true it fails instead.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from local_servers import free_port
from portal_world import TEST_SECRET_KEY, portal_world
from pypdf import PdfReader

from tallybook.db.engine import upgrade_database
from tallybook.db.models import Discrepancy, Invoice
from tallybook.services import portal
from tallybook.services.base import Database, utcnow

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
# As the machine notes say Chromium runs here: no sandbox as root, no GPU, and none of the
# background connections a closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
START_TIMEOUT = 30.0
APT_TIMEOUT = 900


# -- Chromium, installed by the test set-up ------------------------------------------------------


def _say(config: pytest.Config, message: str) -> None:
    """A line on the terminal even while pytest captures output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(message)
    else:
        print(message, file=sys.stderr)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT,
        check=False,
    )


def _install_chromium(config: pytest.Config) -> str | None:
    """Install Debian's chromium; None when it is there afterwards, else why not."""
    _say(
        config,
        "\n[portal browser test] /usr/bin/chromium is missing: installing Debian's chromium "
        "package with `apt-get install -y chromium` (once per test session)...",
    )
    result = _apt("install", "-y", "chromium")
    if result.returncode != 0 or not CHROMIUM.exists():
        # A machine whose package lists were never fetched knows no chromium yet.
        _say(config, "[portal browser test] apt-get update, then installing chromium again...")
        _apt("update")
        result = _apt("install", "-y", "chromium")
    if CHROMIUM.exists():
        _say(config, "[portal browser test] chromium installed.")
        return None
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
    return f"apt-get could not install chromium (exit {result.returncode}): {tail}"


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> str:
    """The path of Debian's Chromium, installed if missing and possible."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        problem = _install_chromium(pytestconfig)
        if problem is None:
            return str(CHROMIUM)
    else:
        problem = (
            "/usr/bin/chromium is missing and this user cannot install it (root and apt-get "
            "are needed): install Debian's chromium package"
        )
    message = f"PORTAL BROWSER TEST NOT RUN: {problem}"
    if IN_CI:
        pytest.fail(message + " (CI=true makes this a failure)")
    pytest.skip(message)


# -- the real server ------------------------------------------------------------------------------


@contextmanager
def tallybook_serve(
    env: dict[str, str], port: int, never_logged: tuple[str, ...] = ()
) -> Iterator[str]:
    """`tallybook serve` on the port; killed on the way out, whatever happened. Afterwards its
    log has no traceback and none of `never_logged` (the portal tokens)."""
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="tallybook-portal-") as logdir:
        logfile = Path(logdir) / "server.log"
        with logfile.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "tallybook.cli.main", "serve", "--port", str(port)],
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server exited with {process.returncode}:\n{_tail(logfile)}")
                try:
                    if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer within {START_TIMEOUT:.0f} s:\n{_tail(logfile)}")
                time.sleep(0.05)
            yield base_url
            log = logfile.read_text(errors="replace")
            assert "Traceback" not in log, _tail(logfile, 60)
            assert "GET /portal/<token>/invoices/" in log  # the access log, without the token
            for secret in never_logged:
                assert secret not in log
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _forged(url: str) -> str:
    """The same link with the first character of its signature changed (the last one may
    only carry base64 padding bits)."""
    head, signature = url.rsplit(".", 1)
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


# -- the test ----------------------------------------------------------------------------------


def test_a_customer_opens_the_link_downloads_the_pdf_and_disputes_a_line(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    database_url = f"sqlite:///{tmp_path / 'portal.db'}"
    env = {
        "TALLYBOOK_DATABASE_URL": database_url,
        "TALLYBOOK_SECRET_KEY": TEST_SECRET_KEY,
        "TALLYBOOK_PUBLIC_URL": base_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    upgrade_database(database_url)
    db = Database(database_url)
    try:
        world = portal_world(db, language="de")
        number = world.invoice.number
        link = portal.create_portal_link(db, world.actor, world.customer.id, 30).url
        expired = portal.create_portal_link(
            db, world.actor, world.customer.id, 1, now=utcnow() - timedelta(days=2)
        ).url
        assert link.startswith(f"{base_url}/portal/")

        tokens = (link.rsplit("/", 1)[1], expired.rsplit("/", 1)[1])
        with tallybook_serve(env, port, tokens), sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = browser.new_context(accept_downloads=True, locale="de-DE").new_page()
                page.set_default_timeout(10_000)

                # The customer's documents, in the customer's language (German).
                response = page.goto(link)
                assert response is not None and response.status == 200
                assert response.headers["cache-control"].startswith("no-store")
                assert page.locator("h1").inner_text() == "Dokumente für Kunde GmbH"
                row = page.locator("tr", has=page.get_by_role("link", name=number, exact=True))
                # 1,200.00 + 19 % + 49.90 + 7 %, as German writes it (a no-break space before €)
                assert "1.481,39\xa0€" in row.inner_text()
                assert "INV-2026-000002" not in page.content()  # the other customer's invoice

                # The invoice, each line and why it costs what it costs.
                page.get_by_role("link", name=number, exact=True).click()
                assert page.locator("h1").inner_text() == f"Rechnung {number}"
                page.locator("section[aria-labelledby=lines] summary").first.click()
                why = page.locator("section[aria-labelledby=lines] details").first.inner_text()
                assert "DE VAT 19% on 1200.00 EUR = 228.00 EUR" in why

                # The PDF, downloaded as a file.
                with page.expect_download() as download_info:
                    page.locator(".facts .files").get_by_role("link", name="PDF").click()
                download = download_info.value
                assert download.suggested_filename == f"{number}.pdf"
                content = Path(download.path()).read_bytes()
                assert content.startswith(b"%PDF")
                text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
                assert number in text

                # A dispute of line 2, through the form.
                page.get_by_label("Was beanstanden Sie?").select_option("2")
                page.get_by_label("Was ist falsch?").fill("Das Handbuch wurde nie geliefert.")
                page.get_by_role("button", name="Beanstandung senden").click()
                page.wait_for_url("**/disputes/dsc_*")
                assert page.locator("h1").inner_text() == "Beanstandung eingegangen"
                assert "Position 2" in page.locator("dl.facts").inner_text()

                # Refused: a plain page, nothing of the customer's.
                for bad, words in ((_forged(link), "ungültig"), (expired, "abgelaufen")):
                    response = page.goto(bad, wait_until="domcontentloaded")
                    assert response is not None and response.status == 403
                    body = page.content()
                    assert words in body  # in the browser's language
                    assert number not in body and "Kunde GmbH" not in body
            finally:
                browser.close()

        with db.reading() as session:
            (dispute,) = (
                session.query(Discrepancy)
                .filter_by(invoice_id=world.invoice.id, source="dispute")
                .all()
            )
            invoice = session.get(Invoice, world.invoice.id)
        assert (dispute.source, dispute.status, dispute.actual) == (
            "dispute",
            "open",
            "Das Handbuch wurde nie geliefert.",
        )
        assert dispute.location["line_position"] == 2
        assert dispute.location["via"] == "customer_portal"
        assert invoice.disputed_at is not None  # dunning pauses
    finally:
        db.dispose()
