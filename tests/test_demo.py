"""The demo runs end to end and leaves a database that shows every feature it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tallybook import demo, demo_cash
from tallybook.core.pricing import PricingModel
from tallybook.db.models import BankStatementLine, DunningReminder, Organization, Payment
from tallybook.services import credit_notes, customers, invoices, ledger
from tallybook.services.base import Actor, Database, Role


def bean_check(path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path.write_text(text, encoding="utf-8")
    tool = Path(sys.executable).with_name("bean-check")
    return subprocess.run([str(tool), str(path)], capture_output=True, text=True, timeout=300)


def _all_customers(db: Database, actor: Actor) -> list:
    rows, after = [], None
    while True:
        page, after = customers.list_customers(db, actor, limit=100, after=after)
        rows.extend(page)
        if after is None:
            return rows


def test_demo_builds_a_realistic_billed_organisation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"
    assert demo.main(str(path)) == 0

    output = capsys.readouterr().out
    for heading in (
        "Invoices by currency",
        "Top customers",
        "Credit note",
        "Why was I charged this?",
        "April: the bank statement",
        "Review queue",
        "Receivables aging as of 2026-04-30",
        "Trial balance",
    ):
        assert heading in output

    db = Database(f"sqlite:///{path}")
    try:
        with db.reading() as session:
            org = session.scalars(
                select(Organization).where(Organization.name == demo.ORG_NAME)
            ).one()
        viewer = Actor(org.id, None, Role.VIEWER)

        assert len(_all_customers(db, viewer)) >= 50

        issued = [
            inv for inv in demo._all_invoices(db, viewer) if inv.status not in ("draft", "void")
        ]
        assert len({inv.currency for inv in issued}) >= 3
        assert not demo._all_invoices(db, viewer, "draft")

        notes = credit_notes.list_credit_notes(db, viewer)
        assert notes and all(note.total_minor > 0 for note in notes)
        assert {note.issue_date for note in notes} == {demo.CREDIT_NOTE_DATE}

        models: set[str] = set()
        kinds: set[str] = set()
        prorated = 0
        for invoice in issued:
            _, lines = invoices.get_invoice(db, viewer, invoice.id)
            for line in lines:
                kinds.add(line.kind)
                if line.explanation.get("price"):
                    models.add(line.explanation["price"]["model"])
                if line.explanation.get("proration") is not None:
                    prorated += 1
        assert models == {model.value for model in PricingModel}
        assert "commitment_true_up" in kinds
        assert {"adjustment", "milestone", "one_off", "time_and_materials"} <= kinds
        assert prorated > 0

        # The demo's journal, exported as beancount, passes bean-check (a separate process:
        # beancount is GPL); the same export with one amount changed fails it.
        exported = ledger.export_journal(db, viewer, "beancount")
        assert exported.count(" * ") >= len(issued)
        checked = bean_check(tmp_path / "demo.beancount", exported)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        amount = re.search(r"^  Income:\S+\s+(-\d+\.\d\d) EUR$", exported, re.MULTILINE)
        assert amount is not None
        tampered = exported.replace(
            amount.group(0),
            amount.group(0).replace(
                amount.group(1), amount.group(1)[:-1] + ("1" if amount.group(1)[-1] != "1" else "2")
            ),
            1,
        )
        broken = bean_check(tmp_path / "broken.beancount", tampered)
        assert broken.returncode != 0 and "does not balance" in broken.stdout + broken.stderr

        # April: the bank statement paid invoices in every currency, cards were charged, the
        # late payers were reminded with capped fees, and the books balance per currency.
        with db.reading() as session:
            sources = dict(
                session.execute(
                    select(Payment.source, func.count())
                    .where(Payment.organization_id == org.id)
                    .group_by(Payment.source)
                ).all()
            )
            currencies = set(
                session.scalars(
                    select(Payment.currency).where(
                        Payment.organization_id == org.id, Payment.source == "bank"
                    )
                )
            )
            lines = dict(
                session.execute(
                    select(BankStatementLine.status, func.count())
                    .where(BankStatementLine.organization_id == org.id)
                    .group_by(BankStatementLine.status)
                ).all()
            )
            reminders = session.scalar(
                select(func.count()).where(DunningReminder.organization_id == org.id)
            )
        assert sources["bank"] >= 60 and sources["collection"] >= 10
        assert currencies == {"EUR", "GBP", "JPY", "USD"}
        assert lines["applied"] >= 60 and lines["outgoing"] == 1 and lines["ignored"] == 1
        assert reminders > 0
        rows = ledger.trial_balance(db, viewer, demo_cash.DUNNING_DAY)
        for currency, totals in ledger.summarise(rows).items():
            assert totals["debit_minor"] == totals["credit_minor"], currency
    finally:
        db.dispose()
