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


def downgrade() -> None:
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
