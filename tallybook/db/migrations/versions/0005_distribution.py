"""Distribution: document deliveries (e-mail outbox), webhooks, customer portal links.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql  # noqa: F401

import tallybook.db.types  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # -- branding of PDF documents: the organisation's logo and primary colour --
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("logo", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("logo_media_type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("brand_color", sa.String(length=7), nullable=True))
    # -- end of branding --
    _upgrade_outbox_and_webhooks()
    _upgrade_portal_links()


def downgrade() -> None:
    _downgrade_portal_links()
    _downgrade_outbox_and_webhooks()
    # -- branding of PDF documents --
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("brand_color")
        batch_op.drop_column("logo_media_type")
        batch_op.drop_column("logo")
    # -- end of branding --


# -- the outbox (e-mails and webhooks), webhook endpoints, delivery preferences, and the job
# queue's own schema (procrastinate, PostgreSQL only) -------------------------------------------

# The job queue lives in its own PostgreSQL schema: its tables stay out of the models' way, and
# its connections find them through their search_path (tallybook.jobs).
JOBS_SCHEMA = "procrastinate"


def _upgrade_outbox_and_webhooks() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    moment = tallybook.db.types.UTCDateTime(timezone=True)
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_from", sa.String(length=300), nullable=True))
        batch_op.add_column(
            sa.Column("scheduled_runs", json_type, nullable=False, server_default="[]")
        )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "delivery_channel", sa.String(length=20), nullable=False, server_default="email"
            )
        )
        batch_op.add_column(sa.Column("einvoice_attachment", sa.String(length=10), nullable=True))

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("document_type", sa.String(length=20), nullable=True),
        sa.Column("document_id", sa.String(length=40), nullable=True),
        sa.Column("document_number", sa.String(length=60), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("recipients", json_type, nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("details", json_type, nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=True),
        sa.Column("event_type", sa.String(length=60), nullable=True),
        sa.Column("payload", json_type, nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("replay_of", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", moment, nullable=False),
        sa.Column("claimed_at", moment, nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("sent_at", moment, nullable=True),
        sa.Column("requested_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_deliveries_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_deliveries_org_status", ["organization_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_deliveries_org_document", ["organization_id", "document_id"], unique=False
        )
        batch_op.create_index(
            "ix_deliveries_org_endpoint", ["organization_id", "endpoint_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deliveries_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", moment, nullable=False),
        sa.Column("finished_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_delivery_attempts_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint(
            "delivery_id", "attempt", name=op.f("uq_delivery_attempts_delivery_id_attempt")
        ),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=True),
        sa.Column("events", json_type, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_endpoints_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_organization_id"), ["organization_id"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        _create_job_queue_schema()


def _create_job_queue_schema() -> None:
    """procrastinate's schema (of the pinned version) in its own PostgreSQL schema. A later
    procrastinate release brings its own migration files: apply them in a new revision."""
    from procrastinate.schema import SchemaManager

    connection = op.get_bind()
    previous = connection.exec_driver_sql("SHOW search_path").scalar()
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {JOBS_SCHEMA}")
    connection.exec_driver_sql(f"SET LOCAL search_path TO {JOBS_SCHEMA}")
    # Through the driver's cursor without parameters: the schema text is run exactly as shipped
    # (several statements, % signs and all).
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(SchemaManager.get_schema())
    finally:
        cursor.close()
    connection.exec_driver_sql(f"SET LOCAL search_path TO {previous}")


def _downgrade_outbox_and_webhooks() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SCHEMA IF EXISTS {JOBS_SCHEMA} CASCADE")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_organization_id"))
    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_organization_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))
    op.drop_table("delivery_attempts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_organization_id"))
        batch_op.drop_index("ix_deliveries_org_endpoint")
        batch_op.drop_index("ix_deliveries_org_document")
        batch_op.drop_index("ix_deliveries_org_status")
        batch_op.drop_index("ix_deliveries_due")
    op.drop_table("deliveries")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("einvoice_attachment")
        batch_op.drop_column("delivery_channel")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("scheduled_runs")
        batch_op.drop_column("email_from")


# -- customer portal links: signed, expiring, revocable (services.portal) ---------------------


def _upgrade_portal_links() -> None:
    moment = tallybook.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "portal_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("expires_at", moment, nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("revoked_at", moment, nullable=True),
        sa.Column("revoked_by", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_portal_links_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_portal_links_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_links")),
    )
    with op.batch_alter_table("portal_links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_portal_links_org_customer", ["organization_id", "customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_portal_links_organization_id"), ["organization_id"], unique=False
        )


def _downgrade_portal_links() -> None:
    with op.batch_alter_table("portal_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_portal_links_organization_id"))
        batch_op.drop_index("ix_portal_links_org_customer")
    op.drop_table("portal_links")
