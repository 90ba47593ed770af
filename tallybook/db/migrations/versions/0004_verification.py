"""Verification before sending: purchase orders, time sheets and service reports, findings
and discrepancies, approvals, the hash-chained audit trail.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401
from sqlalchemy.dialects import postgresql  # noqa: F401

import tallybook.db.types  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _upgrade_purchase_orders_and_time_sheets()
    _upgrade_audit_chain_and_approvals()
    _upgrade_verification_and_discrepancies()


def downgrade() -> None:
    _downgrade_verification_and_discrepancies()
    _downgrade_audit_chain_and_approvals()
    _downgrade_purchase_orders_and_time_sheets()


# -- purchase orders, contract prices, time sheets, service reports (issue 5, items 1-2) -------
# Contracts gain their allowed discounts; existing contracts allow none.


def _upgrade_purchase_orders_and_time_sheets() -> None:
    op.create_table(
        "contract_prices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("unit_price", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_contract_prices_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_contract_prices_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_contract_prices_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_prices")),
        sa.UniqueConstraint(
            "contract_id",
            "product_id",
            "valid_from",
            name=op.f("uq_contract_prices_contract_id_product_id_valid_from"),
        ),
    )
    with op.batch_alter_table("contract_prices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contract_prices_contract_id"), ["contract_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contract_prices_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "purchase_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=True),
        sa.Column("number", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("ceiling_minor", sa.BigInteger(), nullable=True),
        sa.Column("consumed_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("buyer_reference", sa.String(length=200), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("closed_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_purchase_orders_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_purchase_orders_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_purchase_orders_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_orders")),
        sa.UniqueConstraint(
            "organization_id",
            "customer_id",
            "number",
            name=op.f("uq_purchase_orders_organization_id_customer_id_number"),
        ),
    )
    with op.batch_alter_table("purchase_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_orders_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_purchase_orders_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "service_reports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=True),
        sa.Column("product_id", sa.String(length=40), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("quantity", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("performed_by", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("entered_by", sa.String(length=40), nullable=True),
        sa.Column("approved_by", sa.String(length=40), nullable=True),
        sa.Column("approved_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("charge_id", sa.String(length=40), nullable=True),
        sa.Column("billed_invoice_id", sa.String(length=40), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("import_file_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_service_reports_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_service_reports_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_service_reports_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_service_reports_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_reports")),
    )
    with op.batch_alter_table("service_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_reports_billed_invoice_id"), ["billed_invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_reports_charge_id"), ["charge_id"], unique=False
        )
        batch_op.create_index(
            "ix_service_reports_org_customer_date",
            ["organization_id", "customer_id", "service_date"],
            unique=False,
        )
        batch_op.create_index(
            "ix_service_reports_org_file", ["organization_id", "import_file_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_reports_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "time_entries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("work_date", sa.Date(), nullable=False),
        sa.Column("hours", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=True),
        sa.Column("service_code", sa.String(length=100), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("entered_by", sa.String(length=40), nullable=True),
        sa.Column("approved_by", sa.String(length=40), nullable=True),
        sa.Column("approved_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("charge_id", sa.String(length=40), nullable=True),
        sa.Column("billed_invoice_id", sa.String(length=40), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("import_file_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_time_entries_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_time_entries_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_time_entries_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_time_entries_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_entries")),
    )
    with op.batch_alter_table("time_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_time_entries_billed_invoice_id"), ["billed_invoice_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_time_entries_charge_id"), ["charge_id"], unique=False)
        batch_op.create_index(
            "ix_time_entries_org_customer_date",
            ["organization_id", "customer_id", "work_date"],
            unique=False,
        )
        batch_op.create_index(
            "ix_time_entries_org_file", ["organization_id", "import_file_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_time_entries_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "purchase_order_consumptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_order_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_order_line_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_line_id", sa.String(length=40), nullable=True),
        sa.Column("credit_note_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("quantity", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_purchase_order_consumptions_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_purchase_order_consumptions_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_orders.id"],
            name=op.f("fk_purchase_order_consumptions_purchase_order_id_purchase_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_consumptions")),
    )
    with op.batch_alter_table("purchase_order_consumptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_order_consumptions_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_purchase_order_consumptions_organization_id"),
            ["organization_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_purchase_order_consumptions_purchase_order_id"),
            ["purchase_order_id"],
            unique=False,
        )

    op.create_table(
        "purchase_order_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_order_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("unit_price", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("unit_code", sa.String(length=10), nullable=True),
        sa.Column("consumed_quantity", tallybook.db.types.ExactDecimal(length=64), nullable=False),
        sa.Column("consumed_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_purchase_order_lines_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_purchase_order_lines_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_orders.id"],
            name=op.f("fk_purchase_order_lines_purchase_order_id_purchase_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_lines")),
        sa.UniqueConstraint(
            "purchase_order_id",
            "position",
            name=op.f("uq_purchase_order_lines_purchase_order_id_position"),
        ),
    )
    with op.batch_alter_table("purchase_order_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_purchase_order_lines_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_purchase_order_lines_purchase_order_id"),
            ["purchase_order_id"],
            unique=False,
        )

    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "discount_percent_max", tallybook.db.types.ExactDecimal(length=64), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "allowed_coupon_codes",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )


def _downgrade_purchase_orders_and_time_sheets() -> None:
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_column("allowed_coupon_codes")
        batch_op.drop_column("discount_percent_max")

    with op.batch_alter_table("purchase_order_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchase_order_lines_purchase_order_id"))
        batch_op.drop_index(batch_op.f("ix_purchase_order_lines_organization_id"))

    op.drop_table("purchase_order_lines")
    with op.batch_alter_table("purchase_order_consumptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchase_order_consumptions_purchase_order_id"))
        batch_op.drop_index(batch_op.f("ix_purchase_order_consumptions_organization_id"))
        batch_op.drop_index(batch_op.f("ix_purchase_order_consumptions_invoice_id"))

    op.drop_table("purchase_order_consumptions")
    with op.batch_alter_table("time_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_time_entries_organization_id"))
        batch_op.drop_index("ix_time_entries_org_file")
        batch_op.drop_index("ix_time_entries_org_customer_date")
        batch_op.drop_index(batch_op.f("ix_time_entries_charge_id"))
        batch_op.drop_index(batch_op.f("ix_time_entries_billed_invoice_id"))

    op.drop_table("time_entries")
    with op.batch_alter_table("service_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_reports_organization_id"))
        batch_op.drop_index("ix_service_reports_org_file")
        batch_op.drop_index("ix_service_reports_org_customer_date")
        batch_op.drop_index(batch_op.f("ix_service_reports_charge_id"))
        batch_op.drop_index(batch_op.f("ix_service_reports_billed_invoice_id"))

    op.drop_table("service_reports")
    with op.batch_alter_table("purchase_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchase_orders_organization_id"))
        batch_op.drop_index(batch_op.f("ix_purchase_orders_customer_id"))

    op.drop_table("purchase_orders")
    with op.batch_alter_table("contract_prices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contract_prices_organization_id"))
        batch_op.drop_index(batch_op.f("ix_contract_prices_contract_id"))

    op.drop_table("contract_prices")


# -- end of purchase orders, contract prices, time sheets, service reports ----------------


# -- audit chain and approvals (issue 5, items 5-6) ------------------------------------------
# Audit events gain their place in the organisation's hash chain; the events already in the
# table are chained here, in the order they were written (created_at, then id), so the first
# `tallybook audit verify` after the upgrade finds every chain whole.


def _upgrade_audit_chain_and_approvals() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "credit_note_approval_thresholds", json_type, nullable=False, server_default="{}"
            )
        )
        batch_op.add_column(
            sa.Column(
                "write_off_approval_thresholds", json_type, nullable=False, server_default="{}"
            )
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("previous_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_audit_events_organization_id_sequence"),
            ["organization_id", "sequence"],
        )
        batch_op.create_index(
            "ix_audit_events_org_created", ["organization_id", "created_at"], unique=False
        )
    op.create_table(
        "audit_chain_heads",
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", sa.String(length=40), nullable=True),
        sa.Column("updated_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_audit_chain_heads_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_audit_chain_heads")),
    )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("subject_type", sa.String(length=30), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=60), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("action", json_type, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=40), nullable=True),
        sa.Column("request_reason", sa.Text(), nullable=True),
        sa.Column("requested_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=40), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result_type", sa.String(length=30), nullable=True),
        sa.Column("result_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_approval_requests_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_requests_org_status", ["organization_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_approval_requests_subject",
            ["organization_id", "subject_type", "subject_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_approval_requests_organization_id"), ["organization_id"], unique=False
        )
    _chain_existing_audit_events(json_type)


def _chain_existing_audit_events(json_type: sa.types.TypeEngine) -> None:
    from datetime import UTC, datetime

    from tallybook.core.audit_chain import ChainEvent, ChainHead, canonical_value, extend

    connection = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.String()),
        sa.column("organization_id", sa.String()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("entity", sa.String()),
        sa.column("entity_id", sa.String()),
        sa.column("data", json_type),
        sa.column("created_at", tallybook.db.types.UTCDateTime()),
        sa.column("sequence", sa.BigInteger()),
        sa.column("previous_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    heads = sa.table(
        "audit_chain_heads",
        sa.column("organization_id", sa.String()),
        sa.column("last_sequence", sa.BigInteger()),
        sa.column("last_hash", sa.String()),
        sa.column("last_event_id", sa.String()),
        sa.column("updated_at", tallybook.db.types.UTCDateTime()),
    )
    organizations = connection.execute(
        sa.select(events.c.organization_id).distinct().order_by(events.c.organization_id)
    ).scalars()
    for organization_id in list(organizations):
        rows = connection.execute(
            sa.select(events)
            .where(events.c.organization_id == organization_id)
            .order_by(events.c.created_at, events.c.id)
        ).all()
        chained = [
            ChainEvent(
                id=row.id,
                organization_id=row.organization_id,
                actor=row.actor,
                action=row.action,
                entity=row.entity,
                entity_id=row.entity_id,
                # Stored as it is hashed: a value JSON would spell differently is fixed now.
                data=canonical_value(row.data or {}),
                created_at=row.created_at,
            )
            for row in rows
        ]
        links = extend(None, chained)
        for event, link in zip(chained, links, strict=True):
            connection.execute(
                events.update()
                .where(events.c.id == event.id)
                .values(
                    data=event.data,
                    sequence=link.sequence,
                    previous_hash=link.previous_hash,
                    hash=link.hash,
                )
            )
        head = ChainHead(links[-1].sequence, links[-1].hash, chained[-1].id)
        connection.execute(
            heads.insert().values(
                organization_id=organization_id,
                last_sequence=head.last_sequence,
                last_hash=head.last_hash,
                last_event_id=head.last_event_id,
                updated_at=datetime.now(UTC),
            )
        )


def _downgrade_audit_chain_and_approvals() -> None:
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_requests_organization_id"))
        batch_op.drop_index("ix_approval_requests_subject")
        batch_op.drop_index("ix_approval_requests_org_status")
    op.drop_table("approval_requests")
    op.drop_table("audit_chain_heads")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_org_created")
        batch_op.drop_constraint(
            batch_op.f("uq_audit_events_organization_id_sequence"), type_="unique"
        )
        batch_op.drop_column("hash")
        batch_op.drop_column("previous_hash")
        batch_op.drop_column("sequence")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("write_off_approval_thresholds")
        batch_op.drop_column("credit_note_approval_thresholds")


# -- end of audit chain and approvals ----------------------------------------------------------


# -- verification findings, discrepancies and disputes (issue 5, items 3-4 and 7) ------------
# Organisations gain the anomaly and near-duplicate settings (existing ones get the defaults:
# 50 percent, 7 days).


def _upgrade_verification_and_discrepancies() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("anomaly_percent", sa.Integer(), nullable=True, server_default="50")
        )
        batch_op.add_column(
            sa.Column("near_duplicate_days", sa.Integer(), nullable=False, server_default="7")
        )
    op.create_table(
        "verification_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("invoices", sa.Integer(), nullable=False),
        sa.Column("failing_invoices", sa.Integer(), nullable=False),
        sa.Column("blocking", sa.Integer(), nullable=False),
        sa.Column("warnings", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("started_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_verification_runs_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_runs")),
    )
    with op.batch_alter_table("verification_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verification_runs_organization_id"), ["organization_id"], unique=False
        )
    op.create_table(
        "discrepancies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("check", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=True),
        sa.Column("actual", sa.Text(), nullable=True),
        sa.Column("location", json_type, nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_line_id", sa.String(length=40), nullable=True),
        sa.Column("purchase_order_id", sa.String(length=40), nullable=True),
        sa.Column("time_entry_id", sa.String(length=40), nullable=True),
        sa.Column("subject_type", sa.String(length=20), nullable=True),
        sa.Column("subject_id", sa.String(length=40), nullable=True),
        sa.Column("assignee_key_id", sa.String(length=40), nullable=True),
        sa.Column("resolution", sa.String(length=20), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("customer_message", sa.Text(), nullable=True),
        sa.Column("credit_note_id", sa.String(length=40), nullable=True),
        sa.Column("debit_note_id", sa.String(length=40), nullable=True),
        sa.Column("override_approval_id", sa.String(length=40), nullable=True),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("opened_by", sa.String(length=40), nullable=True),
        sa.Column("resolved_by", sa.String(length=40), nullable=True),
        sa.Column("first_seen_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_discrepancies_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancies")),
        sa.UniqueConstraint(
            "organization_id",
            "fingerprint",
            name=op.f("uq_discrepancies_organization_id_fingerprint"),
        ),
    )
    with op.batch_alter_table("discrepancies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_discrepancies_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            "ix_discrepancies_org_status", ["organization_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_discrepancies_org_invoice", ["organization_id", "invoice_id"], unique=False
        )
    op.create_table(
        "discrepancy_comments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("discrepancy_id", sa.String(length=40), nullable=False),
        sa.Column("author_key_id", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", tallybook.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["discrepancy_id"],
            ["discrepancies.id"],
            name=op.f("fk_discrepancy_comments_discrepancy_id_discrepancies"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_discrepancy_comments_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancy_comments")),
    )
    with op.batch_alter_table("discrepancy_comments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_discrepancy_comments_discrepancy_id"), ["discrepancy_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_discrepancy_comments_organization_id"),
            ["organization_id"],
            unique=False,
        )


def _downgrade_verification_and_discrepancies() -> None:
    op.drop_table("discrepancy_comments")
    op.drop_table("discrepancies")
    op.drop_table("verification_runs")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("near_duplicate_days")
        batch_op.drop_column("anomaly_percent")


# -- end of verification findings, discrepancies and disputes ---------------------------------
