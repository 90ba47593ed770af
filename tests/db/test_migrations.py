"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tallybook.db.models import Base
from tallybook.services.base import Database


def _not_a_partition(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    # Monthly partitions of usage_events are made at run time, not by a migration.
    return not (type_ == "table" and name and name.startswith("usage_events_y"))


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _not_a_partition})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_usage_events_are_partitioned_by_month_on_postgresql(postgres_db: Database) -> None:
    """The parent table is partitioned by range of occurred_at; its key leads with what a
    period's aggregation filters on."""
    with postgres_db.engine.connect() as connection:
        strategy = connection.exec_driver_sql(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
            "WHERE c.relname = 'usage_events'"
        ).one()
        key = inspect(connection).get_pk_constraint("usage_events")["constrained_columns"]
    assert tuple(strategy) == ("r", "occurred_at")
    assert key == ["organization_id", "customer_id", "metric_code", "occurred_at", "transaction_id"]
