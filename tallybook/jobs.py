"""The one job mechanism: procrastinate.

On PostgreSQL the queue lives in the database (schema `procrastinate`, applied by migration
0005): `tallybook worker` runs on any number of machines, each taking jobs with row locks.
On the SQLite default the same app runs with procrastinate's in-memory connector inside the
`tallybook worker` process: one machine, the same tasks and the same schedule. Nothing is lost
with the in-memory queue when that process stops, because the work itself is durable in our
own tables: the outbox (`deliveries`) is the queue of messages, and a job only says "send
what is due now".

Tasks:
- `tallybook.sweep_outbox`, every TALLYBOOK_WORKER_SWEEP_SECONDS (default 5): recover what a
  dead worker left in `sending`, then send every due e-mail and webhook (outbox.send_due).
  One sweep is deferred per tick for all workers together; while a long sweep runs, the next
  tick's sweep is taken by another worker, so sending spreads over the workers under load.
- `tallybook.scheduled_runs`, daily (TALLYBOOK_SCHEDULED_RUNS_CRON, default 06:00 UTC): the
  collection and dunning runs of each organisation that opted in (`scheduled_runs`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import procrastinate
from sqlalchemy import select

from tallybook.config import DeliverySettings, normalise_database_url
from tallybook.db.models import Organization
from tallybook.services import outbox
from tallybook.services.base import Actor, Database, Role, ServiceError

logger = logging.getLogger("tallybook.jobs")

JOBS_SCHEMA = "procrastinate"
QUEUE = "tallybook"
SCHEDULED_RUNS = ("collection", "dunning")


def uses_postgres(url: str) -> bool:
    return normalise_database_url(url).startswith("postgresql")


def libpq_url(url: str) -> str:
    """postgresql+psycopg://... (SQLAlchemy) -> postgresql://... (libpq, for procrastinate)."""
    url = normalise_database_url(url)
    return "postgresql://" + url.split("://", 1)[1]


def connector_for(url: str) -> Any:
    if uses_postgres(url):
        return procrastinate.PsycopgConnector(
            conninfo=libpq_url(url),
            # procrastinate's tables live in their own schema (migration 0005).
            kwargs={"options": f"-c search_path={JOBS_SCHEMA}"},
            min_size=1,
            max_size=4,
        )
    from procrastinate.testing import InMemoryConnector

    return InMemoryConnector()


@dataclass
class _Context:
    """What the tasks of one app work on."""

    url: str
    database: Database | None = None

    @property
    def db(self) -> Database:
        if self.database is None:
            self.database = Database(self.url)
        return self.database


def make_app(url: str, *, settings: DeliverySettings | None = None) -> procrastinate.App:
    """The procrastinate app for a database: its connector, tasks and schedule."""
    settings = settings or DeliverySettings.from_env()
    context = _Context(url)
    app = procrastinate.App(connector=connector_for(url))

    # croniter's sixth field is the second.
    @app.periodic(cron=f"* * * * * */{settings.sweep_seconds}", periodic_id="outbox")
    @app.task(name="tallybook.sweep_outbox", queue=QUEUE, queueing_lock="tallybook.sweep_outbox")
    def sweep_outbox(timestamp: int) -> dict[str, int]:
        report = outbox.send_due(context.db, settings=settings)
        if report.handled or report.recovered:
            logger.info(
                "outbox: %d sent, %d to retry, %d failed, %d unknown, %d recovered",
                report.sent,
                report.retried,
                report.failed,
                report.unknown,
                report.recovered,
            )
        return {
            "sent": report.sent,
            "retried": report.retried,
            "failed": report.failed,
            "unknown": report.unknown,
            "recovered": report.recovered,
        }

    scheduled_cron = os.environ.get("TALLYBOOK_SCHEDULED_RUNS_CRON", "0 6 * * *")

    @app.periodic(cron=scheduled_cron, periodic_id="daily")
    @app.task(
        name="tallybook.scheduled_runs", queue=QUEUE, queueing_lock="tallybook.scheduled_runs"
    )
    def scheduled_runs(timestamp: int) -> dict[str, Any]:
        return run_scheduled(context.db)

    app.tallybook_context = context  # type: ignore[attr-defined]
    return app


def run_scheduled(db: Database) -> dict[str, Any]:
    """Each opted-in organisation's collection and dunning runs for its today. One
    organisation's refusal is logged and the others still run."""
    with db.reading() as session:
        plans = [
            (org.id, [run for run in org.scheduled_runs or [] if run in SCHEDULED_RUNS])
            for org in session.scalars(select(Organization).order_by(Organization.id))
        ]
    done: dict[str, Any] = {}
    for organization_id, runs in plans:
        actor = Actor(organization_id, None, Role.ADMIN)
        for run in runs:
            try:
                if run == "collection":
                    from tallybook.services.collection import collect_due_invoices

                    result = collect_due_invoices(db, actor)
                else:
                    from tallybook.services.dunning import run_dunning

                    result = run_dunning(db, actor)
            except ServiceError as error:
                logger.warning("%s run of %s refused: %s", run, organization_id, error.detail)
                done[f"{organization_id}:{run}"] = f"refused: {error.detail}"
                continue
            done[f"{organization_id}:{run}"] = type(result).__name__
    return done


def run_worker(url: str, *, concurrency: int = 1, name: str | None = None) -> None:
    """Work until SIGINT/SIGTERM: the periodic sweep of the outbox, the daily runs, and any job
    deferred to the queue."""
    app = make_app(url)
    try:
        app.run_worker(
            queues=[QUEUE],
            concurrency=concurrency,
            name=name or f"tallybook-{os.getpid()}",
            wait=True,
            install_signal_handlers=True,
            delete_jobs="successful",
        )
    finally:
        context = app.tallybook_context  # type: ignore[attr-defined]
        if context.database is not None:
            context.database.dispose()


def send_now(url: str) -> outbox.SendReport:
    """What one sweep does, in this process, once: for cron on the SQLite default or a script."""
    db = Database(url)
    try:
        return outbox.send_due(db)
    finally:
        db.dispose()
