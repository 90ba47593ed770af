"""Usage metering: billable metrics, usage events (monthly partitions on PostgreSQL), the
exactly-once key table, quarantine and late-usage periods. Usage records give way to events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tallybook.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_event_keys",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("transaction_id", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=16), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "transaction_id", name=op.f("pk_usage_event_keys")
        ),
    )
    op.create_table(
        "usage_events",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("metric_code", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.String(length=200), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "customer_id",
            "metric_code",
            "occurred_at",
            "transaction_id",
            name=op.f("pk_usage_events"),
        ),
        postgresql_partition_by="RANGE (occurred_at)",
    )
    op.create_table(
        "billable_metrics",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("aggregation", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=True),
        sa.Column(
            "filters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("weighted_unit", sa.String(length=10), nullable=False),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_billable_metrics_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billable_metrics")),
        sa.UniqueConstraint(
            "organization_id", "code", name=op.f("uq_billable_metrics_organization_id_code")
        ),
    )
    with op.batch_alter_table("billable_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billable_metrics_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "usage_quarantine",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("transaction_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("customer_external_id", sa.String(length=200), nullable=True),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("metric_code", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_usage_quarantine_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_quarantine")),
        sa.UniqueConstraint(
            "organization_id",
            "transaction_id",
            name=op.f("uq_usage_quarantine_organization_id_transaction_id"),
        ),
    )
    with op.batch_alter_table("usage_quarantine", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_quarantine_customer_external_id"),
            ["customer_external_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_usage_quarantine_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "late_usage_periods",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("period_end", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detected_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_late_usage_periods_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_late_usage_periods_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint(
            "subscription_id", "period_start", name=op.f("pk_late_usage_periods")
        ),
    )
    with op.batch_alter_table("late_usage_periods", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_late_usage_periods_organization_id"), ["organization_id"], unique=False
        )

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_records_organization_id"))
        batch_op.drop_index(batch_op.f("ix_usage_sub_price_time"))

    op.drop_table("usage_records")
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usage_key", sa.String(length=300), nullable=True))

    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("usage_grace_days", sa.Integer(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metric_code", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "usage_filters",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )
        batch_op.add_column(
            sa.Column(
                "group_by",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_column("group_by")
        batch_op.drop_column("usage_filters")
        batch_op.drop_column("metric_code")

    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("usage_grace_days")

    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_column("usage_key")

    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("price_code", sa.String(length=100), nullable=False),
        sa.Column("transaction_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=True),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_usage_records_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_records_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
        sa.UniqueConstraint(
            "organization_id",
            "transaction_id",
            name=op.f("uq_usage_records_organization_id_transaction_id"),
        ),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_sub_price_time"),
            ["subscription_id", "price_code", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_usage_records_organization_id"), ["organization_id"], unique=False
        )

    with op.batch_alter_table("late_usage_periods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_late_usage_periods_organization_id"))

    op.drop_table("late_usage_periods")
    with op.batch_alter_table("usage_quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_quarantine_organization_id"))
        batch_op.drop_index(batch_op.f("ix_usage_quarantine_customer_external_id"))

    op.drop_table("usage_quarantine")
    with op.batch_alter_table("billable_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billable_metrics_organization_id"))

    op.drop_table("billable_metrics")
    op.drop_table("usage_events")
    op.drop_table("usage_event_keys")
