"""payments: billing_rates (a tariff per site), platform tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.tables import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_platform_tables(op.get_bind())
    op.create_table(
        "billing_rates",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("tariff", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("billing_rates")
    drop_platform_tables(op.get_bind())
