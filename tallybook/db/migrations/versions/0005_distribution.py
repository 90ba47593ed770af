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


def downgrade() -> None:
    # -- branding of PDF documents --
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("brand_color")
        batch_op.drop_column("logo_media_type")
        batch_op.drop_column("logo")
    # -- end of branding --
