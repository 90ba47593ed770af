"""The job mechanism's set-up: the procrastinate app of each database (its queue in PostgreSQL's
`procrastinate` schema, in memory on SQLite), its tasks and schedule, and the daily runs an
organisation opts into."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from tallybook import jobs
from tallybook.services import customers, dunning, invoices, organizations
from tallybook.services.base import Actor, Database, Role, utcnow


def test_the_app_has_the_sweep_and_the_daily_runs(db: Database) -> None:
    app = jobs.make_app(db.url)
    assert {"tallybook.sweep_outbox", "tallybook.scheduled_runs"} <= set(app.tasks)
    periodic = {task.task.name: task.cron for task in app.periodic_registry.periodic_tasks.values()}
    assert periodic["tallybook.sweep_outbox"].endswith("*/5")
    assert jobs.uses_postgres(db.url) == (db.dialect == "postgresql")
    if db.dialect == "postgresql":
        assert jobs.libpq_url(db.url).startswith("postgresql://")
        # The queue's tables were made by our migration, in their own schema, and the app's
        # connections find them.
        with db.engine.connect() as connection:
            tables = connection.execute(
                text(
                    "select table_name from information_schema.tables "
                    "where table_schema = 'procrastinate' order by table_name"
                )
            ).scalars()
            assert "procrastinate_jobs" in list(tables)
        with app.open():
            assert app.check_connection()


def test_an_organisation_that_opted_in_gets_its_daily_dunning_run(db: Database) -> None:
    org, key = organizations.create_organization(
        db, "Daily Dunning Ltd", "EUR", timezone="UTC", settings={"scheduled_runs": ["dunning"]}
    )
    actor = Actor(org.id, key.id, Role.ADMIN)
    customer = customers.create_customer(
        db,
        actor,
        {"legal_name": "Late Payer", "country": "DE", "currency": "EUR", "payment_terms_days": 0},
    )
    draft = invoices.create_draft(db, actor, customer.id)
    invoices.add_line(db, actor, draft.id, {"description": "Service", "unit_price": "80"})
    issued_on = utcnow().date() - timedelta(days=20)
    invoice = invoices.issue_invoice(db, actor, draft.id, issue_date=issued_on)
    dunning.create_policy(
        db,
        actor,
        {"name": "std", "steps": [{"offset_days": 7, "name": "reminder"}], "is_default": True},
    )
    done = jobs.run_scheduled(db)
    assert done[f"{org.id}:dunning"] == "DunningRun"
    [reminder] = dunning.list_reminders(db, actor, invoice_id=invoice.id)
    assert (reminder.reminder.name, reminder.reminder.recorded_on) == ("reminder", utcnow().date())
    assert f"{org.id}:collection" not in done
